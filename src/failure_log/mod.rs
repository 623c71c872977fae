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
//!
//! The machinery is generic over the record (`DailyRecord`: `daily`, `writer`, `sink`,
//! `files`, `read`): the request journal (`crate::journal`) runs on it too.

pub mod daily;
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

use crate::config::FailureLogSettings;
use crate::events::{AttemptReport, Observer, RequestEvent};

pub use daily::{DailyLog, Queue};
pub use files::{
    DailyRecord, FAILURES, FileKind, day_of, file_name, file_path, list_days, remove_old,
};
pub use record::{FailureRecord, RecordContext, Timestamp};
pub use scrub::{MAX_MESSAGE_BYTES, clean_message};
pub use stats::FailureLogStats;
/// The counters of any daily log (the journal's too).
pub type LogStats = FailureLogStats;
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
    log: DailyLog<FailureRecord>,
    observer: Arc<FailureLogObserver>,
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
    pub fn new(
        settings: &FailureLogSettings,
        options: Options,
    ) -> (FailureLog, Writer<FailureRecord>) {
        let (log, writer) =
            DailyLog::new(settings.dir.clone(), settings.retention_days.get(), options);
        let observer = Arc::new(FailureLogObserver(log.queue().clone()));
        (FailureLog { log, observer }, writer)
    }

    /// Runs `writer` as this log's task (awaited by `close`).
    pub fn start_writer(&mut self, writer: Writer<FailureRecord>) {
        self.log.start_writer(writer);
    }

    /// The observer to put on the request path.
    pub fn observer(&self) -> Arc<dyn Observer> {
        self.observer.clone()
    }

    pub fn stats(&self) -> FailureLogStats {
        self.log.stats()
    }

    /// Records waiting for the writer to take them.
    pub fn queued(&self) -> usize {
        self.log.queue().queued()
    }

    /// Stops the writer after it has written and fsynced every record queued so far.
    /// Records offered afterwards are dropped (and counted).
    pub async fn close(self) {
        self.log.close().await;
    }
}

/// Turns events into records and offers them to the writer, never waiting.
struct FailureLogObserver(Arc<Queue<FailureRecord>>);

impl Observer for FailureLogObserver {
    fn attempt(&self, event: &AttemptReport) {
        self.0.offer(FailureRecord::attempt_failed(event), |at| {
            FailureRecord::from_attempt(event, at)
        });
    }

    fn request(&self, event: &RequestEvent) {
        self.0.offer(FailureRecord::request_failed(event), |at| {
            FailureRecord::from_request(event, at)
        });
    }
}
