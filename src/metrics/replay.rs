//! Replay's two families (SPEC §6): `backstop_replays_total{upstream, reason}` — a
//! request answered from an earlier one's kept response, reason `idempotency_key` or
//! `sdk_retry` — and `backstop_replay_joins_total{upstream}` — a request that waited
//! for an identical one in flight. Registered always (0 without `[replay]`), so every
//! family is in the first scrape.

use prometheus::{IntCounterVec, Opts, Registry};

use super::labels::UpstreamLabel;
use crate::replay::ReplayReason;

pub struct ReplayMetrics {
    replays: IntCounterVec,
    joins: IntCounterVec,
}

impl ReplayMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<ReplayMetrics> {
        let replays = IntCounterVec::new(
            Opts::new(
                "backstop_replays_total",
                "Requests answered from an earlier request's kept response, no upstream call (reason idempotency_key or sdk_retry).",
            ),
            &["upstream", "reason"],
        )?;
        let joins = IntCounterVec::new(
            Opts::new(
                "backstop_replay_joins_total",
                "Requests that waited for an identical request in flight instead of calling the upstream.",
            ),
            &["upstream"],
        )?;
        r.register(Box::new(replays.clone()))?;
        r.register(Box::new(joins.clone()))?;
        Ok(ReplayMetrics { replays, joins })
    }

    /// Zero series for a configured upstream.
    pub fn prepare_upstream(&self, up: &UpstreamLabel) {
        for reason in ReplayReason::ALL {
            self.replays
                .with_label_values(&[up.as_str(), reason.as_str()]);
        }
        self.joins.with_label_values(&[up.as_str()]);
    }

    pub fn replayed(&self, up: &UpstreamLabel, reason: ReplayReason) {
        self.replays
            .with_label_values(&[up.as_str(), reason.as_str()])
            .inc();
    }

    pub fn joined(&self, up: &UpstreamLabel) {
        self.joins.with_label_values(&[up.as_str()]).inc();
    }
}
