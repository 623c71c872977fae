//! Step 2, the request read: its body kept in memory for retries up to
//! `retry_buffer_bytes` (streamed once beyond that, 413 beyond `max_body_bytes`), what
//! backstop notes about it for records and metrics (`RequestMeta`), and its one deadline.

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{HeaderValue, Uri};
use tokio::time::Instant;

use crate::body::{Body, ClientBody};
use crate::error::ProxyError;
use crate::proxy::headers::ClientHeaders;
use crate::proxy::kept_headers::KeptHeaders;
use crate::proxy::request_body::{BodyLimits, RequestBody};
use crate::proxy::send::Forwarding;
use crate::proxy::websocket;
use crate::request_fingerprint::RequestFingerprint;
use crate::request_meta::RequestMeta;
use crate::runtime::{Hop, Runtime};

/// A client request once its body has been read: what every hop and attempt works from.
pub(super) struct Call {
    /// The client's head. Its header map is what the request's first attempt sends, as
    /// it is (`KeptHeaders::next` takes it: it is empty from then on). hyper parses the
    /// upstream's response into the map its request went out in, and the client's map
    /// has the room its connection grew for earlier responses, where a fresh copy has
    /// none: backstop's own response headers then fit without growing the map on every
    /// request.
    pub parts: Parts,
    /// The client's headers for any later attempt (a retry, a fallback).
    pub kept_headers: KeptHeaders,
    /// How each attempt forwards the request (hop-by-hop headers, a WebSocket upgrade).
    pub forwarding: Forwarding,
    pub body: Bodies,
    /// The body is kept, so the request can be sent again (retry or fallback).
    pub replayable: bool,
    pub meta: Arc<RequestMeta>,
    /// One deadline over every attempt, backoff and fallback.
    pub deadline: Instant,
    /// When the body had been read: where the deadline counts from.
    pub read_at: Instant,
    /// A clock reading nothing has waited since, for the next step to take as "now"
    /// (`fresh`): set when the body is read, taken by admission, and set again by an
    /// admission that did not wait, for the first attempt.
    pub fresh: Option<Instant>,
}

/// What reading a request gave (`Call::read`), for `Call::new` to join to its head.
pub(super) struct Read {
    body: RequestBody,
    meta: Arc<RequestMeta>,
    deadline: Instant,
    read_at: Instant,
    hop_by_hop: bool,
}

impl Call {
    /// Reads the body with the primary upstream's `idle_timeout` between chunks. The
    /// head is borrowed, not moved through the read's future and out again in a `Call`.
    /// A body read without waiting was read when the request `started`.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn keeps its arguments twice"
    )]
    pub fn read<'a, B: ClientBody>(
        parts: &'a Parts,
        body: B,
        runtime: &'a Runtime,
        primary: &'a Hop,
        started: Instant,
    ) -> impl Future<Output = Result<Read, ProxyError>> + 'a {
        async move {
            let retry = &primary.upstream.retry;
            let limits = BodyLimits {
                retry_buffer_bytes: runtime.config.retry_buffer_bytes,
                max_body_bytes: runtime.config.max_body_bytes,
                idle_timeout: retry.idle_timeout,
            };
            let noted = ClientHeaders::scan(&parts.headers);
            let content_length = content_length(noted.content_length);
            let budget = &runtime.buffer_budget;
            let (body, read_at) =
                RequestBody::read(body, content_length, limits, budget, started).await?;
            let body_bytes = body
                .buffered()
                .map_or(content_length.unwrap_or(0), |b| b.len() as u64);
            let mut meta = RequestMeta::read(&noted, body.buffered(), body_bytes);
            if runtime.config.journal.is_some() {
                meta.fingerprint = Some(Box::new(RequestFingerprint::read(
                    &parts.method,
                    parts.uri.path(),
                    noted.idempotency_key,
                    body.buffered(),
                )));
            }
            let deadline = read_at + client_deadline(noted.read_timeout, retry.deadline);
            Ok(Read {
                body,
                meta: Arc::new(meta),
                deadline,
                read_at,
                hop_by_hop: noted.hop_by_hop,
            })
        }
    }

    /// The request: its head and what reading it gave.
    pub fn new(parts: Parts, read: Read) -> Call {
        let forwarding = Forwarding {
            hop_by_hop: read.hop_by_hop,
            websocket: websocket::is_handshake(&parts.method, &parts.headers),
        };
        let kept_headers = KeptHeaders::of(&parts.headers);
        Call {
            replayable: read.body.is_replayable(),
            body: Bodies(Some(read.body)),
            kept_headers,
            parts,
            forwarding,
            meta: read.meta,
            deadline: read.deadline,
            read_at: read.read_at,
            fresh: Some(read.read_at),
        }
    }

    /// A request backstop finishes for a client that may leave (replay's
    /// `finish_abandoned`): its deadline is the configured one, not the client's
    /// shorter read timeout, which is exactly what it outlives.
    pub fn outlive_client(&mut self, configured: Duration) {
        self.deadline = self.read_at + configured;
    }
}

/// The path and query as the client sent them.
pub(super) fn client_path(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |pq| pq.as_str())
}

fn content_length(value: Option<&HeaderValue>) -> Option<u64> {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// The request body for each attempt: a cheap clone when buffered; a streamed body
/// only once (the policy never retries it).
pub(super) struct Bodies(Option<RequestBody>);

impl Bodies {
    /// The body, when it is kept in memory.
    pub fn buffered(&self) -> Option<&bytes::Bytes> {
        self.0.as_ref().and_then(RequestBody::buffered)
    }

    /// The body of the next attempt: this hop's rewritten one when it has one.
    pub fn next_for(&mut self, rewritten: Option<&bytes::Bytes>) -> Option<Body> {
        match rewritten {
            Some(bytes) => Some(crate::body::full(bytes.clone())),
            None => self.next(),
        }
    }

    fn next(&mut self) -> Option<Body> {
        match &self.0 {
            Some(RequestBody::Buffered(bytes)) => Some(crate::body::full(bytes.clone())),
            _ => self.0.take().map(RequestBody::into_body),
        }
    }
}

/// The request's deadline: the configured one, shortened by the OpenAI SDK's own read
/// timeout (`x-stainless-read-timeout`, seconds) when that is shorter.
fn client_deadline(read_timeout: Option<&HeaderValue>, configured: Duration) -> Duration {
    read_timeout
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .map_or(configured, |client| client.min(configured))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deadline_with(read_timeout: Option<&'static str>) -> Duration {
        let mut h = http::HeaderMap::new();
        if let Some(value) = read_timeout {
            h.insert("x-stainless-read-timeout", HeaderValue::from_static(value));
        }
        client_deadline(
            ClientHeaders::scan(&h).read_timeout,
            Duration::from_secs(10),
        )
    }

    #[test]
    fn client_read_timeout_shortens_the_deadline_only() {
        let ten = Duration::from_secs(10);
        assert_eq!(deadline_with(None), ten);
        assert_eq!(deadline_with(Some("2.5")), Duration::from_millis(2500));
        assert_eq!(deadline_with(Some("600")), ten);
        for bad in ["-1", "0", "soon", "inf"] {
            assert_eq!(deadline_with(Some(bad)), ten, "{bad}");
        }
    }
}
