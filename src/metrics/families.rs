//! `Metrics`: every family of SPEC §4, as fields registered on a `Registry` passed in.
//! Each method takes typed labels (see `labels`), so the label arity the prometheus
//! crate checks at run time is right by construction.

use std::sync::OnceLock;
use std::time::Duration;

use http::StatusCode;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use super::buckets::{FIRST_CHUNK_BUCKETS, LATENCY_BUCKETS, TOKEN_BUCKETS, WAIT_BUCKETS};
use super::labels::{
    AttemptOutcome, CircuitState, Endpoint, ModelLabel, Operation, OperationError, Provider,
    TokenType, UpstreamLabel,
};
use super::series::CallSeries;
use crate::retry::{GiveUp, Outcome};

pub struct Metrics {
    requests: IntCounterVec,
    request_duration: HistogramVec,
    attempts: IntCounterVec,
    attempt_duration: HistogramVec,
    retries: IntCounterVec,
    retries_suppressed: IntCounterVec,
    backoff: HistogramVec,
    in_flight: IntGaugeVec,
    websocket_sessions: IntGaugeVec,
    consecutive_failures: IntGaugeVec,
    circuit_state: IntGaugeVec,
    rate_limit_wait: HistogramVec,
    token_usage: HistogramVec,
    operation_duration: HistogramVec,
    time_to_first_chunk: HistogramVec,
    build_info: IntGauge,
}

fn counter(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> prometheus::Result<HistogramVec> {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )?;
    r.register(Box::new(h.clone()))?;
    Ok(h)
}

const GEN_AI: [&str; 3] = [
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
];
const GEN_AI_ERR: [&str; 4] = [
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "error_type",
];

impl Metrics {
    /// Creates every family and registers it on `registry`. Fails only if a name is
    /// already registered there.
    pub fn register(registry: &Registry) -> prometheus::Result<Metrics> {
        let r = registry;
        let up_ep = ["upstream", "endpoint"];
        let metrics = Metrics {
            requests: counter(
                r,
                "backstop_requests_total",
                "Client requests by the status they got, counted when the response body ended.",
                &["upstream", "endpoint", "status"],
            )?,
            request_duration: histogram(
                r,
                "backstop_request_duration_seconds",
                "Client request start to the end of the response body, retries and backoff included.",
                &up_ep,
                &LATENCY_BUCKETS,
            )?,
            attempts: counter(
                r,
                "backstop_upstream_attempts_total",
                "Attempts against an upstream by outcome: success, retryable_failure, fatal_failure.",
                &["upstream", "endpoint", "outcome"],
            )?,
            attempt_duration: histogram(
                r,
                "backstop_upstream_attempt_duration_seconds",
                "One attempt, from sending to its classification (headers, error body or first SSE event).",
                &up_ep,
                &LATENCY_BUCKETS,
            )?,
            retries: counter(
                r,
                "backstop_retries_total",
                "Retries made, by the reason of the failed attempt (status_503, connect_error, …).",
                &["upstream", "reason"],
            )?,
            retries_suppressed: counter(
                r,
                "backstop_retries_suppressed_total",
                "Retryable failures not retried, by why (retries_exhausted, budget_exhausted, deadline_exceeded, …).",
                &["upstream", "reason"],
            )?,
            backoff: histogram(
                r,
                "backstop_backoff_seconds",
                "Delay before a retry (computed backoff or the server's).",
                &["upstream"],
                &WAIT_BUCKETS,
            )?,
            in_flight: gauge(
                r,
                "backstop_in_flight_requests",
                "Requests routed to an upstream whose response has not ended.",
                &["upstream"],
            )?,
            websocket_sessions: gauge(
                r,
                "backstop_websocket_sessions",
                "WebSocket sessions open through backstop (after their 101).",
                &["upstream"],
            )?,
            consecutive_failures: gauge(
                r,
                "backstop_consecutive_failures",
                "Requests in a row that failed in the end; a success resets it (as /stats).",
                &["upstream"],
            )?,
            circuit_state: gauge(
                r,
                "backstop_circuit_state",
                "Circuit breaker state: 0 closed, 1 half-open, 2 open.",
                &["upstream"],
            )?,
            rate_limit_wait: histogram(
                r,
                "backstop_rate_limit_wait_seconds",
                "Time a request waited for the upstream's local rate limit.",
                &["upstream"],
                &WAIT_BUCKETS,
            )?,
            token_usage: histogram(
                r,
                "gen_ai_client_token_usage",
                "Tokens per call from the response usage (JSON or the final SSE chunk).",
                &[GEN_AI[0], GEN_AI[1], GEN_AI[2], "gen_ai_token_type"],
                &TOKEN_BUCKETS,
            )?,
            operation_duration: histogram(
                r,
                "gen_ai_client_operation_duration_seconds",
                "Model call duration as the client saw it; error_type empty on success.",
                &GEN_AI_ERR,
                &LATENCY_BUCKETS,
            )?,
            time_to_first_chunk: histogram(
                r,
                "gen_ai_client_operation_time_to_first_chunk_seconds",
                "Streams: request start to the first body chunk sent to the client.",
                &GEN_AI_ERR,
                &FIRST_CHUNK_BUCKETS,
            )?,
            build_info: {
                let g = IntGauge::with_opts(
                    Opts::new("backstop_build_info", "Always 1; the version is a label.")
                        .const_label("version", env!("CARGO_PKG_VERSION")),
                )?;
                r.register(Box::new(g.clone()))?;
                g
            },
        };
        metrics.build_info.set(1);
        Ok(metrics)
    }

