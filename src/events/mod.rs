//! What the request path tells its observers: one `AttemptReport` per attempt (its
//! outcome and what backstop decided), one `RequestEvent` per request when its response
//! has ended, and changes of an upstream's circuit and pacing. The failure log and
//! metrics consume these; they never parse log lines and know nothing of the server.

use std::sync::Arc;

use std::time::Duration;

use http::Method;

use crate::limits::CircuitState;
use crate::limits::pacing::PaceView;
use crate::request_meta::RequestMeta;
use crate::response_capture::CapturedResponse;
use crate::retry::{Decision, GiveUp, Outcome};

mod endpoint;
mod fanout;
mod recording;
mod request_id;

pub use endpoint::{endpoint, endpoint_kind};
pub use fanout::Observers;
pub use recording::RecordingObserver;
pub use request_id::RequestId;

/// What backstop did after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Handed to the client as a success.
    Returned,
    /// Another attempt follows after `delay`.
    Retry,
    /// Handed to the client as a failure (why in `AttemptReport::give_up`).
    GiveUp,
    /// This upstream is done with the request; the next fallback takes it.
    Fallback,
}

impl Verdict {
    /// The SPEC's `decision` field: `retry` or `give_up` (a success has none).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Returned => "return",
            Verdict::Retry => "retry",
            Verdict::GiveUp => "give_up",
            Verdict::Fallback => "fallback",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AttemptReport {
    pub request_id: RequestId,
    pub upstream: Arc<str>,
    pub method: Method,
    /// The request path without its query.
    pub endpoint: Arc<str>,
    /// Its `endpoint` label (`endpoint_kind`), read once per request.
    pub endpoint_kind: &'static str,
    /// 1-based.
    pub attempt: u32,
    pub outcome: Outcome,
    pub status: Option<u16>,
    pub verdict: Verdict,
    pub give_up: Option<GiveUp>,
    /// The upstream that takes the request next (`Verdict::Fallback` only).
    pub fallback_to: Option<Arc<str>>,
    /// The delay before the next attempt (retries only).
    pub delay: Option<Duration>,
    /// What the upstream asked for, if it did.
    pub server_delay: Option<Duration>,
    /// From sending to deciding (headers, and the error body or first SSE event read).
    pub duration: Duration,
    pub upstream_request_id: Option<UpstreamRequestId>,
    /// From the upstream's JSON error, or backstop's own error code.
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// Model, stream, tag and counts of the request (shared by all its events).
    pub meta: Arc<RequestMeta>,
}

/// The upstream's own id for an attempt (`x-request-id`, `apim-request-id`): the
/// header's value itself, shared rather than copied, since every attempt has one and
/// only failure records read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamRequestId(http::HeaderValue);

impl UpstreamRequestId {
    /// The value when it is text (visible ASCII), as ids are.
    pub fn from_header(value: &http::HeaderValue) -> Option<UpstreamRequestId> {
        value
            .to_str()
            .ok()
            .map(|_| UpstreamRequestId(value.clone()))
    }
}

impl std::ops::Deref for UpstreamRequestId {
    type Target = str;
    fn deref(&self) -> &str {
        // Checked to be text when made.
        self.0.to_str().unwrap_or_default()
    }
}

impl From<&str> for UpstreamRequestId {
    /// An id given as text; one that is not a valid header value is kept empty.
    fn from(id: &str) -> UpstreamRequestId {
        UpstreamRequestId(
            http::HeaderValue::from_str(id).unwrap_or(http::HeaderValue::from_static("")),
        )
    }
}

/// How a response body ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEnd {
    /// Sent in full.
    Complete,
    /// The upstream broke off or stalled after commit (`stream_interrupted`,
    /// `stream_idle_timeout`); a stream got a final error event.
    Interrupted(&'static str),
    /// The client went away before the end.
    ClientGone,
}

/// A request backstop refused itself before any attempt: its error code (also the
/// record's `reason`) and SPEC §3 `error_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub error_type: &'static str,
}

