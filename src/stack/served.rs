//! What the request path learns about a request as it goes, kept even when it fails
//! part-way, so the response headers and the `RequestEvent` can tell it.

use std::sync::Arc;
use std::time::Duration;

use crate::events::Observer;
use crate::limits::UpstreamLimits;
use crate::proxy::response_body::StreamFate;
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
    pub fate: Arc<StreamFate>,
    pub queue_wait: Duration,
    /// Settles the token estimate when `usage` is known.
    pub settle: Option<(Arc<UpstreamLimits>, u64)>,
    /// Set once routed: tells the observer if the client leaves before the response.
    pub in_flight: Option<InFlight>,
}

impl Served {
    /// The request is now with `hop`.
    pub fn at(&mut self, hop: &crate::runtime::Hop) {
        self.upstream = Some(hop.name.clone());
        self.upstream_header.clone_from(&hop.name_header);
    }

    pub fn new() -> Served {
        Served {
            attempts: 0,
            give_up: None,
            upstream: None,
            upstream_header: None,
            meta: no_meta(),
            fate: Arc::default(),
            queue_wait: Duration::ZERO,
            settle: None,
            in_flight: None,
        }
    }
}

/// Until the request has been read: one shared empty value, not an allocation each.
fn no_meta() -> Arc<RequestMeta> {
    static NONE: std::sync::LazyLock<Arc<RequestMeta>> = std::sync::LazyLock::new(Arc::default);
    NONE.clone()
}

/// A routed request whose response has not been built yet. Dropped armed (the client
/// left and this future was dropped), it reports `request_abandoned`; once the
/// response exists its `RequestEvent` ends the request instead.
pub(super) struct InFlight {
    observer: Arc<dyn Observer>,
    upstream: Option<Arc<str>>,
}

impl InFlight {
    pub fn start(observer: &Arc<dyn Observer>, upstream: &Arc<str>) -> InFlight {
        observer.request_started(upstream);
        InFlight {
            observer: observer.clone(),
            upstream: Some(upstream.clone()),
        }
    }

    pub fn disarm(mut self) {
        self.upstream = None;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(upstream) = self.upstream.take() {
            self.observer.request_abandoned(&upstream);
        }
    }
}
