//! One line of the failure log (SPEC §3) and how it is made from request-path events.
//!
//! The record has no field that could hold a request header, a query string or prompt
//! text: only names chosen by backstop (`upstream`, `error_type`, `reason`), the path
//! without its query, numbers, the model name, the caller's sanitised tag, and the
//! upstream's error code and scrubbed, cut message.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::scrub::clean_message;
use super::time::Micros;
use crate::events::{AttemptReport, BodyEnd, Refusal, RequestEvent, Verdict};
use crate::request_meta::RequestMeta;
use crate::retry::GiveUp;

/// One failed attempt, or one request that failed without an attempt or after commit.
/// Unknown fields are ignored when reading (files of older or newer versions).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FailureRecord {
    pub timestamp: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The path without its query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// This record ends the request (it failed in the end).
    #[serde(rename = "final", default)]
    pub is_final: bool,
    #[serde(default)]
    pub error_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Scrubbed of key-like text and cut to 1 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The upstream that took the request next (`decision: "fallback"` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "RecordContext::is_empty")]
    pub context: RecordContext,
}

/// Small counts about the request, never its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RecordContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages_count: Option<u32>,
    /// From the SDK's `x-stainless-retry-count`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_retry_count: Option<u32>,
}

impl RecordContext {
    pub fn is_empty(&self) -> bool {
        self.messages_count.is_none() && self.client_retry_count.is_none()
    }
}

/// RFC 3339 UTC with microseconds on the wire; microseconds since the epoch in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp(pub Micros);

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Micros::parse_rfc3339(&text)
            .map(Timestamp)
            .ok_or_else(|| serde::de::Error::custom("not an RFC 3339 timestamp"))
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl super::files::DailyRecord for FailureRecord {
    const FILES: super::files::FileKind = super::files::FAILURES;

    fn timestamp(&self) -> Micros {
        self.timestamp.0
    }
}

impl FailureRecord {
    /// Whether `from_attempt` gives a record.
    pub fn attempt_failed(e: &AttemptReport) -> bool {
        e.outcome.is_failure() && e.verdict != Verdict::Returned
    }

    /// Whether `from_request` gives a record.
    pub fn request_failed(e: &RequestEvent) -> bool {
        match e.end {
            BodyEnd::Interrupted(_) => e.give_up.is_none(),
            _ => e.refused.is_some(),
        }
    }

    /// The record of a failed attempt; `None` for a success.
    pub fn from_attempt(e: &AttemptReport, at: Micros) -> Option<FailureRecord> {
        if !FailureRecord::attempt_failed(e) {
            return None;
        }
        let outcome_reason = e.outcome.reason();
        let mut error_type = outcome_reason.error_type(e.status);
        let reason = match e.give_up {
            None | Some(GiveUp::NotRetryable) => outcome_reason.as_str(),
            Some(GiveUp::DeadlineExceeded) => {
                if error_type == "timeout" {
                    error_type = "deadline_exceeded";
                }
                GiveUp::DeadlineExceeded.reason()
            }
            Some(why) => why.reason(),
        };
        Some(FailureRecord {
            timestamp: Timestamp(at),
            request_id: Some(e.request_id.to_string()),
            upstream: Some(e.upstream.to_string()),
            method: Some(e.method.as_str().to_owned()),
            endpoint: Some(e.endpoint.to_string()),
            attempt: Some(e.attempt),
            is_final: e.verdict == Verdict::GiveUp,
            error_type: error_type.to_owned(),
            status: e.status,
            error_code: e.error_code.as_deref().map(clean_message),
            error_message: e.error_message.as_deref().map(clean_message),
            decision: Some(e.verdict.as_str().to_owned()),
            reason: Some(reason.to_owned()),
            fallback_to: e.fallback_to.as_deref().map(str::to_owned),
            delay_ms: e.delay.map(millis),
            server_delay_ms: e.server_delay.map(millis),
            upstream_request_id: e.upstream_request_id.as_deref().map(clean_message),
            duration_ms: Some(millis(e.duration)),
            ..FailureRecord::about(&e.meta)
        })
    }

    /// The fields every record takes from the request: model, stream, tag, counts.
    fn about(meta: &RequestMeta) -> FailureRecord {
        FailureRecord {
            model: meta.model().map(str::to_owned),
            stream: Some(meta.stream()),
            tag: meta.tag.as_deref().map(str::to_owned),
            context: RecordContext {
                messages_count: meta.hints().messages_count,
                client_retry_count: meta.client_retry_count,
            },
            ..FailureRecord::default()
        }
    }

    /// The final record of a request that failed without any attempt (refused) or
    /// whose body broke off after commit; `None` otherwise (its attempts tell the rest).
    pub fn from_request(e: &RequestEvent, at: Micros) -> Option<FailureRecord> {
        if !FailureRecord::request_failed(e) {
            return None;
        }
        let (error_type, reason, message) = match e.end {
            BodyEnd::Interrupted(why) => (
                "stream_interrupted",
                why,
                "the upstream response broke off after it had started",
            ),
            _ => {
                let refusal = e.refused.unwrap_or(Refusal {
                    code: "refused",
                    error_type: "client_error",
                });
                (
                    refusal.error_type,
                    refusal.code,
                    "refused by backstop before any attempt",
                )
            }
        };
        Some(FailureRecord {
            timestamp: Timestamp(at),
            request_id: Some(e.request_id.to_string()),
            upstream: e.upstream.as_deref().map(str::to_owned),
            method: Some(e.method.as_str().to_owned()),
            endpoint: Some(e.endpoint.to_string()),
            attempt: (e.attempts > 0).then_some(e.attempts),
            is_final: true,
            error_type: error_type.to_owned(),
            status: Some(e.status),
            error_code: Some(reason.to_owned()),
            error_message: Some(message.to_owned()),
            decision: Some(Verdict::GiveUp.as_str().to_owned()),
            reason: Some(reason.to_owned()),
            duration_ms: Some(millis(e.duration)),
            ..FailureRecord::about(&e.meta)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_fields_are_left_out_not_null() {
        let record = FailureRecord {
            error_type: "reset".into(),
            ..FailureRecord::default()
        };
        let line = serde_json::to_string(&record).expect("serialises");
        assert_eq!(
            line,
            r#"{"timestamp":"1970-01-01T00:00:00.000000Z","final":false,"error_type":"reset"}"#
        );
    }

    #[test]
    fn reads_records_with_unknown_and_missing_fields() {
        let line =
            r#"{"timestamp":"2026-05-01T10:00:00.5Z","error_type":"timeout","future":{"x":1}}"#;
        let record: FailureRecord = serde_json::from_str(line).expect("reads");
        assert_eq!(record.error_type, "timeout");
        assert_eq!(record.timestamp.0.rfc3339(), "2026-05-01T10:00:00.500000Z");
    }
}
