//! After step 4, for a WebSocket handshake (SPEC §9): the handshake went through steps
//! 1–4 like any request (routed, key injected, retried until `101`, recorded with
//! status `101`); once the upstream has switched protocols, the `101` goes back to the
//! client and a session task, owned by the runtime's `sessions` (drained within
//! `shutdown_grace`), copies bytes both ways.

use std::sync::Arc;

use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::body::Body;
use crate::error::ProxyError;
use crate::events::Observer;
use crate::proxy::websocket;
use crate::runtime::Runtime;

/// The client's side of a handshake, taken from its request before the path reads it.
pub(super) fn client_side<B>(request: &mut Request<B>) -> Option<OnUpgrade> {
    if !websocket::is_handshake(request.method(), request.headers()) {
        return None;
    }
    request.extensions_mut().remove::<OnUpgrade>()
}

/// Relays a `101` and starts the session; any other answer goes back as it is.
pub(super) async fn open(
    runtime: &Runtime,
    observer: Arc<dyn Observer>,
    upstream: Option<Arc<str>>,
    client: OnUpgrade,
    response: Response<Body>,
) -> Response<Body> {
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let (Some(upstream_side), Some(upstream)) = (parts.extensions.remove::<OnUpgrade>(), upstream)
    else {
        let error = ProxyError::BadRequest(
            "the upstream switched protocols without a connection to tunnel".into(),
        );
        return error.into_response();
    };
    // A 101 has no body: its end, read now, ends the request's event (status 101).
    let _ = body.collect().await;
    websocket::keep_upgrade(&mut parts.headers);
    let idle = runtime.config.websocket_idle_timeout;
    runtime.sessions.spawn(async move {
        let _open = Open::new(observer, upstream);
        let (client, upstream_io) = match tokio::try_join!(client, upstream_side) {
            Ok(both) => both,
            Err(error) => {
                tracing::debug!(%error, "websocket upgrade did not complete");
                return;
            }
        };
        match websocket::relay(TokioIo::new(client), TokioIo::new(upstream_io), idle).await {
            Ok((sent, received)) => tracing::debug!(sent, received, "websocket session ended"),
            Err(error) => tracing::debug!(%error, "websocket session ended"),
        }
    });
    Response::from_parts(parts, crate::body::empty())
}

/// An open session, counted in `backstop_websocket_sessions` until dropped (ended or
/// aborted at the end of `shutdown_grace`).
struct Open {
    observer: Arc<dyn Observer>,
    upstream: Arc<str>,
}

impl Open {
    fn new(observer: Arc<dyn Observer>, upstream: Arc<str>) -> Open {
        observer.websocket_session(&upstream, true);
        Open { observer, upstream }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.observer.websocket_session(&self.upstream, false);
    }
}
