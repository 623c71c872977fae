//! The request journal (SPEC §6): one JSON line per request when it ends — every
//! outcome — in daily files `<dir>/requests-YYYY-MM-DD.jsonl` (UTC), read back by
//! `backstop requests`. Off unless `[journal]` is present; then, and only then, the
//! request path hashes the request (`RequestFingerprint`) and, with `responses = true`,
//! keeps the frames of the body the client got (`CapturedResponse`).
//!
//! It runs on the failure log's machinery (`failure_log::DailyLog`): the observer turns
//! the request's one `RequestEvent` into a `JournalRecord` and offers it to a bounded
//! queue, never waiting (a full queue drops and counts it); one writer task, owned here
//! and awaited by `close` in server shutdown, hands lines to the OS within ~100 ms,
//! fsyncs every second, keeps lines whole and deletes files past `retention_days`. A
//! disk that refuses costs records, never requests.
//!
//! A request answered by replay (`replay`) is recorded with outcome `replayed` and
//! `replay_of`, the id of the request that paid for the response.

mod json_string;
mod line;
pub mod record;
pub mod summary;

use std::sync::Arc;

use crate::config::JournalSettings;
use crate::events::{AttemptReport, Observer, RequestEvent};
use crate::failure_log::{DailyLog, FileKind, LogStats, Options, Queue, Writer};

pub use record::{JournalRecord, JournalResponse, Outcome, UsageRecord};

/// The journal's files.
pub const REQUESTS: FileKind = FileKind {
    prefix: "requests-",
    what: "request journal",
};

/// A running journal: the observer for the request path and its writer task.
pub struct Journal {
    log: DailyLog<JournalRecord>,
    observer: Arc<JournalObserver>,
}

impl Journal {
    /// Starts the writer task (the retention pass runs at once; files appear with the
    /// first record).
    pub fn start(settings: &JournalSettings, options: Options) -> Journal {
        let (mut journal, writer) = Journal::new(settings, options);
        journal.log.start_writer(writer);
        journal
    }

    /// The observer side and its writer, not yet running (`start_writer` runs it).
    pub fn new(settings: &JournalSettings, options: Options) -> (Journal, Writer<JournalRecord>) {
        let (log, writer) =
            DailyLog::new(settings.dir.clone(), settings.retention_days.get(), options);
        let observer = Arc::new(JournalObserver(log.queue().clone()));
        (Journal { log, observer }, writer)
    }

    pub fn start_writer(&mut self, writer: Writer<JournalRecord>) {
        self.log.start_writer(writer);
    }

    /// The observer to put on the request path.
    pub fn observer(&self) -> Arc<dyn Observer> {
        self.observer.clone()
    }

    /// Records written, dropped, and write errors.
    pub fn stats(&self) -> LogStats {
        self.log.stats()
    }

    /// Writes and fsyncs every record queued so far, then stops the writer.
    pub async fn close(self) {
        self.log.close().await;
    }
}

/// Turns each request's end into a record, offered without waiting.
struct JournalObserver(Arc<Queue<JournalRecord>>);

impl Observer for JournalObserver {
    fn attempt(&self, _event: &AttemptReport) {}

    fn request(&self, event: &RequestEvent) {
        self.0
            .offer(true, |at| Some(JournalRecord::from_event(event, at)));
    }

    /// A client that left before any response head is a request that ended too.
    fn request_left(&self, event: &RequestEvent) {
        self.request(event);
    }
}
