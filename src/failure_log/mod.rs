//! The failure log (SPEC §3): one JSON line per failed attempt in daily files
//! `<dir>/failures-YYYY-MM-DD.jsonl` (UTC), for a person with `backstop failures` or
//! for a script with `jq`.
//!
//! It is an `Observer` of the request path and must never slow it down: an event
//! becomes a `FailureRecord` and is offered to a bounded channel with `try_send`; when
//! the channel is full the record is dropped and counted, never waited for. One writer
//! task (owned by `FailureLog`, awaited by `close`) batches the records to disk: they
//! reach the OS within ~100 ms, are fsynced every second and on close, always as whole
//! lines. A disk that refuses (full, read-only, no directory) costs records, not
//! requests: it is counted in `FailureLogStats` and logged at most once a minute.

mod files;
pub mod read;
mod record;
mod scrub;
mod sink;
mod stats;
pub mod summary;
mod time;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::FailureLogSettings;
use crate::events::{AttemptReport, Observer, RequestEvent};

pub use files::{day_of, file_name, file_path, list_days, remove_old};
pub use record::{FailureRecord, RecordContext, Timestamp};
pub use scrub::{MAX_MESSAGE_BYTES, clean_message};
pub use stats::FailureLogStats;
pub use time::{Clock, Day, Micros, SystemClock, civil_from_days, days_from_civil};
pub use writer::Writer;

/// How the log runs; `Default` is what the proxy uses.
#[derive(Clone)]
pub struct Options {
    /// Records queued for the writer before new ones are dropped.
    pub capacity: usize,
    /// Where timestamps and file dates come from.
    pub clock: Arc<dyn Clock>,
    /// How often queued records are handed to the OS (at most).
    pub flush_every: Duration,
    /// How often the file is fsynced while records arrive.
    pub fsync_every: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            capacity: 4096,
            clock: Arc::new(SystemClock),
            flush_every: Duration::from_millis(100),
            fsync_every: Duration::from_secs(1),
        }
    }
}

/// A running failure log: the observer side for the request path and its writer task.
pub struct FailureLog {
    observer: Arc<FailureLogObserver>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl FailureLog {
    /// Starts the writer task. Nothing touches the disk until the first record, apart
    /// from the retention pass (which only looks into an existing directory).
    pub fn start(settings: &FailureLogSettings, options: Options) -> FailureLog {
        let (mut log, writer) = FailureLog::new(settings, options);
        log.start_writer(writer);
        log
    }

    /// The observer side and its writer, not yet running. Tests and the benchmark hold
    /// the writer back to fill the channel; `start_writer` runs it.
    pub fn new(settings: &FailureLogSettings, options: Options) -> (FailureLog, Writer) {
        let (tx, rx) = mpsc::channel(options.capacity.max(1));
        let (stop_tx, stop_rx) = oneshot::channel();
        let stats = FailureLogStats::default();
        let writer = Writer {
            rx,
            stop: stop_rx,
            dir: settings.dir.clone(),
            retention_days: settings.retention_days.get(),
            clock: options.clock.clone(),
            flush_every: options.flush_every,
            fsync_every: options.fsync_every,
            stats: stats.clone(),
        };
        let observer = Arc::new(FailureLogObserver {
            tx,
            clock: options.clock,
            stats,
        });
        let log = FailureLog {
            observer,
            stop: Some(stop_tx),
            task: None,
        };
        (log, writer)
    }

    /// Runs `writer` as this log's task (awaited by `close`).
    pub fn start_writer(&mut self, writer: Writer) {
        self.task = Some(tokio::spawn(writer.run()));
    }

    /// The observer to put on the request path.
    pub fn observer(&self) -> Arc<dyn Observer> {
        self.observer.clone()
    }

    pub fn stats(&self) -> FailureLogStats {
        self.observer.stats.clone()
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
            tracing::error!(error = %e, "failure log writer failed");
        }
    }
}

/// Turns events into records and offers them to the writer, never waiting.
struct FailureLogObserver {
    tx: mpsc::Sender<Box<FailureRecord>>,
    clock: Arc<dyn Clock>,
    stats: FailureLogStats,
}

impl FailureLogObserver {
    /// `failed` says cheaply whether `make` would give a record, so a full queue costs
    /// no allocation.
    fn offer(&self, failed: bool, make: impl FnOnce(Micros) -> Option<FailureRecord>) {
        if !failed {
            return;
        }
        if self.tx.capacity() == 0 {
            self.dropped();
            return;
        }
        let Some(record) = make(Micros::from_system(self.clock.now())) else {
            return;
        };
        if self.tx.try_send(Box::new(record)).is_err() {
            self.dropped();
        }
    }

    fn dropped(&self) {
        self.stats.add_dropped(1);
        let dropped = self.stats.records_dropped();
        if dropped.is_power_of_two() {
            tracing::warn!(
                dropped,
                "failure log queue full or closed: records dropped (the request path never waits)"
            );
        }
    }
}

impl Observer for FailureLogObserver {
    fn attempt(&self, event: &AttemptReport) {
        self.offer(FailureRecord::attempt_failed(event), |at| {
            FailureRecord::from_attempt(event, at)
        });
    }

    fn request(&self, event: &RequestEvent) {
        self.offer(FailureRecord::request_failed(event), |at| {
            FailureRecord::from_request(event, at)
        });
    }
}
