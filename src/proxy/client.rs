//! One pooled hyper-util client for all upstreams: keep-alive, rustls with the `ring`
//! provider set explicitly, HTTP/1.1 and HTTP/2 chosen by ALPN.

use std::sync::Arc;

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::body::Body;
use crate::config::{Config, ConfigError, TlsSettings};

pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Body>;

pub fn build(config: &Config) -> Result<UpstreamClient, ConfigError> {
    let roots = root_store(&config.tls)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::Invalid {
            key: "tls".to_owned(),
            reason: format!("TLS setup failed: {e}"),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();

    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_keepalive(Some(std::time::Duration::from_secs(60)));

    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);

    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(config.pool_idle_timeout)
        .build(connector))
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
