//! Header rules of SPEC §1: hop-by-hop headers go in neither direction, `Host` comes from
//! the upstream, and an upstream with `api_key_env` replaces the client's credentials.

use http::HeaderMap;
use http::header::{AUTHORIZATION, CONNECTION, HOST, HeaderName, HeaderValue};

use crate::config::{ApiKey, UpstreamKind};

/// RFC 9110 §7.6.1, plus the legacy names proxies have always dropped. Constants, so
/// removing them hashes no strings at run time (this runs twice per request).
static HOP_BY_HOP: [HeaderName; 9] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

pub const API_KEY: HeaderName = HeaderName::from_static("api-key");
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-backstop-request-id");
pub const ATTEMPTS: HeaderName = HeaderName::from_static("x-backstop-attempts");
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const APIM_REQUEST_ID: HeaderName = HeaderName::from_static("apim-request-id");
pub const STAINLESS_READ_TIMEOUT: HeaderName = HeaderName::from_static("x-stainless-read-timeout");
pub const STAINLESS_RETRY_COUNT: HeaderName = HeaderName::from_static("x-stainless-retry-count");
pub const BACKSTOP_TAG: HeaderName = HeaderName::from_static("x-backstop-tag");

/// Removes hop-by-hop headers, including any named by `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One look at each name, and removals only for what is there: most messages carry
    // none of these, or just `Connection: keep-alive`.
    let mut doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_hop_by_hop(name))
        .cloned()
        .collect();
    let listed = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim);
    for token in listed {
        let known = HOP_BY_HOP
            .iter()
            .find(|h| h.as_str().eq_ignore_ascii_case(token))
            .cloned();
        if let Some(name) = known.or_else(|| HeaderName::from_bytes(token.as_bytes()).ok())
            && !doomed.contains(&name)
            && headers.contains_key(&name)
        {
            doomed.push(name);
        }
    }
    for name in doomed {
        headers.remove(name);
    }
}

/// One of `HOP_BY_HOP`, by its text: a length check rules out nearly every name.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

pub fn prepare_outbound(headers: &mut HeaderMap, kind: UpstreamKind, key: Option<&ApiKey>) {
    strip_hop_by_hop(headers);
    // The client built for its own view of the host; hyper sets Host from the upstream URI.
    headers.remove(HOST);
    if let Some(key) = key {
        headers.remove(AUTHORIZATION);
        headers.remove(&API_KEY);
        match kind {
            UpstreamKind::OpenAi => {
                let mut bearer = Vec::with_capacity(7 + key.header_value.len());
                bearer.extend_from_slice(b"Bearer ");
                bearer.extend_from_slice(key.header_value.as_bytes());
                if let Ok(mut value) = HeaderValue::from_bytes(&bearer) {
                    value.set_sensitive(true);
                    headers.insert(AUTHORIZATION, value);
                }
            }
            UpstreamKind::Azure => {
                headers.insert(API_KEY, key.header_value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ApiKey {
        ApiKey {
            env: "K".into(),
            header_value: HeaderValue::from_static("sk-injected"),
        }
    }

    fn client_headers() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
        h.insert(
            CONNECTION,
            HeaderValue::from_static("keep-alive, x-private-hop"),
        );
        h.insert("x-private-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Bearer sk-client"));
        h.insert("openai-organization", HeaderValue::from_static("org-1"));
        h
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_dropped() {
        let mut h = client_headers();
        prepare_outbound(&mut h, UpstreamKind::OpenAi, None);
        for gone in [
            "connection",
            "x-private-hop",
            "keep-alive",
            "te",
            "proxy-authorization",
            "host",
        ] {
            assert!(!h.contains_key(gone), "{gone} should be dropped");
        }
        assert_eq!(h["authorization"], "Bearer sk-client");
        assert_eq!(h["openai-organization"], "org-1");
    }

    #[test]
    fn connection_tokens_match_any_case_and_leave_other_headers_alone() {
        let mut h = HeaderMap::new();
        h.insert(
            CONNECTION,
            HeaderValue::from_static("Keep-Alive, X-Private-Hop, close"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-private-hop", HeaderValue::from_static("1"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("x-request-id", HeaderValue::from_static("req_1"));
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "x-request-id"]);
    }

    #[test]
    fn the_hop_by_hop_test_knows_exactly_the_hop_by_hop_names() {
        for name in &HOP_BY_HOP {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in [
            "content-type",
            "authorization",
            "x-request-id",
            "host",
            "tee",
        ] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }

    #[test]
    fn openai_key_is_injected_as_bearer() {
        let mut h = client_headers();
        h.insert(API_KEY, HeaderValue::from_static("client-azure"));
        prepare_outbound(&mut h, UpstreamKind::OpenAi, Some(&key()));
        assert_eq!(h["authorization"], "Bearer sk-injected");
        assert!(h["authorization"].is_sensitive());
        assert!(!h.contains_key(API_KEY));
    }

    #[test]
    fn azure_key_is_injected_as_api_key() {
        let mut h = client_headers();
        prepare_outbound(&mut h, UpstreamKind::Azure, Some(&key()));
        assert_eq!(h["api-key"], "sk-injected");
        assert!(!h.contains_key(AUTHORIZATION));
    }
}
