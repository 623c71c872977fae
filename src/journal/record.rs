//! One line of the journal (SPEC §6) and how it is made from a `RequestEvent`.
//!
//! Nothing here can hold a request body, a header value other than the
//! `Idempotency-Key`, or a query: the endpoint is the path only. The response body,
//! when kept, is joined and encoded in the writer task (`Serialize`), not on the
//! request path.

use std::borrow::Cow;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Serialize, Serializer};

use super::REQUESTS;
use crate::events::{BodyEnd, RequestEvent, RequestId};
use crate::failure_log::{DailyRecord, FileKind, Micros, Timestamp};
use crate::request_fingerprint::Sha256Hex;
use crate::response_capture::CapturedResponse;

/// How a request ended, as `outcome` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The client got a 2xx in full.
    Ok,
    /// The client got an error after at least one attempt.
    Failed,
    /// backstop answered itself, no attempt made (413, circuit open, rate limit, …).
    Refused,
    /// The body broke off after the response had started.
    Interrupted,
    /// The client left before the end.
    ClientGone,
    /// Answered from an earlier request's kept response (`replay_of` names it).
    Replayed,
}

impl Outcome {
    pub fn of(e: &RequestEvent) -> Outcome {
        match e.end {
            BodyEnd::ClientGone => Outcome::ClientGone,
            BodyEnd::Interrupted(_) => Outcome::Interrupted,
            BodyEnd::Complete if e.replay.is_some() => Outcome::Replayed,
            BodyEnd::Complete if (200..300).contains(&e.status) => Outcome::Ok,
            BodyEnd::Complete if e.attempts == 0 => Outcome::Refused,
            BodyEnd::Complete => Outcome::Failed,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Refused => "refused",
            Outcome::Interrupted => "interrupted",
            Outcome::ClientGone => "client_gone",
            Outcome::Replayed => "replayed",
        }
    }
}

/// One request. Unknown fields are ignored when reading (other versions' files).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct JournalRecord {
    /// When the request ended.
    pub timestamp: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Cow<'static, str>>,
    /// The path without its query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Arc<str>>,
    /// What the client got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Upstream attempts, all hops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// `ok`, `failed`, `refused`, `interrupted`, `client_gone`, `replayed`;
    /// a string so that files of newer versions still read.
    #[serde(default)]
    pub outcome: Cow<'static, str>,
    /// As the client sent it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Time to the first body byte to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttfc_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<UsageRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_sha256: Option<Sha256Hex>,
    /// The original `request_id` of a replay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<Arc<str>>,
    /// With `responses = true`: what the client got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<JournalResponse>,
    /// The body was over `max_response_bytes` and is left out.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub response_truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UsageRecord {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// The response a client got: status, content type, and its body (absent when it
/// was over the bound).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct JournalResponse {
    pub status: u16,
    #[serde(default)]
    pub content_type: Option<String>,
    /// UTF-8 body as text.
    #[serde(default)]
    pub body: Option<String>,
    /// Any other body, base64.
    #[serde(default)]
    pub body_base64: Option<String>,
    /// The captured frames, until the writer encodes them (never read back).
    #[serde(skip)]
    pub chunks: Option<Vec<Bytes>>,
}

impl JournalResponse {
    fn captured(c: &CapturedResponse) -> JournalResponse {
        JournalResponse {
            status: c.status,
            content_type: c
                .content_type
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: None,
            body_base64: None,
            chunks: (!c.truncated).then(|| c.chunks.clone()),
        }
    }

    /// The exact bytes the client got; `None` when not kept.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        if let Some(chunks) = &self.chunks {
            return Some(chunks.concat());
        }
        if let Some(text) = &self.body {
            return Some(text.clone().into_bytes());
        }
        BASE64.decode(self.body_base64.as_deref()?).ok()
    }
}

impl JournalResponse {
    /// The `body` and `body_base64` to write: captured frames as text when they are
    /// UTF-8, else base64.
    pub(super) fn wire_bodies(&self) -> (Option<Cow<'_, str>>, Option<Cow<'_, str>>) {
        let mut body = self.body.as_deref().map(Cow::Borrowed);
        let mut base64 = self.body_base64.as_deref().map(Cow::Borrowed);
        if let Some(chunks) = &self.chunks {
            // One frame (any JSON answer) is read in place; more are joined first.
            match chunks.as_slice() {
                [one] => match std::str::from_utf8(one) {
                    Ok(text) => body = Some(Cow::Borrowed(text)),
                    Err(_) => base64 = Some(Cow::Owned(BASE64.encode(one))),
                },
                more => match String::from_utf8(more.concat()) {
                    Ok(text) => body = Some(Cow::Owned(text)),
                    Err(e) => base64 = Some(Cow::Owned(BASE64.encode(e.as_bytes()))),
                },
            }
        }
        (body, base64)
    }
}

