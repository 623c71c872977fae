//! Counters of the failure log, for `/metrics` (`backstop_failure_records_total`,
//! `backstop_failure_records_dropped_total`, `backstop_failure_log_errors_total`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
struct Counters {
    written: AtomicU64,
    dropped: AtomicU64,
    errors: AtomicU64,
}

/// A cheap, cloneable view of the counters; every clone sees the same numbers.
#[derive(Debug, Clone, Default)]
pub struct FailureLogStats(Arc<Counters>);

impl FailureLogStats {
    /// Records that reached the file (handed to the OS).
    pub fn records_written(&self) -> u64 {
        self.0.written.load(Ordering::Relaxed)
    }

    /// Records lost: the writer's queue was full (the request path never waits), the
    /// log was closed, or the write that carried them failed.
    pub fn records_dropped(&self) -> u64 {
        self.0.dropped.load(Ordering::Relaxed)
    }

    /// Failed file operations (create the directory, open, write, fsync, retention).
    pub fn write_errors(&self) -> u64 {
        self.0.errors.load(Ordering::Relaxed)
    }

    pub(crate) fn add_written(&self, n: u64) {
        self.0.written.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_dropped(&self, n: u64) {
        self.0.dropped.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn add_error(&self) {
        self.0.errors.fetch_add(1, Ordering::Relaxed);
    }
}
