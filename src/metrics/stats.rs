//! The numbers behind `/stats` and `/status`, per upstream and per tag: requests,
//! failures, retries, failures in a row, the last error and recent latency.
//!
//! A request counts once, when it ends: one that succeeded after retries is a success.
//! Tags are bounded: the first `MAX_TAGS` distinct tags are kept, later ones count as
//! `other`. Everything sits behind one mutex held for a few field updates, never across
//! an await.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant, SystemTime};

use super::handovers::Handovers;
use super::labels::CircuitState;
pub use super::stats_view::{ErrorView, PacingView, Row, Snapshot, TagRow, UpstreamRow};
use crate::limits::pacing::PaceView;

/// Distinct tags kept before the rest count as `other`.
pub const MAX_TAGS: usize = 256;
/// Latencies kept per upstream or tag for p50/p95.
pub const LATENCY_WINDOW: usize = 1000;
/// Longest error message kept (characters).
pub const MESSAGE_CHARS: usize = 200;

/// The last error an upstream or tag saw.
#[derive(Debug, Clone, PartialEq)]
pub struct LastError {
    /// SPEC §3's vocabulary: `server_error`, `rate_limited`, `connect_error`, …
    pub error_type: &'static str,
    /// The upstream's `error.code`, else the status, else backstop's own code.
    pub code: Option<String>,
    pub message: Option<String>,
    pub at: SystemTime,
}

#[derive(Debug, Default)]
struct Tally {
    total: u64,
    failed: u64,
    retries: u64,
    consecutive_failures: u64,
    last_error: Option<LastError>,
    latencies_ms: VecDeque<u32>,
    circuit: CircuitState,
    pacing: Option<PacingView>,
    /// Requests handed over to each fallback (configured upstream names only).
    handovers: Handovers,
}

impl Tally {
    fn finish(&mut self, failed: bool, duration: Duration) {
        self.total += 1;
        if failed {
            self.failed += 1;
            self.consecutive_failures += 1;
        } else {
            self.consecutive_failures = 0;
        }
        if self.latencies_ms.len() == LATENCY_WINDOW {
            self.latencies_ms.pop_front();
        }
        self.latencies_ms
            .push_back(u32::try_from(duration.as_millis()).unwrap_or(u32::MAX));
    }

    fn row(&self, now: SystemTime) -> Row {
        let mut sorted: Vec<u32> = self.latencies_ms.iter().copied().collect();
        sorted.sort_unstable();
        let rate = if self.total == 0 {
            0.0
        } else {
            (self.failed as f64 / self.total as f64 * 1000.0).round() / 1000.0
        };
        Row {
            total: self.total,
            failed: self.failed,
            failure_rate: rate,
            retries: self.retries,
            consecutive_failures: self.consecutive_failures,
            last_error: self.last_error.as_ref().map(|e| ErrorView {
                error_type: e.error_type,
                code: e.code.clone(),
                message: e.message.clone(),
                at: rfc3339(e.at),
                age_seconds: now.duration_since(e.at).map_or(0, |d| d.as_secs()),
            }),
            latency_p50_ms: percentile(&sorted, 50),
            latency_p95_ms: percentile(&sorted, 95),
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], p: usize) -> Option<u32> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[derive(Default)]
struct Tallies {
    upstreams: BTreeMap<Arc<str>, Tally>,
    tags: BTreeMap<Arc<str>, Tally>,
}

impl Tallies {
    fn tag(&mut self, tag: &Arc<str>) -> &mut Tally {
        let key = if self.tags.contains_key(tag) || self.tags.len() < MAX_TAGS {
            tag.clone()
        } else {
            Arc::from("other")
        };
        self.tags.entry(key).or_default()
    }

    /// The upstream's tally and the tag's, when there are such.
    fn each(
        &mut self,
        upstream: Option<&str>,
        tag: Option<&Arc<str>>,
        mut f: impl FnMut(&mut Tally),
    ) {
        if let Some(t) = upstream.and_then(|u| self.upstreams.get_mut(u)) {
            f(t);
        }
        if let Some(tag) = tag {
            f(self.tag(tag));
        }
    }
}

pub struct Stats {
    started: Instant,
    tallies: Mutex<Tallies>,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            tallies: Mutex::default(),
        }
    }
}

