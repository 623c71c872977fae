//! The store behind replay, as a small trait: `get` and `put` a kept response, `claim`
//! a scope while its request is in flight (or learn who holds it and wait for them),
//! `close` at shutdown. `local` keeps entries on disk for this replica; a shared store
//! (Redis, SPEC §8) implements the same four calls.
//!
//! A store never fails a request: whatever goes wrong (disk, network) is a miss,
//! counted and logged without secrets.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use super::kept::Kept;
use super::scope::ScopeKey;
use crate::request_fingerprint::Sha256Hex;

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

pub trait ReplayStore: Send + Sync + 'static {
    /// The response kept for `scope`, unless it has expired (or cannot be read).
    fn get(&self, scope: ScopeKey) -> StoreFuture<'_, Option<Arc<Kept>>>;

    /// Keeps `kept` for `scope` until `kept.expires_at`. Returns at once; `get` sees it
    /// from now on, the disk (or network) later.
    fn put(&self, scope: ScopeKey, kept: Arc<Kept>);

    /// Marks `scope` in flight for a request whose body hash is `body`: `First` if no
    /// one holds it, else the holder's body hash and a way to wait for its result.
    fn claim(&self, scope: ScopeKey, body: Sha256Hex) -> StoreFuture<'_, Claim>;

    /// Writes what is still queued and stops the store's own task.
    fn close(&self) -> StoreFuture<'_, ()>;

    /// Reads or writes that failed since start (each one a miss or a lost entry).
    fn errors(&self) -> u64;
}

/// The outcome of `ReplayStore::claim`.
pub enum Claim {
    /// This request holds the scope until its `InFlight` is finished or dropped.
    First(InFlight),
    /// Another request holds it.
    Running(Running),
}

/// Another request in flight on the same scope.
pub struct Running {
    /// Its request body hash (an idempotency key reused with another body is a 422).
    pub body: Sha256Hex,
    /// Its result: the response to replay, or `None` when it ended without a 2xx.
    pub result: StoreFuture<'static, Option<Arc<Kept>>>,
}

/// A held scope. `finish` hands the result to whoever waits; dropped unfinished (the
/// request failed, or was cancelled) it releases them with `None`.
pub struct InFlight {
    done: Option<Done>,
}

/// Tells the waiters how the request ended.
type Done = Box<dyn FnOnce(Option<Arc<Kept>>) + Send + Sync>;

impl InFlight {
    pub fn new(done: impl FnOnce(Option<Arc<Kept>>) + Send + Sync + 'static) -> InFlight {
        InFlight {
            done: Some(Box::new(done)),
        }
    }

    pub fn finish(mut self, result: Option<Arc<Kept>>) {
        if let Some(done) = self.done.take() {
            done(result);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            done(None);
        }
    }
}

impl std::fmt::Debug for InFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InFlight")
    }
}
