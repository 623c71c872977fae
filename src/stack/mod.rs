//! The request path, assembled in this one place. Each step, in order:
//!
//! 1. **request id** — a fresh id, sent back as `x-backstop-request-id` on every
//!    response (errors included), so it is assigned before anything can fail;
//! 2. **routing** (`routing`) — the longest `path_prefix` picks the upstream; only the
//!    path counts, never `Host`, `X-Forwarded-*` or an absolute-form URI's host;
//! 3. **request body** (`proxy::request_body`) — 413 above `max_body_bytes` (early, from
//!    `Content-Length`, when it is known), kept in memory up to `retry_buffer_bytes` for
//!    replay, streamed once beyond that;
//! 4. **deadline and policy** (`retry`) — one deadline for every attempt and backoff,
//!    shortened by the client's `x-stainless-read-timeout`; the upstream's budget;
//! 5. **attempts** (`stack::attempt`, driven by `retry::driver`) — each builds the
//!    outbound request (`proxy::send`, `proxy::headers`), waits for headers within
//!    `attempt_timeout`, reads an error body's start or holds SSE headers until the
//!    first event (`proxy::peek`), and is classified; every attempt emits an
//!    `events::AttemptEvent`;
//! 6. **response** — the last attempt's response as it was (hop-by-hop headers dropped,
//!    body streamed by `proxy::response_body` with `idle_timeout`), or a 502/504 from
//!    `error`; plus `x-backstop-attempts`, and `x-should-retry: false` when backstop
//!    spent retries, budget or deadline on a retryable failure.
//!
//! A client that disconnects drops this future, which cancels the attempt or backoff.

mod attempt;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use http::header::{CONTENT_LENGTH, HeaderName, HeaderValue};
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::time::Instant;
use tracing::Instrument;

use crate::body::Body;
use crate::error::ProxyError;
use crate::events::{AttemptEvent, BodyEnd, Observer, RequestEvent, endpoint_kind};
use crate::proxy::headers::{ATTEMPTS, REQUEST_ID};
use crate::proxy::request_body::{BodyLimits, RequestBody};
use crate::proxy::response_body::StreamFate;
use crate::request_meta::RequestMeta;
use crate::retry::driver::drive;
use crate::retry::{GiveUp, RetryBudget, RetryPolicy};
use crate::runtime::Runtime;
use http_body_util::BodyExt;
use watch::WatchedBody;

const SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");

/// Handles one client request end to end. Never fails: errors become responses.
pub async fn handle(
    runtime: Arc<Runtime>,
    observer: Arc<dyn Observer>,
    request: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let request_id: Arc<str> = uuid::Uuid::now_v7().simple().to_string().into();
    let method = request.method().clone();
    let endpoint: Arc<str> = request.uri().path().into();
    // The path only: a query may carry `key=` credentials.
    let span = tracing::debug_span!("request", id = %request_id, %method, path = %endpoint);
    let mut served = Served::refused(&endpoint);
    let result = forward(&runtime, &observer, request, &request_id, &mut served)
        .instrument(span.clone())
        .await;
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            span.in_scope(|| tracing::warn!(%error, code = error.code(), "request refused"));
            error.into_response()
        }
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert(REQUEST_ID, value);
    }
    headers.insert(ATTEMPTS, HeaderValue::from(served.attempts));
    if served.give_up.is_some_and(GiveUp::spent_retries) {
        headers.insert(SHOULD_RETRY, HeaderValue::from_static("false"));
    }

    if let Some(in_flight) = served.in_flight.take() {
        in_flight.disarm();
    }
    let status = response.status().as_u16();
    let look_for_usage = status == 200 && usage_endpoint(&endpoint);
    let event = RequestEvent {
        request_id,
        upstream: served.upstream,
        method,
        endpoint_kind: endpoint_kind(&endpoint),
        endpoint,
        status,
        attempts: served.attempts,
        give_up: served.give_up,
        time_to_headers: started.elapsed(),
        time_to_first_chunk: None,
        duration: Duration::ZERO,
        end: BodyEnd::Complete,
        usage: None,
        meta: served.meta,
    };
    let (parts, body) = response.into_parts();
    let body = WatchedBody::new(body, observer, event, started, served.fate, look_for_usage);
    Response::from_parts(parts, body.boxed())
}

/// What `forward` learned, kept even when it fails part-way.
struct Served {
    attempts: u32,
    give_up: Option<GiveUp>,
    upstream: Option<Arc<str>>,
    meta: Arc<RequestMeta>,
    fate: Arc<StreamFate>,
    /// Set once routed: tells the observer if the client leaves before the response.
    in_flight: Option<InFlight>,
}

impl Served {
    fn refused(_endpoint: &str) -> Served {
        Served {
            attempts: 0,
            give_up: None,
            upstream: None,
            meta: Arc::default(),
            fate: Arc::default(),
            in_flight: None,
        }
    }
}

