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
mod fallback;
mod response_head;
mod served;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use http::header::CONTENT_LENGTH;
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::time::Instant;
use tracing::Instrument;

use crate::body::Body;
use crate::config::Upstream;
use crate::error::ProxyError;
use crate::events::{AttemptEvent, BodyEnd, Observer, RequestEvent, Verdict, endpoint_kind};
use crate::limits::{NotAdmitted, UpstreamLimits, estimate_tokens};
use crate::proxy::headers::STAINLESS_READ_TIMEOUT;
use crate::proxy::request_body::{BodyLimits, RequestBody};
use crate::request_meta::RequestMeta;
use crate::retry::Outcome;
use crate::retry::driver::drive;
use crate::retry::{GiveUp, RetryBudget, RetryPolicy};
use crate::runtime::Runtime;
use fallback::{chain, falls_back, rewritten_path};
use http_body_util::BodyExt;
use served::{InFlight, Served};
use watch::WatchedBody;

/// Handles one client request end to end. Never fails: errors become responses.
pub async fn handle(
    runtime: Arc<Runtime>,
    observer: Arc<dyn Observer>,
    request: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let mut id = uuid::Uuid::encode_buffer();
    let request_id: Arc<str> = Arc::from(&*uuid::Uuid::now_v7().simple().encode_lower(&mut id));
    let method = request.method().clone();
    let endpoint: Arc<str> = request.uri().path().into();
    // The path only: a query may carry `key=` credentials.
    let span = tracing::debug_span!("request", id = %request_id, %method, path = %endpoint);
    let mut served = Served::new();
    let result = forward(
        &runtime,
        &observer,
        request,
        (&request_id, &endpoint),
        &mut served,
    )
    .instrument(span.clone())
    .await;
    let mut should_retry = served
        .give_up
        .is_some_and(GiveUp::spent_retries)
        .then_some("false");
    let mut refused = None;
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            span.in_scope(|| tracing::warn!(%error, code = error.code(), "request refused"));
            match error {
                ProxyError::CircuitOpen { .. } => should_retry = Some("false"),
                // Never reached the upstream: a retry after `retry-after` costs it nothing.
                ProxyError::RateLimited { .. } => should_retry = Some("true"),
                _ => refused = Some(error.code()),
            }
            error.into_response()
        }
    };
    response_head::add(
        response.headers_mut(),
        &request_id,
        served.attempts,
        should_retry,
        served.upstream.as_deref(),
    );

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
        queue_wait: served.queue_wait,
        time_to_first_chunk: None,
        duration: Duration::ZERO,
        end: BodyEnd::Complete,
        refused,
        usage: None,
        meta: served.meta,
    };
    let (parts, body) = response.into_parts();
    let body = WatchedBody::new(
        body,
        observer,
        event,
        started,
        served.fate,
        look_for_usage,
        served.limits,
    );
    Response::from_parts(parts, body.boxed())
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
    (request_id, endpoint): (&Arc<str>, &Arc<str>),
    served: &mut Served,
) -> Result<Response<Body>, ProxyError> {
    let (parts, incoming) = request.into_parts();
    let primary = runtime
        .router
        .route(parts.uri.path())
        .ok_or_else(|| ProxyError::NoRoute {
            path: parts.uri.path().to_owned(),
        })?;
    tracing::debug!(upstream = %primary.name, "routed");
    let primary_name = shared_name(runtime, primary);
    served.upstream = Some(primary_name.clone());
    served.in_flight = Some(InFlight::start(observer, &primary_name));

    let limits = BodyLimits {
        retry_buffer_bytes: runtime.config.retry_buffer_bytes,
        max_body_bytes: runtime.config.max_body_bytes,
        idle_timeout: primary.retry.idle_timeout,
    };
    let content_length = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let body = RequestBody::read(incoming, content_length, limits, &runtime.buffer_budget).await?;
    let body_bytes = body
        .buffered()
        .map_or(content_length.unwrap_or(0), |b| b.len() as u64);
    let meta = Arc::new(RequestMeta::read(
        &parts.headers,
        body.buffered(),
        body_bytes,
    ));
    served.meta = meta.clone();

    let deadline = Instant::now() + client_deadline(&parts.headers, primary.retry.deadline);
    let replayable = body.is_replayable();
    let mut body = attempt::Bodies::new(body);
    let client_path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let chain = chain(runtime, primary);

    let mut last_error = None;
    for (hop, upstream) in chain.iter().enumerate() {
        let has_next = hop + 1 < chain.len() && replayable;
        let shared = runtime.upstream(&upstream.name);
        let name = shared.map_or_else(|| upstream.name.as_str().into(), |s| s.name.clone());
        served.upstream = Some(name.clone());
        let limits = shared.map_or_else(
            || Arc::new(UpstreamLimits::new(upstream)),
            |s| s.limits.clone(),
        );
        let event = |attempt: u32, outcome: Outcome, verdict: Verdict, give_up: Option<GiveUp>| {
            AttemptEvent {
                request_id: request_id.clone(),
                upstream: name.clone(),
                method: parts.method.clone(),
                endpoint: endpoint.clone(),
                attempt,
                outcome,
                status: None,
                verdict,
                give_up,
                delay: None,
                server_delay: None,
                duration: Duration::ZERO,
                upstream_request_id: None,
                error_code: None,
                error_message: None,
                meta: meta.clone(),
            }
        };

        // Admission: circuit, pacing, rate limits.
        let estimate = estimate_tokens(meta.body_bytes, meta.max_tokens, limits.default_max_tokens);
        let until = deadline.min(Instant::now() + upstream.max_queue_wait);
        let admitted = limits.admit(estimate, until).await;
        if limits.breaker.is_some() {
            observer.circuit(&upstream.name, limits.circuit_state());
        }
        match admitted {
            Ok(waited) => served.queue_wait += waited,
            Err(NotAdmitted::CircuitOpen { retry_after }) => {
                let error = ProxyError::CircuitOpen {
                    upstream: upstream.name.clone(),
                    retry_after,
                };
                let verdict = if has_next {
                    Verdict::Fallback
                } else {
                    Verdict::GiveUp
                };
                let mut e = event(
                    served.attempts + 1,
                    Outcome::Fatal {
                        reason: "circuit_open",
                    },
                    verdict,
                    None,
                );
                e.error_code = Some(error.code().to_owned());
                e.error_message = Some(error.to_string());
                observer.attempt(&e);
                if has_next {
                    last_error = Some(error);
                    continue;
                }
                return Err(error);
            }
            Err(NotAdmitted::RateLimited { retry_after }) => {
                let error = ProxyError::RateLimited {
                    upstream: upstream.name.clone(),
                    retry_after,
                };
                let mut e = event(
                    served.attempts + 1,
                    Outcome::Fatal {
                        reason: "rate_limited_locally",
                    },
                    Verdict::GiveUp,
                    None,
                );
                e.error_code = Some(error.code().to_owned());
                e.error_message = Some(error.to_string());
                observer.attempt(&e);
                return Err(error);
            }
        }
        if limits.rate.as_ref().is_some_and(|r| r.limits_tokens()) {
            served.limits = Some((limits.clone(), estimate));
        }

        let rewritten = (hop > 0)
            .then(|| rewritten_path(upstream, client_path, meta.model.as_deref()))
            .flatten();
        let budget = shared.map_or_else(
            || Arc::new(RetryBudget::new(&upstream.retry)),
            |s| s.budget.clone(),
        );
        let mut policy = RetryPolicy::new(upstream.retry.clone(), budget, deadline, replayable);
        let ctx = attempt::Context {
            runtime,
            upstream,
            parts: &parts,
            deadline,
            fate: served.fate.clone(),
            limits: &limits,
            path_and_query: rewritten.as_deref().unwrap_or(client_path),
        };
        let first_attempt = served.attempts;
        let finished = drive(
            &mut policy,
            |n| ctx.run(n, body.next()),
            |n, attempted, decision| {
                let r = &attempted.value;
                if let Some(breaker) = &limits.breaker {
                    match attempted.outcome {
                        Outcome::Retry { .. } => breaker.failure(Instant::now()),
                        Outcome::Success => breaker.success(),
                        Outcome::Fatal { .. } if r.status.is_some() => breaker.success(),
                        Outcome::Fatal { .. } => {}
                    }
                    observer.circuit(&upstream.name, breaker.state(Instant::now()));
                }
                if let Some(view) = limits.pacer.as_ref().and_then(|p| p.changed_view()) {
                    observer.pacing(&upstream.name, view);
                }
                let (mut verdict, give_up, delay) = AttemptEvent::verdict_of(decision);
                if verdict == Verdict::GiveUp
                    && has_next
                    && falls_back(give_up, attempted.outcome.reason())
                {
                    verdict = Verdict::Fallback;
                }
                let mut e = event(first_attempt + n, attempted.outcome, verdict, give_up);
                e.status = r.status;
                e.delay = delay;
                e.server_delay = attempted.server_delay;
                e.duration = r.duration;
                e.upstream_request_id = r.upstream_request_id.clone();
                e.error_code = r.error_code.clone();
                e.error_message = r.error_message.clone();
                observer.attempt(&e);
            },
        )
        .await;
        served.attempts += finished.attempts;
        served.give_up = finished.give_up;
        let reason_of_last = match &finished.value.response {
            Err(ProxyError::CircuitOpen { .. }) => "circuit_open",
            _ => "",
        };
        if has_next && falls_back(finished.give_up, reason_of_last) && Instant::now() < deadline {
            tracing::debug!(from = %upstream.name, "falling back");
            last_error = finished.value.response.err();
            continue;
        }
        return Ok(finished
            .value
            .response
            .unwrap_or_else(ProxyError::into_response));
    }
    // Only reached when the last hop's circuit was open and it had a successor that was
    // then skipped; answer with the last refusal.
    Err(last_error.unwrap_or(ProxyError::NoRoute {
        path: endpoint.to_string(),
    }))
}

/// The upstream's name as the runtime shares it (no copy per request).
fn shared_name(runtime: &Runtime, upstream: &Upstream) -> Arc<str> {
    runtime
        .upstream(&upstream.name)
        .map_or_else(|| upstream.name.as_str().into(), |s| s.name.clone())
}

/// The request's deadline: the configured one, shortened by the OpenAI SDK's own read
/// timeout (`x-stainless-read-timeout`, seconds) when that is shorter.
fn client_deadline(headers: &http::HeaderMap, configured: Duration) -> Duration {
    headers
        .get(STAINLESS_READ_TIMEOUT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .map_or(configured, |client| client.min(configured))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

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