    /// Creates zero series for an upstream so every family shows in the first scrape
    /// and `rate()` has a starting point.
    pub fn prepare_upstream(&self, up: &UpstreamLabel, models: &[ModelLabel], provider: Provider) {
        let u = up.as_str();
        let ep = Endpoint::ChatCompletions.as_str();
        self.requests.with_label_values(&[u, ep, "200"]);
        self.request_duration.with_label_values(&[u, ep]);
        for outcome in AttemptOutcome::ALL {
            self.attempts.with_label_values(&[u, ep, outcome.as_str()]);
        }
        self.attempt_duration.with_label_values(&[u, ep]);
        self.retries.with_label_values(&[u, "status_429"]);
        self.retries.with_label_values(&[u, "status_503"]);
        self.retries_suppressed
            .with_label_values(&[u, GiveUp::RetriesExhausted.reason()]);
        self.retries_suppressed
            .with_label_values(&[u, GiveUp::BudgetExhausted.reason()]);
        self.backoff.with_label_values(&[u]);
        self.in_flight.with_label_values(&[u]);
        self.websocket_sessions.with_label_values(&[u]);
        self.consecutive_failures.with_label_values(&[u]);
        self.circuit_state.with_label_values(&[u]);
        self.rate_limit_wait.with_label_values(&[u]);
        let p = provider.as_str();
        let op = Operation::Chat.as_str();
        for m in models {
            for t in [TokenType::Input, TokenType::Output] {
                self.token_usage
                    .with_label_values(&[op, p, m.as_str(), t.as_str()]);
            }
            self.operation_duration
                .with_label_values(&[op, p, m.as_str(), ""]);
            self.time_to_first_chunk
                .with_label_values(&[op, p, m.as_str(), ""]);
        }
    }

    /// A client request ended with `status` after `duration`.
    pub fn request(
        &self,
        up: &UpstreamLabel,
        ep: Endpoint,
        status: StatusCode,
        duration: Duration,
    ) {
        let series = up.series.endpoint(ep);
        let labels = [up.as_str(), ep.as_str(), status.as_str()];
        if status == StatusCode::OK {
            series
                .ok
                .get_or_init(|| self.requests.with_label_values(&labels))
                .inc();
        } else {
            self.requests.with_label_values(&labels).inc();
        }
        series
            .request_duration
            .get_or_init(|| self.request_duration.with_label_values(&labels[..2]))
            .observe(duration.as_secs_f64());
    }

