//! `store = "local"`: replay entries on this machine's disk, so they survive a restart.
//!
//! Why append-only segments with an index rebuilt at start, and not an embedded
//! database (redb, sled): the store needs four things — put, get by key, drop the
//! oldest, expire — and no updates in place, transactions or range queries. Segments
//! give exactly that with no new dependency; a crash can only tear the last record,
//! which the checksum turns into a miss. The index (scope → file, offset, head) is
//! rebuilt from record heads alone at start (see docs/benchmarks.md for its time with
//! 100 000 entries); bodies stay on disk until a replay reads one.
//!
//! The request path never waits on a write: `put` makes the entry visible in memory
//! and queues it; one writer task, owned here and awaited by `close`, appends on the
//! blocking pool. A failed read or write is a miss, counted, logged without secrets.

mod hot;
mod segments;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::kept::{Head, Kept};
use super::marks::Marks;
use super::scope::ScopeKey;
use super::store::{Claim, ReplayStore, StoreFuture};
use crate::request_fingerprint::Sha256Hex;
use hot::Hot;
use segments::{Loc, Segments};

/// Entries queued for the writer at most; past that a `put` is dropped and counted.
const QUEUE: usize = 1024;

pub struct LocalStore {
    shared: Arc<Shared>,
    marks: Arc<Marks>,
    queue: Mutex<Option<mpsc::Sender<Write>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    dir: std::path::PathBuf,
    index: Mutex<HashMap<ScopeKey, Slot>>,
    /// Entries on disk that are also kept in memory (`hot`).
    hot: Mutex<Hot>,
    errors: AtomicU64,
}

/// An entry for the writer.
type Write = (ScopeKey, Arc<Kept>);

enum Slot {
    /// Not written yet: served from memory.
    Pending(Arc<Kept>),
    OnDisk(Loc),
}

/// Now, as the store's expiry times count it (Unix ms).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl LocalStore {
    /// Opens (or makes) the store in `dir` and starts its writer. A directory that
    /// cannot be used leaves an empty store that only misses; proxying goes on.
    pub fn open(dir: &Path, max_bytes: u64) -> LocalStore {
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            index: Mutex::default(),
            hot: Mutex::new(Hot::for_store(max_bytes)),
            errors: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel(QUEUE);
        let segments = match Segments::open(dir, max_bytes, now_ms()) {
            Ok((segments, locs)) => {
                let mut index = shared.index.lock();
                for loc in locs {
                    index.insert(loc.head.scope, Slot::OnDisk(loc));
                }
                tracing::info!(entries = index.len(), dir = %dir.display(), "replay store opened");
                Some(segments)
            }
            Err(e) => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, dir = %dir.display(), "replay store unusable: replays will miss");
                None
            }
        };
        let writer = tokio::spawn(write_loop(rx, segments, shared.clone()));
        LocalStore {
            shared,
            marks: Arc::default(),
            queue: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        }
    }

    /// Entries the index holds (tests, diagnostics).
    pub fn len(&self) -> usize {
        self.shared.index.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn miss(&self, what: &str, error: &dyn std::fmt::Display) {
        let n = self.shared.errors.fetch_add(1, Ordering::Relaxed) + 1;
        // The 1st, 2nd, 4th, 8th… error: a broken disk must not flood the logs.
        if n.is_power_of_two() {
            tracing::warn!(%error, errors = n, "replay store: {what} failed; a replay misses");
        }
    }
}

