//! What backstop adds to the head of every response it sends, errors included.

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
    if let Ok(value) = HeaderValue::from_bytes(request_id.as_bytes()) {
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
