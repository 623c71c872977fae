//! Limits per upstream (SPEC §2, last three bullets): client-side rate limits and
//! proactive pacing, which keep a fleet of apps from hitting the provider's limits in
//! the first place, and the circuit breaker, which stops sending to an upstream that is
//! down (fallbacks, in `stack`, keep requests working meanwhile).
//!
//! Order at admission: circuit (fail fast costs nothing) → pacing → rate limits. After
//! each attempt: the breaker counts it; pacing learns from the response headers; the
//! token ledger settles when the response body ends and `usage` is known.

//!
//! With `[redis]` (SPEC §8) the circuit and the rate limits are the fleet's: one
//! script per admission decides them (`fleet`), and the local breaker and limiter
//! decide only while Redis is unavailable. Pacing stays local, but a pause the
//! upstream asks for is shared.

pub mod circuit;
pub mod pacing;
pub mod rate;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use tokio::time::Instant;

use crate::config::Upstream;
use crate::fleet::admission::Verdict;
use crate::fleet::{Store, UpstreamShare};
use crate::retry::Outcome;
pub use circuit::{Breaker, CircuitState};
pub use pacing::Pacer;
pub use rate::{RateGate, Refused, estimate_tokens};

/// The limit state of one upstream, shared by all its requests.
pub struct UpstreamLimits {
    pub rate: Option<RateGate>,
    pub pacer: Option<Pacer>,
    pub breaker: Option<Breaker>,
    pub default_max_tokens: u32,
    /// The fleet's state, with `[redis]` and something to share (limits, breaker).
    pub fleet: Option<UpstreamShare>,
}

/// Why a request was not sent to this upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotAdmitted {
    CircuitOpen { retry_after: Duration },
    RateLimited { retry_after: Duration },
}

impl UpstreamLimits {
    pub fn new(upstream: &Upstream, fleet: Option<&Arc<Store>>) -> UpstreamLimits {
        UpstreamLimits {
            rate: upstream.rate_limit.as_ref().map(RateGate::new),
            pacer: upstream.pacing.then(Pacer::default),
            breaker: upstream.circuit_breaker.clone().map(Breaker::new),
            default_max_tokens: upstream.default_max_tokens,
            fleet: fleet.and_then(|store| UpstreamShare::new(store, upstream)),
        }
    }

    pub fn circuit_state(&self) -> CircuitState {
        if let Some(state) = self.fleet.as_ref().and_then(UpstreamShare::circuit_state) {
            return state;
        }
        self.breaker
            .as_ref()
            .map_or(CircuitState::Closed, |b| b.state(Instant::now()))
    }

    /// Checks the circuit, then waits for pacing and the rate limits until `until`:
    /// the fleet's when Redis answers in time, else this replica's own. Returns the
    /// time spent waiting.
    pub async fn admit(
        &self,
        estimated_tokens: u64,
        until: Instant,
    ) -> Result<Duration, NotAdmitted> {
        if let Some(fleet) = &self.fleet
            && fleet.is_up()
            && let Ok(admitted) = self.admit_fleet(fleet, estimated_tokens, until).await
        {
            return admitted;
        }
        self.admit_local(estimated_tokens, until).await
    }

    /// The fleet decides the circuit and the limits in one round trip; the slot it
    /// reserved is waited for here, then local pacing.
    async fn admit_fleet(
        &self,
        fleet: &UpstreamShare,
        estimated_tokens: u64,
        until: Instant,
    ) -> Result<Result<Duration, NotAdmitted>, crate::fleet::Unavailable> {
        let started = Instant::now();
        let tokens = self.rate.as_ref().map(|r| r.token_cost(estimated_tokens));
        let cost = tokens.map_or(0, |t| t.cost);
        let verdict = match fleet
            .admit(cost, until.saturating_duration_since(started))
            .await
        {
            Ok(verdict) => verdict,
            Err(unavailable) => {
                self.refund(tokens);
                return Err(unavailable);
            }
        };
        let wait = match verdict {
            Verdict::Admitted { wait, .. } => wait,
            Verdict::RateLimited { retry_after } => {
                self.refund(tokens);
                let retry_after = retry_after.max(Duration::from_secs(1));
                return Ok(Err(NotAdmitted::RateLimited { retry_after }));
            }
            Verdict::CircuitOpen { retry_after } => {
                self.refund(tokens);
                let retry_after = retry_after.max(Duration::from_millis(1));
                return Ok(Err(NotAdmitted::CircuitOpen { retry_after }));
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if let Some(pacer) = &self.pacer
            && let Err(r) = pacer.admit(until).await
        {
            return Ok(Err(NotAdmitted::RateLimited {
                retry_after: r.retry_after,
            }));
        }
        Ok(Ok(started.elapsed()))
    }

    fn refund(&self, tokens: Option<rate::TokenCost>) {
        if let (Some(rate), Some(tokens)) = (&self.rate, tokens) {
            rate.refund(tokens);
        }
    }

    /// Counts an attempt's outcome against the breaker (this replica's, and the
    /// fleet's when it opens or a probe reports). Returns the circuit's state after.
    pub fn record(&self, outcome: Outcome) -> Option<CircuitState> {
        let breaker = self.breaker.as_ref()?;
        let now = Instant::now();
        let before = breaker.state(now);
        breaker.record(outcome, now);
        if let Some(fleet) = &self.fleet {
            fleet.learn(outcome, before, breaker.state(now));
        }
        Some(self.circuit_state())
    }

    /// Pacing learns from a response; a pause it starts is the fleet's too.
    pub fn observe(&self, status: u16, headers: &HeaderMap, server_delay: Option<Duration>) {
        let Some(pacer) = &self.pacer else {
            return;
        };
        let pause = pacer.observe(status, headers, server_delay);
        if let (Some(pause), Some(fleet)) = (pause, &self.fleet) {
            fleet.publish_pause(pause);
        }
    }

    async fn admit_local(
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
