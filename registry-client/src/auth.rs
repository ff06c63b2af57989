//! Registry authentication: `WWW-Authenticate` challenges, basic credentials and bearer
//! tokens (Docker's token protocol), with a token cache shared by all repositories of a
//! [`Client`](crate::Client).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;

/// Validity assumed for a token whose response has no `expires_in` (the spec's default).
pub const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// A cached token is dropped this long before it expires.
const TOKEN_SLACK: Duration = Duration::from_secs(10);

/// One challenge of a `WWW-Authenticate` header: `Bearer realm="…",service="…"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lower-cased: `basic`, `bearer`, …
    pub scheme: String,
    /// Parameters, names lower-cased, values unquoted.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// A parameter by (lower-case) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses every challenge of one `WWW-Authenticate` value (RFC 7235: several challenges,
/// comma separated; parameters as `name=token` or `name="quoted \" string"`).
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut p = Parser {
        s: header.as_bytes(),
        i: 0,
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        p.skip_ws_commas();
        if p.done() {
            break;
        }
        let Some(word) = p.token() else {
            // Not a token: skip the byte.
            p.i += 1;
            continue;
        };
        p.skip_ws();
        if p.at_param_equals() && !out.is_empty() {
            // `name=value`: a parameter of the current challenge.
            p.i += 1;
            p.skip_ws();
            let value = if p.peek() == Some(b'"') {
                p.quoted()
            } else {
                p.token().unwrap_or_default()
            };
            if let Some(c) = out.last_mut() {
                c.params.insert(word.to_ascii_lowercase(), value);
            }
            continue;
        }
        out.push(Challenge {
            scheme: word.to_ascii_lowercase(),
            params: BTreeMap::new(),
        });
        // A token68 after the scheme (`Negotiate abc==`) is not used by registries:
        // consume and ignore it; anything else is the first parameter.
        let save = p.i;
        if p.token().is_some() {
            while p.peek() == Some(b'=') {
                p.i += 1;
            }
            p.skip_ws();
            if !(p.done() || p.peek() == Some(b',')) {
                p.i = save;
            }
        }
    }
    out
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }
    fn skip_ws_commas(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }
    /// At an `=` that starts a parameter value (not token68 padding like `==`).
    fn at_param_equals(&self) -> bool {
        if self.peek() != Some(b'=') {
            return false;
        }
        let mut j = self.i + 1;
        while matches!(self.s.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        !matches!(self.s.get(j), None | Some(b'=') | Some(b','))
    }
    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while let Some(c) = self.peek() {
            let tchar = c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:".contains(&c);
            if !tchar {
                break;
            }
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }
    fn quoted(&mut self) -> String {
        // At the opening quote.
        self.i += 1;
        let mut out = Vec::new();
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                _ => out.push(c),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// How an endpoint wants to be authenticated, learnt from its last challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AuthScheme {
    /// No challenge seen yet, or none needed.
    Anonymous,
    /// `Basic realm=…`.
    Basic,
    /// `Bearer realm=…,service=…`.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// `service` parameter, may be empty.
        service: String,
    },
}

impl AuthScheme {
    /// Picks the scheme from a 401's challenges: bearer when offered, else basic.
    pub(crate) fn from_challenges(challenges: &[Challenge]) -> Option<AuthScheme> {
        if let Some(b) = challenges.iter().find(|c| c.scheme == "bearer") {
            let realm = b.param("realm")?.to_string();
            return Some(AuthScheme::Bearer {
                realm,
                service: b.param("service").unwrap_or_default().to_string(),
            });
        }
        challenges
            .iter()
            .any(|c| c.scheme == "basic")
            .then_some(AuthScheme::Basic)
    }
}

/// `Authorization: Basic …` value.
pub(crate) fn basic_header(username: &str, password: &str) -> String {
    let raw = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// The body of a token endpoint's answer.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: String,
    #[serde(default)]
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

impl TokenResponse {
    /// `token`, or OAuth2's `access_token`.
    pub(crate) fn bearer(&self) -> Option<&str> {
        [&self.token, &self.access_token]
            .into_iter()
            .find(|t| !t.is_empty())
            .map(String::as_str)
    }

    /// How long the token may be cached.
    pub(crate) fn lifetime(&self) -> Duration {
        let total = self
            .expires_in
            .filter(|s| *s > 0)
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        if total > TOKEN_SLACK * 2 {
            total - TOKEN_SLACK
        } else {
            total / 2
        }
    }
}

/// Cache key of a token: where it comes from, for which scopes, for which user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TokenKey {
    pub host: String,
    pub realm: String,
    pub service: String,
    pub scope: String,
    pub user: String,
}