impl ReplayStore for LocalStore {
    fn get(&self, scope: ScopeKey) -> StoreFuture<'_, Option<Arc<Kept>>> {
        Box::pin(async move {
            let now = now_ms();
            let loc = match self.shared.index.lock().get(&scope) {
                None => return None,
                Some(Slot::Pending(kept)) => return (kept.expires_at > now).then(|| kept.clone()),
                Some(Slot::OnDisk(loc)) if loc.head.expires_at <= now => return None,
                Some(Slot::OnDisk(loc)) => *loc,
            };
            if let Some(kept) = self.shared.hot.lock().get(&loc) {
                return Some(kept);
            }
            let dir = self.shared.dir.clone();
            let read = tokio::task::spawn_blocking(move || segments::read(&dir, &loc)).await;
            let record = match read {
                Ok(Ok(record)) => record,
                Ok(Err(e)) => {
                    self.miss("read", &e);
                    return None;
                }
                Err(e) => {
                    self.miss("read", &e);
                    return None;
                }
            };
            match Kept::decode(&record) {
                Some((head, kept)) if head.scope == scope => {
                    let kept = Arc::new(kept);
                    self.shared.hot.lock().insert(&loc, kept.clone());
                    Some(kept)
                }
                _ => {
                    self.miss("read", &"a damaged record");
                    None
                }
            }
        })
    }

    fn put(&self, scope: ScopeKey, kept: Arc<Kept>) {
        self.shared
            .index
            .lock()
            .insert(scope, Slot::Pending(kept.clone()));
        let queued = self
            .queue
            .lock()
            .as_ref()
            .is_some_and(|tx| tx.try_send((scope, kept.clone())).is_ok());
        if !queued {
            forget_pending(&self.shared, scope, &kept);
            self.miss("queueing a write", &"the writer is behind or stopped");
        }
    }

    fn claim(&self, scope: ScopeKey, body: Sha256Hex) -> StoreFuture<'_, Claim> {
        let claim = self.marks.claim(scope, body);
        Box::pin(std::future::ready(claim))
    }

    fn close(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            drop(self.queue.lock().take());
            let writer = self.writer.lock().take();
            if let Some(writer) = writer
                && let Err(e) = writer.await
            {
                tracing::error!(error = %e, "replay store writer failed");
            }
        })
    }

    fn errors(&self) -> u64 {
        self.shared.errors.load(Ordering::Relaxed)
    }
}

/// Drops a pending entry that will not be written (only if it is still this one).
fn forget_pending(shared: &Shared, scope: ScopeKey, kept: &Arc<Kept>) {
    let mut index = shared.index.lock();
    if matches!(index.get(&scope), Some(Slot::Pending(k)) if Arc::ptr_eq(k, kept)) {
        index.remove(&scope);
    }
}

/// The writer: appends queued entries on the blocking pool, then points the index at
/// the disk; fsyncs after each batch and when closing.
async fn write_loop(
    mut rx: mpsc::Receiver<Write>,
    mut segments: Option<Segments>,
    shared: Arc<Shared>,
) {
    let mut batch = Vec::with_capacity(64);
    while rx.recv_many(&mut batch, 64).await > 0 {
        let writes = std::mem::take(&mut batch);
        let Some(disk) = segments.take() else {
            for (scope, kept) in &writes {
                forget_pending(&shared, *scope, kept);
            }
            shared
                .errors
                .fetch_add(writes.len() as u64, Ordering::Relaxed);
            continue;
        };
        let done = tokio::task::spawn_blocking(move || append_all(disk, writes)).await;
        let Ok((disk, results, gone)) = done else {
            tracing::error!("replay store writer panicked; replays will miss");
            return;
        };
        segments = Some(disk);
        settle(&shared, results, &gone);
    }
    if let Some(mut disk) = segments
        && let Err(e) = tokio::task::spawn_blocking(move || disk.sync()).await
    {
        tracing::warn!(error = %e, "replay store: final fsync failed");
    }
}

type Written = (ScopeKey, Arc<Kept>, Option<Loc>);

fn append_all(
    mut disk: Segments,
    writes: Vec<(ScopeKey, Arc<Kept>)>,
) -> (Segments, Vec<Written>, Vec<u64>) {
    let mut results = Vec::with_capacity(writes.len());
    for (scope, kept) in writes {
        let loc = kept.encode(scope).and_then(|record| {
            let head = Head::decode(&record)?;
            match disk.append(&record, head) {
                Ok(loc) => Some(loc),
                Err(e) => {
                    tracing::warn!(error = %e, dir = %disk.dir().display(), "replay store: write failed");
                    None
                }
            }
        });
        results.push((scope, kept, loc));
    }
    if let Err(e) = disk.sync() {
        tracing::warn!(error = %e, "replay store: fsync failed");
    }
    let gone = disk.evict(now_ms());
    (disk, results, gone)
}

/// Points the index at what was written, forgets what failed or was evicted.
fn settle(shared: &Shared, results: Vec<Written>, gone: &[u64]) {
    let mut index = shared.index.lock();
    let mut hot = shared.hot.lock();
    for (scope, kept, loc) in results {
        let still_pending =
            matches!(index.get(&scope), Some(Slot::Pending(k)) if Arc::ptr_eq(k, &kept));
        match loc {
            Some(loc) if still_pending => {
                index.insert(scope, Slot::OnDisk(loc));
                hot.insert(&loc, kept);
            }
            None => {
                shared.errors.fetch_add(1, Ordering::Relaxed);
                if still_pending {
                    index.remove(&scope);
                }
            }
            Some(_) => {}
        }
    }
    if !gone.is_empty() {
        hot.forget_segments(gone);
        index.retain(|_, slot| !matches!(slot, Slot::OnDisk(loc) if gone.contains(&loc.seq)));
    }
}
