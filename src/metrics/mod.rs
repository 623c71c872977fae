//! Metrics, `/stats` and `/status` (SPEC §4), built from the request path's events.
//!
//! - `labels`: every label value as a type, bounded by construction;
//! - `families`: `Metrics`, the Prometheus families as fields with typed methods;
//! - `failure_log`: the failure log's and the journal's counters, read at scrape time;
//! - `load`: connections refused and the retry-buffer budget, read at scrape time;
//! - `stats`: per-upstream and per-tag tallies behind `/stats` and `/status`;
//! - `status_page`: the `/status` HTML.
//!
//! `Recorder` is the `Observer` that feeds them. Like the failure log it consumes
//! events and knows nothing of the HTTP server; `admin` only reads from it.
//!
//! How events map to families:
//! - `backstop_requests_total`, `…_request_duration_seconds`, `gen_ai_*`: one
//!   `RequestEvent` each (upstream `none` when the request matched no upstream);
//! - `backstop_upstream_attempts_total{outcome}`: one per `AttemptReport`, outcome
//!   `success`, `retryable_failure` or `fatal_failure`;
//! - `backstop_retries_total{reason}`: each retry, reason the failed attempt's
//!   classification (`status_503`, `connect_error`, …), with its delay in
//!   `backstop_backoff_seconds`;
//! - `backstop_retries_suppressed_total{reason}`: each retryable failure handed back
//!   instead of retried, reason why (`retries_exhausted`, `budget_exhausted`,
//!   `deadline_exceeded`, `server_delay_too_long`, `body_not_replayable`,
//!   `ambiguous_not_retried`);
//! - `backstop_replays_total{reason}`: each `RequestEvent` that was a replay;
//!   `backstop_replay_joins_total`: each wait on an identical request in flight;
//! - `backstop_in_flight_requests`: routed requests whose response has not ended;
//! - `backstop_consecutive_failures`: the /stats value (requests that failed in a row).

mod buckets;
mod current;
mod failure_log;
mod families;
mod handovers;
mod labels;
mod load;
mod redis;
mod replay;
mod series;
mod stats;
mod stats_view;
mod status_page;

use std::sync::Arc;
use std::time::SystemTime;

use http::StatusCode;
use prometheus::{Encoder, Registry, TextEncoder};

pub use failure_log::FailureLogCounts;
pub use families::{GenAiCall, Metrics};
pub use labels::{
    AttemptOutcome, CircuitState, Endpoint, ModelLabel, Operation, OperationError, Provider,
    TokenType, UpstreamLabel, Vocabulary,
};
pub use load::LoadCounts;
pub use redis::RedisView;
pub use stats::{LastError, Snapshot, Stats};
pub use status_page::render as render_status;

use crate::config::Config;
use crate::events::{AttemptReport, BodyEnd, Observer, RequestEvent, Verdict};
use crate::retry::{Outcome, Reason};
use failure_log::FailureLogCollector;
use load::LoadCollector;
use replay::ReplayMetrics;

/// The upstream connections, read when `/stats` is built (the client knows them; the
/// metrics do not know the client).
pub trait UpstreamConnections: Send + Sync + 'static {
    /// HTTP/2 connections open to `upstream` now, and streams in flight on them.
    fn h2(&self, upstream: &str) -> (usize, u32);
}

/// The `Observer` behind `/metrics`, `/stats` and `/status`.
pub struct Recorder {
    registry: Registry,
    metrics: Metrics,
    failure_log: FailureLogCollector,
    journal: FailureLogCollector,
    load: LoadCollector,
    replay: ReplayMetrics,
    connections: parking_lot::RwLock<Option<Arc<dyn UpstreamConnections>>>,
    stats: Stats,
    vocabulary: current::Current,
    /// With `[redis]` only.
    redis: Option<redis::RedisFamilies>,
}

impl Recorder {
    /// Registers every family on `registry` and creates the series of `config`'s
    /// upstreams. Fails only if `registry` already holds one of these names.
    pub fn new(registry: &Registry, config: &Config) -> prometheus::Result<Recorder> {
        let metrics = Metrics::register(registry)?;
        let failure_log = FailureLogCollector::new(failure_log::FAILURE_LOG)?;
        registry.register(Box::new(failure_log.clone()))?;
        let journal = FailureLogCollector::new(failure_log::JOURNAL)?;
        registry.register(Box::new(journal.clone()))?;
        let load = LoadCollector::new()?;
        registry.register(Box::new(load.clone()))?;
        let replay = ReplayMetrics::register(registry)?;
        let redis = config
            .redis
            .is_some()
            .then(|| redis::RedisFamilies::register(registry))
            .transpose()?;
        let recorder = Recorder {
            registry: registry.clone(),
            metrics,
            failure_log,
            journal,
            load,
            replay,
            connections: Default::default(),
            stats: Stats::default(),
            vocabulary: current::Current::new(Vocabulary::new(config)),
            redis,
        };
        recorder.on_config(config);
        Ok(recorder)
    }

