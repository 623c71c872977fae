//! Header rules of SPEC §1: hop-by-hop headers go in neither direction, `Host` comes from
//! the upstream, and an upstream with `api_key_env` replaces the client's credentials.

use http::HeaderMap;
use http::header::{AUTHORIZATION, CONNECTION, HeaderName, HeaderValue};

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

/// The client's request headers backstop reads, found in one walk over the head: a
/// `get` hashes its name, and four of them cost more than looking once at each of the
/// handful of headers a client sends. The first value of each, as `get` would give.
#[derive(Debug, Default, Clone, Copy)]
pub struct ClientHeaders<'a> {
    pub content_length: Option<&'a HeaderValue>,
    /// `x-stainless-read-timeout`: the OpenAI SDK's own read timeout, in seconds.
    pub read_timeout: Option<&'a HeaderValue>,
    /// `x-backstop-tag`.
    pub tag: Option<&'a HeaderValue>,
    /// `x-stainless-retry-count`.
    pub retry_count: Option<&'a HeaderValue>,
    /// `idempotency-key` (read by the journal's fingerprint).
    pub idempotency_key: Option<&'a HeaderValue>,
    /// A hop-by-hop header is there (`strip_hop_by_hop` has work to do).
    pub hop_by_hop: bool,
}

impl<'a> ClientHeaders<'a> {
    pub fn scan(headers: &'a HeaderMap) -> ClientHeaders<'a> {
        let mut found = ClientHeaders::default();
        for (name, value) in headers {
            let name = name.as_str();
            let slot = match name {
                "content-length" => &mut found.content_length,
                "x-stainless-read-timeout" => &mut found.read_timeout,
                "x-backstop-tag" => &mut found.tag,
                "x-stainless-retry-count" => &mut found.retry_count,
                "idempotency-key" => &mut found.idempotency_key,
                _ => {
                    found.hop_by_hop |= is_hop_by_hop_text(name);
                    continue;
                }
            };
            slot.get_or_insert(value);
        }
        found
    }
}

/// The upstream's response headers backstop reads, in one walk over the head (see
/// `ClientHeaders`).
#[derive(Debug, Default, Clone, Copy)]
pub struct UpstreamHeaders<'a> {
    pub content_type: Option<&'a HeaderValue>,
    pub x_request_id: Option<&'a HeaderValue>,
    pub apim_request_id: Option<&'a HeaderValue>,
}

impl<'a> UpstreamHeaders<'a> {
    pub fn scan(headers: &'a HeaderMap) -> UpstreamHeaders<'a> {
        let mut found = UpstreamHeaders::default();
        for (name, value) in headers {
            let slot = match name.as_str() {
                "content-type" => &mut found.content_type,
                "x-request-id" => &mut found.x_request_id,
                "apim-request-id" => &mut found.apim_request_id,
                _ => continue,
            };
            slot.get_or_insert(value);
        }
        found
    }

    /// `text/event-stream`: an SSE stream.
    pub fn is_event_stream(&self) -> bool {
        is_event_stream_type(self.content_type)
    }
}

/// Whether a `content-type` value says `text/event-stream`.
pub fn is_event_stream_type(content_type: Option<&HeaderValue>) -> bool {
    // On the bytes: no UTF-8 check is needed to compare with ASCII.
    content_type.is_some_and(|v| {
        v.as_bytes()
            .trim_ascii_start()
            .starts_with(b"text/event-stream")
    })
}

/// Removes hop-by-hop headers, including any named by `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One look at each name, and removals only for what is there: most messages carry
    // none of these, or just `Connection: keep-alive`.
    let mut doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_hop_by_hop(name))
        .cloned()
        .collect();
    // `Connection` is one of them: with none found, no header is listed in one either.
    if doomed.is_empty() {
        return;
    }
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
#[inline(always)]
fn is_hop_by_hop(name: &HeaderName) -> bool {
    is_hop_by_hop_text(name.as_str())
}

