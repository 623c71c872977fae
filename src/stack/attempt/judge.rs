//! Judging a response head, three ways:
//!
//! - an error (≥ 400): its first ≤ 64 KiB are read to classify it (a quota 429 is not
//!   a rate-limit 429) and then sent first; a body that breaks while being read reaches
//!   the client broken, never as a clean shorter body;
//! - an SSE 200: the headers are held until the first event, so a stream that dies or
//!   opens with an error event before any content can still be retried;
//! - anything else: passed on as it is, streamed.

use std::time::{Duration, SystemTime};

use http::response::Parts as Head;
use http::{HeaderMap, Response};
use tokio::time::Instant;

use super::{AttemptResult, Context, failed};
use crate::body::Body;
use crate::error::ProxyError;
use crate::events::UpstreamRequestId;
use crate::proxy::UpstreamBody;
use crate::proxy::headers::{UpstreamHeaders, is_event_stream_type, strip_hop_by_hop};
use crate::proxy::peek::{self, PeekEnd, Peeked, error_prefix_full, has_first_event};
use crate::proxy::response_body::{GuardedBody, StreamError};
use crate::retry::Reason;
use crate::retry::classify::{Outcome, Retryable, classify_response, error_fields};
use crate::retry::driver::Attempted;
use crate::retry::server_delay::server_delay;

/// What the head alone says: pass the response on as it is, or read the start of its
/// body first (`Held`).
pub(super) enum Judged {
    Answered(Attempted<AttemptResult>),
    Held(Held),
}

/// A response whose body is read before it is judged: an error's start, or an SSE
/// 200's first event.
pub(super) struct Held {
    head: Head,
    body: UpstreamBody,
    sse: bool,
    id: Option<UpstreamRequestId>,
}

/// Judges a response head. Not an `async fn`: most responses are passed on as they
/// are, without a future that would move the response in and the result out.
pub(super) fn judge<T>(
    ctx: &Context<'_, T>,
    response: Response<UpstreamBody>,
    started: Instant,
) -> Judged {
    let (mut head, body) = response.into_parts();
    strip_hop_by_hop(&mut head.headers);
    let noted = UpstreamHeaders::scan(&head.headers);
    let (sse, id) = (noted.is_event_stream(), upstream_request_id(&noted));
    if head.status.as_u16() >= 400 {
        return Judged::Held(Held {
            head,
            body,
            sse,
            id,
        });
    }
    // One clock read for pacing and the attempt's duration.
    let now = Instant::now();
    ctx.hop
        .limits
        .observe(head.status.as_u16(), &head.headers, None, now);
    if sse && head.status.is_success() {
        return Judged::Held(Held {
            head,
            body,
            sse,
            id,
        });
    }
    let idle = ctx.hop.upstream.retry.idle_timeout;
    let meta = ctx.meta.clone();
    let body = Body::in_place(|| GuardedBody::new(body, idle, sse).watched_by(meta));
    let took = now.saturating_duration_since(started);
    Judged::Answered(answered(head, body, (sse, id), took, Outcome::Success))
}

/// Judges a `Held` response by the start of its body.
pub(super) async fn read_held<T>(
    ctx: &Context<'_, T>,
    held: Held,
    started: Instant,
) -> Attempted<AttemptResult> {
    let Held {
        head,
        body,
        sse,
        id,
    } = held;
    if head.status.as_u16() >= 400 {
        error(ctx, head, body, (sse, id), started).await
    } else {
        first_event(ctx, head, body, id, started).await
    }
}

/// An error response: classified from its head and the start of its body.
async fn error<T>(
    ctx: &Context<'_, T>,
    head: Head,
    body: UpstreamBody,
    (sse, id): (bool, Option<UpstreamRequestId>),
    started: Instant,
) -> Attempted<AttemptResult> {
    let idle = ctx.hop.upstream.retry.idle_timeout;
    let peeked = peek::peek(body, error_prefix_full, ctx.deadline, idle).await;
    let outcome = classify_response(head.status, &head.headers, &peeked.prefix);
    let (error_code, error_message) = error_fields(&peeked.prefix);
    let server_delay = server_delay(head.status, &head.headers, SystemTime::now());
    let now = Instant::now();
    ctx.hop
        .limits
        .observe(head.status.as_u16(), &head.headers, server_delay, now);
    let body = Body::new(rest_of(peeked, idle, sse).watched_by(ctx.meta.clone()));
    let took = now.saturating_duration_since(started);
    let mut attempted = answered(head, body, (sse, id), took, outcome);
    attempted.value.error_code = error_code;
    attempted.value.error_message = error_message;
    attempted.server_delay = server_delay;
    attempted
}