    /// Takes a (re)loaded config: new upstreams get their series, the model allow-list
    /// is replaced, `/stats` lists exactly the configured upstreams.
    pub fn on_config(&self, config: &Config) {
        let vocabulary = Vocabulary::new(config);
        let models: Vec<ModelLabel> = vocabulary.models().collect();
        for (upstream, provider) in vocabulary.upstreams() {
            self.metrics.prepare_upstream(&upstream, &models, provider);
            self.replay.prepare_upstream(&upstream);
        }
        self.stats
            .set_upstreams(config.upstreams.iter().map(|u| u.name.as_str()));
        self.vocabulary.store(vocabulary);
    }

    /// Lets the failure log's own counters show as its three counter families.
    pub fn attach_failure_log(&self, counts: Arc<dyn FailureLogCounts>) {
        self.failure_log.attach(counts);
    }

    /// Lets the request journal's counters show as `backstop_journal_records_total`,
    /// `backstop_journal_records_dropped_total` and `backstop_journal_errors_total`.
    pub fn attach_journal(&self, counts: Arc<dyn FailureLogCounts>) {
        self.journal.attach(counts);
    }

    /// Lets the server's and the retry-buffer budget's counts show as
    /// `backstop_connections_refused_total`, `backstop_retry_buffer_bytes` and
    /// `backstop_retry_buffer_exhausted_total`.
    pub fn attach_load(&self, counts: Arc<dyn LoadCounts>) {
        self.load.attach(counts);
    }

    /// For the circuit breaker: its state per upstream, as gauge and in `/stats`.
    pub fn set_circuit_state(&self, upstream: &str, state: CircuitState) {
        self.vocabulary.with(|vocabulary| {
            let label = vocabulary.upstream(Some(upstream));
            self.metrics.set_circuit_state(label, state);
        });
        self.stats.set_circuit(upstream, state);
    }

    /// For the local rate limiter: how long a request waited.
    pub fn rate_limit_wait(&self, upstream: &str, waited: std::time::Duration) {
        self.vocabulary.with(|vocabulary| {
            let label = vocabulary.upstream(Some(upstream));
            self.metrics.rate_limit_wait(label, waited);
        });
    }

    /// The Prometheus text exposition of the registry.
    pub fn scrape(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }

    pub fn stats(&self) -> Snapshot {
        let mut snapshot = self.stats.snapshot();
        let connections = self.connections.read().clone();
        if let Some(connections) = connections {
            for row in &mut snapshot.upstreams {
                (row.h2_connections, row.h2_streams) = connections.h2(&row.name);
            }
        }
        snapshot.redis = self.redis.as_ref().map(redis::RedisFamilies::view);
        snapshot
    }

    /// Lets `/stats` show each upstream's open HTTP/2 connections and streams.
    pub fn attach_connections(&self, connections: Arc<dyn UpstreamConnections>) {
        *self.connections.write() = Some(connections);
    }
}

/// The fleet store reports here (a config without `[redis]` has no store).
impl crate::fleet::Health for Recorder {
    fn command(&self, took: std::time::Duration, ok: bool) {
        if let Some(redis) = &self.redis {
            redis.command(took, ok);
        }
    }

    fn up(&self, up: bool) {
        if let Some(redis) = &self.redis {
            redis.up(up);
        }
    }
}

impl Observer for Recorder {
    fn request_started(&self, upstream: &str) {
        self.vocabulary.with(|vocabulary| {
            let label = vocabulary.upstream(Some(upstream));
            self.metrics.request_started(label);
        });
    }

    fn request_abandoned(&self, upstream: &str) {
        self.vocabulary.with(|vocabulary| {
            let label = vocabulary.upstream(Some(upstream));
            self.metrics.request_finished(label);
        });
    }

    fn websocket_session(&self, upstream: &str, open: bool) {
        self.vocabulary.with(|vocabulary| {
            let label = vocabulary.upstream(Some(upstream));
            self.metrics.websocket_session(label, open);
        });
    }

    fn replay_join(&self, upstream: &str) {
        self.vocabulary.with(|vocabulary| {
            let label = vocabulary.upstream(Some(upstream));
            self.replay.joined(label);
        });
    }

    fn attempt(&self, e: &AttemptReport) {
        self.vocabulary
            .with(|vocabulary| self.attempt_with(vocabulary, e));
    }

    fn circuit(&self, upstream: &str, state: CircuitState) {
        self.set_circuit_state(upstream, state);
    }

    fn pacing(&self, upstream: &str, view: crate::limits::pacing::PaceView) {
        self.stats.set_pacing(upstream, view);
    }

    fn request(&self, e: &RequestEvent) {
        self.vocabulary
            .with(|vocabulary| self.request_with(vocabulary, e));
    }
}

