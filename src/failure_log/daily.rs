//! A running daily log of any `DailyRecord` (the failure log, the request journal): the
//! request path's side (`Queue`: offer a record, never wait) and its one writer task
//! (owned here, awaited by `close`).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::Options;
use super::files::DailyRecord;
use super::stats::FailureLogStats;
use super::time::{Clock, Micros};
use super::writer::Writer;

/// The request path's side: offers records to the writer with `try_send`. A full
/// queue drops the record and counts it; nothing here ever waits.
///
/// The writer does not wait on the channel (that would wake its task, often on the
/// other worker thread, for every record): it takes what is queued at each
/// `flush_every` tick, or sooner when an offer finds the queue a quarter full
/// (`nudge`), so a burst never fills it between ticks.
pub struct Queue<R: DailyRecord> {
    tx: mpsc::Sender<R>,
    nudge: Arc<Notify>,
    /// Free slots at or below which an offer nudges the writer.
    nudge_at: usize,
    clock: Arc<dyn Clock>,
    stats: FailureLogStats,
}

impl<R: DailyRecord> Queue<R> {
    /// Offers the record `make` builds at the current time. `wanted` says cheaply
    /// whether there is a record at all, so a full queue costs no allocation.
    pub fn offer(&self, wanted: bool, make: impl FnOnce(Micros) -> Option<R>) {
        if !wanted {
            return;
        }
        if self.tx.capacity() == 0 {
            self.dropped();
            return;
        }
        let Some(record) = make(Micros::from_system(self.clock.now())) else {
            return;
        };
        if self.tx.try_send(record).is_err() {
            self.dropped();
        } else if self.tx.capacity() <= self.nudge_at {
            self.nudge.notify_one();
        }
    }

    /// Records waiting for the writer to take them.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub fn stats(&self) -> &FailureLogStats {
        &self.stats
    }

    fn dropped(&self) {
        self.stats.add_dropped(1);
        let dropped = self.stats.records_dropped();
        if dropped.is_power_of_two() {
            tracing::warn!(
                dropped,
                log = R::FILES.what,
                "queue full or closed: records dropped (the request path never waits)"
            );
        }
    }
}

/// A daily log's queue and writer task.
pub struct DailyLog<R: DailyRecord> {
    queue: Arc<Queue<R>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl<R: DailyRecord> DailyLog<R> {
    /// The queue side and its writer, not yet running (`start_writer` runs it).
    pub fn new(dir: PathBuf, retention_days: u32, options: Options) -> (DailyLog<R>, Writer<R>) {
        let capacity = options.capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let (stop_tx, stop_rx) = oneshot::channel();
        let stats = FailureLogStats::default();
        let nudge = Arc::new(Notify::new());
        let writer = Writer {
            rx,
            nudge: nudge.clone(),
            stop: stop_rx,
            dir,
            retention_days,
            clock: options.clock.clone(),
            flush_every: options.flush_every,
            fsync_every: options.fsync_every,
            stats: stats.clone(),
        };
        let queue = Arc::new(Queue {
            tx,
            nudge,
            nudge_at: capacity - capacity / 4,
            clock: options.clock,
            stats,
        });
        let log = DailyLog {
            queue,
            stop: Some(stop_tx),
            task: None,
        };
        (log, writer)
    }

    /// Runs `writer` as this log's task (awaited by `close`).
    pub fn start_writer(&mut self, writer: Writer<R>) {
        self.task = Some(tokio::spawn(writer.run()));
    }

    pub fn queue(&self) -> &Arc<Queue<R>> {
        &self.queue
    }

    pub fn stats(&self) -> FailureLogStats {
        self.queue.stats.clone()
    }

    /// Stops the writer after it has written and fsynced every record queued so far.
    /// Records offered afterwards are dropped (and counted).
    pub async fn close(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, log = R::FILES.what, "writer failed");
        }
    }
}
