//! The one background task that owns a daily log's files (the failure log's, the
//! request journal's: any `DailyRecord`). Records arrive on a bounded channel, which
//! the task empties every `flush_every` (or sooner when the queue nudges it: see
//! `Queue`); they are encoded into a batch and handed to the OS at each tick (or sooner
//! when the batch grows past `FLUSH_BYTES`), fsynced every `fsync_every`, and on close
//! everything still queued is written and fsynced before the task ends. File work runs
//! on the blocking pool so a slow disk never stalls the proxy's worker threads.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};

use super::files::DailyRecord;
use super::sink::Sink;
use super::stats::FailureLogStats;
use super::time::{Clock, Day, Micros};

/// A batch this large is written without waiting for the next tick.
const FLUSH_BYTES: usize = 64 * 1024;
/// A batch holds at most about this much; the rest of the queue follows in the next
/// trip.
const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Records taken off the channel at most per wake-up (then the task yields).
const RECV_BATCH: usize = 4096;

pub struct Writer<R: DailyRecord> {
    pub(super) rx: mpsc::Receiver<R>,
    /// Rung by the queue when it is a quarter full.
    pub(super) nudge: Arc<Notify>,
    pub(super) stop: oneshot::Receiver<()>,
    pub(super) dir: PathBuf,
    pub(super) retention_days: u32,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) flush_every: Duration,
    pub(super) fsync_every: Duration,
    pub(super) stats: FailureLogStats,
}

/// Encoded lines of one day.
struct Chunk {
    day: Day,
    lines: Vec<u8>,
    records: u64,
}

#[derive(Default)]
struct Batch {
    chunks: Vec<Chunk>,
    bytes: usize,
}

impl Batch {
    fn push<R: DailyRecord>(&mut self, record: &R, stats: &FailureLogStats) {
        let day = record.timestamp().day();
        if self.chunks.last().is_none_or(|c| c.day != day) {
            self.chunks.push(Chunk {
                day,
                lines: Vec::with_capacity(FLUSH_BYTES),
                records: 0,
            });
        }
        let Some(chunk) = self.chunks.last_mut() else {
            return;
        };
        let before = chunk.lines.len();
        match record.write_json(&mut chunk.lines) {
            Ok(()) => {
                chunk.lines.push(b'\n');
                chunk.records += 1;
                self.bytes += chunk.lines.len() - before;
            }
            Err(error) => {
                // Cannot happen for this type; never leave half a line behind if it does.
                chunk.lines.truncate(before);
                stats.add_dropped(1);
                tracing::error!(%error, log = R::FILES.what, "record not encodable");
            }
        }
    }
}

/// What one trip to the blocking pool should do.
struct Work {
    batch: Batch,
    sync: bool,
    /// Run retention for this day.
    retention: Option<Day>,
}

