//! Reading the start of an upstream body before committing to it: the first ≤ 64 KiB of
//! an error body (to tell a quota 429 from a rate-limit 429), or an SSE stream up to its
//! first event (so a stream that dies or opens with an error can still be retried).
//! Whatever was read is handed on with the rest of the body; nothing is lost.

use std::borrow::Cow;
use std::time::Duration;

use super::UpstreamBody;
use super::sse::{self, FirstEvent};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::body::BoxError;

/// Error bodies are read up to this much for classification.
pub const ERROR_PREFIX_BYTES: usize = 64 * 1024;

pub struct Peeked {
    /// Everything read so far, to be sent first.
    pub prefix: Bytes,
    /// The unread rest; `None` when the body ended (or broke) while peeking.
    pub rest: Option<UpstreamBody>,
    pub end: PeekEnd,
}

#[derive(Debug)]
pub enum PeekEnd {
    /// `stop` said enough was read.
    Enough,
    /// The body ended cleanly.
    Complete,
    /// The body broke off (reset, torn).
    Broken(BoxError),
    /// Nothing new arrived before `until`.
    TimedOut,
}

/// Reads until `stop(prefix)` holds, the body ends, or `until` passes. The wait for each
/// frame is also bounded by `idle`. `stop` sees the whole prefix each time (it only
/// grows) and may keep its place between calls.
pub async fn peek(
    mut body: UpstreamBody,
    mut stop: impl FnMut(&[u8]) -> bool,
    until: Instant,
    idle: Duration,
) -> Peeked {
    let mut buf = BytesMut::new();
    loop {
        if stop(&buf) {
            return Peeked {
                prefix: buf.freeze(),
                rest: Some(body),
                end: PeekEnd::Enough,
            };
        }
        let limit = until.min(Instant::now() + idle);
        match tokio::time::timeout_at(limit, body.frame()).await {
            Err(_) => {
                return Peeked {
                    prefix: buf.freeze(),
                    rest: None,
                    end: PeekEnd::TimedOut,
                };
            }
            Ok(None) => {
                return Peeked {
                    prefix: buf.freeze(),
                    rest: None,
                    end: PeekEnd::Complete,
                };
            }
            Ok(Some(Err(e))) => {
                return Peeked {
                    prefix: buf.freeze(),
                    rest: None,
                    end: PeekEnd::Broken(e),
                };
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
        }
    }
}

/// The stop rule for error bodies.
pub fn error_prefix_full(buf: &[u8]) -> bool {
    buf.len() >= ERROR_PREFIX_BYTES
}

/// The stop rule for SSE: a whole event with a `data` field has arrived, whatever its
/// line endings (comments and bare `retry:`/`event:` lines keep the headers held). It
/// keeps its place, so each byte is looked at once however many frames arrive.
pub fn has_first_event() -> impl FnMut(&[u8]) -> bool {
    let mut scan = FirstEvent::default();
    move |buf| scan.scan(buf).is_some()
}

/// The data of the first complete SSE event that has any.
pub fn first_event(buf: &[u8]) -> Option<String> {
    sse::first_event(buf).map(Cow::into_owned)
}

/// Whether an SSE event's data is an error object rather than content.
pub fn is_error_event(data: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(data)
        .is_ok_and(|v| v.get("error").is_some_and(|e| !e.is_null()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_event_needs_a_complete_event_with_data() {
        let mut stop = has_first_event();
        assert!(!stop(b"data: {\"a\":1}"), "not terminated yet");
        assert!(stop(b"data: {\"a\":1}\r\r"), "a lone CR ends lines too");
        assert_eq!(
            first_event(b": ping\n\ndata: {\"a\":1}\n\n").as_deref(),
            Some("{\"a\":1}")
        );
    }

    #[test]
    fn error_events_are_recognised() {
        assert!(is_error_event(
            r#"{"error":{"message":"overloaded","type":"server_error"}}"#
        ));
        assert!(!is_error_event(r#"{"id":"c","choices":[]}"#));
        assert!(!is_error_event(r#"{"error":null,"choices":[]}"#));
        assert!(!is_error_event("[DONE]"));
    }
}
