//! HTTP/2 connections to one upstream, as many as its stream limit requires (SPEC §1):
//! a request takes a stream on the open connection with the fewest in flight that is
//! below the server's `SETTINGS_MAX_CONCURRENT_STREAMS`; when every one is full, another
//! connection is opened (one at a time, so a burst does not open one per request).
//! Streams are counted here, not by hyper (which would queue the request inside a full
//! connection): a `StreamLease` is held by the response body until it ends. A
//! connection left with no stream for `pool_idle_timeout` is closed by the pool's sweep.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use hyper::client::conn::http2;
use parking_lot::{Mutex, MutexGuard};
use tokio::time::Instant;

use super::h2_settings::StreamLimit;
use crate::body::Body;

/// The HTTP/2 connections to one upstream.
#[derive(Default)]
pub struct H2Pool {
    conns: Mutex<Vec<Arc<H2Conn>>>,
    /// Held while a connection is being opened.
    opening: tokio::sync::Mutex<()>,
}

struct H2Conn {
    sender: http2::SendRequest<Body>,
    limit: Arc<StreamLimit>,
    streams: AtomicU32,
    /// When `streams` last fell to 0.
    idle_since: Mutex<Instant>,
}

/// One stream on a connection, counted until dropped.
pub struct StreamLease {
    conn: Arc<H2Conn>,
}

impl StreamLease {
    /// The connection's request sender.
    pub fn sender(&self) -> http2::SendRequest<Body> {
        self.conn.sender.clone()
    }
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        if self.conn.streams.fetch_sub(1, Ordering::AcqRel) == 1 {
            *lock(&self.conn.idle_since) = Instant::now();
        }
    }
}

/// Connections and streams open now, for `/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct H2Counts {
    pub connections: usize,
    pub streams: u32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock()
}

impl H2Pool {
    /// Whether the upstream speaks HTTP/2 here (an open connection exists).
    pub fn is_open(&self) -> bool {
        lock(&self.conns).iter().any(|c| !c.sender.is_closed())
    }

    /// A stream on the least busy connection that has room for one.
    pub fn lease(&self) -> Option<StreamLease> {
        let mut conns = lock(&self.conns);
        conns.retain(|c| !c.sender.is_closed());
        let conn = conns
            .iter()
            // A server announcing 0 (no new streams for now) still gets one per
            // connection: otherwise every request would open another connection.
            .filter(|c| c.streams.load(Ordering::Acquire) < c.limit.max().max(1))
            .min_by_key(|c| c.streams.load(Ordering::Acquire))?;
        conn.streams.fetch_add(1, Ordering::AcqRel);
        Some(StreamLease { conn: conn.clone() })
    }

    /// Adds a new connection and takes its first stream.
    pub fn add(&self, sender: http2::SendRequest<Body>, limit: Arc<StreamLimit>) -> StreamLease {
        let conn = Arc::new(H2Conn {
            sender,
            limit,
            streams: AtomicU32::new(1),
            idle_since: Mutex::new(Instant::now()),
        });
        lock(&self.conns).push(conn.clone());
        StreamLease { conn }
    }

    /// Held while opening a connection; after getting it, try `lease` again first.
    pub async fn opening(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.opening.lock().await
    }

    /// Closes connections (by dropping their sender) that are closed already or have
    /// had no stream for `idle_timeout`.
    pub fn expire(&self, idle_timeout: Duration) {
        let now = Instant::now();
        lock(&self.conns).retain(|c| {
            !c.sender.is_closed()
                && (c.streams.load(Ordering::Acquire) > 0
                    || now.duration_since(*lock(&c.idle_since)) < idle_timeout)
        });
    }

    /// Closes every connection (shutdown): their tasks end once the senders are gone
    /// and their last streams have ended.
    pub fn close(&self) {
        lock(&self.conns).clear();
    }

    pub fn counts(&self) -> H2Counts {
        let conns = lock(&self.conns);
        let open = conns.iter().filter(|c| !c.sender.is_closed());
        H2Counts {
            connections: open.clone().count(),
            streams: open.map(|c| c.streams.load(Ordering::Relaxed)).sum(),
        }
    }
}
