//! Blob transfer: streamed downloads that survive cut connections and stalls (resuming
//! with `Range`), and uploads (monolithic for small blobs, chunked for large ones).

use std::pin::Pin;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt as _};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, RANGE};
use reqwest::{Method, Response, StatusCode};
use url::Url;

use crate::client::{backoff, transport_error, Endpoint, Scope};
use crate::error::{Error, Result};
use crate::manifest::check_digest;
use crate::repository::{location, Missing, Repository};
use crate::BlobStream;

/// Blobs smaller than this are uploaded with one PUT.
pub const MONOLITHIC_MAX: u64 = 8 << 20;
/// Chunk size of chunked uploads.
pub const CHUNK_SIZE: usize = 16 << 20;

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// The state of one blob download.
struct Download {
    repo: Repository,
    ep: Option<Endpoint>,
    url: Option<Url>,
    digest: String,
    size: u64,
    /// Offset of the next byte to yield.
    pos: u64,
    body: Option<Body>,
    /// Bytes still to drop from `body` (the server ignored `Range`).
    skip: u64,
    /// Failed attempts since the last progress, and in all.
    failures: u32,
    total_failures: u32,
    done: bool,
}

impl Download {
    fn stall(&self) -> Duration {
        self.repo.client.inner.config.stall_timeout
    }

    fn attempts(&self) -> u32 {
        self.repo.client.inner.config.retries.max(1)
    }

    /// Opens the body at `pos` on `ep`.
    async fn open_on(&mut self, ep: &Endpoint) -> Result<()> {
        let url = self
            .repo
            .url_at(ep, &format!("blobs/{}", self.digest))
            .await;
        let mut call = self.repo.call(Method::GET, url.clone(), Scope::Pull);
        // The download loop retries (and counts) itself: no nested retries.
        call.retry = false;
        if self.pos > 0 {
            call = call.header(RANGE, &format!("bytes={}-", self.pos));
        }
        let resp = self.repo.execute(ep, &call).await?;
        let (body, skip) = accept(&self.repo, &self.digest, self.pos, ep, resp).await?;
        self.body = Some(body);
        self.skip = skip;
        self.url = Some(url);
        Ok(())
    }

