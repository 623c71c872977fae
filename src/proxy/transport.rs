//! What the request path needs of an upstream: send one request, get its response head.
//! `UpstreamClient` is the real one (pooled connections, TLS); service tests use an
//! in-memory upstream (`mock::memory`) so the whole path runs on a paused clock.

use std::future::Future;

use http::{Request, Response};

use super::UpstreamBody;
use super::client::{SendError, UpstreamClient};
use crate::body::Body;
use crate::config::Upstream;

pub trait Transport: Send + Sync + 'static {
    /// Sends `request` to `upstream` and waits for the response head. Its URI is in
    /// origin form (path and query: the upstream's scheme and host go where the
    /// protocol wants them) or absolute form with the upstream's own scheme and host.
    fn send(
        &self,
        upstream: &Upstream,
        request: Request<Body>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, SendError>> + Send;
}

impl Transport for UpstreamClient {
    fn send(
        &self,
        upstream: &Upstream,
        request: Request<Body>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, SendError>> + Send {
        UpstreamClient::send(self, upstream, request)
    }
}
