//! Limits per upstream (SPEC §2, last three bullets): client-side rate limits and
//! proactive pacing, which keep a fleet of apps from hitting the provider's limits in
//! the first place, and the circuit breaker, which stops sending to an upstream that is
//! down (fallbacks, in `stack`, keep requests working meanwhile).
//!
//! Order at admission: circuit (fail fast costs nothing) → pacing → rate limits. After
//! each attempt: the breaker counts it; pacing learns from the response headers; the
//! token ledger settles when the response body ends and `usage` is known.

pub mod circuit;
pub mod pacing;
pub mod rate;

use std::time::Duration;

use tokio::time::Instant;

use crate::config::Upstream;
pub use circuit::{Breaker, CircuitState};
pub use pacing::Pacer;
pub use rate::{RateGate, Refused, estimate_tokens};

/// The limit state of one upstream, shared by all its requests.
pub struct UpstreamLimits {
    pub rate: Option<RateGate>,
    pub pacer: Option<Pacer>,
    pub breaker: Option<Breaker>,
    pub default_max_tokens: u32,
}

/// Why a request was not sent to this upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAdmitted {
    CircuitOpen { retry_after: Duration },
    RateLimited { retry_after: Duration },
}

impl UpstreamLimits {
    pub fn new(upstream: &Upstream) -> UpstreamLimits {
        UpstreamLimits {
            rate: upstream.rate_limit.as_ref().map(RateGate::new),
            pacer: upstream.pacing.then(Pacer::default),
            breaker: upstream.circuit_breaker.clone().map(Breaker::new),
            default_max_tokens: upstream.default_max_tokens,
        }
    }

    pub fn circuit_state(&self) -> CircuitState {
        self.breaker
            .as_ref()
            .map_or(CircuitState::Closed, |b| b.state(Instant::now()))
    }

    /// Checks the circuit, then waits for pacing and the rate limits until `until`.
    /// Returns the time spent waiting.
    pub async fn admit(
        &self,
        estimated_tokens: u64,
        until: Instant,
    ) -> Result<Duration, NotAdmitted> {
        if let Some(breaker) = &self.breaker {
            breaker
                .admit(Instant::now())
                .map_err(|open| NotAdmitted::CircuitOpen {
                    retry_after: open.retry_after,
                })?;
        }
        let mut waited = Duration::ZERO;
        if let Some(pacer) = &self.pacer {
            waited += pacer
                .admit(until)
                .await
                .map_err(|r| NotAdmitted::RateLimited {
                    retry_after: r.retry_after,
                })?;
        }
        if let Some(rate) = &self.rate {
            waited += rate.admit(estimated_tokens, until).await.map_err(|r| {
                NotAdmitted::RateLimited {
                    retry_after: r.retry_after,
                }
            })?;
        }
        Ok(waited)
    }
}
