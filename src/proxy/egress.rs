//! Reaching upstreams through an egress proxy (SPEC §9). An https upstream goes through
//! a `CONNECT` tunnel that the TLS connector then runs TLS over, so TLS (and ALPN) stay
//! end to end; an http upstream is sent to the proxy in absolute form (`client`).
//!
//! A proxy that answers `CONNECT` (or an absolute-form request) with 407 or another
//! refusal is a setup error, `ProxyRefused`: never retried, answered 502
//! `upstream_proxy_error`. A proxy that cannot be reached is a connect error like any.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::Service;

use crate::body::BoxError;
use crate::config::EgressProxy;

/// Longest proxy answer to a `CONNECT` that is read.
const MAX_HEAD: usize = 16 * 1024;

/// The proxy said no: 407 (credentials missing or wrong) or any other refusal.
#[derive(Debug, thiserror::Error)]
#[error("egress proxy {proxy} (from {source_name}) refused {what} with status {status}")]
pub struct ProxyRefused {
    /// The proxy, credentials redacted.
    pub proxy: String,
    pub source_name: String,
    /// `CONNECT host:port`, or the request forwarded in absolute form.
    pub what: String,
    pub status: u16,
}

impl ProxyRefused {
    pub fn new(proxy: &EgressProxy, what: String, status: u16) -> ProxyRefused {
        ProxyRefused {
            proxy: proxy.to_string(),
            source_name: proxy.source.clone(),
            what,
            status,
        }
    }
}

/// TCP to an upstream, directly or through a `CONNECT` tunnel: the inner connector of
/// the TLS connector, one per upstream.
#[derive(Clone)]
pub struct Egress {
    pub tcp: HttpConnector,
    pub proxy: Option<Arc<EgressProxy>>,
    /// For the proxy's answer to `CONNECT` (TCP has its own, in `tcp`).
    pub connect_timeout: Duration,
}

type Connecting = Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, BoxError>> + Send>>;

impl Service<Uri> for Egress {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, target: Uri) -> Connecting {
        let mut tcp = self.tcp.clone();
        let Some(proxy) = self.proxy.clone() else {
            return Box::pin(async move { tcp.call(target).await.map_err(Into::into) });
        };
        let timeout = self.connect_timeout;
        Box::pin(async move {
            let io = tcp.call(proxy.uri().clone()).await?;
            let mut stream = io.into_inner();
            let opened = tokio::time::timeout(timeout, connect(&mut stream, &proxy, &target));
            match opened.await {
                Ok(result) => result?,
                Err(_) => {
                    return Err(format!(
                        "egress proxy {proxy} did not answer CONNECT within {timeout:?}"
                    )
                    .into());
                }
            }
            tracing::debug!(%proxy, target = %authority(&target), "tunnel opened");
            Ok(TokioIo::new(stream))
        })
    }
}

/// `host:port` of the target, the port spelled out.
fn authority(target: &Uri) -> String {
    let host = target.host().unwrap_or_default();
    let port = target
        .port_u16()
        .unwrap_or(if target.scheme_str() == Some("http") {
            80
        } else {
            443
        });
    format!("{host}:{port}")
}

/// Asks the proxy for a tunnel to `target` and reads its answer's head.
async fn connect(
    stream: &mut TcpStream,
    proxy: &EgressProxy,
    target: &Uri,
) -> Result<(), BoxError> {
    let target = authority(target);
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n").into_bytes();
    if let Some(auth) = proxy.authorization() {
        head.extend_from_slice(b"Proxy-Authorization: ");
        head.extend_from_slice(auth.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    stream.write_all(&head).await?;
    let status = read_status(stream).await?;
    if !(200..300).contains(&status) {
        return Err(ProxyRefused::new(proxy, format!("CONNECT {target}"), status).into());
    }
    Ok(())
}

/// The status of the proxy's answer, once its whole head is in. Nothing may follow the
/// head: the next bytes belong to the upstream.
async fn read_status(stream: &mut TcpStream) -> Result<u16, BoxError> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err("the egress proxy closed the connection during CONNECT".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf)? {
            httparse::Status::Complete(len) => {
                let status = response.code.unwrap_or(0);
                if len != buf.len() && (200..300).contains(&status) {
                    return Err("the egress proxy sent data after its CONNECT answer".into());
                }
                return Ok(status);
            }
            httparse::Status::Partial if buf.len() > MAX_HEAD => {
                return Err("the egress proxy's CONNECT answer is too long".into());
            }
            httparse::Status::Partial => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_names_its_port() {
        let https: Uri = "https://api.openai.com/v1/x".parse().expect("uri");
        let http: Uri = "http://gw.local/v1".parse().expect("uri");
        let own: Uri = "https://127.0.0.1:8443/".parse().expect("uri");
        assert_eq!(authority(&https), "api.openai.com:443");
        assert_eq!(authority(&http), "gw.local:80");
        assert_eq!(authority(&own), "127.0.0.1:8443");
    }

    #[test]
    fn a_refusal_names_the_proxy_without_its_password() {
        let proxy = EgressProxy::parse("http://u:hunter2@proxy:3128", "HTTPS_PROXY").expect("ok");
        let refused = ProxyRefused::new(&proxy, "CONNECT api:443".into(), 407);
        let text = refused.to_string();
        assert!(
            text.contains("http://u:***@proxy:3128") && text.contains("407"),
            "{text}"
        );
        assert!(!text.contains("hunter2"));
    }
}