/// Tokens a response reported in its `usage` (JSON body or final SSE chunk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// One per client request, when its response body has ended (or the client left).
#[derive(Debug, Clone)]
pub struct RequestEvent {
    pub request_id: RequestId,
    /// `None` when no upstream matched.
    pub upstream: Option<Arc<str>>,
    pub method: Method,
    /// The request path without its query.
    pub endpoint: Arc<str>,
    /// The bounded label for metrics (`chat_completions`, …, `other`).
    pub endpoint_kind: &'static str,
    /// What the client got; 0 when it left before any response head (`request_left`).
    pub status: u16,
    /// The response is an SSE stream (`text/event-stream`): its time to first chunk is
    /// the streaming latency the gen_ai metrics report.
    pub streamed: bool,
    /// 0 when refused before any attempt (413, no route) or replayed.
    pub attempts: u32,
    pub give_up: Option<GiveUp>,
    /// Request start to the response headers going out.
    pub time_to_headers: Duration,
    /// Time spent waiting for local rate limits and pacing.
    pub queue_wait: Duration,
    /// Request start to the first body bytes going out.
    pub time_to_first_chunk: Option<Duration>,
    /// Request start to the end of the response body.
    pub duration: Duration,
    pub end: BodyEnd,
    /// Set when backstop refused the request itself before any attempt and no attempt
    /// event says so (`no_route`, `request_too_large`, `bad_request_body`, …); circuit
    /// and rate-limit refusals are attempt events, since they can also be fallback hops.
    pub refused: Option<Refusal>,
    pub usage: Option<Usage>,
    pub meta: Arc<RequestMeta>,
    /// The body the client got, when the journal keeps responses (else `None`, and
    /// nothing is done per frame).
    pub response: Option<Box<CapturedResponse>>,
    /// Set when the response was a replay of an earlier request's (SPEC §6).
    pub replay: Option<Replayed>,
}

/// A request answered from an earlier one's kept response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// The `request_id` of the request that paid for it.
    pub of: Arc<str>,
    pub reason: crate::replay::ReplayReason,
}

impl AttemptReport {
    /// This attempt ended the request.
    pub fn is_final(&self) -> bool {
        matches!(self.verdict, Verdict::Returned | Verdict::GiveUp)
    }

    pub fn verdict_of(decision: &Decision) -> (Verdict, Option<GiveUp>, Option<Duration>) {
        match *decision {
            Decision::Return => (Verdict::Returned, None, None),
            Decision::Retry { delay, .. } => (Verdict::Retry, None, Some(delay)),
            Decision::GiveUp(why) => (Verdict::GiveUp, Some(why), None),
        }
    }
}

/// Receives every attempt event, on the request path: must not block.
pub trait Observer: Send + Sync + 'static {
    fn attempt(&self, event: &AttemptReport);

    /// The request was routed to `upstream`; its `request` event (or
    /// `request_abandoned`) follows. For in-flight gauges.
    fn request_started(&self, upstream: &str) {
        let _ = upstream;
    }

    /// The client left before the response headers: no `request` event will follow.
    fn request_abandoned(&self, upstream: &str) {
        let _ = upstream;
    }

    /// An upstream's circuit breaker is now in `state`.
    fn circuit(&self, upstream: &str, state: CircuitState) {
        let _ = (upstream, state);
    }

    /// An upstream's pacing after its latest response.
    fn pacing(&self, upstream: &str, view: PaceView) {
        let _ = (upstream, view);
    }

    /// The request is over (its response body ended or the client left).
    fn request(&self, event: &RequestEvent) {
        let _ = event;
    }

    /// The client left before any response head (`status` 0, end `ClientGone`); follows
    /// `request_abandoned`. Only the journal records it: metrics and `/stats` count
    /// answered requests.
    fn request_left(&self, event: &RequestEvent) {
        let _ = event;
    }

    /// A request waits for an identical one in flight to `upstream` (replay).
    fn replay_join(&self, upstream: &str) {
        let _ = upstream;
    }

    /// A WebSocket session to `upstream` opened (`true`) or ended (`false`).
    fn websocket_session(&self, upstream: &str, open: bool) {
        let _ = (upstream, open);
    }
}

/// The default observer: a `debug` line per attempt, `warn` when a request fails in the end.
#[derive(Debug, Default)]
pub struct LogObserver;

impl Observer for LogObserver {
    fn attempt(&self, e: &AttemptReport) {
        let reason = e.outcome.reason().as_str();
        match e.verdict {
            Verdict::Retry => tracing::debug!(
                id = %e.request_id, upstream = %e.upstream, attempt = e.attempt, reason,
                status = e.status, delay_ms = e.delay.map(|d| d.as_millis() as u64), "retrying"
            ),
            // The client's own mistakes (a 4xx passed back as it was) are the client's to
            // report; logging each at warn would let a misbehaving app flood the logs. A
            // quota 429 is not one of them: it stays a warning.
            Verdict::GiveUp
                if e.give_up == Some(GiveUp::NotRetryable)
                    && e.status
                        .is_some_and(|s| (400..500).contains(&s) && s != 429) =>
            {
                tracing::debug!(
                    id = %e.request_id, upstream = %e.upstream, reason, status = e.status, "client error passed back"
                )
            }
            Verdict::GiveUp if e.outcome.is_failure() => tracing::warn!(
                id = %e.request_id, upstream = %e.upstream, attempt = e.attempt, reason,
                status = e.status, why = e.give_up.map(GiveUp::reason), "request failed"
            ),
            _ => {}
        }
    }
}
