//! How the upstream client opens connections: TLS (rustls with `ring`, the bundled,
//! OS and extra roots), ALPN offering h2 and HTTP/1.1 (HTTP/1.1 only for a WebSocket
//! handshake, which needs an HTTP/1.1 upgrade), and, for an upstream behind an egress
//! proxy, the `CONNECT` tunnel under the TLS (`egress`).

use std::sync::Arc;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::egress::Egress;
use crate::config::{Config, ConfigError, TlsSettings, Upstream};

/// Direct TLS connections (the usual case).
pub type Direct = HttpsConnector<HttpConnector>;
/// TLS connections whose TCP may go through an egress proxy.
pub type Tunnelled = HttpsConnector<Egress>;

/// The TLS client settings every connector shares.
pub fn tls_config(config: &Config) -> Result<rustls::ClientConfig, ConfigError> {
    let roots = root_store(&config.tls)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::Invalid {
            key: "tls".to_owned(),
            reason: format!("TLS setup failed: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// TCP with the connect timeout, no Nagle, keep-alive probes.
pub fn tcp(config: &Config) -> HttpConnector {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_keepalive(Some(std::time::Duration::from_secs(60)));
    http
}

/// A direct TLS connector; `h1_only` offers only HTTP/1.1 in ALPN.
pub fn direct(tls: &rustls::ClientConfig, tcp: &HttpConnector, h1_only: bool) -> Direct {
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(tls.clone())
        .https_or_http()
        .enable_http1();
    if h1_only {
        builder.wrap_connector(tcp.clone())
    } else {
        builder.enable_http2().wrap_connector(tcp.clone())
    }
}

/// The two TLS connectors of an upstream behind an egress proxy: offering h2 and
/// HTTP/1.1 as direct ones do, and HTTP/1.1 only (WebSocket handshakes).
#[derive(Clone)]
pub struct ThroughProxy {
    pub any: Tunnelled,
    pub h1_only: Tunnelled,
}

impl ThroughProxy {
    /// `None` for an upstream reached directly.
    pub fn new(
        upstream: &Upstream,
        tls: &rustls::ClientConfig,
        tcp: &HttpConnector,
        config: &Config,
    ) -> Option<ThroughProxy> {
        let egress = Egress {
            tcp: tcp.clone(),
            proxy: Some(upstream.proxy.clone()?),
            connect_timeout: config.connect_timeout,
        };
        let builder = || {
            HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_or_http()
                .enable_http1()
        };
        Some(ThroughProxy {
            any: builder().enable_http2().wrap_connector(egress.clone()),
            h1_only: builder().wrap_connector(egress),
        })
    }
}

/// Bundled Mozilla roots, plus the OS store if `tls.native_roots`, plus `extra_ca_files`.
fn root_store(tls: &TlsSettings) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if tls.native_roots {
        let native = rustls_native_certs::load_native_certs();
        let (added, _ignored) = roots.add_parsable_certificates(native.certs);
        if !native.errors.is_empty() {
            tracing::debug!(
                added,
                errors = native.errors.len(),
                "some OS root certificates could not be loaded"
            );
        }
    }
    for (i, path) in tls.extra_ca_files.iter().enumerate() {
        let key = format!("tls.extra_ca_files[{i}]");
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .and_then(|iter| iter.collect())
            .map_err(|e| ConfigError::Invalid {
                key: key.clone(),
                reason: format!("cannot read PEM certificates from {}: {e}", path.display()),
            })?;
        if certs.is_empty() {
            return Err(ConfigError::Invalid {
                key,
                reason: format!("{} holds no PEM certificate", path.display()),
            });
        }
        for cert in certs {
            roots.add(cert).map_err(|e| ConfigError::Invalid {
                key: key.clone(),
                reason: format!("bad CA certificate in {}: {e}", path.display()),
            })?;
        }
    }
    Ok(roots)
}
