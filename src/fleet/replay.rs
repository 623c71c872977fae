//! `[replay] store = "redis"` (SPEC §8): replay entries and in-flight markers shared
//! by the fleet, so a repeat that lands on another replica is replayed, or waits for
//! the call still running on the first one.
//!
//! Every entry is also kept by this replica's local store, which answers first (no
//! round trip for a repeat on the same replica), survives a restart, and is all there
//! is while Redis is down: then replay works per replica, as with `store = "local"`,
//! and no request waits for Redis longer than `timeout`.
//!
//! In Redis (keys under `<key_prefix>replay:`, hashes only, never a key or a prompt):
//! - `<scope>`: the kept record (`Kept::encode`), expiring with the entry (`PX`);
//! - `<scope>:running`: the in-flight marker, `<body hash>:<claim id>`, taken with one
//!   atomic script (`CLAIM`) and released only by its holder (`RELEASE`); it expires
//!   by itself (`MARKER_TTL`) should its replica die mid-call.
//!
//! Writes go through one queue and one task, in order: a response's entry is stored
//! before its marker is released, so a waiter that sees the marker gone finds the
//! entry, or knows the call ended without one (it then goes upstream itself).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use redis::Script;
use tokio::sync::{mpsc, oneshot};

use super::Store;
use crate::replay::local::now_ms;
use crate::replay::store::{Claim, InFlight, ReplayStore, Running, StoreFuture};
use crate::replay::{Kept, ScopeKey};
use crate::request_fingerprint::Sha256Hex;

/// How long a marker outlives a replica that died holding it.
const MARKER_TTL: Duration = Duration::from_secs(600);
/// How often a waiter asks whether the call it waits for on another replica ended.
const POLL: Duration = Duration::from_millis(25);
/// Writes queued at most; past that a write is dropped (the local store still has it).
const QUEUE: usize = 1024;
/// How long shutdown waits for queued writes to reach Redis.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Takes the marker unless someone holds it; returns the holder's value, or nil.
const CLAIM: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder then return holder end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
";

/// Deletes the marker only if it is still this claim's.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// The fleet's replay store, over this replica's local one.
pub struct SharedReplay {
    local: Arc<dyn ReplayStore>,
    keys: Arc<Keys>,
    writes: Mutex<Option<mpsc::Sender<Write>>>,
    /// Resolves when the writer has ended (every queued write done).
    written: Mutex<Option<oneshot::Receiver<()>>>,
    dropped: AtomicU64,
    claims: AtomicU64,
}

/// Names in Redis, and the store to reach it.
struct Keys {
    store: Arc<Store>,
    prefix: String,
    claim: Script,
    release: Script,
}

enum Write {
    Keep {
        key: String,
        record: Vec<u8>,
        px: u64,
    },
    Release {
        marker: String,
        value: String,
    },
}

impl SharedReplay {
    /// Shares `local`'s entries through `store`; the writer runs on the store's tasks.
    pub fn new(local: Arc<dyn ReplayStore>, store: &Arc<Store>) -> SharedReplay {
        let keys = Arc::new(Keys {
            store: store.clone(),
            prefix: format!("{}replay:", store.key_prefix),
            claim: Script::new(CLAIM),
            release: Script::new(RELEASE),
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        let (done, written) = oneshot::channel();
        store.tasks.spawn(write_in_order(keys.clone(), rx, done));
        SharedReplay {
            local,
            keys,
            writes: Mutex::new(Some(tx)),
            written: Mutex::new(Some(written)),
            dropped: AtomicU64::new(0),
            claims: AtomicU64::new(fastrand::u64(..)),
        }
    }

    fn queue(&self, write: Write) {
        let queued = self
            .writes
            .lock()
            .as_ref()
            .is_some_and(|tx| tx.try_send(write).is_ok());
        if !queued {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Holds `scope` in Redis too, or learns which replica holds it.
    async fn claim_shared(&self, scope: ScopeKey, body: Sha256Hex, local: InFlight) -> Claim {
        let marker = self.keys.marker(scope);
        let id = self.claims.fetch_add(1, Ordering::Relaxed);
        let value = format!("{body}:{id:016x}");
        let px = u64::try_from(MARKER_TTL.as_millis()).unwrap_or(u64::MAX);
        let holder = self
            .keys
            .store
            .call(async |c| {
                let mut invocation = self.keys.claim.prepare_invoke();
                invocation.key(&marker).arg(&value).arg(px);
                invocation.invoke_async::<Option<String>>(c).await
            })
            .await;
        match holder {
            // Held by another replica: wait for it there, and let this replica's own
            // duplicates wait for what this one gets.
            Ok(Some(holder)) => match holder_body(&holder) {
                Some(body) => Claim::Running(Running {
                    body,
                    result: Box::pin(wait_elsewhere(self.keys.clone(), scope, local)),
                }),
                None => Claim::First(local),
            },
            Ok(None) => {
                let writes = self.writes.lock().clone();
                Claim::First(InFlight::new(move |result| {
                    // Queued after the entry's own write (`put`), so it lands after it.
                    if let Some(tx) = writes {
                        let _ = tx.try_send(Write::Release { marker, value });
                    }
                    local.finish(result);
                }))
            }
            // Redis down or slow: this replica's marks alone.
            Err(_) => Claim::First(local),
        }
    }
}

impl ReplayStore for SharedReplay {
    fn get(&self, scope: ScopeKey) -> StoreFuture<'_, Option<Arc<Kept>>> {
        Box::pin(async move {
            if let Some(kept) = self.local.get(scope).await {
                return Some(kept);
            }
            let key = self.keys.entry(scope);
            let record = self
                .keys
                .store
                .call(async |c| {
                    redis::cmd("GET")
                        .arg(&key)
                        .query_async::<Option<Vec<u8>>>(c)
                        .await
                })
                .await;
            self.keys.decode(scope, record.ok().flatten())
        })
    }

    fn put(&self, scope: ScopeKey, kept: Arc<Kept>) {
        self.local.put(scope, kept.clone());
        let px = kept.expires_at.saturating_sub(now_ms());
        if px == 0 {
            return;
        }
        if let Some(record) = kept.encode(scope) {
            let key = self.keys.entry(scope);
            self.queue(Write::Keep { key, record, px });
        }
    }

    fn claim(&self, scope: ScopeKey, body: Sha256Hex) -> StoreFuture<'_, Claim> {
        Box::pin(async move {
            match self.local.claim(scope, body).await {
                Claim::First(local) if self.keys.store.is_up() => {
                    self.claim_shared(scope, body, local).await
                }
                claim => claim,
            }
        })
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            // The writer drains what is queued, then ends; Redis is closed after this.
            drop(self.writes.lock().take());
            let written = self.written.lock().take();
            if let Some(written) = written {
                let _ = tokio::time::timeout(CLOSE_WAIT, written).await;
            }
            self.local.close().await;
        })
    }

