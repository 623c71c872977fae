//! Limits on client connections (SPEC §9): `client_header_timeout`,
//! `client_idle_timeout` and `max_connections`.
//!
//! Each connection has a `ConnClock` that knows whether a request is in flight on it.
//! While one is (its head has arrived and its response body has not ended: a long SSE
//! stream, a slow request body) no client timeout runs; `idle_timeout` guards those.
//! Otherwise the connection is waiting, and is closed at its deadline:
//!
//! - a new connection, or an idle one whose client has started sending the next head,
//!   must complete that head within `client_header_timeout`;
//! - an idle keep-alive connection with nothing sent is closed after `client_idle_timeout`.
//!
//! hyper's own `header_read_timeout` is not used: it starts whenever hyper waits for a
//! head, so it would also close idle keep-alive connections after the (shorter) header
//! timeout instead of `client_idle_timeout`.

use crate::read_tap::{ReadTap, Tap};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Response;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::body::{Body, BoxError};

/// The client-side limits of one listener.
#[derive(Debug, Clone)]
pub struct ClientLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    /// `None`: no cap (the admin listener).
    pub connections: Option<Arc<Semaphore>>,
    /// Connections closed unanswered because the cap was reached.
    pub refused: Arc<AtomicU64>,
}

impl ClientLimits {
    /// A place for one more connection, or `None` (counted) when all are taken.
    pub fn admit(&self) -> Option<Option<OwnedSemaphorePermit>> {
        let Some(connections) = &self.connections else {
            return Some(None);
        };
        match connections.clone().try_acquire_owned() {
            Ok(permit) => Some(Some(permit)),
            Err(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// No deadline stored.
const NONE: u64 = u64::MAX;

/// What one client connection is doing, for its deadline.
pub struct ConnClock {
    opened: Instant,
    header_timeout: Duration,
    idle_timeout: Duration,
    /// Requests whose response has not ended.
    in_flight: AtomicU32,
    /// Since when (ms after `opened`) the connection has had nothing in flight.
    idle_since: AtomicU64,
    /// Since when (ms after `opened`) the client has been sending a head, or `NONE`.
    head_since: AtomicU64,
    changed: Notify,
}

impl ConnClock {
    /// A connection accepted at `opened`: its first head is due within the header timeout.
    pub fn new(opened: Instant, limits: &ClientLimits) -> Arc<ConnClock> {
        Arc::new(ConnClock {
            opened,
            header_timeout: limits.header_timeout,
            idle_timeout: limits.idle_timeout,
            in_flight: AtomicU32::new(0),
            idle_since: AtomicU64::new(0),
            head_since: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    /// When the first head must have arrived (before the connection's version is known).
    pub fn first_head_due(&self) -> Instant {
        self.opened + self.header_timeout
    }

    fn now_ms(&self) -> u64 {
        self.opened.elapsed().as_millis() as u64
    }

    fn at(&self, ms: u64) -> Instant {
        self.opened + Duration::from_millis(ms)
    }

    /// When this connection is to be closed, or `None` while a request is in flight.
    fn deadline(&self) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.head_since.load(Ordering::Acquire) {
            NONE => Some(self.at(self.idle_since.load(Ordering::Acquire)) + self.idle_timeout),
            since => Some(self.at(since) + self.header_timeout),
        }
    }

    /// Resolves when the connection has been waiting past its deadline.
    ///
    /// Requests do not wake it: while idle it sleeps until its deadline, or at most
    /// until `header_timeout` from now (a head that starts later is due no earlier than
    /// that), and reads the deadline again; while a request is in flight it waits for
    /// the request to end. So a busy keep-alive connection arms no timer per request
    /// and its task is not woken between requests.
    pub async fn expired(&self) {
        loop {
            let changed = self.changed.notified();
            match self.deadline() {
                None => changed.await,
                Some(at) => {
                    let now = Instant::now();
                    if at <= now {
                        return;
                    }
                    tokio::time::sleep_until(at.min(now + self.header_timeout)).await;
                }
            }
        }
    }

    /// A request's head has arrived: no timeout until its response ends.
    pub fn request_started(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_since.store(NONE, Ordering::Release);
        InFlight(self.clone())
    }

    /// Bytes arrived: while idle, they start the next head (`expired` reads it when
    /// its timer fires, which is never later than this head's deadline).
    fn read_some(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_since.load(Ordering::Acquire) == NONE
        {
            let _ = self.head_since.compare_exchange(
                NONE,
                self.now_ms(),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
        }
    }
}

/// Held by a response body until it ends or is dropped.
pub struct InFlight(Arc<ConnClock>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let clock = &self.0;
        if clock.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            clock.idle_since.store(clock.now_ms(), Ordering::Release);
            clock.changed.notify_one();
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight until it ends.
    pub struct Tracked {
        #[pin]
        inner: Body,
        in_flight: Option<InFlight>,
    }
}

impl Tracked {
    fn new(inner: Body, in_flight: Option<InFlight>) -> Tracked {
        let in_flight = in_flight.filter(|_| !inner.is_end_stream());
        Tracked { inner, in_flight }
    }

    /// `response`, its request in flight until its body ends.
    pub fn response(response: Response<Body>, in_flight: InFlight) -> Response<Tracked> {
        response.map(|body| Tracked::new(body, Some(in_flight)))
    }
}

pin_project_lite::pin_project! {
    /// A request's response on its way (`serving`), then tracked until its body ends:
    /// the future hyper polls for the request, with no async block around it.
    pub struct Tracking<F> {
        #[pin]
        serving: F,
        in_flight: Option<InFlight>,
    }
}

impl<F> Tracking<F> {
    #[inline]
    pub fn new(serving: F, in_flight: InFlight) -> Tracking<F> {
        Tracking {
            serving,
            in_flight: Some(in_flight),
        }
    }
}

impl<F: Future<Output = Response<Body>>> Future for Tracking<F> {
    type Output = Result<Response<Tracked>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.serving.poll(cx));
        // Taken: a finished future is not polled again (by hyper, or it would be the
        // request path's own that panicked first).
        let in_flight = this.in_flight.take();
        Poll::Ready(Ok(response.map(|body| Tracked::new(body, in_flight))))
    }
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if matches!(polled, Poll::Ready(None) | Poll::Ready(Some(Err(_)))) {
            this.in_flight.take();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A client connection's IO, telling its clock when bytes arrive.
pub type Watched<I> = ReadTap<I, Arc<ConnClock>>;

impl Tap for Arc<ConnClock> {
    fn read(&mut self, _bytes: &[u8]) {
        self.read_some();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ClientLimits {
        ClientLimits {
            header_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            connections: None,
            refused: Arc::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_expires_at_the_header_timeout() {
        let clock = ConnClock::new(Instant::now(), &limits());
        let start = Instant::now();
        clock.expired().await;
        assert_eq!(start.elapsed(), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_expires_while_a_request_is_in_flight_then_idle_counts() {
        let clock = ConnClock::new(Instant::now(), &limits());
        let in_flight = clock.request_started();
        let expired = clock.expired();
        tokio::pin!(expired);
        let waited = tokio::time::timeout(Duration::from_secs(600), expired.as_mut()).await;
        assert!(waited.is_err(), "expired while a request was in flight");
        let idle_from = Instant::now();
        drop(in_flight);
        expired.await;
        assert_eq!(idle_from.elapsed(), Duration::from_secs(75));
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_that_starts_a_head_must_finish_it_in_time() {
        let clock = ConnClock::new(Instant::now(), &limits());
        drop(clock.request_started());
        tokio::time::advance(Duration::from_secs(60)).await;
        let started = Instant::now();
        clock.read_some();
        clock.expired().await;
        assert_eq!(started.elapsed(), Duration::from_secs(30));
    }

    #[test]
    fn connections_over_the_cap_are_refused_and_counted() {
        let mut limits = limits();
        limits.connections = Some(Arc::new(Semaphore::new(1)));
        let first = limits.admit().expect("room for one");
        assert!(limits.admit().is_none());
        assert_eq!(limits.refused.load(Ordering::Relaxed), 1);
        drop(first);
        assert!(limits.admit().is_some());
    }
}