    /// Opens the first body: mirrors in order, then the origin.
    async fn open_first(&mut self) -> Result<()> {
        let endpoints: Vec<Endpoint> = self.repo.pull_endpoints().cloned().collect();
        let mut last = None;
        for ep in endpoints {
            let mirror = ep.mirror;
            match self.open_on(&ep).await {
                Ok(()) => {
                    self.ep = Some(ep);
                    return Ok(());
                }
                Err(e) if mirror => {
                    tracing::warn!(mirror = %ep.base, error = %e, "mirror failed, trying the next");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Transport("no endpoint".into())))
    }

    /// The next chunk, reconnecting after cuts and stalls.
    async fn next_chunk(&mut self) -> Option<Result<Bytes>> {
        loop {
            if self.done {
                return None;
            }
            if self.pos >= self.size {
                self.done = true;
                return None;
            }
            let url = self.url.clone().map(|u| u.to_string()).unwrap_or_default();
            let err = if self.body.is_none() {
                let ep = self.ep.clone();
                let opened = match &ep {
                    Some(ep) => self.open_on(ep).await,
                    None => self.open_first().await,
                };
                match opened {
                    Ok(()) => continue,
                    Err(e) => e,
                }
            } else {
                let stall = self.stall();
                let body = self.body.as_mut()?;
                match tokio::time::timeout(stall, body.next()).await {
                    Ok(Some(Ok(mut chunk))) => {
                        if self.skip > 0 {
                            let n = (self.skip as usize).min(chunk.len());
                            let _ = chunk.split_to(n);
                            self.skip -= n as u64;
                        }
                        let remaining = self.size - self.pos;
                        if chunk.len() as u64 > remaining {
                            tracing::warn!(digest = %self.digest, "registry sent more than the blob's size; ignoring the rest");
                            chunk.truncate(remaining as usize);
                        }
                        if chunk.is_empty() {
                            continue;
                        }
                        self.pos += chunk.len() as u64;
                        self.failures = 0;
                        return Some(Ok(chunk));
                    }
                    Ok(Some(Err(e))) => match &self.url {
                        Some(u) => transport_error(
                            &format!(
                                "connection broke after {} of {} bytes of {} from",
                                self.pos, self.size, self.digest
                            ),
                            u,
                            &e,
                        ),
                        None => Error::Transport(e.to_string()),
                    },
                    Ok(None) => Error::Transport(format!(
                        "{url} ended after {} of {} bytes of {}",
                        self.pos, self.size, self.digest
                    )),
                    Err(_) => Error::Stalled(format!(
                        "no data for {}s from {url} after {} of {} bytes of {}",
                        stall.as_secs_f32(),
                        self.pos,
                        self.size,
                        self.digest
                    )),
                }
            };
            self.body = None;
            self.failures += 1;
            self.total_failures += 1;
            let give_up = !err.is_retryable()
                || self.failures >= self.attempts()
                || self.total_failures >= self.attempts() * 4;
            if give_up {
                self.done = true;
                let err = match err {
                    Error::Stalled(m) if self.failures > 1 => {
                        Error::Stalled(format!("{m} (gave up after {} attempts)", self.failures))
                    }
                    Error::Transport(m) if self.failures > 1 => {
                        Error::Transport(format!("{m} (gave up after {} attempts)", self.failures))
                    }
                    e => e,
                };
                return Some(Err(err));
            }
            tracing::warn!(digest = %self.digest, offset = self.pos, error = %err, "blob download interrupted, resuming");
            backoff(self.failures, None).await;
        }
    }
}

/// Checks the answer to a (ranged) GET: the body and how many bytes to skip.
async fn accept(
    repo: &Repository,
    digest: &str,
    pos: u64,
    ep: &Endpoint,
    resp: Response,
) -> Result<(Body, u64)> {
    let what = repo.blob_name(digest);
    let skip = match resp.status() {
        StatusCode::OK => pos,
        StatusCode::PARTIAL_CONTENT => {
            let start = resp
                .headers()
                .get(reqwest::header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(range_start)
                .unwrap_or(pos);
            if start > pos {
                return Err(Error::Http {
                    status: 206,
                    message: format!(
                        "{what}: asked for bytes from {} but the registry sent from {start}",
                        pos
                    ),
                });
            }
            pos - start
        }
        _ => return Err(repo.fail(ep, resp, &what, Missing::Blob).await),
    };
    Ok((Box::pin(resp.bytes_stream()), skip))
}

/// `start` of `bytes start-end/total`.
fn range_start(v: &str) -> Option<u64> {
    let v = v.trim().strip_prefix("bytes")?.trim_start();
    v.split('-').next()?.trim().parse().ok()
}

impl Repository {
    /// Streams blob `digest` (of `size` bytes) from byte `offset`: mirrors first, redirects
    /// followed, cuts and stalls resumed with `Range` up to the configured attempts. Yields
    /// at most `size - offset` bytes; ending early is an error. The digest is not checked
    /// here: the caller hashes what it stores.
    #[tracing::instrument(skip_all, fields(reference = %self.reference, digest = %digest, size = size, offset = offset))]
    pub async fn fetch_blob(&self, digest: &str, size: u64, offset: u64) -> Result<BlobStream> {
        check_digest(digest)?;
        if offset > size {
            return Err(Error::SizeMismatch {
                what: format!("offset into {}", self.blob_name(digest)),
                expected: size,
                actual: offset,
            });
        }
        let mut dl = Download {
            repo: self.clone(),
            ep: None,
            url: None,
            digest: digest.to_string(),
            size,
            pos: offset,
            body: None,
            skip: 0,
            failures: 0,
            total_failures: 0,
            done: false,
        };
        if offset < size {
            // Open now, so that "not found" and auth errors come from this call.
            loop {
                match dl.open_first().await {
                    Ok(()) => break,
                    Err(e) if e.is_retryable() && dl.failures + 1 < dl.attempts() => {
                        dl.failures += 1;
                        backoff(dl.failures, None).await;
                    }
                    Err(e) => return Err(e),
                }
            }
            dl.failures = 0;
        }
        Ok(Box::pin(futures::stream::unfold(dl, |mut dl| async move {
            dl.next_chunk().await.map(|item| (item, dl))
        })))
    }

    /// Uploads blob `digest` of `size` bytes from `data`: one PUT below 8 MiB, else 16 MiB
    /// PATCHes and a closing PUT. `Location`s (relative or absolute) are followed.
    #[tracing::instrument(skip_all, fields(reference = %self.reference, digest = %digest, size = size))]
    pub async fn push_blob(&self, digest: &str, size: u64, data: BlobStream) -> Result<()> {
        check_digest(digest)?;
        let what = self.blob_name(digest);
        let ep = self.origin.clone();
        let loc = self.start_upload(&ep, &what).await?;
        let result = self
            .upload(&ep, loc.clone(), digest, size, data, &what)
            .await;
        if let Err(e) = &result {
            tracing::debug!(error = %e, "cancelling the failed upload");
            let cancel = self.call(Method::DELETE, loc, Scope::Push);
            let _ = self.execute(&ep, &cancel).await;
        }
        result
    }

    async fn upload(
        &self,
        ep: &Endpoint,
        mut loc: Url,
        digest: &str,
        size: u64,
        mut data: BlobStream,
        what: &str,
    ) -> Result<()> {
        if size < MONOLITHIC_MAX {
            let mut buf = BytesMut::with_capacity(size as usize);
            while let Some(chunk) = data.next().await {
                buf.extend_from_slice(&chunk?);
                if buf.len() as u64 > size {
                    break;
                }
            }
            if buf.len() as u64 != size {
                return Err(self.size_mismatch(what, size, buf.len() as u64));
            }
            return self
                .finish_upload(ep, loc, digest, buf.freeze(), what)
                .await;
        }
        let mut buf = BytesMut::with_capacity(CHUNK_SIZE);
        let mut sent: u64 = 0;
        let mut ended = false;
        loop {
            while !ended && buf.len() < CHUNK_SIZE {
                match data.next().await {
                    Some(chunk) => buf.extend_from_slice(&chunk?),
                    None => ended = true,
                }
            }
            if buf.is_empty() {
                break;
            }
            let n = buf.len().min(CHUNK_SIZE);
            let after = sent + n as u64;
            // Check the size before sending what cannot be right.
            let last = ended && buf.len() == n;
            if after > size || (last && after != size) {
                return Err(self.size_mismatch(what, size, sent + buf.len() as u64));
            }
            let chunk = buf.split_to(n).freeze();
            loc = self.patch_chunk(ep, loc, sent, chunk, what).await?;
            sent = after;
            tracing::trace!(sent, size, "chunk uploaded");
        }
        if sent != size {
            return Err(self.size_mismatch(what, size, sent));
        }
        self.finish_upload(ep, loc, digest, Bytes::new(), what)
            .await
    }

    fn size_mismatch(&self, what: &str, expected: u64, actual: u64) -> Error {
        Error::SizeMismatch {
            what: format!("data pushed as {what}"),
            expected,
            actual,
        }
    }

    /// `POST /blobs/uploads/` → the upload's `Location`.
    async fn start_upload(&self, ep: &Endpoint, what: &str) -> Result<Url> {
        let url = self.url_at(ep, "blobs/uploads/").await;
        let call = self
            .call(Method::POST, url, Scope::Push)
            .header(CONTENT_LENGTH, "0");
        let resp = self.execute(ep, &call).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(self.fail(ep, resp, what, Missing::Repository).await);
        }
        location(&resp).ok_or_else(|| Error::Http {
            status: 202,
            message: format!("{what}: the registry started an upload without a Location"),
        })
    }

    /// One `PATCH` of `chunk` at `offset`; after a failure, asks the registry how much it
    /// has and resends only when nothing of the chunk landed.
    async fn patch_chunk(
        &self,
        ep: &Endpoint,
        loc: Url,
        offset: u64,
        chunk: Bytes,
        what: &str,
    ) -> Result<Url> {
        let end = offset + chunk.len() as u64;
        let attempts = self.client.inner.config.retries.max(1);
        let mut attempt = 0;
        let mut loc = loc;
        loop {
            attempt += 1;
            let mut call = self
                .call(Method::PATCH, loc.clone(), Scope::Push)
                .header(CONTENT_TYPE, "application/octet-stream")
                .header(
                    reqwest::header::CONTENT_RANGE,
                    &format!("{offset}-{}", end - 1),
                )
                .body(chunk.clone());
            call.retry = false;
            call.timeout = upload_timeout(self.client.inner.config.stall_timeout, chunk.len());
            let err = match self.execute(ep, &call).await {
                Ok(resp) if resp.status() == StatusCode::ACCEPTED => {
                    return location(&resp).ok_or_else(|| Error::Http {
                        status: 202,
                        message: format!(
                            "{what}: the registry accepted a chunk without a Location"
                        ),
                    });
                }
                Ok(resp) => {
                    let e = self.fail(ep, resp, what, Missing::Upload).await;
                    if !e.is_retryable() {
                        return Err(e);
                    }
                    e
                }
                Err(e) if e.is_retryable() => e,
                Err(e) => return Err(e),
            };
            if attempt >= attempts {
                return Err(err);
            }
            tracing::warn!(error = %err, offset, "chunk upload failed, checking the upload");
            backoff(attempt, None).await;
            // Where is the upload? `Range: 0-<last byte>`.
            let status = self.call(Method::GET, loc.clone(), Scope::Push);
            let resp = self.execute(ep, &status).await?;
            if resp.status() != StatusCode::NO_CONTENT {
                return Err(err);
            }
            let have = resp
                .headers()
                .get(RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|r| r.rsplit('-').next()?.trim().parse::<u64>().ok())
                .map(|last| last + 1)
                .unwrap_or(0);
            if let Some(l) = location(&resp) {
                loc = l;
            }
            if have == end {
                return Ok(loc);
            }
            if have != offset {
                return Err(err);
            }
        }
    }

    /// The closing `PUT ?digest=` with the last bytes (all of them for monolithic uploads).
    async fn finish_upload(
        &self,
        ep: &Endpoint,
        mut loc: Url,
        digest: &str,
        body: Bytes,
        what: &str,
    ) -> Result<()> {
        loc.query_pairs_mut().append_pair("digest", digest);
        let len = body.len();
        let mut call = self
            .call(Method::PUT, loc, Scope::Push)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, &len.to_string())
            .body(body);
        call.timeout = upload_timeout(self.client.inner.config.stall_timeout, len);
        let result = self.execute(ep, &call).await;
        let err = match result {
            Ok(resp) if resp.status() == StatusCode::CREATED => {
                tracing::debug!("blob pushed");
                return Ok(());
            }
            Ok(resp) => self.fail(ep, resp, what, Missing::Upload).await,
            Err(e) => e,
        };
        // A retried PUT finds its upload gone when the first one landed.
        if err.is_retryable() || matches!(err, Error::NotFound(_)) {
            if let Ok(Some(_)) = self.blob_exists(digest).await {
                return Ok(());
            }
        }
        Err(err)
    }
}

/// Deadline for the answer to an upload of `len` bytes: the stall timeout plus the time
/// at a slow 256 KiB/s.
fn upload_timeout(stall: Duration, len: usize) -> Duration {
    stall + Duration::from_secs((len as u64) >> 18)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_start() {
        assert_eq!(range_start("bytes 100-199/200"), Some(100));
        assert_eq!(range_start("bytes 0-0/1"), Some(0));
        assert_eq!(range_start("bytes */200"), None);
        assert_eq!(range_start("items 1-2/3"), None);
    }

    #[test]
    fn upload_deadlines_grow_with_size() {
        let s = Duration::from_secs(30);
        assert_eq!(upload_timeout(s, 0), s);
        assert_eq!(upload_timeout(s, 16 << 20), s + Duration::from_secs(64));
    }
}
