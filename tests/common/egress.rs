//! For the egress proxy tests: a real forward proxy (Debian's `tinyproxy`) on a free
//! port, whose log says which requests it carried, and a TLS upstream with a private CA.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

/// A running tinyproxy; killed when dropped.
pub struct Tinyproxy {
    pub port: u16,
    log: PathBuf,
    _child: Child,
}

impl Tinyproxy {
    /// Starts tinyproxy on a free port in `dir`, with `BasicAuth user password` if given.
    /// With CI set, a missing tinyproxy fails the test; otherwise `None` skips it.
    pub async fn start(dir: &Path, auth: Option<(&str, &str)>) -> Option<Tinyproxy> {
        if !super::tool_or_skip("tinyproxy", "-v", "tinyproxy") {
            return None;
        }
        let port = super::free_port()?;
        let log = dir.join(format!("tinyproxy-{port}.log"));
        let mut conf = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nAllow 127.0.0.1\nMaxClients 50\n\
             LogFile \"{}\"\nLogLevel Info\nDisableViaHeader Yes\n",
            log.display()
        );
        if let Some((user, password)) = auth {
            conf.push_str(&format!("BasicAuth {user} {password}\n"));
        }
        let file = dir.join(format!("tinyproxy-{port}.conf"));
        std::fs::write(&file, conf).ok()?;
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&file)
            .kill_on_drop(true)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start tinyproxy");
        let up = super::eventually(std::time::Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
        .await;
        assert!(up, "tinyproxy did not start listening");
        Some(Tinyproxy {
            port,
            log,
            _child: child,
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Request lines it logged that start with `method` (e.g. `CONNECT`, `GET http://`).
    pub fn requests(&self, starting: &str) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("Request (file descriptor"))
            .filter(|l| {
                l.split("): ")
                    .nth(1)
                    .is_some_and(|r| r.starts_with(starting))
            })
            .count()
    }
}

/// An HTTPS upstream for 127.0.0.1 (certificate from a fresh CA, written to
/// `ca_file`), offering h2 and http/1.1, answering every request with a model list.
pub async fn tls_upstream(ca_file: &Path) -> SocketAddr {
    let cert = super::tls::LocalhostCert::new();
    std::fs::write(ca_file, &cert.ca_pem).expect("write CA");
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
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let service = service_fn(|_req: http::Request<hyper::body::Incoming>| async {
                    let body = Full::new(Bytes::from_static(br#"{"object":"list","data":[]}"#));
                    Ok::<_, Infallible>(Response::new(body))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}
