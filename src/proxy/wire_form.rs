//! How a request to an upstream is written on an HTTP/1.1 connection: origin form with
//! `Host` to the upstream itself, absolute form with the proxy's credentials to a
//! forward (egress) proxy for an `http://` upstream; absolute form for HTTP/2's
//! `:scheme` and `:authority`; and a 407 from that proxy told apart from the
//! upstream's own answers.
//!
//! An attempt's request comes in either form (`proxy::Transport`): usually its path
//! and query only (origin form, what HTTP/1.1 sends without a proxy, so nothing is
//! built and undone), absolute when a base path or a rewrite made a new one. Either way
//! the scheme and host put in are the upstream's, never the client's.

use http::header::{HOST, HeaderValue, PROXY_AUTHORIZATION};
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri};

use super::client::SendError;
use super::egress::ProxyRefused;
use crate::body::Body;
use crate::config::{EgressProxy, Upstream};

/// HTTP/1.1 sends the path (origin form) and names the host in `Host`; to a forward
/// proxy, the whole URI (absolute form) with the proxy's credentials.
pub(super) fn to_wire_form(
    request: &mut Request<Body>,
    host: Option<&HeaderValue>,
    upstream: &Upstream,
) -> Result<(), SendError> {
    let Some(proxy) = forward_proxy(upstream) else {
        return to_origin_form(request, host);
    };
    to_absolute_form(request, upstream)?;
    let host = host.ok_or(SendError::BadRequest("no upstream host"))?;
    let headers = request.headers_mut();
    headers.insert(HOST, host.clone());
    if let Some(auth) = proxy.authorization() {
        headers.insert(PROXY_AUTHORIZATION, auth.clone());
    }
    Ok(())
}

/// HTTP/1.1 sends the path (origin form) and names the host in `Host`.
fn to_origin_form(
    request: &mut Request<Body>,
    host: Option<&HeaderValue>,
) -> Result<(), SendError> {
    if request.uri().scheme().is_some() {
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::from(path);
    }
    let host = host.ok_or(SendError::BadRequest("no upstream host"))?;
    request.headers_mut().insert(HOST, host.clone());
    Ok(())
}

/// The request's URI in absolute form: the upstream's scheme and host before its path
/// and query, unless it is in that form already.
pub(super) fn to_absolute_form(
    request: &mut Request<Body>,
    upstream: &Upstream,
) -> Result<(), SendError> {
    if request.uri().scheme().is_some() {
        return Ok(());
    }
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(upstream.base_url.scheme.clone());
    uri.authority = Some(upstream.base_url.authority.clone());
    uri.path_and_query = Some(
        request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    *request.uri_mut() =
        Uri::from_parts(uri).map_err(|_| SendError::BadRequest("bad request path"))?;
    Ok(())
}

/// The egress proxy an http upstream's requests are forwarded by (https ones tunnel).
fn forward_proxy(upstream: &Upstream) -> Option<&EgressProxy> {
    match &upstream.proxy {
        Some(proxy) if upstream.base_url.scheme == Scheme::HTTP => Some(proxy),
        _ => None,
    }
}

/// A 407 from the forward proxy itself is a refusal, not the upstream's answer.
pub(super) fn refused_by_forward_proxy<B>(
    response: &Response<B>,
    upstream: &Upstream,
) -> Result<(), SendError> {
    match forward_proxy(upstream) {
        Some(proxy) if response.status() == StatusCode::PROXY_AUTHENTICATION_REQUIRED => {
            let what = format!("a request to {}", upstream.base_url);
            Err(SendError::Connect(Box::new(ProxyRefused::new(
                proxy, what, 407,
            ))))
        }
        _ => Ok(()),
    }
}

/// The upstream's authority, without the scheme's default port.
pub(super) fn host_header(upstream: &Upstream) -> Option<HeaderValue> {
    let url = &upstream.base_url;
    let default_port = if url.scheme == Scheme::HTTPS { 443 } else { 80 };
    let host = match url.authority.port_u16() {
        Some(port) if port != default_port => url.authority.as_str(),
        _ => url.authority.host(),
    };
    HeaderValue::from_str(host).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn upstream(base: &str) -> Upstream {
        Config::upstream_at(base)
    }

    #[test]
    fn the_clients_host_is_replaced_by_the_upstreams() {
        let up = upstream("http://127.0.0.1:9");
        let mut request = Request::new(crate::body::empty());
        *request.uri_mut() = "http://127.0.0.1:9/v1/models?x=1".parse().expect("uri");
        request
            .headers_mut()
            .insert(HOST, HeaderValue::from_static("backstop.local:8080"));
        to_wire_form(&mut request, host_header(&up).as_ref(), &up).expect("origin form");
        assert_eq!(request.uri(), "/v1/models?x=1");
        let hosts: Vec<_> = request.headers().get_all(HOST).iter().collect();
        assert_eq!(hosts, ["127.0.0.1:9"]);
    }

    #[test]
    fn either_form_comes_out_in_the_form_asked_for_with_the_upstreams_host() {
        let up = upstream("https://res.example:8443");
        for given in ["/v1/models?x=1", "https://res.example:8443/v1/models?x=1"] {
            let mut request = Request::new(crate::body::empty());
            *request.uri_mut() = given.parse().expect("uri");
            to_absolute_form(&mut request, &up).expect("absolute form");
            assert_eq!(request.uri(), "https://res.example:8443/v1/models?x=1");
            to_origin_form(&mut request, host_header(&up).as_ref()).expect("origin form");
            assert_eq!(request.uri(), "/v1/models?x=1");
            to_origin_form(&mut request, host_header(&up).as_ref()).expect("again");
            assert_eq!(request.uri(), "/v1/models?x=1", "a handed-back request");
        }
    }
}