/// The wire shape: `body` when the bytes are UTF-8, else `body_base64`.
impl Serialize for JournalResponse {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            status: u16,
            #[serde(skip_serializing_if = "Option::is_none")]
            content_type: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            body: Option<Cow<'a, str>>,
            #[serde(skip_serializing_if = "Option::is_none")]
            body_base64: Option<Cow<'a, str>>,
        }
        let (body, body_base64) = self.wire_bodies();
        Wire {
            status: self.status,
            content_type: self.content_type.as_deref(),
            body,
            body_base64,
        }
        .serialize(s)
    }
}

impl DailyRecord for JournalRecord {
    const FILES: FileKind = REQUESTS;

    fn timestamp(&self) -> Micros {
        self.timestamp.0
    }

    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        super::line::write(self, out);
        Ok(())
    }
}

/// The method's name, without an allocation for the common ones.
fn method_name(m: &http::Method) -> Cow<'static, str> {
    static COMMON: [(http::Method, &str); 4] = [
        (http::Method::POST, "POST"),
        (http::Method::GET, "GET"),
        (http::Method::DELETE, "DELETE"),
        (http::Method::PUT, "PUT"),
    ];
    match COMMON.iter().find(|(method, _)| method == m) {
        Some((_, name)) => Cow::Borrowed(name),
        None => Cow::Owned(m.as_str().to_owned()),
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl JournalRecord {
    /// The record of a request that ended at `at`.
    pub fn from_event(e: &RequestEvent, at: Micros) -> JournalRecord {
        let meta = &e.meta;
        let fingerprint = meta.fingerprint.as_deref();
        JournalRecord {
            timestamp: Timestamp(at),
            request_id: Some(e.request_id.clone()),
            upstream: e.upstream.clone(),
            method: Some(method_name(&e.method)),
            endpoint: Some(e.endpoint.clone()),
            // 0: the client left before any response head; it got nothing.
            status: (e.status != 0).then_some(e.status),
            attempts: Some(e.attempts),
            outcome: Cow::Borrowed(Outcome::of(e).as_str()),
            model: meta.hints().model.clone(),
            stream: Some(meta.stream()),
            tag: meta.tag.clone(),
            duration_ms: Some(millis(e.duration)),
            ttfc_ms: e.time_to_first_chunk.map(millis),
            usage: e.usage.map(|u| UsageRecord {
                input_tokens: u.input_tokens,
                output_tokens: u.output_tokens,
            }),
            idempotency_key: fingerprint
                .and_then(|f| f.idempotency_key.as_deref())
                .map(str::to_owned),
            request_sha256: fingerprint.and_then(|f| f.sha256),
            replay_of: e.replay.as_ref().map(|r| r.of.clone()),
            response: e.response.as_deref().map(JournalResponse::captured),
            response_truncated: e.response.as_ref().is_some_and(|r| r.truncated),
        }
    }

    pub fn is_failure(&self) -> bool {
        self.outcome != Outcome::Ok.as_str() && self.outcome != Outcome::Replayed.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(chunks: &[&'static [u8]]) -> JournalResponse {
        JournalResponse {
            status: 200,
            content_type: Some("application/json".into()),
            body: None,
            body_base64: None,
            chunks: Some(chunks.iter().map(|c| Bytes::from_static(c)).collect()),
        }
    }

    #[test]
    fn a_text_body_is_written_as_text_and_reads_back_byte_exact() {
        let json = serde_json::to_string(&response(&[b"{\"a\":", b"\"\xc3\xa9\"}"])).expect("ok");
        assert_eq!(
            json,
            "{\"status\":200,\"content_type\":\"application/json\",\"body\":\"{\\\"a\\\":\\\"é\\\"}\"}"
        );
        let back: JournalResponse = serde_json::from_str(&json).expect("reads");
        assert_eq!(back.bytes().as_deref(), Some("{\"a\":\"é\"}".as_bytes()));
    }

    #[test]
    fn other_bytes_are_written_as_base64() {
        let json = serde_json::to_string(&response(&[b"\xff\x00"])).expect("ok");
        assert!(json.contains("\"body_base64\":\"/wA=\""), "{json}");
        assert!(!json.contains("\"body\""), "{json}");
        let back: JournalResponse = serde_json::from_str(&json).expect("reads");
        assert_eq!(back.bytes().as_deref(), Some(&b"\xff\x00"[..]));
    }

    #[test]
    fn absent_fields_are_left_out() {
        let line = serde_json::to_string(&JournalRecord {
            outcome: "ok".into(),
            ..JournalRecord::default()
        })
        .expect("ok");
        assert_eq!(
            line,
            "{\"timestamp\":\"1970-01-01T00:00:00.000000Z\",\"outcome\":\"ok\"}"
        );
    }
}