/// What was read while peeking, then the rest; an end other than a clean one or
/// "enough read" is passed on as the failure it was.
fn rest_of(peeked: Peeked, idle: Duration, sse: bool) -> GuardedBody {
    match peeked.end {
        PeekEnd::Broken(e) => {
            GuardedBody::failing_after(peeked.prefix, StreamError::Broken(e), sse)
        }
        PeekEnd::TimedOut => {
            GuardedBody::failing_after(peeked.prefix, StreamError::Idle(idle), sse)
        }
        PeekEnd::Enough | PeekEnd::Complete => {
            GuardedBody::with_prefix(peeked.prefix, peeked.rest, idle, sse)
        }
    }
}

/// An SSE 200 held until its first event: a content event commits it; an error event,
/// a stall or an early end makes it a retryable failure.
async fn first_event<T>(
    ctx: &Context<'_, T>,
    head: Head,
    body: UpstreamBody,
    id: Option<UpstreamRequestId>,
    started: Instant,
) -> Attempted<AttemptResult> {
    let settings = &ctx.hop.upstream.retry;
    let until = ctx
        .deadline
        .min(Instant::now() + settings.first_event_timeout);
    let peeked = peek::peek(body, has_first_event(), until, settings.first_event_timeout).await;
    let name = || ctx.hop.upstream.name.clone();
    let (reason, error) = match peeked.end {
        PeekEnd::Enough => {
            let first = peek::first_event(&peeked.prefix).unwrap_or_default();
            let error_event = peek::is_error_event(&first);
            let idle = settings.idle_timeout;
            let body = Body::new(rest_of(peeked, idle, true).watched_by(ctx.meta.clone()));
            if !error_event {
                return answered(head, body, (true, id), started.elapsed(), Outcome::Success);
            }
            let outcome = Outcome::Retry {
                reason: Reason::StreamErrorEvent,
                kind: Retryable::Transient,
            };
            let mut attempted = answered(head, body, (true, id), started.elapsed(), outcome);
            let (code, message) = error_fields(first.as_bytes());
            attempted.value.error_code = code;
            attempted.value.error_message = message;
            return attempted;
        }
        PeekEnd::TimedOut => (
            Reason::FirstEventTimeout,
            ProxyError::Timeout {
                upstream: name(),
                after: started.elapsed(),
            },
        ),
        PeekEnd::Complete | PeekEnd::Broken(_) => (
            Reason::StreamDied,
            ProxyError::Upstream {
                upstream: name(),
                detail: "the stream ended before its first event".into(),
            },
        ),
    };
    let mut attempted = failed(started, reason, error);
    attempted.outcome = Outcome::Retry {
        reason,
        kind: Retryable::Ambiguous,
    };
    attempted.value.status = Some(head.status.as_u16());
    attempted.value.upstream_request_id = id;
    attempted
}

/// A response to pass on (for now: the policy may still retry it), an SSE stream when
/// `event_stream` (its content type, as judging it read).
fn answered(
    head: Head,
    body: Body,
    (event_stream, upstream_request_id): (bool, Option<UpstreamRequestId>),
    took: Duration,
    outcome: Outcome,
) -> Attempted<AttemptResult> {
    Attempted {
        value: AttemptResult {
            event_stream,
            status: Some(head.status.as_u16()),
            duration: took,
            upstream_request_id,
            error_code: None,
            error_message: None,
            response: Ok(Response::from_parts(head, body)),
        },
        outcome,
        server_delay: None,
    }
}

pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    is_event_stream_type(headers.get(http::header::CONTENT_TYPE))
}

/// `x-request-id`, else Azure's `apim-request-id`.
fn upstream_request_id(headers: &UpstreamHeaders<'_>) -> Option<UpstreamRequestId> {
    [headers.x_request_id, headers.apim_request_id]
        .into_iter()
        .flatten()
        .find_map(UpstreamRequestId::from_header)
}
