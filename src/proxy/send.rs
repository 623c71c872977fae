//! One attempt against an upstream: build the outbound request, send it, wait for the
//! response headers within `attempt_timeout`, and name what went wrong by error type.

use crate::retry::Reason;
use std::error::Error as StdError;
use std::future::Future;

use http::{HeaderMap, Method, Request, Response, Uri, Version};
use tokio::time::Instant;

use super::client::SendError;
use super::egress::ProxyRefused;
use super::headers::prepare_outbound;
use super::request_body::BodyTooLarge;
use super::timed::{Timed, timed};
use super::{Transport, UpstreamBody, websocket};
use crate::body::Body;
use crate::config::Upstream;
use crate::error::ProxyError;
use crate::retry::classify::{Outcome, TransportFailure, classify_transport, transport_failure};

/// The upstream URI: the upstream's scheme, host and base path, then the client's path
/// and query exactly as sent. Nothing the client sends can change the host.
pub fn upstream_uri(upstream: &Upstream, path_and_query: &str) -> Result<Uri, ProxyError> {
    let base = &upstream.base_url;
    let mut s = String::with_capacity(
        base.scheme.as_str().len()
            + 3
            + base.authority.as_str().len()
            + base.path.len()
            + path_and_query.len(),
    );
    s.push_str(base.scheme.as_str());
    s.push_str("://");
    s.push_str(base.authority.as_str());
    s.push_str(&base.path);
    s.push_str(path_and_query);
    Uri::try_from(s).map_err(|e| ProxyError::BadRequest(format!("bad request path: {e}")))
}

/// The URI of one attempt's request: `path_and_query`, the client's or a rewritten one
/// for a fallback (Azure deployment), after the upstream's base path. The client's own
/// path as it is (the usual case) goes in origin form, already parsed and not copied;
/// the transport puts the upstream's scheme and host where its protocol wants them
/// (`proxy::wire_form`). Any other is built in absolute form (`upstream_uri`).
pub fn outbound_uri(
    upstream: &Upstream,
    client: &Uri,
    path_and_query: &str,
) -> Result<Uri, ProxyError> {
    match client.path_and_query() {
        Some(pq) if upstream.base_url.path.is_empty() && pq.as_str() == path_and_query => {
            Ok(Uri::from(pq.clone()))
        }
        _ => upstream_uri(upstream, path_and_query),
    }
}

/// How the client's request is forwarded, the same for each of its attempts.
#[derive(Debug, Clone, Copy, Default)]
pub struct Forwarding {
    /// It has hop-by-hop headers to strip (`ClientHeaders`).
    pub hop_by_hop: bool,
    /// It is a WebSocket handshake: its `upgrade` and `connection` go upstream.
    pub websocket: bool,
}

/// The outbound request for one attempt to `uri` (`outbound_uri`): the client's
/// `method`, and `headers`, the client's own map or a copy of it (`KeptHeaders`).
/// Cannot fail, so it is built where it is returned, not copied out of a `Result`.
pub fn outbound_request(
    upstream: &Upstream,
    method: &Method,
    uri: Uri,
    body: Body,
    headers: HeaderMap,
    forwarding: Forwarding,
) -> Request<Body> {
    let mut request = Request::new(body);
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri;
    // The client's version says nothing about the upstream's: the pool picks HTTP/1.1
    // or h2 by ALPN per connection.
    *request.version_mut() = Version::HTTP_11;
    let out = request.headers_mut();
    *out = headers;
    prepare_outbound(
        out,
        upstream.kind,
        upstream.api_key.as_ref(),
        forwarding.hop_by_hop,
    );
    if forwarding.websocket {
        websocket::keep_upgrade(out);
    }
    request
}

/// An attempt that got no response: the error to answer with, and how to judge it.
#[derive(Debug)]
pub struct SendFailure {
    pub outcome: Outcome,
    pub error: ProxyError,
}

/// Sends one attempt and waits for its response headers until `until`; `failure` and
/// `timed_out` name what a send without a response came to. The timed send itself, not an `async fn` around it: each level of
/// nesting moves the request in and the response out once more.
pub fn send<'a, T: Transport>(
    client: &'a T,
    upstream: &'a Upstream,
    request: Request<Body>,
    until: Instant,
) -> Timed<impl Future<Output = Result<Response<UpstreamBody>, SendError>> + 'a> {
    timed(until, client.send(upstream, request))
}

