//! A response kept for replay, and its bytes on disk.
//!
//! A record is a fixed 88-byte head — magic, length, scope, expiry, the request's body
//! hash, a checksum of the rest — then the response: status, the original request id,
//! headers, body. The head is all a start-up scan reads (the index is rebuilt from heads
//! alone); the checksum is checked when the body is read, so a torn or damaged record
//! is a miss, never a wrong answer.

use bytes::{Buf, BufMut, Bytes};
use http::{HeaderMap, HeaderName, HeaderValue};
use sha2::{Digest, Sha256};

use super::scope::ScopeKey;
use crate::request_fingerprint::Sha256Hex;

pub const MAGIC: &[u8; 4] = b"BSR1";
pub const HEAD_LEN: usize = 88;

/// A 2xx response as its first client was sent it (less hop-by-hop headers and
/// backstop's per-request ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// The `x-backstop-request-id` of the request that paid for it.
    pub request_id: Box<str>,
    /// The request's `request_sha256`: a repeat with another body is refused (422).
    pub request_body: Sha256Hex,
    /// Unix time in ms after which it is not replayed.
    pub expires_at: u64,
    pub status: u16,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// What the index keeps of a record: everything but the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub scope: ScopeKey,
    pub expires_at: u64,
    pub request_body: Sha256Hex,
    /// The whole record's length, head included.
    pub len: u32,
    checksum: [u8; 8],
}

impl Kept {
    /// The headers to send again: `headers` as a map.
    pub fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            map.append(name.clone(), value.clone());
        }
        map
    }

    /// The record for `scope`; `None` when it would not fit a record's length field.
    pub fn encode(&self, scope: ScopeKey) -> Option<Vec<u8>> {
        let mut payload = Vec::with_capacity(64 + self.body.len());
        payload.put_u16_le(self.status);
        put_short(&mut payload, self.request_id.as_bytes())?;
        payload.put_u16_le(u16::try_from(self.headers.len()).ok()?);
        for (name, value) in &self.headers {
            put_short(&mut payload, name.as_str().as_bytes())?;
            payload.put_u32_le(u32::try_from(value.len()).ok()?);
            payload.put_slice(value.as_bytes());
        }
        payload.put_slice(&self.body);
        let len = u32::try_from(HEAD_LEN + payload.len()).ok()?;
        let mut record = Vec::with_capacity(len as usize);
        record.put_slice(MAGIC);
        record.put_u32_le(len);
        record.put_slice(&scope.0);
        record.put_u64_le(self.expires_at);
        record.put_slice(&self.request_body.0);
        record.put_slice(&checksum(&payload));
        record.put_slice(&payload);
        Some(record)
    }

    /// A whole record (head and payload) read back; `None` when torn or damaged.
    pub fn decode(record: &[u8]) -> Option<(Head, Kept)> {
        let head = Head::decode(record.get(..HEAD_LEN)?)?;
        let payload = record.get(HEAD_LEN..head.len as usize)?;
        if checksum(payload) != head.checksum {
            return None;
        }
        let mut p = payload;
        let status = take_u16(&mut p)?;
        let request_id = std::str::from_utf8(take_short(&mut p)?).ok()?.into();
        let count = take_u16(&mut p)?;
        let mut headers = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let name = HeaderName::from_bytes(take_short(&mut p)?).ok()?;
            let len = take_u32(&mut p)? as usize;
            let value = HeaderValue::from_bytes(take(&mut p, len)?).ok()?;
            headers.push((name, value));
        }
        let kept = Kept {
            request_id,
            request_body: head.request_body,
            expires_at: head.expires_at,
            status,
            headers,
            body: Bytes::copy_from_slice(p),
        };
        Some((head, kept))
    }
}

impl Head {
    /// The fixed head of a record; `None` when it is not one.
    pub fn decode(mut b: &[u8]) -> Option<Head> {
        if b.len() < HEAD_LEN || &b[..4] != MAGIC {
            return None;
        }
        b.advance(4);
        let len = b.get_u32_le();
        if (len as usize) < HEAD_LEN {
            return None;
        }
        let mut scope = [0; 32];
        b.copy_to_slice(&mut scope);
        let expires_at = b.get_u64_le();
        let mut body = [0; 32];
        b.copy_to_slice(&mut body);
        let mut checksum = [0; 8];
        b.copy_to_slice(&mut checksum);
        Some(Head {
            scope: ScopeKey(scope),
            expires_at,
            request_body: Sha256Hex(body),
            len,
            checksum,
        })
    }
}

/// The first 8 bytes of the payload's SHA-256: enough to tell a torn record.
fn checksum(payload: &[u8]) -> [u8; 8] {
    let digest: [u8; 32] = Sha256::digest(payload).into();
    let mut out = [0; 8];
    out.copy_from_slice(&digest[..8]);
    out
}

fn put_short(out: &mut Vec<u8>, bytes: &[u8]) -> Option<()> {
    out.put_u16_le(u16::try_from(bytes.len()).ok()?);
    out.put_slice(bytes);
    Some(())
}

fn take<'a>(p: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (first, rest) = (p.get(..n)?, p.get(n..)?);
    *p = rest;
    Some(first)
}

fn take_u16(p: &mut &[u8]) -> Option<u16> {
    take(p, 2).map(|b| u16::from_le_bytes([b[0], b[1]]))
}

fn take_u32(p: &mut &[u8]) -> Option<u32> {
    take(p, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn take_short<'a>(p: &mut &'a [u8]) -> Option<&'a [u8]> {
    let n = take_u16(p)? as usize;
    take(p, n)
}

#[cfg(test)]
pub(crate) fn sample(id: &str, body: &'static [u8], expires_at: u64) -> Kept {
    Kept {
        request_id: id.into(),
        request_body: crate::request_fingerprint::request_sha256(
            &http::Method::POST,
            "/v1/x",
            body,
        ),
        expires_at,
        status: 200,
        headers: vec![
            (
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                HeaderName::from_static("x-request-id"),
                HeaderValue::from_static("up-1"),
            ),
        ],
        body: Bytes::from_static(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_as_it_was_written() {
        let kept = sample("req-1", b"{\"ok\":true}", 1234);
        let scope = ScopeKey([7; 32]);
        let record = kept.encode(scope).expect("fits");
        let (head, back) = Kept::decode(&record).expect("whole");
        assert_eq!(back, kept);
        assert_eq!(
            (head.scope, head.expires_at, head.len as usize),
            (scope, 1234, record.len())
        );
    }

    #[test]
    fn a_torn_or_damaged_record_is_refused() {
        let record = sample("req-1", b"{\"ok\":true}", 1)
            .encode(ScopeKey([1; 32]))
            .expect("fits");
        assert!(Kept::decode(&record[..record.len() - 1]).is_none(), "torn");
        assert!(Kept::decode(&record[..40]).is_none(), "head only");
        let mut damaged = record.clone();
        let last = damaged.len() - 1;
        damaged[last] ^= 1;
        assert!(Kept::decode(&damaged).is_none(), "checksum");
        let mut not_ours = record;
        not_ours[0] = b'X';
        assert!(Head::decode(&not_ours).is_none(), "magic");
    }
}
