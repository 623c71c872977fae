//! A journal record as its JSON line, written field by field.
//!
//! The journal writes one record per request, so its encoding is on every request's
//! bill. Through serde_json each string is escaped byte by byte (a table lookup and a
//! branch per byte: the largest share of the journal's cost under callgrind). Nearly
//! every string in a record is plain (ids, hex digests, timestamps, paths, model
//! names): here one branch-free pass tells whether a string needs any escape, and a
//! plain one is copied whole; any other (a kept response body) is escaped run by run
//! (`json_string`). The
//! derived `Serialize` stays the definition of the format: a property test holds this
//! writer to it byte for byte, and reading back is serde's.

use super::json_string;
use super::record::JournalRecord;

/// `"name":` with the comma before it, as one literal (`timestamp` is always first).
macro_rules! key {
    (first $name:literal) => {
        concat!("\"", $name, "\":")
    };
    ($name:literal) => {
        concat!(",\"", $name, "\":")
    };
}

/// Appends `record` as JSON (no newline), exactly as `serde_json::to_writer` would.
/// Nothing in a record can fail to be written, unlike through a serializer.
pub fn write(record: &JournalRecord, out: &mut Vec<u8>) {
    let mut o = Object::open(out);
    match record.timestamp.0.rfc3339_ascii() {
        Some(stamp) => o.plain(key!(first "timestamp"), &stamp),
        None => o.string(key!(first "timestamp"), &record.timestamp.0.rfc3339()),
    }
    o.opt_string(key!("request_id"), record.request_id.as_deref());
    o.opt_string(key!("upstream"), record.upstream.as_deref());
    o.opt_string(key!("method"), record.method.as_deref());
    o.opt_string(key!("endpoint"), record.endpoint.as_deref());
    o.opt_number(key!("status"), record.status.map(u64::from));
    o.opt_number(key!("attempts"), record.attempts.map(u64::from));
    o.string(key!("outcome"), &record.outcome);
    o.opt_string(key!("model"), record.model.as_deref());
    if let Some(stream) = record.stream {
        o.key(key!("stream"));
        o.out
            .extend_from_slice(if stream { b"true" } else { b"false" });
    }
    o.opt_string(key!("tag"), record.tag.as_deref());
    o.opt_number(key!("duration_ms"), record.duration_ms);
    o.opt_number(key!("ttfc_ms"), record.ttfc_ms);
    if let Some(usage) = record.usage {
        o.key(key!("usage"));
        let mut u = Object::open(o.out);
        u.opt_number(key!(first "input_tokens"), Some(usage.input_tokens));
        u.opt_number(key!("output_tokens"), Some(usage.output_tokens));
        u.close();
    }
    o.opt_string(key!("idempotency_key"), record.idempotency_key.as_deref());
    if let Some(sha) = record.request_sha256 {
        o.plain(key!("request_sha256"), sha.hex().as_bytes());
    }
    o.opt_string(key!("replay_of"), record.replay_of.as_deref());
    if let Some(response) = &record.response {
        o.key(key!("response"));
        let (body, body_base64) = response.wire_bodies();
        let mut r = Object::open(o.out);
        r.opt_number(key!(first "status"), Some(u64::from(response.status)));
        r.opt_string(key!("content_type"), response.content_type.as_deref());
        if let Some(body) = body {
            // Almost never plain (a JSON answer is full of quotes): no check first.
            r.key(key!("body"));
            json_string::write(r.out, &body);
        }
        r.opt_string(key!("body_base64"), body_base64.as_deref());
        r.close();
    }
    if record.response_truncated {
        o.key(key!("response_truncated"));
        o.out.extend_from_slice(b"true");
    }
    o.close();
}

/// A JSON object being written: `{` on open, `}` on close; each key brings its comma.
struct Object<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Object<'a> {
    fn open(out: &'a mut Vec<u8>) -> Object<'a> {
        out.push(b'{');
        Object { out }
    }

    fn close(self) {
        self.out.push(b'}');
    }

    /// A key from `key!`: plain by construction.
    fn key(&mut self, key: &str) {
        self.out.extend_from_slice(key.as_bytes());
    }

    /// A string member whose bytes are known to need no escape.
    fn plain(&mut self, key: &str, value: &[u8]) {
        debug_assert!(is_plain(value));
        self.key(key);
        self.out.push(b'"');
        self.out.extend_from_slice(value);
        self.out.push(b'"');
    }

    fn string(&mut self, key: &str, value: &str) {
        if is_plain(value.as_bytes()) {
            self.plain(key, value.as_bytes());
            return;
        }
        self.key(key);
        json_string::write(self.out, value);
    }

    fn opt_string(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.string(key, value);
        }
    }

    fn opt_number(&mut self, key: &str, value: Option<u64>) {
        if let Some(n) = value {
            self.key(key);
            self.out
                .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        }
    }
}

