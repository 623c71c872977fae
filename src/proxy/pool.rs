//! Upstream connections kept open between requests, one pool per upstream.
//!
//! HTTP/1.1 connections are lent out one request at a time: a request takes the most
//! recently returned one (warm, least likely to have been closed by the server), and
//! the response body gives it back when it ends cleanly (`UpstreamBody`); a body dropped
//! part-way takes its connection down with it, as it cannot carry another request.
//! HTTP/2 connections (TLS upstreams that offer h2 in ALPN) carry many requests each, as
//! many as the server allows, in `h2_pool`. Connections idle for longer than
//! `pool_idle_timeout` are closed by a sweep.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use tokio::time::Instant;

use super::h2_pool::{H2Pool, StreamLease};
use crate::body::Body;

/// More idle connections than this to one upstream are closed as they come back.
const MAX_IDLE: usize = 1024;

/// The idle connections to one upstream.
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
    pub h2: H2Pool,
    idle_timeout: Duration,
    sweeping: AtomicBool,
}

struct Idle {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

impl Pool {
    pub fn new(idle_timeout: Duration) -> Arc<Pool> {
        Arc::new(Pool {
            idle: Mutex::new(Vec::new()),
            h2: H2Pool::default(),
            idle_timeout,
            sweeping: AtomicBool::new(false),
        })
    }

    /// The most recently returned HTTP/1.1 connection still open, if any.
    pub fn take(&self) -> Option<http1::SendRequest<Body>> {
        let mut idle = self.idle.lock().ok()?;
        expire(&mut idle, self.idle_timeout);
        while let Some(conn) = idle.pop() {
            if !conn.sender.is_closed() {
                return Some(conn.sender);
            }
        }
        None
    }

    /// Takes back a connection whose response has ended.
    pub fn give_back(self: &Arc<Self>, mut sender: http1::SendRequest<Body>) {
        if sender.is_closed() {
            return;
        }
        if !sender.is_ready() {
            // Still busy, e.g. sending a request body the upstream answered early: lent
            // out now, it would hold the next request back. It rejoins once free.
            let pool = self.clone();
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    pool.put(sender);
                }
            });
            return;
        }
        self.put(sender);
    }

    fn put(self: &Arc<Self>, sender: http1::SendRequest<Body>) {
        let Ok(mut idle) = self.idle.lock() else {
            return;
        };
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push(Idle {
            sender,
            since: Instant::now(),
        });
        drop(idle);
        self.start_sweeping();
    }

    /// How many idle HTTP/1.1 connections are kept (tests).
    pub fn idle_count(&self) -> usize {
        self.idle.lock().map_or(0, |idle| idle.len())
    }

    /// Once per pool, from the first connection returned (so always inside the runtime):
    /// a task that closes expired connections, ending when the pool is dropped.
    pub fn start_sweeping(self: &Arc<Self>) {
        if self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool: Weak<Pool> = Arc::downgrade(self);
        let every = (self.idle_timeout / 2).max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                if let Ok(mut idle) = pool.idle.lock() {
                    expire(&mut idle, pool.idle_timeout);
                    idle.retain(|conn| !conn.sender.is_closed());
                }
                pool.h2.expire(pool.idle_timeout);
            }
        });
    }
}

/// Drops the connections idle for longer than `timeout` (the oldest are first).
fn expire(idle: &mut Vec<Idle>, timeout: Duration) {
    let now = Instant::now();
    let stale = idle
        .iter()
        .take_while(|conn| now.duration_since(conn.since) >= timeout)
        .count();
    idle.drain(..stale);
}

pin_project_lite::pin_project! {
    /// A response body from an upstream; an HTTP/1.1 connection goes back to its pool
    /// when the body has been read to its end, an HTTP/2 stream is counted until then.
    pub struct UpstreamBody {
        #[pin]
        inner: Incoming,
        lender: Option<(Arc<Pool>, http1::SendRequest<Body>)>,
        stream: Option<StreamLease>,
    }
}

impl UpstreamBody {
    pub fn new(inner: Incoming, lender: Option<(Arc<Pool>, http1::SendRequest<Body>)>) -> Self {
        let mut body = UpstreamBody {
            inner,
            lender,
            stream: None,
        };
        if body.inner.is_end_stream() {
            body.give_back();
        }
        body
    }

    /// A body on an HTTP/2 stream, counted against its connection until it ends.
    pub fn on_stream(inner: Incoming, stream: StreamLease) -> Self {
        let stream = (!inner.is_end_stream()).then_some(stream);
        UpstreamBody {
            inner,
            lender: None,
            stream,
        }
    }

    fn give_back(&mut self) {
        if let Some((pool, sender)) = self.lender.take() {
            pool.give_back(sender);
        }
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => this.inner.is_end_stream(),
            // A broken body: the connection is not fit to carry another request.
            Poll::Ready(Some(Err(_))) => {
                this.lender.take();
                this.stream.take();
                false
            }
            Poll::Pending => false,
        };
        if ended {
            this.stream.take();
            if let Some((pool, sender)) = this.lender.take() {
                pool.give_back(sender);
            }
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