    fn errors(&self) -> u64 {
        self.local.errors() + self.dropped.load(Ordering::Relaxed)
    }
}

impl Keys {
    fn entry(&self, scope: ScopeKey) -> String {
        format!("{}{}", self.prefix, Sha256Hex(scope.0))
    }

    fn marker(&self, scope: ScopeKey) -> String {
        format!("{}{}:running", self.prefix, Sha256Hex(scope.0))
    }

    /// A record read back, if it is whole, is `scope`'s, and has not expired.
    fn decode(&self, scope: ScopeKey, record: Option<Vec<u8>>) -> Option<Arc<Kept>> {
        let (head, kept) = Kept::decode(&record?)?;
        (head.scope == scope && kept.expires_at > now_ms()).then(|| Arc::new(kept))
    }
}

/// The body hash a holder's marker names (`<hex>:<claim id>`).
fn holder_body(holder: &str) -> Option<Sha256Hex> {
    let hex = holder.split(':').next()?;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(Sha256Hex(out))
}

/// Waits for the call running on another replica: its entry once stored, or `None`
/// once its marker is gone without one (or Redis cannot tell). The caller bounds the
/// wait by the request's deadline. This replica's duplicates get the same result.
async fn wait_elsewhere(keys: Arc<Keys>, scope: ScopeKey, local: InFlight) -> Option<Arc<Kept>> {
    let (entry, marker) = (keys.entry(scope), keys.marker(scope));
    let result = loop {
        tokio::time::sleep(POLL).await;
        // The marker first: an entry is stored before its marker goes, so a marker
        // seen gone means the entry read after it is the final word.
        let seen = keys
            .store
            .call(async |c| {
                redis::pipe()
                    .exists(&marker)
                    .get(&entry)
                    .query_async::<(bool, Option<Vec<u8>>)>(c)
                    .await
            })
            .await;
        match seen {
            Ok((_, Some(record))) => break keys.decode(scope, Some(record)),
            Ok((true, None)) => continue,
            Ok((false, None)) | Err(_) => break None,
        }
    };
    local.finish(result.clone());
    result
}

/// The one writer: each write in turn, bounded by `timeout` like every command.
/// `done` is dropped when it ends.
async fn write_in_order(keys: Arc<Keys>, mut rx: mpsc::Receiver<Write>, done: oneshot::Sender<()>) {
    let _done = done;
    while let Some(write) = rx.recv().await {
        let _ = match write {
            Write::Keep { key, record, px } => {
                keys.store
                    .call(async |c| {
                        redis::cmd("SET")
                            .arg(&key)
                            .arg(&record)
                            .arg("PX")
                            .arg(px)
                            .query_async::<()>(c)
                            .await
                    })
                    .await
            }
            Write::Release { marker, value } => {
                keys.store
                    .call(async |c| {
                        let mut invocation = keys.release.prepare_invoke();
                        invocation.key(&marker).arg(&value);
                        invocation.invoke_async::<()>(c).await
                    })
                    .await
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marker_names_its_holders_body_hash() {
        let body = Sha256Hex([0xab; 32]);
        assert_eq!(holder_body(&format!("{body}:00000000000000ff")), Some(body));
        assert_eq!(holder_body("not-a-hash:1"), None);
        assert_eq!(holder_body(&"zz".repeat(32)), None);
    }
}
