//! Series handles kept with the labels that name them. `with_label_values` hashes every
//! label value and takes the family's lock; the request path touches about ten series
//! per request, nearly always the same few, so each label keeps the handles it has
//! resolved. Every slot is filled on first use: a series appears in a scrape exactly
//! when it would without the cache. Labels are rebuilt on reload, and with them these.

use std::sync::OnceLock;

use prometheus::{Histogram, IntCounter, IntGauge};

use super::labels::{Endpoint, Operation, Provider};

/// The series of one `upstream` label.
#[derive(Default)]
pub struct UpstreamSeries {
    pub in_flight: OnceLock<IntGauge>,
    pub rate_limit_wait: OnceLock<Histogram>,
    pub consecutive_failures: OnceLock<IntGauge>,
    endpoints: [EndpointSeries; Endpoint::COUNT],
}

impl UpstreamSeries {
    pub fn endpoint(&self, endpoint: Endpoint) -> &EndpointSeries {
        &self.endpoints[endpoint as usize]
    }
}

/// The series of one `upstream` × `endpoint`.
#[derive(Default)]
pub struct EndpointSeries {
    pub request_duration: OnceLock<Histogram>,
    pub attempt_duration: OnceLock<Histogram>,
    /// By `AttemptOutcome`, in `AttemptOutcome::ALL`'s order.
    pub attempts: [OnceLock<IntCounter>; 3],
    /// `backstop_requests_total{status="200"}`; other statuses are looked up.
    pub ok: OnceLock<IntCounter>,
}

/// The `gen_ai_*` series of one model label, by provider and operation.
#[derive(Default)]
pub struct ModelSeries {
    calls: [[CallSeries; Operation::COUNT]; Provider::COUNT],
}

impl ModelSeries {
    pub fn call(&self, provider: Provider, operation: Operation) -> &CallSeries {
        &self.calls[provider as usize][operation as usize]
    }
}

/// One model call's series when it succeeded (`error_type` empty).
#[derive(Default)]
pub struct CallSeries {
    /// By `TokenType`: input, output.
    pub tokens: [OnceLock<Histogram>; 2],
    pub duration: OnceLock<Histogram>,
    pub first_chunk: OnceLock<Histogram>,
}
