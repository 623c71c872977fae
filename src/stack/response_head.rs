//! What backstop adds to the head of every response it sends, errors included.

use std::cell::RefCell;

use bytes::BytesMut;
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

use crate::events::RequestId;
use crate::proxy::headers::{ATTEMPTS, REQUEST_ID};

const SHOULD_RETRY: HeaderName = HeaderName::from_static("x-should-retry");
const UPSTREAM: HeaderName = HeaderName::from_static("x-backstop-upstream");

/// `x-backstop-request-id`, `x-backstop-attempts`, `x-should-retry` when backstop has
/// an opinion, and `x-backstop-upstream` naming who answered.
pub(super) fn add(
    headers: &mut HeaderMap,
    request_id: &RequestId,
    attempts: u32,
    should_retry: Option<&'static str>,
    upstream: Option<HeaderValue>,
) {
    if let Some(value) = request_id_value(request_id) {
        headers.insert(REQUEST_ID, value);
    }
    headers.insert(ATTEMPTS, attempts_value(attempts));
    if let Some(value) = should_retry {
        headers.insert(SHOULD_RETRY, HeaderValue::from_static(value));
    }
    if let Some(name) = upstream {
        headers.insert(UPSTREAM, name);
    }
}

/// Room for this many ids in one `request_id_value` slab.
const IDS_PER_SLAB: usize = 16;

/// `x-backstop-request-id`'s value, cut from a small buffer of this thread's: one
/// allocation for every `IDS_PER_SLAB` responses rather than one for each. hyper drops
/// a response's header values once its head is written, so a slab is freed soon after
/// the last id cut from it; at most one slab per thread is held otherwise.
fn request_id_value(id: &RequestId) -> Option<HeaderValue> {
    thread_local! {
        static SLAB: RefCell<BytesMut> = RefCell::new(BytesMut::new());
    }
    let bytes = id.as_bytes();
    let cut = SLAB.try_with(|slab| {
        let mut slab = slab.try_borrow_mut().ok()?;
        if slab.capacity() < bytes.len() {
            *slab = BytesMut::with_capacity((32 * IDS_PER_SLAB).max(bytes.len()));
        }
        slab.extend_from_slice(bytes);
        Some(slab.split().freeze())
    });
    match cut {
        Ok(Some(shared)) => HeaderValue::from_maybe_shared(shared).ok(),
        // The thread is being torn down (or, never, its slab already in use): a copy.
        _ => HeaderValue::from_bytes(bytes).ok(),
    }
}

/// Small counts without formatting or allocating.
fn attempts_value(n: u32) -> HeaderValue {
    static SMALL: [HeaderValue; 6] = [
        HeaderValue::from_static("0"),
        HeaderValue::from_static("1"),
        HeaderValue::from_static("2"),
        HeaderValue::from_static("3"),
        HeaderValue::from_static("4"),
        HeaderValue::from_static("5"),
    ];
    usize::try_from(n)
        .ok()
        .and_then(|i| SMALL.get(i))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_header_counts_any_number() {
        for n in [0, 1, 5, 6, 17, u32::MAX] {
            assert_eq!(attempts_value(n), HeaderValue::from(n), "{n}");
        }
    }

    #[test]
    fn request_ids_cut_from_one_slab_stay_apart() {
        let ids: Vec<RequestId> = (0..3 * IDS_PER_SLAB).map(|_| RequestId::new_v7()).collect();
        let values: Vec<HeaderValue> = ids.iter().filter_map(request_id_value).collect();
        assert_eq!(values.len(), ids.len());
        for (id, value) in ids.iter().zip(&values) {
            assert_eq!(value.as_bytes(), id.as_bytes());
        }
        // An id longer than the usual 32 digits (one read back from a journal) fits too.
        let long = RequestId::from("x".repeat(200).as_str());
        assert_eq!(request_id_value(&long).unwrap().as_bytes(), long.as_bytes());
    }

    #[test]
    fn every_response_names_its_request_and_attempts() {
        let mut h = HeaderMap::new();
        let upstream = HeaderValue::from_static("azure-eu");
        add(&mut h, &"0190abc".into(), 3, Some("false"), Some(upstream));
        assert_eq!(h["x-backstop-request-id"], "0190abc");
        assert_eq!(h["x-backstop-attempts"], "3");
        assert_eq!(h["x-should-retry"], "false");
        assert_eq!(h["x-backstop-upstream"], "azure-eu");
        let mut h = HeaderMap::new();
        add(&mut h, &"0190abc".into(), 0, None, None);
        assert!(!h.contains_key("x-should-retry") && !h.contains_key("x-backstop-upstream"));
    }
}