impl<R: DailyRecord> Writer<R> {
    pub async fn run(mut self) {
        let mut sink = Some(Sink::new(self.dir.clone(), R::FILES, self.stats.clone()));
        let mut retention_day = self.today();
        self.trip(
            &mut sink,
            Work {
                batch: Batch::default(),
                sync: false,
                retention: Some(retention_day),
            },
        )
        .await;

        let mut tick = tokio::time::interval(self.flush_every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_sync = Instant::now();
        let mut batch = Batch::default();
        let nudge = self.nudge.clone();
        loop {
            tokio::select! {
                biased;
                _ = &mut self.stop => break,
                _ = tick.tick() => {
                    let open = self.take_queued(&mut batch);
                    let sync = last_sync.elapsed() >= self.fsync_every;
                    if sync {
                        last_sync = Instant::now();
                    }
                    let today = self.today();
                    let retention = (today != retention_day).then_some(today);
                    retention_day = today;
                    let taken = std::mem::take(&mut batch);
                    self.trip(&mut sink, Work { batch: taken, sync, retention }).await;
                    if !open {
                        break;
                    }
                }
                () = nudge.notified() => {
                    let open = self.take_queued(&mut batch);
                    if batch.bytes >= FLUSH_BYTES {
                        let taken = std::mem::take(&mut batch);
                        self.trip(&mut sink, Work { batch: taken, sync: false, retention: None }).await;
                    }
                    if !open {
                        break;
                    }
                }
            }
        }
        self.close(&mut sink, batch).await;
    }

    /// Encodes what is queued into `batch`, up to `RECV_BATCH` records or until it
    /// holds `MAX_BATCH_BYTES`; `false` once every sender is gone.
    ///
    /// The bound keeps the writer's buffer at a megabyte or so: a burst of kept
    /// responses queued between two ticks is written in several trips, not grown into
    /// one buffer of tens of megabytes. (At `FLUSH_BYTES` it would mean a trip to the
    /// blocking pool, two thread wake-ups, every 64 KiB: hundreds a second.)
    fn take_queued(&mut self, batch: &mut Batch) -> bool {
        for _ in 0..RECV_BATCH {
            if batch.bytes >= MAX_BATCH_BYTES {
                break;
            }
            match self.rx.try_recv() {
                Ok(record) => batch.push(&record, &self.stats),
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
        // More than one wake-up's worth: come back at once for the rest.
        self.nudge.notify_one();
        true
    }

    /// Refuses new records, writes what is queued, makes it durable.
    async fn close(&mut self, sink: &mut Option<Sink>, mut batch: Batch) {
        self.rx.close();
        while let Ok(record) = self.rx.try_recv() {
            batch.push(&record, &self.stats);
        }
        let work = Work {
            batch,
            sync: true,
            retention: None,
        };
        self.trip(sink, work).await;
    }

    fn today(&self) -> Day {
        Micros::from_system(self.clock.now()).day()
    }

    /// Does `work` on the blocking pool and takes the sink back.
    async fn trip(&self, sink: &mut Option<Sink>, work: Work) {
        if work.batch.chunks.is_empty() && !work.sync && work.retention.is_none() {
            return;
        }
        let mut owned = sink
            .take()
            .unwrap_or_else(|| Sink::new(self.dir.clone(), R::FILES, self.stats.clone()));
        let (dir, keep_days) = (self.dir.clone(), self.retention_days);
        let done = tokio::task::spawn_blocking(move || {
            for chunk in work.batch.chunks {
                owned.append(chunk.day, &chunk.lines, chunk.records);
            }
            if work.sync {
                owned.sync();
            }
            if let Some(today) = work.retention
                && let Err(e) = R::FILES.remove_old(&dir, today, keep_days)
            {
                owned.retention_failed(&e);
            }
            owned
        })
        .await;
        match done {
            Ok(back) => *sink = Some(back),
            Err(error) => {
                // A panic in file code: count it, start over with a fresh sink next time.
                self.stats.add_error();
                tracing::error!(%error, log = R::FILES.what, "write task failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure_log::daily::DailyLog;
    use crate::failure_log::{Options, Timestamp};
    use crate::journal::JournalRecord;

    #[test]
    fn a_burst_is_taken_a_megabyte_at_a_time_and_the_rest_stays_queued() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (log, mut writer) =
            DailyLog::<JournalRecord>::new(dir.path().to_path_buf(), 7, Options::default());
        // 3 000 lines of ~1.1 KB: over three megabytes queued between two ticks.
        for _ in 0..3000 {
            log.queue().offer(true, |at| {
                Some(JournalRecord {
                    timestamp: Timestamp(at),
                    idempotency_key: Some("k".repeat(1000)),
                    ..JournalRecord::default()
                })
            });
        }
        let mut batch = Batch::default();
        assert!(writer.take_queued(&mut batch), "the queue is still open");
        let line = batch.bytes / batch.chunks.iter().map(|c| c.records).sum::<u64>() as usize;
        assert!(
            batch.bytes >= MAX_BATCH_BYTES,
            "{} bytes taken",
            batch.bytes
        );
        assert!(
            batch.bytes < MAX_BATCH_BYTES + line,
            "{} bytes taken",
            batch.bytes
        );
        assert!(log.queue().queued() > 0, "the rest waits for the next trip");
    }
}