/// A routed request whose response has not been built yet. Dropped armed (the client
/// left and this future was dropped), it reports `request_abandoned`; once the
/// response exists its `RequestEvent` ends the request instead.
struct InFlight {
    observer: Arc<dyn Observer>,
    upstream: Option<Arc<str>>,
}

impl InFlight {
    fn start(observer: &Arc<dyn Observer>, upstream: &Arc<str>) -> InFlight {
        observer.request_started(upstream);
        InFlight {
            observer: observer.clone(),
            upstream: Some(upstream.clone()),
        }
    }

    fn disarm(mut self) {
        self.upstream = None;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(upstream) = self.upstream.take() {
            self.observer.request_abandoned(&upstream);
        }
    }
}

fn usage_endpoint(path: &str) -> bool {
    matches!(
        endpoint_kind(path),
        "chat_completions" | "completions" | "embeddings" | "responses"
    )
}

async fn forward(
    runtime: &Runtime,
    observer: &Arc<dyn Observer>,
    request: Request<Incoming>,
    request_id: &Arc<str>,
    served: &mut Served,
) -> Result<Response<Body>, ProxyError> {
    let (parts, incoming) = request.into_parts();
    let upstream = runtime
        .router
        .route(parts.uri.path())
        .ok_or_else(|| ProxyError::NoRoute {
            path: parts.uri.path().to_owned(),
        })?;
    tracing::debug!(upstream = %upstream.name, "routed");
    let upstream_name: Arc<str> = upstream.name.as_str().into();
    served.upstream = Some(upstream_name.clone());
    served.in_flight = Some(InFlight::start(observer, &upstream_name));

    let settings = &upstream.retry;
    let limits = BodyLimits {
        retry_buffer_bytes: runtime.config.retry_buffer_bytes,
        max_body_bytes: runtime.config.max_body_bytes,
        idle_timeout: settings.idle_timeout,
    };
    let content_length = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = RequestBody::read(incoming, content_length, limits).await?;
    let body_bytes = body
        .buffered()
        .map_or(content_length.unwrap_or(0), |b| b.len() as u64);
    let meta = Arc::new(RequestMeta::read(
        &parts.headers,
        body.buffered(),
        body_bytes,
    ));
    served.meta = meta.clone();

    let deadline = Instant::now() + client_deadline(&parts.headers, settings.deadline);
    let budget = runtime
        .budget(&upstream.name)
        .unwrap_or_else(|| Arc::new(RetryBudget::new(settings)));
    let mut policy = RetryPolicy::new(settings.clone(), budget, deadline, body.is_replayable());

    let ctx = attempt::Context {
        runtime,
        upstream,
        parts: &parts,
        deadline,
        fate: served.fate.clone(),
    };
    let mut body = attempt::Bodies::new(body);
    let endpoint: Arc<str> = parts.uri.path().into();
    let finished = drive(
        &mut policy,
        |_| ctx.run(body.next()),
        |n, attempted, decision| {
            let (verdict, give_up, delay) = AttemptEvent::verdict_of(decision);
            let r = &attempted.value;
            observer.attempt(&AttemptEvent {
                request_id: request_id.clone(),
                upstream: upstream_name.clone(),
                method: parts.method.clone(),
                endpoint: endpoint.clone(),
                attempt: n,
                outcome: attempted.outcome,
                status: r.status,
                verdict,
                give_up,
                delay,
                server_delay: attempted.server_delay,
                duration: r.duration,
                upstream_request_id: r.upstream_request_id.clone(),
                error_code: r.error_code.clone(),
                error_message: r.error_message.clone(),
                meta: meta.clone(),
            });
        },
    )
    .await;
    served.attempts = finished.attempts;
    served.give_up = finished.give_up;
    Ok(finished
        .value
        .response
        .unwrap_or_else(ProxyError::into_response))
}

/// The request's deadline: the configured one, shortened by the OpenAI SDK's own read
/// timeout (`x-stainless-read-timeout`, seconds) when that is shorter.
fn client_deadline(headers: &http::HeaderMap, configured: Duration) -> Duration {
    headers
        .get("x-stainless-read-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .map_or(configured, |client| client.min(configured))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_read_timeout_shortens_the_deadline_only() {
        let mut h = http::HeaderMap::new();
        let ten = Duration::from_secs(10);
        assert_eq!(client_deadline(&h, ten), ten);
        h.insert("x-stainless-read-timeout", HeaderValue::from_static("2.5"));
        assert_eq!(client_deadline(&h, ten), Duration::from_millis(2500));
        h.insert("x-stainless-read-timeout", HeaderValue::from_static("600"));
        assert_eq!(client_deadline(&h, ten), ten);
        for bad in ["-1", "0", "soon", "inf"] {
            h.insert("x-stainless-read-timeout", HeaderValue::from_static(bad));
            assert_eq!(client_deadline(&h, ten), ten, "{bad}");
        }
    }
}
