//! The two ports' wiring: their listeners, their client limits, and what the proxy
//! port does with each request.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::StartError;
use super::limits::{ClientLimits, InFlight, Tracked, Tracking};
use crate::config::Config;
use crate::events::Observer;
use crate::in_place;
use crate::runtime::Runtime;
use crate::stack;

/// The proxy port's client limits, and the admin port's: the same timeouts but no
/// cap on connections, so probes always get through.
pub(super) fn client_limits(
    config: &Config,
    refused: &Arc<AtomicU64>,
) -> (ClientLimits, ClientLimits) {
    let proxy = ClientLimits {
        header_timeout: config.client_header_timeout,
        idle_timeout: config.client_idle_timeout,
        connections: Some(Arc::new(Semaphore::new(
            config.max_connections.get() as usize
        ))),
        refused: refused.clone(),
    };
    let admin = ClientLimits {
        connections: None,
        refused: Arc::default(),
        ..proxy.clone()
    };
    (proxy, admin)
}

/// A request's response, on its way (boxed: see `proxy_handler`).
type Handled = Pin<Box<dyn Future<Output = Result<Response<Tracked>, Infallible>> + Send>>;

/// What the proxy port does with each request: the request path on the runtime of
/// the moment (a reload swaps it), ready to move off its connection when replay will
/// finish it should its client leave.
pub(super) fn proxy_handler(
    runtime: Arc<ArcSwap<Runtime>>,
    observer: Arc<dyn Observer>,
) -> impl Fn(Request<Incoming>, InFlight) -> Handled + Clone + Send + Sync + 'static {
    move |req, in_flight| -> Handled {
        let runtime = runtime.load_full();
        let observer = observer.clone();
        // Boxed: hyper keeps a slot the size of this future for the connection's whole
        // life, and a stream's connection outlives the future (done once headers are
        // sent) by minutes. Boxed, the ~5 KiB are freed when the response starts.
        // Built in its box (`in_place`), not on the stack and then copied; the request
        // path's own future, owning the runtime (`serve_owned`), with nothing around it
        // but `Tracking`: each level of nesting moves the request once more.
        if stack::detaches(&runtime, &req) {
            let serving =
                || Tracking::new(stack::serve_detached(runtime, observer, req), in_flight);
            return in_place::boxed(serving);
        }
        in_place::boxed(|| Tracking::new(stack::serve_owned(runtime, observer, req), in_flight))
    }
}

pub(super) async fn bind(which: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            which,
            addr,
            source,
        })
}

pub(super) fn local_addr(
    listener: &TcpListener,
    which: &'static str,
    addr: SocketAddr,
) -> Result<SocketAddr, StartError> {
    listener.local_addr().map_err(|source| StartError::Bind {
        which,
        addr,
        source,
    })
}
