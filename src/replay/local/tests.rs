//! The local store as a unit: what it keeps, for how long, how much, across a restart,
//! and what a torn file costs (only the torn record).

use std::sync::Arc;

use super::*;
use crate::replay::kept::sample;

fn scope(n: u8) -> ScopeKey {
    ScopeKey([n; 32])
}

fn fresh(id: &str) -> Arc<Kept> {
    Arc::new(sample(id, b"{\"choices\":[]}", now_ms() + 3_600_000))
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    files
}

#[tokio::test]
async fn a_put_is_got_at_once_and_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path(), 1 << 20);
    let kept = fresh("req-1");
    store.put(scope(1), kept.clone());
    assert_eq!(store.get(scope(1)).await, Some(kept.clone()), "from memory");
    assert_eq!(store.get(scope(2)).await, None);
    store.close().await;

    let reopened = LocalStore::open(dir.path(), 1 << 20);
    assert_eq!(reopened.len(), 1);
    assert_eq!(
        reopened.get(scope(1)).await,
        Some(kept),
        "from disk, byte for byte"
    );
    reopened.close().await;
    assert_eq!(reopened.errors(), 0);
}

#[tokio::test]
async fn an_expired_entry_is_a_miss_and_is_not_reloaded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path(), 1 << 20);
    let expired = Arc::new(sample("old", b"{}", now_ms().saturating_sub(1)));
    store.put(scope(1), expired);
    store.put(scope(2), fresh("new"));
    assert_eq!(store.get(scope(1)).await, None, "past its ttl");
    store.close().await;
    let reopened = LocalStore::open(dir.path(), 1 << 20);
    assert_eq!(reopened.len(), 1, "only the live entry is indexed");
    assert!(reopened.get(scope(2)).await.is_some());
    reopened.close().await;
}

#[tokio::test]
async fn over_max_bytes_the_oldest_entries_go_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let record = fresh("x").encode(scope(0)).expect("fits").len() as u64;
    let max_bytes = 4 * record;
    let store = LocalStore::open(dir.path(), max_bytes);
    for n in 1..=10 {
        store.put(scope(n), fresh(&format!("req-{n}")));
    }
    store.close().await;
    let on_disk: u64 = segment_files(dir.path())
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum();
    assert!(on_disk <= max_bytes, "{on_disk} > {max_bytes}");

    let reopened = LocalStore::open(dir.path(), max_bytes);
    assert!(reopened.get(scope(10)).await.is_some(), "the newest stays");
    assert!(reopened.get(scope(1)).await.is_none(), "the oldest went");
    let kept: Vec<u8> = (1..=10)
        .filter(|n| reopened.shared.index.lock().contains_key(&scope(*n)))
        .collect();
    assert!(
        !kept.is_empty() && kept.windows(2).all(|w| w[1] == w[0] + 1),
        "a newest run: {kept:?}"
    );
    assert_eq!(*kept.last().expect("some"), 10);
    reopened.close().await;
}

#[tokio::test]
async fn a_torn_tail_costs_only_the_torn_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path(), 1 << 20);
    store.put(scope(1), fresh("whole"));
    store.put(scope(2), fresh("torn"));
    store.close().await;
    let files = segment_files(dir.path());
    let last = files
        .iter()
        .rev()
        .find(|f| std::fs::metadata(f).map_or(0, |m| m.len()) > 0)
        .expect("a segment");
    let len = std::fs::metadata(last).expect("meta").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(last)
        .expect("open");
    file.set_len(len - 5).expect("tear the last record");
    drop(file);

    let reopened = LocalStore::open(dir.path(), 1 << 20);
    assert!(
        reopened.get(scope(1)).await.is_some(),
        "the record before the tear"
    );
    assert!(
        reopened.get(scope(2)).await.is_none(),
        "the torn one is a miss"
    );
    reopened.put(scope(3), fresh("after"));
    reopened.close().await;
    let again = LocalStore::open(dir.path(), 1 << 20);
    assert!(
        again.get(scope(3)).await.is_some(),
        "writes go on in a new segment"
    );
    again.close().await;
}

