//! The accept loop of one listener: client limits (`limits`), HTTP/1.1 or h2c per
//! connection (`version`), and the drain on shutdown.
//!
//! HTTP/1.1 connections are served `with_upgrades`: after a `101` hyper hands the
//! connection's IO to the WebSocket session (`stack::websocket`) and this connection's
//! task ends, so neither its clock nor its drain applies to the session, which the
//! runtime's `sessions` own. hyper-util's `GracefulShutdown` does not take upgradeable
//! connections, so each connection is told to finish by the stop signal itself.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::limits::{ClientLimits, ConnClock, InFlight, Tracked};
use super::version::{self, Version};
use super::woken::Woken;
use crate::body::BoxError;
use crate::read_tap::ReadTap;

/// HTTP/1.1 and h2c (prior knowledge), told apart per connection by `version`.
type Builders = Arc<(http1::Builder, http2::Builder<TokioExecutor>)>;

/// Accepts connections until told to stop, then drains them within `grace`.
pub(super) async fn serve<F, Fut>(
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
    limits: ClientLimits,
    handler: F,
) where
    F: Fn(Request<Incoming>, InFlight) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Tracked>, Infallible>> + Send + 'static,
{
    let builders: Builders = Arc::new((
        http1::Builder::new(),
        http2::Builder::new(TokioExecutor::new()),
    ));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // e.g. EMFILE: back off briefly instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(permit) = limits.admit() else {
                    // Over max_connections: closed unanswered, counted.
                    tracing::debug!("max_connections reached; connection closed");
                    drop(stream);
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let clock = ConnClock::new(Instant::now(), &limits);
                // Spawned as it is: an `async` block awaiting it would hold the
                // connection's state twice (~2 KiB more a connection).
                let served = connection(
                    stream, clock, handler.clone(), builders.clone(), stop.clone(), permit,
                );
                connections.spawn(served);
                while connections.try_join_next().is_some() {}
            }
            _ = stop.changed() => break,
        }
    }
    drop(listener);
    drain(connections, grace).await;
}

/// One client connection, from its first bytes to its end.
async fn connection<F, Fut>(
    stream: TcpStream,
    clock: Arc<ConnClock>,
    handler: F,
    builders: Builders,
    mut stop: watch::Receiver<bool>,
    // This connection's place under `max_connections`, given back when it ends.
    _permit: Option<OwnedSemaphorePermit>,
) where
    F: Fn(Request<Incoming>, InFlight) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Response<Tracked>, Infallible>> + Send + 'static,
{
    // The handler's future is hyper's service future itself: it ends the response
    // with its `InFlight` (`Tracked`), not a wrapping future polled around it.
    let service = {
        let clock = clock.clone();
        service_fn(move |req| handler(req, clock.request_started()))
    };
    // A connection that never says which version it speaks is not
    // waited for, and gets `client_header_timeout` to say it.
    let detected = tokio::select! {
        detected = tokio::time::timeout_at(clock.first_head_due(), version::detect(stream)) => detected,
        _ = stop.changed() => return,
    };
    let Ok(detected) = detected else {
        tracing::debug!("client sent no request head in time; closed");
        return;
    };
    // Each connection is dropped (closed) when `clock` says it has waited
    // too long with no request in flight.
    let ended = match detected {
        Ok((Version::H1, io)) => {
            let io = TokioIo::new(ReadTap::new(io, clock.clone()));
            let conn = builders.0.serve_connection(io, service).with_upgrades();
            until_done(conn, &clock, stop).await
        }
        // Boxed: h2c is rare here, and its state would size every task.
        // Its frames are not heads: only in-flight streams count.
        Ok((Version::H2, io)) => {
            let conn = builders.1.serve_connection(TokioIo::new(io), service);
            until_done(Box::pin(conn), &clock, stop).await
        }
        Err(e) => Err(e.into()),
    };
    if let Err(e) = ended {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// After the stop signal: open connections get `grace` to finish, then are cut.
async fn drain(mut connections: JoinSet<()>, grace: Duration) {
    while connections.try_join_next().is_some() {}
    let open = connections.len();
    if open > 0 {
        tracing::info!(open, ?grace, "waiting for open connections");
    }
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            ?grace,
            "shutdown_grace passed; cutting remaining connections"
        );
    }
    connections.shutdown().await;
}

/// A served connection, until it ends, its clock expires, or (after the stop signal)
/// its in-flight requests are done. Not an `async fn`, which would keep the
/// connection (~700 bytes) twice in the task.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice"
)]
fn until_done<C>(
    mut conn: C,
    clock: &ConnClock,
    mut stop: watch::Receiver<bool>,
) -> impl Future<Output = Result<(), BoxError>>
where
    C: Drain + Unpin,
{
    async move {
        // The watchdogs are polled only when they were woken, not at each of the
        // connection's wakes (`Woken`).
        let mut expired = std::pin::pin!(Woken::new(clock.expired()));
        let stopped = Woken::new(stop.wait_for(|stopped| *stopped));
        // `biased`: in this order, without drawing a random start on each of the
        // connection's wakes (several a request); the watchdogs are cheap when idle.
        tokio::select! {
            biased;
            ended = &mut conn => return ended.map_err(BoxError::from),
            _ = expired.as_mut() => return Ok(()),
            _ = stopped => Pin::new(&mut conn).drain(),
        }
        tokio::select! {
            biased;
            // Borrowed again, not moved: moved, it would be held twice in the task.
            ended = &mut conn => ended.map_err(BoxError::from),
            _ = expired => Ok(()),
        }
    }
}

/// A connection that can be asked to finish what it has and take nothing new.
trait Drain: Future<Output = Result<(), hyper::Error>> {
    fn drain(self: Pin<&mut Self>);
}

impl<I, S> Drain for http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<Incoming, ResBody = Tracked>,
    S::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    fn drain(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S> Drain for Pin<Box<http2::Connection<I, S, TokioExecutor>>>
where
    S: hyper::service::HttpService<Incoming, ResBody = Tracked>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + 'static,
{
    fn drain(self: Pin<&mut Self>) {
        self.get_mut().as_mut().graceful_shutdown();
    }
}
