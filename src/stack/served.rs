//! What the request path learns about a request as it goes, kept even when it fails
//! part-way, so the response headers and the `RequestEvent` can tell it.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::attempt::is_event_stream;
use super::detach::Detach;
use super::replay::Ticket;
use super::report::Ident;
use crate::events::{BodyEnd, Observer, Replayed, RequestEvent, RequestId};
use crate::limits::UpstreamLimits;
use crate::request_meta::RequestMeta;
use crate::retry::GiveUp;

/// What the steps learned, kept even when one fails part-way.
pub(super) struct Served {
    pub attempts: u32,
    pub give_up: Option<GiveUp>,
    /// The upstream that answered (or refused), and its name as a header value.
    pub upstream: Option<Arc<str>>,
    pub upstream_header: Option<http::HeaderValue>,
    pub meta: Arc<RequestMeta>,
    pub queue_wait: Duration,
    /// Settles the token estimate when `usage` is known.
    pub settle: Option<(Arc<UpstreamLimits>, u64)>,
    /// Set once routed: tells the observer if the client leaves before the response.
    pub in_flight: Option<InFlight>,
    /// The request runs apart from its connection (`finish_abandoned`): whether its
    /// client is still there.
    pub detach: Option<Arc<Detach>>,
    /// Replay: how to keep this request's response (none when not eligible); boxed, so
    /// the request future stays small without `[replay]`.
    pub ticket: Option<Box<Ticket>>,
    /// Replay: the response is an earlier request's.
    pub replayed: Option<Replayed>,
    /// Whether the last hop's answer is an SSE stream, as judging it read (`None`
    /// before any: the response's own content type says).
    pub event_stream: Option<bool>,
}

impl Served {
    /// The request is now with `hop`.
    pub fn at(&mut self, hop: &crate::runtime::Hop) {
        self.upstream = Some(hop.name.clone());
        self.upstream_header.clone_from(&hop.name_header);
    }

    /// The request, begun at `started`, is under way at `upstream`: the observers are
    /// told, and told again should its client leave before the response (`InFlight`).
    /// Written in place, not made and then moved here (~150 bytes, twice).
    pub fn start(
        &mut self,
        observer: &Arc<dyn Observer>,
        upstream: &Arc<str>,
        ident: &Ident,
        started: Instant,
    ) {
        observer.request_started(upstream);
        self.in_flight = Some(InFlight {
            observer: observer.clone(),
            upstream: Some(upstream.clone()),
            id: ident.id.clone(),
            method: ident.method.clone(),
            endpoint: ident.endpoint.clone(),
            endpoint_kind: ident.kind,
            started,
        });
    }

    /// The response exists: its `RequestEvent` ends the request from now on, not the
    /// in-flight guard.
    pub fn responded(&mut self) {
        if let Some(in_flight) = self.in_flight.take() {
            in_flight.disarm();
        }
    }

    pub fn new(detach: Option<Arc<Detach>>) -> Served {
        Served {
            attempts: 0,
            give_up: None,
            upstream: None,
            upstream_header: None,
            meta: no_meta(),
            queue_wait: Duration::ZERO,
            settle: None,
            in_flight: None,
            detach,
            ticket: None,
            replayed: None,
            event_stream: None,
        }
    }

    /// Whether the response (with `headers`) is an SSE stream: as judging the answer
    /// read it (`judged`; backstop's own error is JSON, so a failed request has none),
    /// else by its content type. A stream's request meta is settled.
    pub fn streamed(&mut self, judged: Option<bool>, headers: &http::HeaderMap) -> bool {
        let streamed = judged.unwrap_or_else(|| is_event_stream(headers));
        if streamed {
            self.meta.settle();
        }
        streamed
    }

    /// The request's meta, leaving the shared empty one in its place.
    pub fn take_meta(&mut self) -> Arc<RequestMeta> {
        std::mem::replace(&mut self.meta, no_meta())
    }
}

/// Dropped with its `InFlight` still armed: the client left before the response head
/// (this future was dropped), and the journal hears of it.
impl Drop for Served {
    fn drop(&mut self) {
        if let Some(in_flight) = self.in_flight.take() {
            in_flight.gone(self.attempts, self.meta.clone());
        }
    }
}

/// Until the request has been read: one shared empty value, not an allocation each.
fn no_meta() -> Arc<RequestMeta> {
    static NONE: std::sync::LazyLock<Arc<RequestMeta>> = std::sync::LazyLock::new(Arc::default);
    NONE.clone()
}

/// A routed request whose response has not been built yet. Dropped armed (the client
/// left and this future was dropped), it reports `request_abandoned` and
/// `request_left`; once the response exists its `RequestEvent` ends the request instead.
pub(super) struct InFlight {
    observer: Arc<dyn Observer>,
    upstream: Option<Arc<str>>,
    id: RequestId,
    method: http::Method,
    endpoint: Arc<str>,
    endpoint_kind: &'static str,
    started: Instant,
}

impl InFlight {
    fn disarm(mut self) {
        self.upstream = None;
    }

    /// The client left before the response head.
    fn gone(mut self, attempts: u32, meta: Arc<RequestMeta>) {
        let Some(upstream) = self.upstream.take() else {
            return;
        };
        self.observer.request_abandoned(&upstream);
        let duration = self.started.elapsed();
        let event = RequestEvent {
            request_id: self.id.clone(),
            upstream: Some(upstream),
            method: self.method.clone(),
            endpoint_kind: self.endpoint_kind,
            endpoint: self.endpoint.clone(),
            status: 0,
            streamed: false,
            attempts,
            give_up: None,
            time_to_headers: duration,
            queue_wait: Duration::ZERO,
            time_to_first_chunk: None,
            duration,
            end: BodyEnd::ClientGone,
            refused: None,
            usage: None,
            meta,
            response: None,
            replay: None,
        };
        self.observer.request_left(&event);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(upstream) = self.upstream.take() {
            self.observer.request_abandoned(&upstream);
        }
    }
}
