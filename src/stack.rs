//! The request path, assembled in this one place. Each step, in order:
//!
//! 1. **request id** — a fresh id, sent back as `x-backstop-request-id` on every
//!    response (errors included), so it is assigned before anything can fail;
//! 2. **routing** (`routing`) — the longest `path_prefix` picks the upstream; only the
//!    path counts, never `Host`, `X-Forwarded-*` or an absolute-form URI's host;
//! 3. **request body** (`proxy::request_body`) — 413 above `max_body_bytes` (early, from
//!    `Content-Length`, when it is known), kept in memory up to `retry_buffer_bytes` for
//!    replay, streamed once beyond that;
//! 4. **outbound request** (`proxy::send`, `proxy::headers`) — same method, path and
//!    query on the upstream's base URL; hop-by-hop headers and `Host` dropped; an
//!    injected key replaces the client's;
//! 5. **attempt** (`proxy::send`) — the pooled client, response headers within
//!    `attempt_timeout`; transport errors become 502/504 in `error` (the retry engine
//!    will wrap this step);
//! 6. **response** (`proxy::response_body`) — hop-by-hop headers dropped, the body
//!    streamed frame by frame with `idle_timeout` between frames.
//!
//! A client that disconnects drops this future, which cancels the upstream request.

use std::sync::Arc;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tracing::Instrument;

use crate::body::Body;
use crate::error::ProxyError;
use crate::proxy::headers::{ATTEMPTS, REQUEST_ID, strip_hop_by_hop};
use crate::proxy::request_body::{BodyLimits, RequestBody};
use crate::proxy::response_body::GuardedBody;
use crate::proxy::send::{outbound_request, send};
use crate::runtime::Runtime;

/// Handles one client request end to end. Never fails: errors become responses.
pub async fn handle(runtime: Arc<Runtime>, request: Request<Incoming>) -> Response<Body> {
    let request_id = uuid::Uuid::now_v7().simple().to_string();
    // The path only: a query may carry `key=` credentials.
    let span = tracing::debug_span!("request", id = %request_id, method = %request.method(), path = %request.uri().path());
    let mut response = match forward(&runtime, request).instrument(span.clone()).await {
        Ok(response) => response,
        Err(error) => {
            span.in_scope(|| tracing::warn!(%error, code = error.code(), "request failed"));
            error.into_response()
        }
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID, value);
    }
    if !headers.contains_key(ATTEMPTS) {
        headers.insert(ATTEMPTS, HeaderValue::from_static("1"));
    }
    response
}

async fn forward(
    runtime: &Runtime,
    request: Request<Incoming>,
) -> Result<Response<Body>, ProxyError> {
    let (parts, incoming) = request.into_parts();
    let upstream = runtime
        .router
        .route(parts.uri.path())
        .ok_or_else(|| ProxyError::NoRoute {
            path: parts.uri.path().to_owned(),
        })?;
    tracing::debug!(upstream = %upstream.name, "routed");

    let config = &runtime.config;
    let limits = BodyLimits {
        retry_buffer_bytes: config.retry_buffer_bytes,
        max_body_bytes: config.max_body_bytes,
        idle_timeout: upstream.retry.idle_timeout,
    };
    let content_length = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = RequestBody::read(incoming, content_length, limits).await?;

    let outbound = outbound_request(upstream, &parts, body.into_body())?;
    let response = send(
        &runtime.client,
        upstream,
        outbound,
        upstream.retry.attempt_timeout,
    )
    .await?;

    let (mut head, incoming) = response.into_parts();
    strip_hop_by_hop(&mut head.headers);
    let sse = is_event_stream(&head.headers);
    tracing::debug!(status = head.status.as_u16(), sse, "upstream answered");
    let body = GuardedBody::new(incoming, upstream.retry.idle_timeout, sse).boxed();
    Ok(Response::from_parts(head, body))
}

fn is_event_stream(headers: &http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}
