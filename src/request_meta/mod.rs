//! What backstop notes about a request for its records and metrics: the caller's
//! `x-backstop-tag` and the SDK's `x-stainless-retry-count` (read at once, from
//! headers), and `model`, `stream`, message count and token hints from the JSON body —
//! read only when something asks (a failure record, a token limit, a model label, a
//! fallback's model map), since most requests never need them and parsing the body is
//! the largest cost backstop adds to a request. A body that does not parse is fine, the
//! fields are just absent. Never prompt text. And, once its response is on its way,
//! how that response's body ended early if it did (`fate`).

use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use bytes::Bytes;
use serde::Deserialize;

use crate::proxy::headers::ClientHeaders;
use crate::proxy::response_body::StreamFate;
use crate::request_fingerprint::RequestFingerprint;
use serde::de::IgnoredAny;

mod scan;

/// Longest tag kept; longer ones are cut. Tags name a caller's purpose, not data.
pub const MAX_TAG_LEN: usize = 64;

/// A body larger than this is read for hints at once rather than kept until asked:
/// a small request body is cheap to keep while its response streams.
const KEEP_FOR_HINTS: usize = 16 * 1024;

#[derive(Debug, Default)]
pub struct RequestMeta {
    /// Body size in bytes, a cheap upper bound of the prompt's size.
    pub body_bytes: u64,
    pub tag: Option<Arc<str>>,
    pub client_retry_count: Option<u32>,
    /// Body hash and idempotency key; only when the journal is on.
    pub fingerprint: Option<Box<RequestFingerprint>>,
    /// The buffered body, until its hints are read (then dropped: a stream must not
    /// keep its request body, or the client connection's read buffer it is a slice of).
    body: Mutex<Option<Bytes>>,
    hints: OnceLock<BodyHints>,
    /// Set by the final response's body when it ends early (stalled or broken), read
    /// when the request's `RequestEvent` is made. Kept here, in the request's one shared
    /// record, so that saying it needs no allocation of its own.
    pub fate: StreamFate,
}

/// What the JSON body says about the call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BodyHints {
    pub model: Option<Arc<str>>,
    /// The client asked for an SSE stream (`"stream": true`).
    pub stream: bool,
    /// `stream_options.include_usage`: the final chunk will carry `usage`.
    pub include_usage: bool,
    pub messages_count: Option<u32>,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_tokens: Option<u64>,
}

/// The body's fields as serde_json reads them; [`scan`] reads the usual bodies into the
/// same shape without it.
#[derive(Deserialize, Default)]
struct JsonHints<'a> {
    #[serde(borrow, default)]
    model: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    messages: Option<Count>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
}

/// How many elements an array has, each skipped unread (no list is built).
struct Count(u32);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Count, D::Error> {
        struct Counter;
        impl<'de> serde::de::Visitor<'de> for Counter {
            type Value = Count;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Count, A::Error> {
                let mut n = 0u32;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n = n.saturating_add(1);
                }
                Ok(Count(n))
            }
        }
        d.deserialize_seq(Counter)
    }
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

impl RequestMeta {
    pub fn read(headers: &ClientHeaders<'_>, body: Option<&Bytes>, body_bytes: u64) -> RequestMeta {
        let meta = RequestMeta {
            body_bytes,
            tag: headers
                .tag
                .and_then(|v| v.to_str().ok())
                .and_then(sanitize_tag),
            client_retry_count: headers
                .retry_count
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok()),
            fingerprint: None,
            body: Mutex::new(body.filter(|b| b.first() == Some(&b'{')).cloned()),
            hints: OnceLock::new(),
            fate: StreamFate::default(),
        };
        if body.is_some_and(|b| b.len() > KEEP_FOR_HINTS) {
            meta.hints();
        }
        meta
    }

    /// A request with these hints already known (tests, benchmarks).
    pub fn with_hints(hints: BodyHints) -> RequestMeta {
        RequestMeta {
            hints: OnceLock::from(hints),
            ..RequestMeta::default()
        }
    }

    /// The body's hints, read from it on first use (the body is dropped then).
    pub fn hints(&self) -> &BodyHints {
        self.hints.get_or_init(|| {
            let body = self.body.lock().take();
            body.as_deref().map(BodyHints::read).unwrap_or_default()
        })
    }

    /// For a response that will stream a while: reads the hints now, so the body need
    /// not be kept until the stream ends.
    pub fn settle(&self) {
        self.hints();
    }

    pub fn model(&self) -> Option<&str> {
        self.hints().model.as_deref()
    }

    pub fn stream(&self) -> bool {
        self.hints().stream
    }
}

impl BodyHints {
    fn read(body: &[u8]) -> BodyHints {
        scan::hints(body)
            .or_else(|| serde_json::from_slice(body).ok())
            .map(BodyHints::from)
            .unwrap_or_default()
    }
}

impl From<JsonHints<'_>> for BodyHints {
    fn from(hints: JsonHints<'_>) -> BodyHints {
        BodyHints {
            model: hints.model.map(|m| Arc::from(truncate(&m, 128))),
            stream: hints.stream.unwrap_or(false),
            include_usage: hints
                .stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
            messages_count: hints.messages.map(|m| m.0),
            max_tokens: hints.max_completion_tokens.or(hints.max_tokens),
        }
    }
}

/// Keeps `[A-Za-z0-9_.:/-]`, cut to `MAX_TAG_LEN`; an empty result is no tag.
pub fn sanitize_tag(raw: &str) -> Option<Arc<str>> {
    let clean: String = raw
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "_.:/-".contains(*c))
        .take(MAX_TAG_LEN)
        .collect();
    (!clean.is_empty()).then(|| Arc::from(clean))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::*;

    #[test]
    fn reads_model_stream_and_counts_without_keeping_text() {
        let body = Bytes::from_static(
            br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"max_tokens":50,
                "messages":[{"role":"system","content":"secret prompt"},{"role":"user","content":"hi"}]}"#,
        );
        let meta = RequestMeta::read(&ClientHeaders::default(), Some(&body), body.len() as u64);
        let hints = meta.hints();
        assert_eq!(hints.model.as_deref(), Some("gpt-4o"));
        assert!(hints.stream && hints.include_usage);
        assert_eq!(hints.messages_count, Some(2));
        assert_eq!(hints.max_tokens, Some(50));
        assert!(!format!("{hints:?}").contains("secret"));
    }

    #[test]
    fn a_body_that_does_not_parse_leaves_fields_absent() {
        for body in [
            &b"not json"[..],
            b"{\"model\": 5}",
            b"[1,2]",
            b"{\"model\":\"m\"",
        ] {
            let b = Bytes::copy_from_slice(body);
            let meta = RequestMeta::read(&ClientHeaders::default(), Some(&b), 0);
            assert_eq!(meta.model(), None, "{:?}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn tag_is_sanitised_and_bounded() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-backstop-tag",
            HeaderValue::from_static("quiz_generation"),
        );
        h.insert("x-stainless-retry-count", HeaderValue::from_static("2"));
        let meta = RequestMeta::read(&ClientHeaders::scan(&h), None, 0);
        assert_eq!(meta.tag.as_deref(), Some("quiz_generation"));
        assert_eq!(meta.client_retry_count, Some(2));
        assert_eq!(sanitize_tag("a b<script>c").as_deref(), Some("abscriptc"));
        assert_eq!(
            sanitize_tag(&"x".repeat(500)).map(|t| t.len()),
            Some(MAX_TAG_LEN)
        );
        assert_eq!(sanitize_tag("  <>  "), None);
    }
}