/// Inlined into the walks, where the name's text is at hand already.
#[inline(always)]
fn is_hop_by_hop_text(name: &str) -> bool {
    matches!(
        name,
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

/// The client's headers made the upstream's: hop-by-hop ones gone (looked for only when
/// `hop_by_hop`, what `ClientHeaders` found), the key injected. `Host` is left for the
/// send to replace (HTTP/1.1 puts the upstream's own in its place) or remove (HTTP/2
/// names the host in `:authority`): removing it here too would cost a lookup and a
/// shift of the map on every request.
pub fn prepare_outbound(
    headers: &mut HeaderMap,
    kind: UpstreamKind,
    key: Option<&ApiKey>,
    hop_by_hop: bool,
) {
    if hop_by_hop {
        strip_hop_by_hop(headers);
    }
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
    use http::header::HOST;

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
        prepare_outbound(&mut h, UpstreamKind::OpenAi, None, true);
        for gone in [
            "connection",
            "x-private-hop",
            "keep-alive",
            "te",
            "proxy-authorization",
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
    fn a_head_without_hop_by_hop_headers_is_left_as_it_is() {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.append("x-private-hop", HeaderValue::from_static("1"));
        h.append("x-private-hop", HeaderValue::from_static("2"));
        let before = h.clone();
        strip_hop_by_hop(&mut h);
        assert_eq!(h, before);
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
        prepare_outbound(&mut h, UpstreamKind::OpenAi, Some(&key()), false);
        assert_eq!(h["authorization"], "Bearer sk-injected");
        assert!(h["authorization"].is_sensitive());
        assert!(!h.contains_key(API_KEY));
    }

    #[test]
    fn azure_key_is_injected_as_api_key() {
        let mut h = client_headers();
        prepare_outbound(&mut h, UpstreamKind::Azure, Some(&key()), false);
        assert_eq!(h["api-key"], "sk-injected");
        assert!(!h.contains_key(AUTHORIZATION));
    }

    #[test]
    fn one_walk_finds_what_each_get_would() {
        let mut h = client_headers();
        h.append("x-backstop-tag", HeaderValue::from_static("first"));
        h.append("x-backstop-tag", HeaderValue::from_static("second"));
        h.insert("content-length", HeaderValue::from_static("42"));
        h.insert("x-stainless-read-timeout", HeaderValue::from_static("2.5"));
        h.insert("x-stainless-retry-count", HeaderValue::from_static("1"));
        h.insert(
            "idempotency-key",
            HeaderValue::from_static("batch-7-item-190"),
        );
        let noted = ClientHeaders::scan(&h);
        for (name, found) in [
            ("content-length", noted.content_length),
            ("x-stainless-read-timeout", noted.read_timeout),
            ("x-backstop-tag", noted.tag),
            ("x-stainless-retry-count", noted.retry_count),
            ("idempotency-key", noted.idempotency_key),
        ] {
            assert_eq!(found, h.get(name), "{name}");
            assert!(found.is_some(), "{name}");
        }
        assert!(noted.hop_by_hop, "client_headers() has Connection, TE, ...");
        let empty = HeaderMap::new();
        let none = ClientHeaders::scan(&empty);
        assert!(none.content_length.is_none() && none.tag.is_none());
        assert!(!none.hop_by_hop);
    }

    #[test]
    fn the_walk_says_whether_there_is_a_hop_by_hop_header_to_strip() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("x-end-to-end", HeaderValue::from_static("kept"));
        assert!(!ClientHeaders::scan(&h).hop_by_hop);
        for name in HOP_BY_HOP.iter() {
            let mut with = h.clone();
            with.insert(name, HeaderValue::from_static("x"));
            assert!(ClientHeaders::scan(&with).hop_by_hop, "{name}");
        }
    }

    #[test]
    fn one_walk_over_a_response_head() {
        let mut h = HeaderMap::new();
        h.insert(
            "content-type",
            HeaderValue::from_static(" text/event-stream; charset=utf-8"),
        );
        h.insert("apim-request-id", HeaderValue::from_static("apim-1"));
        let noted = UpstreamHeaders::scan(&h);
        assert!(noted.is_event_stream());
        assert_eq!(noted.x_request_id, None);
        assert_eq!(noted.apim_request_id, h.get("apim-request-id"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        assert!(!UpstreamHeaders::scan(&h).is_event_stream());
        assert!(!UpstreamHeaders::scan(&HeaderMap::new()).is_event_stream());
    }
}
