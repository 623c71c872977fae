//! What identifies a request's content for the journal (and, later, replay): the
//! SHA-256 of its method, path and body, and the client's `Idempotency-Key`. Computed
//! only when the journal is on (`Call::read`); never the body itself.

use std::fmt;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");

/// The longest `Idempotency-Key` SPEC §6 allows.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFingerprint {
    /// `None` when the body was streamed through unbuffered (over `retry_buffer_bytes`).
    pub sha256: Option<Sha256Hex>,
    /// The client's `Idempotency-Key`, when present, visible ASCII and ≤ 255 characters.
    pub idempotency_key: Option<Box<str>>,
}

impl RequestFingerprint {
    /// `idempotency_key` is the header's first value (`ClientHeaders` finds it in the
    /// walk over the request head it makes anyway); `body` is the buffered request
    /// body, `None` if it was streamed.
    pub fn read(
        method: &Method,
        path: &str,
        idempotency_key: Option<&HeaderValue>,
        body: Option<&Bytes>,
    ) -> RequestFingerprint {
        RequestFingerprint {
            sha256: body.map(|body| request_sha256(method, path, body)),
            idempotency_key: idempotency_key
                .and_then(|v| v.to_str().ok())
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
                .map(Box::from),
        }
    }
}

/// SHA-256 over `METHOD SP path LF body`, the path without its query (query values are
/// never recorded, not even hashed).
pub fn request_sha256(method: &Method, path: &str, body: &[u8]) -> Sha256Hex {
    let mut hash = Sha256::new();
    hash.update(method.as_str().as_bytes());
    hash.update(b" ");
    hash.update(path.as_bytes());
    hash.update(b"\n");
    hash.update(body);
    Sha256Hex(hash.finalize().into())
}

/// A SHA-256, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sha256Hex(pub [u8; 32]);

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex().as_str())
    }
}

impl fmt::Debug for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A `Sha256Hex` as text, on the stack: one table lookup per digit, not a
/// formatter call per byte (a journal record writes one per request).
pub struct HexDigits([u8; 64]);

impl HexDigits {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written into it.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl Sha256Hex {
    pub fn hex(&self) -> HexDigits {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; 64];
        for (pair, byte) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0x0f)];
        }
        HexDigits(out)
    }

    pub fn parse(hex: &str) -> Option<Sha256Hex> {
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Sha256Hex(out))
    }
}

impl Serialize for Sha256Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.hex().as_str())
    }
}

impl<'de> Deserialize<'de> for Sha256Hex {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Sha256Hex, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Sha256Hex::parse(&text).ok_or_else(|| serde::de::Error::custom("not a SHA-256 in hex"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    #[test]
    fn hash_covers_method_path_and_body_and_round_trips_as_hex() {
        let a = request_sha256(&Method::POST, "/v1/chat/completions", b"{}");
        assert_eq!(
            a,
            request_sha256(&Method::POST, "/v1/chat/completions", b"{}")
        );
        assert_ne!(
            a,
            request_sha256(&Method::PUT, "/v1/chat/completions", b"{}")
        );
        assert_ne!(a, request_sha256(&Method::POST, "/v1/completions", b"{}"));
        assert_ne!(
            a,
            request_sha256(&Method::POST, "/v1/chat/completions", b"{ }")
        );
        // sha256("GET /\n") as `printf 'GET /\n' | sha256sum` gives it.
        assert_eq!(
            request_sha256(&Method::GET, "/", b"").to_string(),
            "e120c1625982c2fd785ce9ccb81d519b2bc8ba59c68469557db040d4cd0293d7"
        );
        assert_eq!(Sha256Hex::parse(&a.to_string()), Some(a));
        assert_eq!(Sha256Hex::parse("xyz"), None);
    }

    #[test]
    fn idempotency_key_is_kept_only_when_valid() {
        let mut h = HeaderMap::new();
        let fp = |h: &HeaderMap| {
            RequestFingerprint::read(&Method::POST, "/", h.get(IDEMPOTENCY_KEY), None)
        };
        assert_eq!(fp(&h).idempotency_key, None);
        h.insert(
            IDEMPOTENCY_KEY,
            HeaderValue::from_static("batch-7-item-190"),
        );
        assert_eq!(fp(&h).idempotency_key.as_deref(), Some("batch-7-item-190"));
        h.insert(
            IDEMPOTENCY_KEY,
            HeaderValue::from_str(&"k".repeat(256)).expect("ascii"),
        );
        assert_eq!(fp(&h).idempotency_key, None);
        assert_eq!(fp(&h).sha256, None);
    }
}