    pub fn attempt(
        &self,
        up: &UpstreamLabel,
        ep: Endpoint,
        outcome: AttemptOutcome,
        duration: Duration,
    ) {
        let series = up.series.endpoint(ep);
        let labels = [up.as_str(), ep.as_str(), outcome.as_str()];
        series.attempts[outcome as usize]
            .get_or_init(|| self.attempts.with_label_values(&labels))
            .inc();
        series
            .attempt_duration
            .get_or_init(|| self.attempt_duration.with_label_values(&labels[..2]))
            .observe(duration.as_secs_f64());
    }

    /// A retry after a failed attempt (its reason is a fixed classification string).
    pub fn retry(&self, up: &UpstreamLabel, failed: &Outcome, delay: Option<Duration>) {
        self.retries
            .with_label_values(&[up.as_str(), failed.reason().as_str()])
            .inc();
        if let Some(delay) = delay {
            self.backoff
                .with_label_values(&[up.as_str()])
                .observe(delay.as_secs_f64());
        }
    }

    /// A retryable failure that was handed back instead of retried.
    pub fn retry_suppressed(&self, up: &UpstreamLabel, why: GiveUp) {
        self.retries_suppressed
            .with_label_values(&[up.as_str(), why.reason()])
            .inc();
    }

    pub fn request_started(&self, up: &UpstreamLabel) {
        self.in_flight(up).inc();
    }

    pub fn request_finished(&self, up: &UpstreamLabel) {
        self.in_flight(up).dec();
    }

    /// Sessions are rare and long: no cached series needed.
    pub fn websocket_session(&self, up: &UpstreamLabel, open: bool) {
        let gauge = self.websocket_sessions.with_label_values(&[up.as_str()]);
        if open { gauge.inc() } else { gauge.dec() }
    }

    fn in_flight<'a>(&self, up: &'a UpstreamLabel) -> &'a IntGauge {
        up.series
            .in_flight
            .get_or_init(|| self.in_flight.with_label_values(&[up.as_str()]))
    }

    pub fn set_consecutive_failures(&self, up: &UpstreamLabel, n: u64) {
        up.series
            .consecutive_failures
            .get_or_init(|| self.consecutive_failures.with_label_values(&[up.as_str()]))
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn set_circuit_state(&self, up: &UpstreamLabel, state: CircuitState) {
        self.circuit_state
            .with_label_values(&[up.as_str()])
            .set(state.gauge());
    }

    pub fn rate_limit_wait(&self, up: &UpstreamLabel, waited: Duration) {
        up.series
            .rate_limit_wait
            .get_or_init(|| self.rate_limit_wait.with_label_values(&[up.as_str()]))
            .observe(waited.as_secs_f64());
    }

    pub fn tokens(&self, call: &GenAiCall<'_>, kind: TokenType, tokens: u64) {
        let labels = [
            call.operation.as_str(),
            call.provider.as_str(),
            call.model.as_str(),
            kind.as_str(),
        ];
        call.series().tokens[kind as usize]
            .get_or_init(|| self.token_usage.with_label_values(&labels))
            .observe(tokens as f64);
    }

    /// A model call ended: its duration and, for streams, its time to first chunk.
    pub fn operation(
        &self,
        call: &GenAiCall<'_>,
        error: OperationError,
        duration: Duration,
        first_chunk: Option<Duration>,
    ) {
        let succeeded = error == OperationError::None;
        let error = error.label();
        let labels = [
            call.operation.as_str(),
            call.provider.as_str(),
            call.model.as_str(),
            &error,
        ];
        let series = call.series();
        let observe = |slot: &OnceLock<Histogram>, family: &HistogramVec, value: Duration| {
            if succeeded {
                slot.get_or_init(|| family.with_label_values(&labels))
                    .observe(value.as_secs_f64());
            } else {
                family
                    .with_label_values(&labels)
                    .observe(value.as_secs_f64());
            }
        };
        observe(&series.duration, &self.operation_duration, duration);
        if let Some(first) = first_chunk {
            observe(&series.first_chunk, &self.time_to_first_chunk, first);
        }
    }
}

/// The OTel GenAI labels shared by a call's token and duration series.
pub struct GenAiCall<'a> {
    pub operation: Operation,
    pub provider: Provider,
    pub model: &'a ModelLabel,
}

impl GenAiCall<'_> {
    fn series(&self) -> &CallSeries {
        self.model.series.call(self.provider, self.operation)
    }
}
