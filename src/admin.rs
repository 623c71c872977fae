//! The admin listener: `/healthz` (alive), `/readyz` (503 while starting or
//! draining), `/metrics` (Prometheus text), `/stats` (JSON) and `/status` (HTML).
//! It only reads: readiness from the server, everything else from `metrics::Recorder`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::body::{Body, full};
use crate::metrics::{Recorder, render_status};

/// What the admin endpoints read.
pub struct Admin {
    pub readiness: Arc<Readiness>,
    pub metrics: Arc<Recorder>,
}

/// Whether the proxy should get traffic: what `/readyz` reports.
#[derive(Debug, Default)]
pub struct Readiness(AtomicU8);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Ready,
    Draining,
}

impl Readiness {
    pub fn set(&self, phase: Phase) {
        self.0.store(phase as u8, Ordering::SeqCst);
    }

    pub fn phase(&self) -> Phase {
        match self.0.load(Ordering::SeqCst) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::Draining,
        }
    }
}

pub async fn handle<B>(admin: Arc<Admin>, request: Request<B>) -> Response<Body> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    match request.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/metrics" => with_type(
            admin.metrics.scrape(),
            "text/plain; version=0.0.4; charset=utf-8",
        ),
        "/stats" => match serde_json::to_string(&admin.metrics.stats()) {
            Ok(json) => with_type(json, "application/json"),
            Err(e) => {
                tracing::error!(error = %e, "cannot serialise /stats");
                text(StatusCode::INTERNAL_SERVER_ERROR, "stats unavailable\n")
            }
        },
        "/status" => with_type(
            render_status(&admin.metrics.stats()),
            "text/html; charset=utf-8",
        ),
        "/readyz" => match admin.readiness.phase() {
            Phase::Ready => text(StatusCode::OK, "ready\n"),
            Phase::Starting => text(StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
            Phase::Draining => text(StatusCode::SERVICE_UNAVAILABLE, "draining\n"),
        },
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /healthz, /readyz, /metrics, /stats or /status\n",
        ),
    }
}

fn with_type(body: String, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
