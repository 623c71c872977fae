//! Reading the start of an upstream body before committing to it: the first ≤ 64 KiB of
//! an error body (to tell a quota 429 from a rate-limit 429), or an SSE stream up to its
//! first event (so a stream that dies or opens with an error can still be retried).
//! Whatever was read is handed on with the rest of the body; nothing is lost.

use std::time::Duration;

use super::UpstreamBody;
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
/// frame is also bounded by `idle`.
pub async fn peek(
    mut body: UpstreamBody,
    stop: impl Fn(&[u8]) -> bool,
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

/// The stop rule for SSE: a whole event with a `data:` line has arrived (comments and
/// bare `retry:`/`event:` lines keep the headers held).
pub fn has_first_event(buf: &[u8]) -> bool {
    first_event(buf).is_some()
}

/// The data of the first complete SSE event that has any.
pub fn first_event(buf: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(buf).ok().or_else(|| {
        // A multi-byte character may be cut at the end; the complete events come before it.
        let valid = std::str::from_utf8(buf).err()?.valid_up_to();
        std::str::from_utf8(&buf[..valid]).ok()
    })?;
    let normalized = text.replace("\r\n", "\n");
    let mut events = normalized.split("\n\n");
    let complete = normalized.matches("\n\n").count();
    for event in events.by_ref().take(complete) {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| {
                l.strip_prefix("data:")
                    .map(|d| d.strip_prefix(' ').unwrap_or(d))
            })
            .collect();
        if !data.is_empty() {
            return Some(data.join("\n"));
        }
    }
    None
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
        assert_eq!(first_event(b"data: {\"a\":1}"), None, "not terminated yet");
        assert_eq!(
            first_event(b": keep-alive\n\n"),
            None,
            "comments are not events"
        );
        assert_eq!(
            first_event(b": ping\n\ndata: {\"a\":1}\n\n").as_deref(),
            Some("{\"a\":1}")
        );
        assert_eq!(
            first_event(b"event: x\r\ndata: 1\r\n\r\n").as_deref(),
            Some("1")
        );
        assert_eq!(first_event(b"data:2\n\n").as_deref(), Some("2"));
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
