//! The one event type the request path emits: one `AttemptEvent` per attempt, carrying
//! its outcome and what backstop decided. The failure log and metrics consume these;
//! they never parse log lines and know nothing of the HTTP server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Method;

use crate::retry::{Decision, GiveUp, Outcome};

/// What backstop did after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Handed to the client as a success.
    Returned,
    /// Another attempt follows after `delay`.
    Retry,
    /// Handed to the client as a failure (why in `AttemptEvent::give_up`).
    GiveUp,
}

impl Verdict {
    /// The SPEC's `decision` field: `retry` or `give_up` (a success has none).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Returned => "return",
            Verdict::Retry => "retry",
            Verdict::GiveUp => "give_up",
        }
    }
}

#[derive(Debug, Clone)]
pub struct AttemptEvent {
    pub request_id: Arc<str>,
    pub upstream: Arc<str>,
    pub method: Method,
    /// The request path without its query.
    pub endpoint: Arc<str>,
    /// 1-based.
    pub attempt: u32,
    pub outcome: Outcome,
    pub status: Option<u16>,
    pub verdict: Verdict,
    pub give_up: Option<GiveUp>,
    /// The delay before the next attempt (retries only).
    pub delay: Option<Duration>,
    /// What the upstream asked for, if it did.
    pub server_delay: Option<Duration>,
    /// From sending to deciding (headers, and the error body or first SSE event read).
    pub duration: Duration,
    pub upstream_request_id: Option<String>,
    /// From the upstream's JSON error, or backstop's own error code.
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

impl AttemptEvent {
    /// This attempt ended the request.
    pub fn is_final(&self) -> bool {
        self.verdict != Verdict::Retry
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
    fn attempt(&self, event: &AttemptEvent);
}

/// The default observer: a `debug` line per attempt, `warn` when a request fails in the end.
#[derive(Debug, Default)]
pub struct LogObserver;

impl Observer for LogObserver {
    fn attempt(&self, e: &AttemptEvent) {
        let reason = e.outcome.reason();
        match e.verdict {
            Verdict::Retry => tracing::debug!(
                id = %e.request_id, upstream = %e.upstream, attempt = e.attempt, reason,
                status = e.status, delay_ms = e.delay.map(|d| d.as_millis() as u64), "retrying"
            ),
            Verdict::GiveUp if e.outcome.is_failure() => tracing::warn!(
                id = %e.request_id, upstream = %e.upstream, attempt = e.attempt, reason,
                status = e.status, why = e.give_up.map(GiveUp::reason), "request failed"
            ),
            _ => {}
        }
    }
}

/// Keeps every event in memory: for tests and the demo.
#[derive(Debug, Default)]
pub struct RecordingObserver(Mutex<Vec<AttemptEvent>>);

impl RecordingObserver {
    pub fn events(&self) -> Vec<AttemptEvent> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

impl Observer for RecordingObserver {
    fn attempt(&self, event: &AttemptEvent) {
        LogObserver.attempt(event);
        if let Ok(mut events) = self.0.lock() {
            events.push(event.clone());
        }
    }
}