/// Tokens by key until they expire.
#[derive(Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<TokenKey, (String, Instant)>>,
}

impl TokenCache {
    pub(crate) fn get(&self, key: &TokenKey) -> Option<String> {
        let mut map = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            Some((token, until)) if *until > Instant::now() => Some(token.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn put(&self, key: TokenKey, token: String, lifetime: Duration) {
        let mut map = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        map.retain(|_, (_, until)| *until > now);
        map.insert(key, (token, now + lifetime));
    }

    pub(crate) fn remove(&self, key: &TokenKey) {
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ch(scheme: &str, params: &[(&str, &str)]) -> Challenge {
        Challenge {
            scheme: scheme.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn parses_docker_hub_bearer() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#;
        assert_eq!(
            parse_challenges(h),
            vec![ch(
                "bearer",
                &[
                    ("realm", "https://auth.docker.io/token"),
                    ("service", "registry.docker.io"),
                    ("scope", "repository:library/busybox:pull"),
                ]
            )]
        );
    }

    #[test]
    fn parses_basic_and_several_challenges() {
        assert_eq!(
            parse_challenges(r#"Basic realm="Registry Realm""#),
            vec![ch("basic", &[("realm", "Registry Realm")])]
        );
        let h = r#"Bearer realm="https://t.example/token", service=reg, error="insufficient_scope", Basic realm="x, y""#;
        assert_eq!(
            parse_challenges(h),
            vec![
                ch(
                    "bearer",
                    &[
                        ("realm", "https://t.example/token"),
                        ("service", "reg"),
                        ("error", "insufficient_scope"),
                    ]
                ),
                ch("basic", &[("realm", "x, y")]),
            ]
        );
    }

    #[test]
    fn parses_escapes_case_and_token68() {
        let h = r#"BASIC Realm="a \"quoted\" realm", Negotiate abc123==, Bearer realm=https://r/t"#;
        let got = parse_challenges(h);
        assert_eq!(got[0], ch("basic", &[("realm", r#"a "quoted" realm"#)]));
        assert_eq!(got[1], ch("negotiate", &[]));
        assert_eq!(got[2], ch("bearer", &[("realm", "https://r/t")]));
        assert!(parse_challenges("").is_empty());
        assert_eq!(parse_challenges("Basic"), vec![ch("basic", &[])]);
    }

    #[test]
    fn prefers_bearer() {
        let c = parse_challenges(r#"Basic realm="r", Bearer realm="https://a/t",service="s""#);
        assert_eq!(
            AuthScheme::from_challenges(&c),
            Some(AuthScheme::Bearer {
                realm: "https://a/t".into(),
                service: "s".into()
            })
        );
        let c = parse_challenges(r#"Basic realm="r""#);
        assert_eq!(AuthScheme::from_challenges(&c), Some(AuthScheme::Basic));
        assert_eq!(AuthScheme::from_challenges(&[]), None);
        // A bearer challenge without realm is unusable.
        assert_eq!(
            AuthScheme::from_challenges(&parse_challenges("Bearer service=x")),
            None
        );
    }

    #[test]
    fn token_lifetimes() {
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"a"}"#).unwrap();
        assert_eq!(t.bearer(), Some("a"));
        assert_eq!(t.lifetime(), DEFAULT_TOKEN_LIFETIME - TOKEN_SLACK);
        let t: TokenResponse =
            serde_json::from_str(r#"{"token":"t","access_token":"a","expires_in":300}"#).unwrap();
        assert_eq!(t.bearer(), Some("t"));
        assert_eq!(t.lifetime(), Duration::from_secs(290));
        let t: TokenResponse = serde_json::from_str(r#"{"token":"t","expires_in":10}"#).unwrap();
        assert_eq!(t.lifetime(), Duration::from_secs(5));
        let t: TokenResponse = serde_json::from_str(r#"{}"#).unwrap();
        assert_eq!(t.bearer(), None);
    }

    #[test]
    fn basic_header_is_base64() {
        assert_eq!(basic_header("berth", "s3cret"), "Basic YmVydGg6czNjcmV0");
    }
}
