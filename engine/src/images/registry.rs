//! Pull, Push and Login: routed to the snapshotter, which does the registry work. The engine
//! converts the messages, streams the progress through, names the result in Docker's terms
//! and publishes the "pull" / "push" events. A client that goes away drops the response
//! stream, and with it the call to the snapshotter, which cancels the transfer.

use berth_proto::engine::v1::{
    images_pull_response, images_push_response, ImagesLoginRequest, ImagesLoginResponse,
    ImagesPullRequest, ImagesPullResponse, ImagesPullResult, ImagesPushRequest, ImagesPushResponse,
    ImagesPushResult,
};
use berth_proto::images::v1 as snap;
use berth_proto::types::v1::Platform;
use berth_registry_client::Reference;
use futures::{Stream, StreamExt, TryStreamExt};
use tokio_util::sync::CancellationToken;
use tonic::codegen::BoxStream;
use tonic::{Code, Status};

use super::config::Config;
use super::{client, config, down_status, target_digest, ImagesService};
use crate::error::{Error, Result};

/// A snapshotter error of a registry operation, as a status for the client. Unavailable here
/// is usually about the registry ("cannot reach registry.example.com"): when the snapshotter
/// sent it (no transport error behind it) it goes through as it is; only a snapshotter that
/// cannot be reached is reported as such.
fn registry_status(status: Status) -> Status {
    if status.code() == Code::Unavailable && std::error::Error::source(&status).is_none() {
        return Status::new(status.code(), status.message());
    }
    down_status(status)
}

/// Parses a reference to pull or push.
fn parse(reference: &str) -> Result<Reference> {
    if reference.is_empty() {
        return Err(Error::InvalidArgument("no image given".into()));
    }
    Reference::parse(reference).map_err(|e| Error::InvalidArgument(e.to_string()))
}

/// True when the reference as typed names a tag ("app:1", "host:5000/app:1"; not
/// "host:5000/app").
fn has_tag(reference: &str) -> bool {
    let name = reference.split('@').next().unwrap_or(reference);
    name.rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'))
}

/// Ends `stream` with Unavailable when the engine begins to shut down, so that a long
/// transfer neither holds the shutdown up nor ends without saying why.
fn until_shutdown<T: Send + 'static>(
    token: CancellationToken,
    stream: impl Stream<Item = Result<T, Status>> + Send + 'static,
) -> BoxStream<T> {
    let state = Some((Box::pin(stream), token));
    Box::pin(futures::stream::unfold(state, |state| async move {
        let (mut stream, token) = state?;
        tokio::select! {
            item = stream.next() => item.map(|i| (i, Some((stream, token)))),
            () = token.cancelled() => Some((
                Err(Status::unavailable("berth-engine is shutting down; the transfer was cancelled")),
                None,
            )),
        }
    }))
}

/// The platform an image's configuration names.
fn platform_of(info: &snap::InspectResponse) -> Option<Platform> {
    let config = Config::parse(&info.config_json, &config::image_id(info)).parsed;
    let os = config.os.filter(|o| !o.is_empty())?;
    Some(Platform {
        os,
        architecture: config.architecture.unwrap_or_default(),
        variant: config.variant.unwrap_or_default(),
        os_version: config.os_version.unwrap_or_default(),
        ..Default::default()
    })
}

impl ImagesService {
    /// Names a finished pull for the client and publishes the "pull" event.
    async fn pulled(&self, r: snap::PullResult, asked: Option<Platform>) -> ImagesPullResult {
        let name = r.image.as_ref().map(|i| i.name.clone()).unwrap_or_default();
        let digest = target_digest(r.image.as_ref()).to_string();
        let image_id = r.config.map(|c| c.digest).unwrap_or_default();
        let platform = match r.manifest.and_then(|m| m.platform) {
            Some(p) if !p.os.is_empty() => Some(p),
            _ => match self.resolve(&name, asked.clone()).await {
                Ok(info) => platform_of(&info).or(asked),
                Err(e) => {
                    tracing::debug!(image = %name, error = %e, "pulled image not inspectable");
                    asked
                }
            },
        };
        let familiar = Reference::parse(&name).ok().map(|r| r.familiar());
        self.publish("pull", &image_id, familiar);
        ImagesPullResult {
            reference: name,
            digest,
            image_id,
            platform,
            up_to_date: r.up_to_date,
        }
    }

    /// `Images.Pull`
    pub(super) async fn pull_stream(
        &self,
        req: ImagesPullRequest,
    ) -> Result<BoxStream<ImagesPullResponse>, Status> {
        use images_pull_response::Msg;
        let reference = parse(&req.reference)?;
        let downstream = client(&self.ctx)
            .pull(snap::PullRequest {
                reference: reference.to_string(),
                registry_auth: req.registry_auth,
                platform: req.platform.clone(),
                all_platforms: req.all_platforms,
                ..Default::default()
            })
            .await
            .map_err(registry_status)?
            .into_inner();
        let service = self.clone();
        let stream = downstream.filter_map(move |m| {
            let service = service.clone();
            let asked = req.platform.clone();
            async move {
                let msg = match m.map_err(registry_status) {
                    Err(s) => return Some(Err(s)),
                    Ok(m) => m.msg?,
                };
                let msg = match msg {
                    snap::pull_response::Msg::Progress(p) => Msg::Progress(p),
                    snap::pull_response::Msg::Result(r) => {
                        Msg::Result(service.pulled(r, asked).await)
                    }
                };
                Some(Ok(ImagesPullResponse { msg: Some(msg) }))
            }
        });
        Ok(until_shutdown(self.ctx.shutdown.clone(), stream))
    }

