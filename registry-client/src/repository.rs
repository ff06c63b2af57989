//! One repository of one registry: ping (login), manifests, blob existence, mounts and
//! manifest pushes. Blob transfer is in [`crate::blob`].

use bytes::Bytes;
use reqwest::header::{HeaderMap, ACCEPT, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use crate::client::{content_length, error_message, read_capped, Call, Client, Endpoint, Scope};
use crate::error::{Error, Result};
use crate::manifest::{self, check_digest, classify, sha256_digest, MAX_MANIFEST_SIZE};
use crate::reference::Reference;
use crate::{Credentials, Descriptor, Manifest};

/// What a 404 is about, for the message.
#[derive(Clone, Copy)]
pub(crate) enum Missing {
    Manifest,
    Blob,
    Upload,
    Repository,
}

/// A repository on a registry (and its mirrors, for pulls). Cheap to clone.
#[derive(Clone)]
pub struct Repository {
    pub(crate) client: Client,
    pub(crate) reference: Reference,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) origin: Endpoint,
    pub(crate) mirrors: Vec<Endpoint>,
}

impl Repository {
    pub(crate) fn new(
        client: Client,
        reference: Reference,
        credentials: Option<Credentials>,
        origin: Endpoint,
        mirrors: Vec<Endpoint>,
    ) -> Repository {
        Repository {
            client,
            reference,
            credentials,
            origin,
            mirrors,
        }
    }

    /// The reference this repository was opened for.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// `<base>/v2/<path>/<rest>` on `ep` (before the insecure-host http probe).
    #[cfg(test)]
    pub(crate) fn url(&self, ep: &Endpoint, rest: &str) -> Url {
        url_on(&ep.base, self.reference.path(), rest)
    }

    /// The same, on `ep`'s resolved base (https or http for insecure hosts).
    pub(crate) async fn url_at(&self, ep: &Endpoint, rest: &str) -> Url {
        let base = self.client.base(ep).await;
        url_on(&base, self.reference.path(), rest)
    }

    /// Mirrors in order, then the origin.
    pub(crate) fn pull_endpoints(&self) -> impl Iterator<Item = &Endpoint> {
        self.mirrors.iter().chain(std::iter::once(&self.origin))
    }

    pub(crate) fn call(&self, method: Method, url: Url, scope: Scope) -> Call {
        Call::new(method, url, scope, self.client.inner.config.stall_timeout)
    }

    pub(crate) async fn execute(&self, ep: &Endpoint, call: &Call) -> Result<Response> {
        self.client
            .execute(ep, self.reference.path(), self.credentials.as_ref(), call)
            .await
    }

    /// `<registry>/<path>@<digest>`, for messages.
    pub(crate) fn blob_name(&self, digest: &str) -> String {
        format!("{}@{digest}", self.reference.repository())
    }

