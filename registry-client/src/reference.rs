//! Image references, normalised as Docker does: `busybox` is
//! `docker.io/library/busybox:latest`; `localhost:5000/a/b:v1@sha256:…` keeps its registry,
//! tag and digest. The grammar follows distribution/reference.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// The registry a reference without one refers to.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The tag of a reference with neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const NAME_MAX: usize = 255;

/// A normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

fn invalid(reference: &str, reason: impl Into<String>) -> Error {
    Error::InvalidReference {
        reference: reference.to_string(),
        reason: reason.into(),
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// A registry host, optionally with a port: DNS-ish labels, an IPv4 address, or `[v6]`.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, after)) => {
                if v6.parse::<std::net::Ipv6Addr>().is_err() {
                    return false;
                }
                (None, after.strip_prefix(':').map(Some).unwrap_or(Some("")))
            }
            None => return false,
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(d), None),
        }
    };
    if let Some(p) = port {
        if !p.is_empty() && (p.parse::<u16>().is_err() || !p.bytes().all(|b| b.is_ascii_digit())) {
            return false;
        }
        if p.is_empty() && host.is_some() {
            return false;
        }
    }
    match host {
        None => true,
        Some(h) => {
            !h.is_empty()
                && h.split('.').all(|label| {
                    let b = label.as_bytes();
                    !b.is_empty()
                        && b[0].is_ascii_alphanumeric()
                        && b[b.len() - 1].is_ascii_alphanumeric()
                        && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
                })
        }
    }
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|x| word(*x) || *x == b'.' || *x == b'-')
}

/// `algorithm:encoded`, with sha256 checked strictly (64 lowercase hex).
fn valid_digest(d: &str) -> bool {
    let Some((alg, enc)) = d.split_once(':') else {
        return false;
    };
    let alg_ok = !alg.is_empty()
        && alg.as_bytes()[0].is_ascii_alphabetic()
        && alg
            .bytes()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'-' | b'_' | b'+' | b'.'));
    let hex = |s: &str| s.bytes().all(|x| matches!(x, b'0'..=b'9' | b'a'..=b'f'));
    match alg {
        "sha256" => enc.len() == 64 && hex(enc),
        "sha512" => enc.len() == 128 && hex(enc),
        _ => alg_ok && enc.len() >= 32 && enc.bytes().all(|x| x.is_ascii_hexdigit()),
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|x| matches!(x, b'0'..=b'9' | b'a'..=b'f'))
}

impl Reference {
    /// Parses a reference the way `docker pull` does, filling in the default registry,
    /// the `library/` namespace for official images and the `latest` tag.
    pub fn parse(s: &str) -> Result<Self> {
        if s.is_empty() {
            return Err(invalid(s, "empty reference"));
        }
        if is_hex64(s) {
            return Err(invalid(
                s,
                "a 64-character hexadecimal string is an image id, not a name",
            ));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                if !valid_digest(d) {
                    return Err(invalid(s, format!("invalid digest {d:?}")));
                }
                (r, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag follows the last ':' that comes after the last '/'.
        let last_slash = rest.rfind('/').map(|i| i + 1).unwrap_or(0);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let t = &rest[last_slash + i + 1..];
                if !valid_tag(t) {
                    return Err(invalid(s, format!("invalid tag {t:?}")));
                }
                (&rest[..last_slash + i], Some(t.to_string()))
            }
            None => (rest, None),
        };
        if name.is_empty() {
            return Err(invalid(s, "missing repository name"));
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                (first.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        let domain = if domain == LEGACY_DOMAIN {
            DEFAULT_DOMAIN.to_string()
        } else {
            domain
        };
        if !valid_domain(&domain) {
            return Err(invalid(s, format!("invalid registry {domain:?}")));
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(invalid(s, "repository name must be lowercase"));
        }
        if !path.split('/').all(valid_component) {
            return Err(invalid(
                s,
                "repository name components must be lowercase letters, digits and separators (. _ __ -)",
            ));
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_PREFIX}{path}")
        } else {
            path
        };
        if domain.len() + 1 + path.len() > NAME_MAX {
            return Err(invalid(
                s,
                format!("repository name longer than {NAME_MAX} characters"),
            ));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            _ => tag,
        };
        Ok(Reference {
            domain,
            path,
            tag,
            digest,
        })
    }

    /// The registry, e.g. `docker.io` or `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry, e.g. `library/busybox`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `domain/path`, e.g. `docker.io/library/busybox`.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// This reference with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Self> {
        if !valid_tag(tag) {
            return Err(invalid(tag, "invalid tag"));
        }
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// This repository at `digest`, without a tag (`repo@sha256:…`).
    pub fn with_digest(&self, digest: &str) -> Result<Self> {
        if !valid_digest(digest) {
            return Err(invalid(digest, "invalid digest"));
        }
        Ok(Reference {
            tag: None,
            digest: Some(digest.to_string()),
            ..self.clone()
        })
    }

    /// The short form Docker shows: `busybox:latest`, `user/app:v1`,
    /// `localhost:5000/app:v1`.
    pub fn familiar(&self) -> String {
        let repo = self.familiar_repository();
        let mut out = repo;
        if let Some(t) = &self.tag {
            out.push(':');
            out.push_str(t);
        }
        if let Some(d) = &self.digest {
            out.push('@');
            out.push_str(d);
        }
        out
    }

    /// The short repository name: `busybox`, `user/app`, `localhost:5000/app`.
    pub fn familiar_repository(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix(OFFICIAL_PREFIX)
                .unwrap_or(&self.path)
                .to_string()
        } else {
            self.repository()
        }
    }
}