    /// The local records `Push` sends: (record name, image id for the event).
    async fn push_targets(&self, req: &ImagesPushRequest) -> Result<Vec<(String, String)>> {
        let reference = parse(&req.reference)?;
        if reference.digest().is_some() {
            return Err(Error::InvalidArgument(format!(
                "cannot push a digest reference: {}",
                req.reference
            )));
        }
        let mut c = client(&self.ctx);
        let names = if req.all_tags {
            if has_tag(&req.reference) {
                return Err(Error::InvalidArgument(format!(
                    "tag can't be used with --all-tags/-a: {}",
                    req.reference
                )));
            }
            let filter = format!("repository={}", reference.repository());
            let records = c
                .list(snap::ListRequest {
                    filters: vec![filter],
                })
                .await
                .map_err(|s| Error::downstream("snapshotter", s))?
                .into_inner()
                .images;
            let names: Vec<String> = records
                .into_iter()
                .map(|i| i.name)
                .filter(|n| Reference::parse(n).is_ok_and(|r| r.digest().is_none()))
                .collect();
            if names.is_empty() {
                return Err(Error::NotFound(format!(
                    "An image does not exist locally with the tag: {}",
                    reference.familiar_repository()
                )));
            }
            names
        } else {
            vec![reference.to_string()]
        };
        let mut out = Vec::new();
        for name in names {
            let record = match c.get(snap::GetRequest { name: name.clone() }).await {
                Ok(r) => r.into_inner().image,
                Err(s) if s.code() == Code::NotFound => {
                    let shown = Reference::parse(&name).map(|r| r.familiar());
                    return Err(Error::NotFound(format!(
                        "An image does not exist locally with the tag: {}",
                        shown.unwrap_or(name)
                    )));
                }
                Err(s) => return Err(Error::downstream("snapshotter", s)),
            };
            // The event names the image by id; an index without this host's platform has
            // none, and is named by its digest.
            let id = match self.resolve(&name, req.platform.clone()).await {
                Ok(info) => config::image_id(&info),
                Err(_) => target_digest(record.as_ref()).to_string(),
            };
            out.push((name, id));
        }
        Ok(out)
    }

    /// `Images.Push`: one snapshotter push per tag, one after the other; the first failure
    /// ends the stream.
    pub(super) async fn push_stream(
        &self,
        req: ImagesPushRequest,
    ) -> Result<BoxStream<ImagesPushResponse>, Status> {
        use images_push_response::Msg;
        let targets = self.push_targets(&req).await?;
        let service = self.clone();
        let stream = futures::stream::iter(targets)
            .map(move |(name, id)| {
                let mut c = client(&service.ctx);
                let call = snap::PushRequest {
                    name,
                    registry_auth: req.registry_auth.clone(),
                    platform: req.platform.clone(),
                    ..Default::default()
                };
                let service = service.clone();
                futures::stream::once(async move { c.push(call).await })
                    .map_ok(|r| r.into_inner())
                    .try_flatten()
                    .map_err(registry_status)
                    .try_filter_map(move |m| {
                        let msg = m.msg.map(|msg| match msg {
                            snap::push_response::Msg::Progress(p) => Msg::Progress(p),
                            snap::push_response::Msg::Result(r) => {
                                let pushed = r.pushed.unwrap_or_default();
                                let familiar =
                                    Reference::parse(&r.reference).ok().map(|r| r.familiar());
                                service.publish("push", &id, familiar);
                                Msg::Result(ImagesPushResult {
                                    reference: r.reference,
                                    digest: pushed.digest,
                                    size: pushed.size,
                                })
                            }
                        });
                        futures::future::ready(Ok(
                            msg.map(|msg| ImagesPushResponse { msg: Some(msg) })
                        ))
                    })
            })
            .flatten();
        Ok(until_shutdown(self.ctx.shutdown.clone(), stream))
    }

    /// `Images.Login`
    pub(super) async fn login_check(
        &self,
        req: ImagesLoginRequest,
    ) -> Result<ImagesLoginResponse, Status> {
        let resp = client(&self.ctx)
            .login(snap::LoginRequest {
                registry_auth: req.registry_auth,
                insecure: false,
            })
            .await
            .map_err(registry_status)?
            .into_inner();
        Ok(ImagesLoginResponse {
            status: "Login Succeeded".into(),
            identity_token: resp.identity_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_seen_as_typed() {
        assert!(has_tag("busybox:1"));
        assert!(has_tag("localhost:5000/app:v1"));
        assert!(!has_tag("localhost:5000/app"));
        assert!(!has_tag("busybox"));
        assert!(!has_tag("busybox@sha256:abc"));
    }

    #[test]
    fn registry_unavailability_is_not_blamed_on_the_snapshotter() {
        let s = registry_status(Status::unavailable("cannot reach registry.example.com"));
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.message(), "cannot reach registry.example.com");
        let s = registry_status(Status::unauthenticated("unauthorized"));
        assert_eq!(
            (s.code(), s.message()),
            (Code::Unauthenticated, "unauthorized")
        );
    }

    #[tokio::test]
    async fn shutdown_ends_a_transfer_with_unavailable() {
        let token = CancellationToken::new();
        let never = futures::stream::pending::<Result<u32, Status>>();
        let mut s = until_shutdown(token.clone(), futures::stream::iter([Ok(1)]).chain(never));
        assert_eq!(s.next().await.unwrap().unwrap(), 1);
        token.cancel();
        let err = s.next().await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::Unavailable);
        assert!(s.next().await.is_none());
    }
}