/// An attempt begun at `started` that got no response head before `until`: the error
/// to answer with and how to judge it.
pub fn timed_out(upstream: &Upstream, started: Instant) -> SendFailure {
    SendFailure {
        outcome: classify_transport(TransportFailure::Timeout),
        error: ProxyError::Timeout {
            upstream: upstream.name.clone(),
            after: started.elapsed(),
        },
    }
}

/// Names a client error by its type, never by its message text.
pub fn failure(upstream: &Upstream, e: &SendError) -> SendFailure {
    if let Some(too_large) = find_source::<BodyTooLarge>(e) {
        return SendFailure {
            outcome: Outcome::Fatal {
                reason: Reason::RequestTooLarge,
            },
            error: ProxyError::BodyTooLarge {
                limit: too_large.limit,
            },
        };
    }
    if let Some(refused) = find_source::<ProxyRefused>(e) {
        return SendFailure {
            outcome: Outcome::Fatal {
                reason: Reason::UpstreamProxyError,
            },
            error: ProxyError::UpstreamProxy {
                upstream: upstream.name.clone(),
                detail: refused.to_string(),
            },
        };
    }
    let kind = transport_failure(e, e.is_connect());
    let detail = error_chain(e);
    let name = upstream.name.clone();
    let error = match kind {
        TransportFailure::Connect | TransportFailure::Certificate => ProxyError::Connect {
            upstream: name,
            detail,
        },
        TransportFailure::Reset | TransportFailure::Timeout => ProxyError::Upstream {
            upstream: name,
            detail,
        },
    };
    SendFailure {
        outcome: classify_transport(kind),
        error,
    }
}

fn find_source<'a, T: StdError + 'static>(e: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = current {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        current = err.source();
    }
    None
}

/// "outer: inner: root" for logs and error messages (transport errors carry no secrets).
pub fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut current = e.source();
    while let Some(err) = current {
        let text = err.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        current = err.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn upstream(base: &str) -> Upstream {
        Config::upstream_at(base)
    }

    #[test]
    fn uri_keeps_path_and_query_and_takes_host_from_upstream() {
        let up = upstream("https://res.openai.azure.com");
        let client = "/openai/deployments/gpt/chat/completions?api-version=2024-10-21";
        assert_eq!(
            upstream_uri(&up, client).expect("uri").to_string(),
            "https://res.openai.azure.com/openai/deployments/gpt/chat/completions?api-version=2024-10-21"
        );
    }

    #[test]
    fn absolute_form_request_uri_cannot_choose_the_host() {
        let up = upstream("http://127.0.0.1:9");
        let uri: Uri = "http://evil.example:80/v1/models?x=1".parse().expect("uri");
        let client = uri.path_and_query().expect("path").as_str();
        assert_eq!(
            upstream_uri(&up, client).expect("uri").to_string(),
            "http://127.0.0.1:9/v1/models?x=1"
        );
    }

    #[test]
    fn base_url_path_is_prepended() {
        let up = upstream("http://gw.local/llm/");
        let client = "/v1/models";
        assert_eq!(
            upstream_uri(&up, client).expect("uri").to_string(),
            "http://gw.local/llm/v1/models"
        );
    }

    #[test]
    fn outbound_request_takes_the_upstream_host_with_or_without_a_base_path() {
        let client_uri: Uri = "http://forged.example/v1/chat/completions?api-version=1"
            .parse()
            .expect("uri");
        let (parts, ()) = Request::builder()
            .uri(client_uri)
            .body(())
            .expect("request")
            .into_parts();
        let pq = "/v1/chat/completions?api-version=1";
        for (base, want) in [
            (
                "http://127.0.0.1:9",
                "http://127.0.0.1:9/v1/chat/completions?api-version=1",
            ),
            (
                "http://gw.local/llm",
                "http://gw.local/llm/v1/chat/completions?api-version=1",
            ),
        ] {
            let body = crate::body::full(bytes::Bytes::new());
            let uri = outbound_uri(&upstream(base), &parts.uri, pq).expect("uri");
            let forwarding = Forwarding {
                hop_by_hop: true,
                websocket: false,
            };
            let headers = parts.headers.clone();
            let mut request = outbound_request(
                &upstream(base),
                &parts.method,
                uri,
                body,
                headers,
                forwarding,
            );
            // In absolute form as HTTP/2 or a forward proxy gets it (HTTP/1.1 sends the
            // path alone, with the upstream's `Host`: `wire_form`'s tests).
            super::super::wire_form::to_absolute_form(&mut request, &upstream(base))
                .expect("absolute form");
            assert_eq!(request.uri().to_string(), want);
        }
    }
}
