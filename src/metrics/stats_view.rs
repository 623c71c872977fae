//! What `/stats` serves (SPEC §4's field names), as `Stats::snapshot` builds it.

use serde::Serialize;

use super::handovers::HandoverView;

/// `/stats` as served (SPEC §4's field names).
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub version: &'static str,
    pub uptime_seconds: u64,
    pub upstreams: Vec<UpstreamRow>,
    pub tags: Vec<TagRow>,
    /// With `[redis]`: whether limits are shared right now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<super::RedisView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpstreamRow {
    pub name: String,
    pub circuit: &'static str,
    /// Proactive pacing, once the upstream has answered: the rate factor (1 = full
    /// speed, halved per 429, recovering by 0.1 per success).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pacing: Option<PacingView>,
    /// HTTP/2 connections open to the upstream now (0 for HTTP/1.1 upstreams) ...
    pub h2_connections: usize,
    /// ... and the streams (requests) in flight on them.
    pub h2_streams: u32,
    #[serde(flatten)]
    pub handovers: HandoverView,
    #[serde(flatten)]
    pub row: Row,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct PacingView {
    pub factor: f64,
    /// A pause (after a 429, or tokens nearly spent) left when the factor last changed.
    pub paused_ms: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TagRow {
    pub tag: String,
    #[serde(flatten)]
    pub row: Row,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub total: u64,
    pub failed: u64,
    /// failed / total, rounded to 3 decimals (0 with no requests).
    pub failure_rate: f64,
    pub retries: u64,
    /// Requests in a row that failed; a success resets it.
    pub consecutive_failures: u64,
    pub last_error: Option<ErrorView>,
    /// Over the last `LATENCY_WINDOW` requests; null before the first.
    pub latency_p50_ms: Option<u32>,
    pub latency_p95_ms: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ErrorView {
    pub error_type: &'static str,
    pub code: Option<String>,
    pub message: Option<String>,
    /// RFC 3339, UTC.
    pub at: String,
    #[serde(skip)]
    pub age_seconds: u64,
}
