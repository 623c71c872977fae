//! A real TLS upstream: certificates are checked (and a refused one is never retried),
//! `tls.extra_ca_files` trusts a private CA, and ALPN picks HTTP/2 when offered.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::TestClient;
use common::tls::LocalhostCert;
use http::{Response, StatusCode, Version};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

struct TlsUpstream {
    addr: SocketAddr,
    ca_pem: String,
    /// HTTP versions of the requests it served.
    versions: Arc<std::sync::Mutex<Vec<Version>>>,
    handshakes: Arc<AtomicUsize>,
}

/// An HTTPS server for `localhost` with a certificate from a fresh private CA,
/// offering h2 and http/1.1, answering every request with a small JSON body.
async fn tls_upstream() -> TlsUpstream {
    let cert = LocalhostCert::new();

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert_der.clone()], cert.private_key())
        .expect("server config");
    server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let versions = Arc::new(std::sync::Mutex::new(Vec::new()));
    let handshakes = Arc::new(AtomicUsize::new(0));
    let (v, hs) = (versions.clone(), handshakes.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, v, hs) = (acceptor.clone(), v.clone(), hs.clone());
            tokio::spawn(async move {
                hs.fetch_add(1, Ordering::SeqCst);
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let v = v.clone();
                    async move {
                        v.lock().expect("lock").push(req.version());
                        let body = Full::new(Bytes::from_static(br#"{"object":"list","data":[]}"#));
                        Ok::<_, Infallible>(Response::new(body))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    TlsUpstream {
        addr,
        ca_pem: cert.ca_pem.clone(),
        versions,
        handshakes,
    }
}

async fn proxy_to(upstream: &TlsUpstream, ca_file: Option<&std::path::Path>) -> backstop::Running {
    let tls = match ca_file {
        Some(path) => format!(
            "[tls]\nnative_roots = false\nextra_ca_files = [\"{}\"]\n",
            path.display()
        ),
        None => "[tls]\nnative_roots = false\n".to_owned(),
    };
    let toml = format!(
        "{tls}[retry]\nbase_delay = \"5ms\"\n\
         [[upstream]]\nname = \"tls\"\nbase_url = \"https://localhost:{}\"\n",
        upstream.addr.port()
    );
    common::start_toml(&toml, &[]).await.0
}

#[tokio::test]
async fn a_private_ca_in_extra_ca_files_is_trusted_and_alpn_picks_h2() {
    let upstream = tls_upstream().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &upstream.ca_pem).expect("write ca");
    let proxy = proxy_to(&upstream, Some(&ca)).await;

    let response = TestClient::new(proxy.proxy_addr()).get("/v1/models").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.json()["object"], "list");
    assert_eq!(
        upstream.versions.lock().expect("lock").as_slice(),
        [Version::HTTP_2]
    );
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_and_never_retried() {
    let upstream = tls_upstream().await;
    let proxy = proxy_to(&upstream, None).await;

    let response = TestClient::new(proxy.proxy_addr()).get("/v1/models").await;
    assert_eq!(response.status, StatusCode::BAD_GATEWAY);
    assert_eq!(response.json()["error"]["code"], "upstream_connect_error");
    assert_eq!(
        response.header("x-backstop-attempts"),
        Some("1"),
        "a certificate problem is not retried"
    );
    assert_eq!(upstream.handshakes.load(Ordering::SeqCst), 1);
    assert!(upstream.versions.lock().expect("lock").is_empty());
}
