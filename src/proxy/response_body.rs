//! The upstream response body on its way to the client: streamed frame by frame, never
//! collected, with `idle_timeout` between frames. Once the first byte has gone to the
//! client nothing can be retried, so a stall or a broken upstream ends an SSE stream
//! with a final `data: {"error":…}` event (the SDK raises instead of hanging) and
//! aborts any other body (the client sees a truncated response, not a clean end).

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use super::UpstreamBody;
use super::sse::Boundary;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::body::BoxError;
use crate::error::error_json;
use crate::request_meta::RequestMeta;

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("upstream sent nothing for {0:?}")]
    Idle(Duration),
    #[error("upstream broke off the response: {0}")]
    Broken(#[source] BoxError),
}

/// How the body of a request's final response failed, if it did: set by `GuardedBody`
/// in the request's `RequestMeta`, read when the request's `RequestEvent` is made.
#[derive(Debug, Default)]
pub struct StreamFate(OnceLock<&'static str>);

impl StreamFate {
    pub fn failure(&self) -> Option<&'static str> {
        self.0.get().copied()
    }
}

pin_project_lite::pin_project! {
    #[project = Guarded]
    pub struct GuardedBody {
        // The request whose `fate` an early end is reported to.
        meta: Option<Arc<RequestMeta>>,
        // Bytes already read from the upstream (while deciding), sent first.
        prefix: Option<Bytes>,
        #[pin]
        inner: Option<UpstreamBody>,
        // Armed only when the upstream makes us wait (`Pending`), so bodies that are
        // already buffered never touch the timer wheel; `armed_for` is its deadline.
        #[pin]
        idle: Option<Sleep>,
        armed_for: Option<Instant>,
        // When the upstream was first found with nothing to give since its last frame
        // (the idle time counts from there); `None` after each frame. The clock is read
        // only when waiting starts, not for every frame.
        waiting_since: Option<Instant>,
        idle_timeout: Duration,
        sse: bool,
        // Whether the bytes sent so far end an SSE event, so an error event can follow.
        sent: Boundary,
        // How the body fails once `prefix` is sent, when it broke while being peeked.
        failure: Option<StreamError>,
        // The prefix went out and the server has had a chance to flush it.
        flushed: bool,
        done: bool,
    }
}

impl GuardedBody {
    pub fn new(inner: UpstreamBody, idle_timeout: Duration, sse: bool) -> GuardedBody {
        GuardedBody::with_prefix(Bytes::new(), Some(inner), idle_timeout, sse)
    }

    /// `prefix` first, then the rest of the upstream body (if any is left).
    pub fn with_prefix(
        prefix: Bytes,
        inner: Option<UpstreamBody>,
        idle_timeout: Duration,
        sse: bool,
    ) -> GuardedBody {
        GuardedBody {
            meta: None,
            prefix: (!prefix.is_empty()).then_some(prefix),
            inner,
            idle: None,
            armed_for: None,
            waiting_since: None,
            idle_timeout,
            sse,
            sent: Boundary::default(),
            failure: None,
            flushed: false,
            done: false,
        }
    }

    /// `prefix`, then `failure`: a body that broke (or stalled) while being peeked
    /// reaches the client as broken, never as a clean, shorter body.
    pub fn failing_after(prefix: Bytes, failure: StreamError, sse: bool) -> GuardedBody {
        let mut body = GuardedBody::with_prefix(prefix, None, Duration::ZERO, sse);
        body.failure = Some(failure);
        body
    }
}

impl GuardedBody {
    /// Reports an early end to the request's `fate`.
    pub fn watched_by(mut self, meta: Arc<RequestMeta>) -> GuardedBody {
        self.meta = Some(meta);
        self
    }
}

/// The bytes of a final SSE error event; starts by closing a half-sent event if needed.
fn error_event(at_event_boundary: bool, code: &str, message: &str) -> Bytes {
    let prefix = if at_event_boundary { "" } else { "\n\n" };
    Bytes::from(format!("{prefix}data: {}\n\n", error_json(code, message)))
}