#[tokio::test]
async fn a_damaged_record_is_a_counted_miss_never_a_wrong_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path(), 1 << 20);
    store.put(scope(1), fresh("req"));
    store.close().await;
    let files = segment_files(dir.path());
    let file = files
        .iter()
        .find(|f| std::fs::metadata(f).map_or(0, |m| m.len()) > 0)
        .expect("a segment");
    let mut bytes = std::fs::read(file).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(file, bytes).expect("write");
    let reopened = LocalStore::open(dir.path(), 1 << 20);
    assert_eq!(reopened.get(scope(1)).await, None);
    assert_eq!(reopened.errors(), 1);
    reopened.close().await;
}

#[tokio::test]
async fn a_directory_that_cannot_exist_only_misses() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("file");
    std::fs::write(&file, "x").expect("write");
    let store = LocalStore::open(&file.join("sub"), 1 << 20);
    store.put(scope(1), fresh("req"));
    store.close().await;
    assert!(store.errors() >= 1);
}

fn remove_segments(dir: &Path) {
    for file in segment_files(dir) {
        std::fs::remove_file(file).expect("remove a segment");
    }
}

#[tokio::test]
async fn an_entry_just_written_is_replayed_from_memory_not_the_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path(), 1 << 20);
    let kept = fresh("req-1");
    store.put(scope(1), kept.clone());
    store.close().await;
    assert!(matches!(
        store.shared.index.lock().get(&scope(1)),
        Some(Slot::OnDisk(_))
    ));
    remove_segments(dir.path());
    assert_eq!(store.get(scope(1)).await, Some(kept), "no disk read");
    assert_eq!(store.errors(), 0);
}

#[tokio::test]
async fn an_entry_read_from_disk_once_is_then_served_from_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path(), 1 << 20);
    let kept = fresh("req-1");
    store.put(scope(1), kept.clone());
    store.close().await;
    let reopened = LocalStore::open(dir.path(), 1 << 20);
    assert_eq!(
        reopened.get(scope(1)).await,
        Some(kept.clone()),
        "from disk"
    );
    remove_segments(dir.path());
    assert_eq!(reopened.get(scope(1)).await, Some(kept), "from memory");
    reopened.close().await;
}

#[test]
fn hot_entries_stay_within_an_eighth_of_max_bytes_oldest_out_first() {
    let record = fresh("x").encode(scope(0)).expect("fits");
    let head = Head::decode(&record).expect("a head");
    let size = u64::from(head.len);
    let mut hot = Hot::for_store(8 * 3 * size);
    let loc = |n: u64| Loc {
        seq: 1,
        offset: n * size,
        head,
    };
    for n in 0..5 {
        hot.insert(&loc(n), fresh(&format!("req-{n}")));
    }
    assert_eq!(hot.bytes(), 3 * size);
    assert!(hot.get(&loc(0)).is_none() && hot.get(&loc(1)).is_none());
    assert!((2..5).all(|n| hot.get(&loc(n)).is_some()));
    hot.forget_segments(&[1]);
    assert_eq!(hot.bytes(), 0);
    assert!(hot.get(&loc(4)).is_none(), "its segment was deleted");

    let mut tiny = Hot::for_store(8 * (size - 1));
    tiny.insert(&loc(0), fresh("big"));
    assert_eq!(tiny.bytes(), 0, "larger than the whole budget: not kept");
}

/// Start-up with 100 000 entries (~1 KiB each): `cargo nextest run --cargo-profile
/// callgrind --lib --run-ignored only -E 'test(replay_store_start_up)' --no-capture`
/// prints the time; docs/benchmarks.md has the number.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check; run by hand"]
async fn replay_store_start_up_with_100k_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path(), 1 << 30);
    let body: &'static [u8] = Box::leak(vec![b'x'; 900].into_boxed_slice());
    for n in 0..100_000u32 {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&n.to_le_bytes());
        let kept = Arc::new(sample(&format!("req-{n}"), body, now_ms() + 3_600_000));
        while store
            .queue
            .lock()
            .as_ref()
            .is_some_and(|tx| tx.capacity() == 0)
        {
            tokio::task::yield_now().await;
        }
        store.put(ScopeKey(key), kept);
    }
    store.close().await;
    let started = std::time::Instant::now();
    let reopened = LocalStore::open(dir.path(), 1 << 30);
    let took = started.elapsed();
    assert_eq!(reopened.len(), 100_000);
    println!("replay store start-up with 100000 entries: {took:?}");
    reopened.close().await;
}
