//! What the server lends the metrics to read at scrape time: the failure log's
//! counters, connections refused and the retry-buffer budget, and the upstream
//! connections of the runtime in use.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arc_swap::ArcSwap;

use crate::failure_log::FailureLogStats;
use crate::metrics::{FailureLogCounts, LoadCounts, UpstreamConnections};
use crate::proxy::BufferBudget;
use crate::runtime::Runtime;

/// The failure log's counters, read by the metrics at scrape time.
impl FailureLogCounts for FailureLogStats {
    fn records_written(&self) -> u64 {
        FailureLogStats::records_written(self)
    }

    fn records_dropped(&self) -> u64 {
        FailureLogStats::records_dropped(self)
    }

    fn write_errors(&self) -> u64 {
        FailureLogStats::write_errors(self)
    }
}

/// The counts behind `backstop_connections_refused_total` and the retry-buffer families.
pub(super) struct Load {
    pub refused: Arc<AtomicU64>,
    /// The one budget every runtime shares (a reload keeps it).
    pub buffer_budget: Arc<BufferBudget>,
}

impl LoadCounts for Load {
    fn connections_refused(&self) -> u64 {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn retry_buffer_bytes(&self) -> u64 {
        self.buffer_budget.held()
    }

    fn retry_buffer_exhausted(&self) -> u64 {
        self.buffer_budget.exhausted()
    }
}

/// `/stats`' view of the upstream connections of the runtime in use.
pub(super) struct Connections(pub Arc<ArcSwap<Runtime>>);

impl UpstreamConnections for Connections {
    fn h2(&self, upstream: &str) -> (usize, u32) {
        let counts = self.0.load().client.h2_counts(upstream);
        (counts.connections, counts.streams)
    }
}
