//! Upstream connections kept open between requests, one pool per upstream.
//!
//! HTTP/1.1 connections are lent out one request at a time: a request takes the most
//! recently returned one (warm, least likely to have been closed by the server), and
//! the response body gives it back when it ends cleanly (`UpstreamBody`); a body dropped
//! part-way takes its connection down with it, as it cannot carry another request.
//! HTTP/2 connections (TLS upstreams that offer h2 in ALPN) carry many requests each, as
//! many as the server allows, in `h2_pool`. Connections idle for longer than
//! `pool_idle_timeout` are closed by a sweep.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use std::time::Duration;

use hyper::client::conn::http1;
use tokio::time::Instant;

use super::h2_pool::H2Pool;
use crate::body::Body;
use crate::tasks::Tasks;

/// More idle connections than this to one upstream are closed as they come back.
const MAX_IDLE: usize = 1024;

/// The idle connections to one upstream.
pub struct Pool {
    idle: Mutex<Vec<Idle>>,
    pub h2: H2Pool,
    idle_timeout: Duration,
    sweeping: AtomicBool,
    /// Set at shutdown: connections coming back are closed instead of kept.
    closed: AtomicBool,
    tasks: Arc<Tasks>,
    /// The `Host` header HTTP/1.1 requests to this upstream carry, made once.
    pub host: Option<http::HeaderValue>,
}

struct Idle {
    sender: http1::SendRequest<Body>,
    since: Instant,
}

impl Pool {
    pub fn new(
        idle_timeout: Duration,
        tasks: Arc<Tasks>,
        host: Option<http::HeaderValue>,
    ) -> Arc<Pool> {
        Arc::new(Pool {
            idle: Mutex::new(Vec::new()),
            h2: H2Pool::default(),
            idle_timeout,
            sweeping: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            tasks,
            host,
        })
    }

    /// Closes every idle connection and keeps none from now on (shutdown): their
    /// connection tasks end once the senders are gone.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.idle.lock().clear();
        self.h2.close();
    }

    /// The most recently returned HTTP/1.1 connection still open, if any.
    pub fn take(&self) -> Option<http1::SendRequest<Body>> {
        let mut idle = self.idle.lock();
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
        if sender.is_closed() || self.closed.load(Ordering::Relaxed) {
            return;
        }
        if !sender.is_ready() {
            // Still busy, e.g. sending a request body the upstream answered early: lent
            // out now, it would hold the next request back. It rejoins once free.
            let pool = self.clone();
            self.tasks.spawn(async move {
                if sender.ready().await.is_ok() {
                    pool.put(sender);
                }
            });
            return;
        }
        self.put(sender);
    }

    fn put(self: &Arc<Self>, sender: http1::SendRequest<Body>) {
        let mut idle = self.idle.lock();
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
        self.idle.lock().len()
    }

    /// Once per pool, from the first connection returned (so always inside the runtime):
    /// a task that closes expired connections, ending when the pool is dropped.
    pub fn start_sweeping(self: &Arc<Self>) {
        if self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool: Weak<Pool> = Arc::downgrade(self);
        let every = (self.idle_timeout / 2).max(Duration::from_millis(100));
        self.tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                {
                    let mut idle = pool.idle.lock();
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
