//! A request's id (`x-backstop-request-id`, `request_id` in the failure log and the
//! journal): the UUIDv7 backstop gives each request, as 32 lowercase hex digits.
//!
//! Held inline, so making one allocates nothing and the copies the request's attempt
//! and request events carry touch no shared counter. An id read from elsewhere (a
//! journal file, a test) longer than the inline room is held shared instead.

use std::fmt;
use std::sync::Arc;

/// Room for a UUID in either of its usual spellings (32 digits, or 36 with hyphens).
const INLINE: usize = 36;

#[derive(Clone)]
pub struct RequestId(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<str>),
}

impl RequestId {
    /// A fresh UUIDv7, encoded without an allocation: the time in milliseconds and 74
    /// random bits. Without the crate's shared counter (`Uuid::now_v7`, a lock taken on
    /// every request by every thread), so ids made in the same millisecond are unique
    /// but not in order (RFC 9562 makes the counter optional).
    pub fn new_v7() -> RequestId {
        let mut buf = uuid::Uuid::encode_buffer();
        let now = uuid::Timestamp::now(uuid::NoContext);
        RequestId::from(&*uuid::Uuid::new_v7(now).simple().encode_lower(&mut buf))
    }

    /// Its bytes, without the UTF-8 check `as_str` makes (a header value needs no more).
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Shared(id) => id.as_bytes(),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline { len, bytes } => {
                // Only ever filled from a whole `&str` (below), so always UTF-8.
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Repr::Shared(id) => id,
        }
    }
}

impl From<&str> for RequestId {
    fn from(id: &str) -> RequestId {
        if id.len() > INLINE {
            return RequestId(Repr::Shared(id.into()));
        }
        let mut bytes = [0; INLINE];
        bytes[..id.len()].copy_from_slice(id.as_bytes());
        // Fits: at most INLINE (36) bytes.
        let len = id.len() as u8;
        RequestId(Repr::Inline { len, bytes })
    }
}

impl From<String> for RequestId {
    fn from(id: String) -> RequestId {
        RequestId::from(id.as_str())
    }
}

impl std::ops::Deref for RequestId {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for RequestId {
    fn eq(&self, other: &RequestId) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RequestId {}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl serde::Serialize for RequestId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for RequestId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<RequestId, D::Error> {
        let id = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(RequestId::from(&*id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_fresh_id_is_a_uuid_v7_in_32_hex_digits() {
        let id = RequestId::new_v7();
        assert_eq!(id.len(), 32);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        let uuid = uuid::Uuid::parse_str(&id).expect("a uuid");
        assert_eq!(uuid.get_version_num(), 7);
        assert_ne!(id, RequestId::new_v7());
    }

    proptest! {
        #[test]
        fn any_text_is_held_as_it_is(text in ".{0,80}") {
            let id = RequestId::from(text.as_str());
            prop_assert_eq!(id.as_str(), text.as_str());
            prop_assert_eq!(id.as_bytes(), text.as_bytes());
            prop_assert_eq!(id.to_string(), text.clone());
            prop_assert_eq!(format!("{id:?}"), format!("{text:?}"));
            let json = serde_json::to_string(&id).expect("serializes");
            prop_assert_eq!(&json, &serde_json::to_string(&text).expect("serializes"));
            let back: RequestId = serde_json::from_str(&json).expect("reads back");
            prop_assert_eq!(back, id);
        }
    }
}