    /// Turns a failed answer into an error naming `what`.
    pub(crate) async fn fail(
        &self,
        ep: &Endpoint,
        resp: Response,
        what: &str,
        missing: Missing,
    ) -> Error {
        let status = resp.status();
        let challenge_error = resp
            .headers()
            .get_all(reqwest::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(crate::auth::parse_challenges)
            .find_map(|c| c.param("error").map(str::to_string));
        let msg = error_message(resp).await;
        let has_creds = !ep.mirror && self.credentials.is_some();
        // The registry's words, when they add something.
        let detail = |m: &str| {
            let l = m.to_ascii_lowercase();
            if l.is_empty() || l == "unauthorized" || l.contains("authentication required") {
                String::new()
            } else {
                format!(" ({m})")
            }
        };
        match status {
            StatusCode::UNAUTHORIZED => {
                if challenge_error.as_deref() == Some("insufficient_scope") && has_creds {
                    Error::Denied(format!("{what}: {msg}"))
                } else if has_creds {
                    Error::Unauthorized(format!(
                        "wrong username or password for {what}{}",
                        detail(&msg)
                    ))
                } else {
                    Error::Unauthorized(format!(
                        "{what}: authentication required{}; log in with `berthctl login {}`",
                        detail(&msg),
                        self.reference.domain()
                    ))
                }
            }
            StatusCode::FORBIDDEN => Error::Denied(format!("{what}: {msg}")),
            StatusCode::NOT_FOUND => {
                let default = match missing {
                    Missing::Manifest => "manifest unknown",
                    Missing::Blob => "blob unknown",
                    Missing::Upload => "blob upload unknown",
                    Missing::Repository => "repository unknown",
                };
                let m = if msg == "not found" { default } else { &msg };
                Error::NotFound(format!("{m}: {what}"))
            }
            _ if ep.mirror => Error::Http {
                status: status.as_u16(),
                message: format!("{what} (mirror {}): {msg}", ep.base),
            },
            _ => Error::Http {
                status: status.as_u16(),
                message: format!("{what}: {msg}"),
            },
        }
    }

    /// `GET /v2/` and the auth challenge with the credentials: succeeds when the registry
    /// accepts them (or needs none); wrong credentials give [`Error::Unauthorized`].
    #[tracing::instrument(skip_all, fields(registry = %self.reference.domain()))]
    pub async fn ping(&self) -> Result<()> {
        let ep = &self.origin;
        let base = self.client.base(ep).await;
        let url = base.join("v2/").map_err(|e| Error::Config(e.to_string()))?;
        let resp = self
            .execute(ep, &self.call(Method::GET, url, Scope::None))
            .await?;
        if resp.status().is_success() {
            return Ok(());
        }
        let what = self.reference.domain().to_string();
        Err(self.fail(ep, resp, &what, Missing::Repository).await)
    }

    /// The manifest or index the reference names: by digest when it has one (verified),
    /// else by tag (hashed, and cross-checked with `Docker-Content-Digest`). Mirrors first.
    #[tracing::instrument(skip_all, fields(reference = %self.reference))]
    pub async fn resolve(&self) -> Result<Manifest> {
        if let Some(d) = self.reference.digest() {
            let d = d.to_string();
            return self.fetch_manifest(&d).await;
        }
        let tag = self
            .reference
            .tag()
            .unwrap_or(crate::reference::DEFAULT_TAG);
        let what = self.reference.to_string();
        self.pull_from(|ep| self.get_manifest(ep, tag, None, &what))
            .await
    }

    /// The manifest or index `digest` of this repository, verified against the digest.
    #[tracing::instrument(skip_all, fields(reference = %self.reference, digest = %digest))]
    pub async fn fetch_manifest(&self, digest: &str) -> Result<Manifest> {
        check_digest(digest)?;
        let what = self.blob_name(digest);
        self.pull_from(|ep| self.get_manifest(ep, digest, Some(digest), &what))
            .await
    }

    /// Tries `op` on each mirror, then on the origin; a mirror's failure is logged.
    pub(crate) async fn pull_from<'a, T, F, Fut>(&'a self, op: F) -> Result<T>
    where
        F: Fn(&'a Endpoint) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        for ep in &self.mirrors {
            match op(ep).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    tracing::warn!(mirror = %ep.base, error = %e, "mirror failed, trying the next");
                }
            }
        }
        op(&self.origin).await
    }

    async fn get_manifest(
        &self,
        ep: &Endpoint,
        tag_or_digest: &str,
        expected: Option<&str>,
        what: &str,
    ) -> Result<Manifest> {
        let url = self.url_at(ep, &format!("manifests/{tag_or_digest}")).await;
        let call = self
            .call(Method::GET, url, Scope::Pull)
            .header(ACCEPT, &manifest::accept_header());
        let resp = self.execute(ep, &call).await?;
        if resp.status() != StatusCode::OK {
            return Err(self.fail(ep, resp, what, Missing::Manifest).await);
        }
        let headers: HeaderMap = resp.headers().clone();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let bytes = read_capped(
            resp,
            MAX_MANIFEST_SIZE,
            self.client.inner.config.stall_timeout,
            &format!("the manifest of {what}"),
        )
        .await?;
        let digest = sha256_digest(&bytes);
        match expected {
            Some(exp) if exp != digest => {
                return Err(Error::DigestMismatch {
                    what: format!("manifest {what}"),
                    expected: exp.to_string(),
                    actual: digest,
                })
            }
            Some(_) => {}
            None => {
                if let Some(announced) = header("docker-content-digest") {
                    if announced.starts_with("sha256:") && announced != digest {
                        return Err(Error::DigestMismatch {
                            what: format!("manifest {what} (Docker-Content-Digest)"),
                            expected: announced,
                            actual: digest,
                        });
                    }
                }
            }
        }
        let media_type = classify(&bytes, header("content-type").as_deref(), what)?;
        tracing::debug!(%digest, %media_type, size = bytes.len(), "manifest fetched");
        Ok(Manifest {
            descriptor: Descriptor {
                media_type,
                digest,
                size: bytes.len() as u64,
            },
            bytes,
        })
    }

    /// Size of blob `digest` when the registry has it (`HEAD`), on the origin.
    #[tracing::instrument(skip_all, fields(reference = %self.reference, digest = %digest))]
    pub async fn blob_exists(&self, digest: &str) -> Result<Option<u64>> {
        check_digest(digest)?;
        let ep = &self.origin;
        let url = self.url_at(ep, &format!("blobs/{digest}")).await;
        let resp = self
            .execute(ep, &self.call(Method::HEAD, url, Scope::Push))
            .await?;
        match resp.status() {
            s if s.is_success() => Ok(Some(content_length(&resp).unwrap_or(0))),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(self
                .fail(ep, resp, &self.blob_name(digest), Missing::Blob)
                .await),
        }
    }

    /// Mounts blob `digest` from `from_repository_path` (same registry) into this
    /// repository: `true` when mounted, `false` when the registry started an upload
    /// instead (which is cancelled).
    #[tracing::instrument(skip_all, fields(reference = %self.reference, digest = %digest, from = %from_repository_path))]
    pub async fn mount_blob(&self, digest: &str, from_repository_path: &str) -> Result<bool> {
        check_digest(digest)?;
        let ep = &self.origin;
        let mut url = self.url_at(ep, "blobs/uploads/").await;
        url.query_pairs_mut()
            .append_pair("mount", digest)
            .append_pair("from", from_repository_path);
        let mut call = self.call(
            Method::POST,
            url,
            Scope::Mount(from_repository_path.to_string()),
        );
        call.retry = false;
        let call = call.header(reqwest::header::CONTENT_LENGTH, "0");
        let resp = self.execute(ep, &call).await?;
        match resp.status() {
            StatusCode::CREATED => {
                tracing::debug!("blob mounted");
                Ok(true)
            }
            StatusCode::ACCEPTED => {
                if let Some(loc) = location(&resp) {
                    let cancel = self.call(Method::DELETE, loc, Scope::Push);
                    if let Err(e) = self.execute(ep, &cancel).await {
                        tracing::debug!(error = %e, "cancelling the upload the mount started");
                    }
                }
                Ok(false)
            }
            _ => Err(self
                .fail(ep, resp, &self.blob_name(digest), Missing::Blob)
                .await),
        }
    }

    /// Uploads a manifest or index under a tag or its digest; returns its digest.
    #[tracing::instrument(skip_all, fields(reference = %self.reference, tag_or_digest = %tag_or_digest))]
    pub async fn push_manifest(
        &self,
        tag_or_digest: &str,
        media_type: &str,
        bytes: Bytes,
    ) -> Result<String> {
        let digest = sha256_digest(&bytes);
        if tag_or_digest.contains(':') {
            check_digest(tag_or_digest)?;
            if tag_or_digest != digest {
                return Err(Error::DigestMismatch {
                    what: format!("manifest pushed as {}", self.blob_name(tag_or_digest)),
                    expected: tag_or_digest.to_string(),
                    actual: digest,
                });
            }
        } else {
            // Validates the tag.
            self.reference.with_tag(tag_or_digest)?;
        }
        if bytes.len() as u64 > MAX_MANIFEST_SIZE {
            return Err(Error::TooLarge(format!(
                "manifest {digest} is {} bytes, more than registries accept ({MAX_MANIFEST_SIZE})",
                bytes.len()
            )));
        }
        let ep = &self.origin;
        let url = self.url_at(ep, &format!("manifests/{tag_or_digest}")).await;
        let call = self
            .call(Method::PUT, url, Scope::Push)
            .header(CONTENT_TYPE, media_type)
            .body(bytes);
        let resp = self.execute(ep, &call).await?;
        let what = format!("{}:{tag_or_digest}", self.reference.repository());
        if !resp.status().is_success() {
            return Err(self.fail(ep, resp, &what, Missing::Repository).await);
        }
        if let Some(d) = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
        {
            if d != digest {
                tracing::warn!(registry_digest = d, %digest, "registry reports another manifest digest");
            }
        }
        tracing::debug!(%digest, "manifest pushed");
        Ok(digest)
    }
}

/// `<base>/v2/<path>/<rest>`.
fn url_on(base: &Url, path: &str, rest: &str) -> Url {
    let prefix = base.as_str().trim_end_matches('/');
    // The path, tag and digest were validated by the reference grammar: no escaping needed.
    Url::parse(&format!("{prefix}/v2/{path}/{rest}")).unwrap_or_else(|_| base.clone())
}

/// The `Location` header resolved against the request URL.
pub(crate) fn location(resp: &Response) -> Option<Url> {
    let loc = resp.headers().get(LOCATION)?.to_str().ok()?;
    resp.url().join(loc).ok()
}
