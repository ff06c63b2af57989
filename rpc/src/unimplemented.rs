//! Names the RPC in every `UNIMPLEMENTED` answer.
//!
//! Generated stubs answer "Not yet implemented" and the router answers unknown services with
//! no message at all; a client in another language deserves to read which call it made and
//! what this server does offer.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use http::HeaderValue;
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

/// gRPC's grpc-message encoding: percent-encode controls, `%` and everything non-ASCII.
const GRPC_MESSAGE: &AsciiSet = &CONTROLS.add(b'%');

/// Layer adding [`NameUnimplemented`] around a router serving `services`.
#[derive(Debug, Clone)]
pub struct NameUnimplementedLayer {
    services: Arc<Vec<String>>,
}

impl NameUnimplementedLayer {
    /// `services` are the fully qualified names this server offers.
    pub fn new(services: Vec<String>) -> Self {
        NameUnimplementedLayer {
            services: Arc::new(services),
        }
    }
}

impl<S> tower::Layer<S> for NameUnimplementedLayer {
    type Service = NameUnimplemented<S>;
    fn layer(&self, inner: S) -> Self::Service {
        NameUnimplemented {
            inner,
            services: self.services.clone(),
        }
    }
}

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct NameUnimplemented<S> {
    inner: S,
    services: Arc<Vec<String>>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for NameUnimplemented<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let path = req.uri().path().to_string();
        let services = self.services.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut resp = fut.await?;
            let headers = resp.headers_mut();
            if headers.get("grpc-status").map(HeaderValue::as_bytes) == Some(b"12") {
                let current = headers
                    .get("grpc-message")
                    .and_then(|v| v.to_str().ok())
                    .map(|v| percent_decode_str(v).decode_utf8_lossy().into_owned());
                if let Some(msg) = message(&path, current.as_deref(), &services) {
                    let encoded = utf8_percent_encode(&msg, GRPC_MESSAGE).to_string();
                    if let Ok(value) = HeaderValue::from_str(&encoded) {
                        headers.insert("grpc-message", value);
                    }
                }
            }
            Ok(resp)
        })
    }
}

/// The message to send instead of `current`, or `None` to keep a handler's own message.
fn message(path: &str, current: Option<&str>, services: &[String]) -> Option<String> {
    if !matches!(current, None | Some("") | Some("Not yet implemented")) {
        return None;
    }
    let rpc = path.trim_start_matches('/');
    let service = rpc.split('/').next().unwrap_or_default();
    if services.iter().any(|s| s == service) {
        Some(format!("{rpc} is not implemented yet"))
    } else {
        Some(format!(
            "unknown service {service}: this server offers {}",
            services.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stubs_and_unknown_services_but_keeps_handler_messages() {
        let served = vec!["berth.content.v1.Content".to_string()];
        assert_eq!(
            message(
                "/berth.content.v1.Content/Info",
                Some("Not yet implemented"),
                &served
            )
            .unwrap(),
            "berth.content.v1.Content/Info is not implemented yet"
        );
        assert!(message("/nope.Svc/X", None, &served)
            .unwrap()
            .starts_with("unknown service nope.Svc"));
        assert_eq!(
            message(
                "/berth.content.v1.Content/Info",
                Some("pause needs cgroups"),
                &served
            ),
            None
        );
    }
}