impl fmt::Display for Reference {
    /// The full normalised form, e.g. `docker.io/library/busybox:latest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn normalises_like_docker() {
        for (input, full, short) in [
            (
                "busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "busybox:1.36",
                "docker.io/library/busybox:1.36",
                "busybox:1.36",
            ),
            ("user/app", "docker.io/user/app:latest", "user/app:latest"),
            (
                "docker.io/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "index.docker.io/library/busybox",
                "docker.io/library/busybox:latest",
                "busybox:latest",
            ),
            (
                "localhost/app",
                "localhost/app:latest",
                "localhost/app:latest",
            ),
            (
                "localhost:5000/a/b:v1",
                "localhost:5000/a/b:v1",
                "localhost:5000/a/b:v1",
            ),
            (
                "127.0.0.1:5000/app",
                "127.0.0.1:5000/app:latest",
                "127.0.0.1:5000/app:latest",
            ),
            (
                "ghcr.io/o/r/x:tag",
                "ghcr.io/o/r/x:tag",
                "ghcr.io/o/r/x:tag",
            ),
            (
                "[::1]:5000/app",
                "[::1]:5000/app:latest",
                "[::1]:5000/app:latest",
            ),
            (
                "my-app__x.y",
                "docker.io/library/my-app__x.y:latest",
                "my-app__x.y:latest",
            ),
        ] {
            let r = Reference::parse(input).unwrap();
            assert_eq!(r.to_string(), full, "{input}");
            assert_eq!(r.familiar(), short, "{input}");
        }
    }

    #[test]
    fn keeps_digests_with_or_without_tags() {
        let r = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest(), Some(D));
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{D}"));
        let r = Reference::parse(&format!("localhost:5000/app:v2@{D}")).unwrap();
        assert_eq!((r.tag(), r.digest()), (Some("v2"), Some(D)));
        assert_eq!(r.domain(), "localhost:5000");
    }

    #[test]
    fn refuses_what_docker_refuses() {
        for bad in [
            "",
            "Busybox",
            "busybox:",
            "busybox:-bad",
            "busybox@sha256:abc",
            "busybox@sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "a//b",
            "-leading",
            "trailing-",
            "a..b",
            "a/.b",
            ":tag",
            "host:notaport/app",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "UPPER.example.com/App",
            &"a".repeat(300),
            "busybox:tag with space",
            "../../etc",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn retagging_and_digests() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.with_tag("v1").unwrap().familiar(), "busybox:v1");
        assert_eq!(r.with_digest(D).unwrap().familiar(), format!("busybox@{D}"));
        assert!(r.with_tag("bad tag").is_err());
    }
}