impl Recorder {
    fn attempt_with(&self, vocabulary: &Vocabulary, e: &AttemptReport) {
        let up = vocabulary.upstream(Some(&e.upstream));
        let tag = e.meta.tag.as_ref();
        let endpoint = Endpoint::from_kind(e.endpoint_kind);
        self.metrics
            .attempt(up, endpoint, AttemptOutcome::of(&e.outcome), e.duration);
        match (e.verdict, e.give_up) {
            (Verdict::Retry, _) => {
                self.metrics.retry(up, &e.outcome, e.delay);
                self.stats.retry(&e.upstream, tag);
            }
            (Verdict::GiveUp, Some(why)) if matches!(e.outcome, Outcome::Retry { .. }) => {
                self.metrics.retry_suppressed(up, why);
            }
            (Verdict::Fallback, _) => {
                if let Some(to) = &e.fallback_to {
                    self.stats.fallback(&e.upstream, to);
                }
            }
            _ => {}
        }
        if e.outcome.is_failure() {
            let error = LastError {
                error_type: error_type(&e.outcome, e.status),
                code: e
                    .error_code
                    .clone()
                    .or_else(|| e.status.map(|s| s.to_string())),
                message: e.error_message.as_deref().map(stats::cut_message),
                at: SystemTime::now(),
            };
            self.stats.error(Some(&e.upstream), tag, error);
        }
    }

    fn request_with(&self, vocabulary: &Vocabulary, e: &RequestEvent) {
        let up = vocabulary.upstream(e.upstream.as_deref());
        if e.upstream.is_some() {
            self.metrics.rate_limit_wait(up, e.queue_wait);
        }
        if let Some(replayed) = &e.replay {
            self.replay.replayed(up, replayed.reason);
        }
        let endpoint = Endpoint::from_kind(e.endpoint_kind);
        let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_GATEWAY);
        self.metrics.request(up, endpoint, status, e.duration);
        if e.upstream.is_some() {
            self.metrics.request_finished(up);
        }

        let interrupted = match e.end {
            BodyEnd::Interrupted(why) => Some(why),
            _ => None,
        };
        let failed = e.status >= 400 || interrupted.is_some();
        let outcome_error = match interrupted {
            Some(why) => OperationError::Interrupted(why),
            None if failed => OperationError::Status(status),
            None => OperationError::None,
        };
        if let (Some(operation), Some(provider)) = (Operation::of(endpoint), up.provider()) {
            let model = vocabulary.model_of(&e.meta);
            let call = GenAiCall {
                operation,
                provider,
                model: &model,
            };
            let first_chunk = e.time_to_first_chunk.filter(|_| e.streamed);
            self.metrics
                .operation(&call, outcome_error, e.duration, first_chunk);
            if let Some(usage) = e.usage {
                self.metrics
                    .tokens(&call, TokenType::Input, usage.input_tokens);
                self.metrics
                    .tokens(&call, TokenType::Output, usage.output_tokens);
            }
        }

        self.unattempted_error(e, interrupted, failed);
        if let Some(in_a_row) = self.stats.request(
            e.upstream.as_deref(),
            e.meta.tag.as_ref(),
            failed,
            e.duration,
        ) {
            self.metrics.set_consecutive_failures(up, in_a_row);
        }
    }

    /// `/stats`' last error for a request that failed without an attempt event: refused
    /// before any attempt (413, no route) or broken off after the response started.
    fn unattempted_error(&self, e: &RequestEvent, interrupted: Option<&'static str>, failed: bool) {
        let tag = e.meta.tag.as_ref();
        if let Some(why) = interrupted {
            let error = LastError {
                error_type: why,
                code: Some(why.to_owned()),
                message: Some("the response broke off after it had started".to_owned()),
                at: SystemTime::now(),
            };
            self.stats.error(e.upstream.as_deref(), tag, error);
        } else if failed && e.attempts == 0 {
            let error = LastError {
                error_type: status_error_type(e.status),
                code: Some(e.status.to_string()),
                message: Some("refused by backstop before any attempt".to_owned()),
                at: SystemTime::now(),
            };
            self.stats.error(e.upstream.as_deref(), tag, error);
        }
    }
}

/// SPEC §3's `error_type` of a failed attempt, as `/stats` shows it: by status when the
/// upstream answered, else by what went wrong below HTTP.
fn error_type(outcome: &Outcome, status: Option<u16>) -> &'static str {
    match (outcome.reason(), status) {
        (Reason::QuotaExhausted, _) => "quota_exhausted",
        (_, Some(code)) => status_error_type(code),
        (Reason::ConnectError | Reason::TlsCertificate, None) => "connect_error",
        (Reason::Timeout, None) => "timeout",
        (Reason::Reset, None) => "reset",
        (other, None) => other.as_str(),
    }
}

fn status_error_type(status: u16) -> &'static str {
    match status {
        429 => "rate_limited",
        500.. => "server_error",
        _ => "client_error",
    }
}
