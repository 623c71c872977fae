//! Step 4: the response. The last attempt's response as it was, or backstop's own
//! error; `x-backstop-request-id`, `x-backstop-attempts`, `x-backstop-upstream`, and
//! `x-should-retry` where backstop has an opinion (`response_head`); the body watched
//! on its way out (`watch`) for the request's one `RequestEvent` (and, with `[journal]
//! responses = true`, its bytes kept up to `max_response_bytes`).

use std::sync::Arc;
use std::time::Duration;

use http::Response;
use tokio::time::Instant;

use super::keep::{KeepBody, Keeping};
use super::replay;
use super::report::Ident;
use super::response_head;
use super::served::Served;
use super::watch::WatchedBody;
use crate::body::Body;
use crate::error::ProxyError;
use crate::events::{BodyEnd, Observer, Refusal, RequestEvent};
use crate::response_capture::CapturedResponse;
use crate::retry::GiveUp;

pub(super) fn respond(
    result: Result<Response<Body>, ProxyError>,
    mut served: Served,
    ident: Ident,
    observer: Arc<dyn Observer>,
    started: Instant,
    span: &tracing::Span,
    keep_response: Option<u64>,
) -> Response<Body> {
    let judged_stream = served.event_stream.take().filter(|_| result.is_ok());
    let (mut response, should_retry, refused) = answer(result, served.give_up, span);
    let keeping = keeping(&mut served, &ident, &response);
    response_head::add(
        response.headers_mut(),
        &ident.id,
        served.attempts,
        should_retry,
        served.upstream_header.take(),
    );
    served.responded();
    let status = response.status().as_u16();
    let streamed = served.streamed(judged_stream, response.headers());
    let look_for_usage = status == 200 && usage_endpoint(ident.kind);
    let captured = CapturedResponse::start(keep_response, status, response.headers());
    let (parts, body) = response.into_parts();
    let time_to_headers = started.elapsed();
    // Built in its box, the event with it: the watched body (~450 bytes) is not copied.
    let watched = Body::in_place(|| {
        let event = RequestEvent {
            request_id: ident.id,
            upstream: served.upstream.take(),
            method: ident.method,
            endpoint_kind: ident.kind,
            endpoint: ident.endpoint,
            status,
            streamed,
            attempts: served.attempts,
            give_up: served.give_up,
            time_to_headers,
            queue_wait: served.queue_wait,
            time_to_first_chunk: None,
            duration: Duration::ZERO,
            end: BodyEnd::Complete,
            refused,
            usage: None,
            meta: served.take_meta(),
            response: captured,
            replay: served.replayed.take(),
        };
        WatchedBody::new(
            body,
            observer,
            event,
            started,
            look_for_usage,
            served.settle.take(),
            served.detach.clone(),
        )
    });
    Response::from_parts(parts, outgoing(watched, keeping))
}

/// The body as it goes out: watched for the request's event (`watched`), and kept for
/// replay when the request has a ticket.
fn outgoing(watched: Body, keeping: Option<Keeping>) -> Body {
    match keeping {
        Some(keeping) => Body::new(KeepBody::new(watched, keeping)),
        None => watched,
    }
}

/// Replay: a 2xx of an eligible request is kept as it is before backstop's headers.
fn keeping(served: &mut Served, ident: &Ident, response: &Response<Body>) -> Option<Keeping> {
    let ticket = served.ticket.take()?;
    let status = response.status();
    status.is_success().then(|| {
        let headers = replay::keepable(response.headers());
        let detach = served.detach.clone();
        Keeping::new(*ticket, ident.id.clone(), status.as_u16(), headers, detach)
    })
}

/// The response to send (backstop's own for an error), whether the client's SDK should
/// retry it (`x-should-retry`), and the refusal an error before any attempt was.
fn answer(
    result: Result<Response<Body>, ProxyError>,
    give_up: Option<GiveUp>,
    span: &tracing::Span,
) -> (Response<Body>, Option<&'static str>, Option<Refusal>) {
    let spent = give_up.is_some_and(GiveUp::spent_retries);
    let error = match result {
        Ok(response) => return (response, spent.then_some("false"), None),
        Err(error) => error,
    };
    span.in_scope(|| tracing::warn!(%error, code = error.code(), "request refused"));
    let (should_retry, refused) = match error {
        ProxyError::CircuitOpen { .. } => (Some("false"), None),
        // The same key with another body will never succeed.
        ProxyError::IdempotencyKeyReused => (Some("false"), Some(error.refusal())),
        // Never reached the upstream: a retry after `retry-after` costs it nothing.
        ProxyError::RateLimited { .. } => (Some("true"), None),
        _ => (spent.then_some("false"), Some(error.refusal())),
    };
    (error.into_response(), should_retry, refused)
}

fn usage_endpoint(kind: &str) -> bool {
    matches!(
        kind,
        "chat_completions" | "completions" | "embeddings" | "responses"
    )
}