impl Stats {
    /// Lists exactly these upstreams (kept tallies survive a reload; removed ones go).
    pub fn set_upstreams<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let names: Vec<&str> = names.into_iter().collect();
        let mut t = self.tallies.lock();
        let mut kept = BTreeMap::new();
        for &name in &names {
            let tally = t.upstreams.remove(name).unwrap_or_default();
            kept.insert(Arc::from(name), tally);
        }
        for tally in kept.values_mut() {
            tally.handovers.retain(|to| names.contains(&to));
        }
        t.upstreams = kept;
    }

    /// A request ended; returns the upstream's failures in a row afterwards.
    pub fn request(
        &self,
        upstream: Option<&str>,
        tag: Option<&Arc<str>>,
        failed: bool,
        duration: Duration,
    ) -> Option<u64> {
        let mut t = self.tallies.lock();
        if let Some(tag) = tag {
            t.tag(tag).finish(failed, duration);
        }
        let tally = t.upstreams.get_mut(upstream?)?;
        tally.finish(failed, duration);
        Some(tally.consecutive_failures)
    }

    pub fn retry(&self, upstream: &str, tag: Option<&Arc<str>>) {
        {
            let mut t = self.tallies.lock();
            t.each(Some(upstream), tag, |tally| tally.retries += 1);
        }
    }

    pub fn error(&self, upstream: Option<&str>, tag: Option<&Arc<str>>, error: LastError) {
        {
            let mut t = self.tallies.lock();
            t.each(upstream, tag, |tally| {
                tally.last_error = Some(error.clone())
            });
        }
    }

    /// `upstream` handed a request over to its fallback `to`. Both must be configured
    /// upstreams, so the map stays bounded by the config.
    pub fn fallback(&self, upstream: &str, to: &str) {
        let mut t = self.tallies.lock();
        let Some(to) = t.upstreams.get_key_value(to).map(|(k, _)| k.clone()) else {
            return;
        };
        if let Some(tally) = t.upstreams.get_mut(upstream) {
            tally.handovers.count(to);
        }
    }

    pub fn set_circuit(&self, upstream: &str, state: CircuitState) {
        if let Some(tally) = self.tallies.lock().upstreams.get_mut(upstream) {
            tally.circuit = state;
        }
    }

    pub fn set_pacing(&self, upstream: &str, view: PaceView) {
        if let Some(tally) = self.tallies.lock().upstreams.get_mut(upstream) {
            tally.pacing = Some(PacingView {
                factor: (view.factor * 100.0).round() / 100.0,
                paused_ms: u64::try_from(view.paused_for.as_millis()).unwrap_or(u64::MAX),
            });
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let now = SystemTime::now();
        let t = self.tallies.lock();
        let (upstreams, tags) = (
            t.upstreams
                .iter()
                .map(|(name, tally)| UpstreamRow {
                    name: name.to_string(),
                    circuit: tally.circuit.as_str(),
                    pacing: tally.pacing,
                    h2_connections: 0,
                    h2_streams: 0,
                    handovers: tally.handovers.view(),
                    row: tally.row(now),
                })
                .collect(),
            t.tags
                .iter()
                .map(|(tag, tally)| TagRow {
                    tag: tag.to_string(),
                    row: tally.row(now),
                })
                .collect(),
        );
        drop(t);
        Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            uptime_seconds: self.started.elapsed().as_secs(),
            upstreams,
            tags,
            redis: None,
        }
    }
}

/// `2026-03-01T12:34:56Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Cuts a message to `MESSAGE_CHARS` characters.
pub fn cut_message(message: &str) -> String {
    match message.char_indices().nth(MESSAGE_CHARS) {
        Some((at, _)) => format!("{}…", &message[..at]),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc_dates() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_772_368_496);
        assert_eq!(rfc3339(t), "2026-03-01T12:34:56Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 95), Some(95));
        assert_eq!(percentile(&[7], 95), Some(7));
        assert_eq!(percentile(&[], 50), None);
    }

    #[test]
    fn messages_are_cut_to_200_characters() {
        let long = "é".repeat(300);
        assert_eq!(cut_message(&long).chars().count(), MESSAGE_CHARS + 1);
        assert_eq!(cut_message("short"), "short");
    }

    #[test]
    fn a_success_resets_failures_in_a_row_and_tags_are_bounded() {
        let stats = Stats::default();
        stats.set_upstreams(["a"]);
        let ms = Duration::from_millis(5);
        assert_eq!(stats.request(Some("a"), None, true, ms), Some(1));
        assert_eq!(stats.request(Some("a"), None, true, ms), Some(2));
        assert_eq!(stats.request(Some("a"), None, false, ms), Some(0));
        for i in 0..300 {
            stats.request(None, Some(&Arc::from(format!("t{i}"))), false, ms);
        }
        let snap = stats.snapshot();
        assert_eq!(snap.tags.len(), MAX_TAGS + 1);
        let other = snap.tags.iter().find(|t| t.tag == "other").expect("other");
        assert_eq!(other.row.total, 300 - MAX_TAGS as u64);
        assert_eq!(snap.upstreams[0].row.failure_rate, 0.667);
    }
}