/// The body ends before its time: the fate is recorded; an SSE stream gets a final
/// error event, any other body an error (the client sees it break, not end clean).
fn end_early(
    this: Guarded<'_>,
    failure: StreamError,
) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
    *this.done = true;
    tracing::warn!(error = %failure, sse = *this.sse, "response stream ended early");
    let code = match failure {
        StreamError::Idle(_) => "stream_idle_timeout",
        StreamError::Broken(_) => "stream_interrupted",
    };
    if let Some(meta) = this.meta {
        let _ = meta.fate.0.set(code);
    }
    if *this.sse {
        let event = error_event(this.sent.at_event_end(), code, &failure.to_string());
        return Poll::Ready(Some(Ok(Frame::data(event))));
    }
    Poll::Ready(Some(Err(Box::new(failure))))
}

/// The upstream made us wait: the idle timer armed (or kept) from when the wait began;
/// true once it has run out.
fn idle_ran_out(this: &mut Guarded<'_>, cx: &mut Context<'_>) -> bool {
    let since = *this.waiting_since.get_or_insert_with(Instant::now);
    let deadline = since + *this.idle_timeout;
    if *this.armed_for != Some(deadline) {
        match this.idle.as_mut().as_pin_mut() {
            Some(sleep) => sleep.reset(deadline),
            None => this.idle.set(Some(tokio::time::sleep_until(deadline))),
        }
        *this.armed_for = Some(deadline);
    }
    let polled = this.idle.as_mut().as_pin_mut().map(|sleep| sleep.poll(cx));
    matches!(polled, Some(Poll::Ready(())))
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        if let Some(prefix) = this.prefix.take() {
            if *this.sse {
                this.sent.push(&prefix);
            }
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        let failure = match this.inner.as_mut().as_pin_mut() {
            // Once: give the server a turn to send what was read, then fail.
            None if this.failure.is_some() && !*this.flushed => {
                *this.flushed = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            None => match this.failure.take() {
                Some(failure) => failure,
                None => {
                    *this.done = true;
                    return Poll::Ready(None);
                }
            },
            Some(inner) => match inner.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    *this.waiting_since = None;
                    if *this.sse
                        && let Some(data) = frame.data_ref()
                    {
                        this.sent.push(data);
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(None) => {
                    *this.done = true;
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => StreamError::Broken(e),
                Poll::Pending if idle_ran_out(&mut this, cx) => {
                    StreamError::Idle(*this.idle_timeout)
                }
                Poll::Pending => return Poll::Pending,
            },
        };
        end_early(this, failure)
    }

    fn is_end_stream(&self) -> bool {
        self.done
            || (self.prefix.is_none()
                && self.failure.is_none()
                && self.inner.as_ref().is_none_or(|i| i.is_end_stream()))
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        match &self.inner {
            // An error event may be added to a stream, and a body that broke while
            // being peeked will fail: never promise an exact length.
            _ if self.sse || self.failure.is_some() => SizeHint::new(),
            None => SizeHint::with_exact(prefix),
            Some(inner) => crate::body::hint_after(prefix, inner.size_hint()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_event_is_a_whole_sse_event() {
        let e = error_event(true, "stream_idle_timeout", "quiet");
        let text = std::str::from_utf8(&e).expect("utf8");
        assert!(text.starts_with("data: {"));
        assert!(text.ends_with("}\n\n"));
        let json: serde_json::Value =
            serde_json::from_str(text.trim_start_matches("data: ").trim()).expect("json");
        assert_eq!(json["error"]["code"], "stream_idle_timeout");
    }

    #[test]
    fn error_event_closes_a_half_sent_event_first() {
        let e = error_event(false, "stream_interrupted", "cut");
        assert!(e.starts_with(b"\n\ndata: "));
    }
}