/// No byte JSON must escape (`"`, `\`, controls below 0x20; serde_json escapes nothing
/// else). One pass without early exit, which the compiler turns into wide compares.
fn is_plain(bytes: &[u8]) -> bool {
    bytes.iter().fold(true, |plain, &b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::events::RequestId;
    use crate::failure_log::{Micros, Timestamp};
    use crate::journal::record::{JournalResponse, UsageRecord};
    use crate::request_fingerprint::Sha256Hex;

    fn text() -> impl Strategy<Value = String> {
        // Plain words, and strings with quotes, backslashes, controls and non-ASCII.
        prop_oneof![
            "[a-z0-9/_.-]{0,40}",
            any::<String>(),
            "[\"\\\\\u{0}-\u{1f}é✓ a]{0,12}",
        ]
    }

    fn shared() -> impl Strategy<Value = Option<Arc<str>>> {
        proptest::option::of(text().prop_map(Arc::from))
    }

    /// A kept body: text (JSON-like, full of quotes) or any bytes, in one frame or more.
    fn chunks() -> impl Strategy<Value = Vec<bytes::Bytes>> {
        let chunk = prop_oneof![
            text().prop_map(String::into_bytes),
            "[{}\\[\\]\":, a-z0-9\\\\\n]{0,80}".prop_map(String::into_bytes),
            any::<Vec<u8>>(),
        ];
        prop::collection::vec(chunk.prop_map(bytes::Bytes::from), 0..4)
    }

    fn record() -> impl Strategy<Value = JournalRecord> {
        (
            (
                // Years 0–9999 take the fast path; beyond, the formatter's.
                prop_oneof![
                    0i64..253_402_300_800_000_000,
                    any::<i64>().prop_map(|m| m / 4)
                ],
                shared(),
                shared(),
                proptest::option::of(text()),
                shared(),
                any::<Option<u16>>(),
                any::<Option<u32>>(),
                text(),
            ),
            (
                shared(),
                any::<Option<bool>>(),
                shared(),
                any::<Option<u64>>(),
                any::<Option<u64>>(),
                any::<Option<(u64, u64)>>(),
                proptest::option::of(text()),
                any::<Option<[u8; 32]>>(),
            ),
            (
                shared(),
                proptest::option::of((any::<u16>(), proptest::option::of(text()), chunks())),
                any::<bool>(),
            ),
        )
            .prop_map(|(a, b, c)| JournalRecord {
                timestamp: Timestamp(Micros(a.0)),
                request_id: a.1.as_deref().map(RequestId::from),
                upstream: a.2,
                method: a.3.map(Into::into),
                endpoint: a.4,
                status: a.5,
                attempts: a.6,
                outcome: a.7.into(),
                model: b.0,
                stream: b.1,
                tag: b.2,
                duration_ms: b.3,
                ttfc_ms: b.4,
                usage: b.5.map(|(input_tokens, output_tokens)| UsageRecord {
                    input_tokens,
                    output_tokens,
                }),
                idempotency_key: b.6,
                request_sha256: b.7.map(Sha256Hex),
                replay_of: c.0,
                response: c.1.map(|(status, content_type, body)| JournalResponse {
                    status,
                    content_type,
                    body: None,
                    body_base64: None,
                    chunks: Some(body),
                }),
                response_truncated: c.2,
            })
    }

    proptest! {
        #[test]
        fn every_record_is_written_as_serde_json_writes_it(record in record()) {
            let mut line = Vec::new();
            write(&record, &mut line);
            let serde = serde_json::to_vec(&record).expect("serializes");
            prop_assert_eq!(String::from_utf8_lossy(&line), String::from_utf8_lossy(&serde));
        }
    }

    #[test]
    fn plain_means_nothing_to_escape() {
        assert!(is_plain(b"chatcmpl-123 /v1/chat/completions \x7f \xc3\xa9"));
        for escaped in [&b"a\"b"[..], b"a\\b", b"a\nb", b"\x00", b"\x1f"] {
            assert!(!is_plain(escaped), "{escaped:?}");
        }
    }
}
