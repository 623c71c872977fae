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
    /// time spent waiting. `now` is the time of asking.
    pub async fn admit(
        &self,
        estimated_tokens: u64,
        now: Instant,
        until: Instant,
    ) -> Result<Duration, NotAdmitted> {
        if let Some(fleet) = &self.fleet
            && fleet.is_up()
            && let Ok(admitted) = self.admit_fleet(fleet, estimated_tokens, until).await
        {
            return admitted;
        }
        self.admit_local(estimated_tokens, now, until).await
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
        // The fleet's answer took a round trip (and maybe a wait): the clock is read again.
        if let Some(pacer) = &self.pacer
            && let Err(r) = pacer.admit(Instant::now(), until).await
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
        let Some(fleet) = &self.fleet else {
            breaker.record(outcome, now);
            return Some(breaker.state(now));
        };
        let before = breaker.state(now);
        breaker.record(outcome, now);
        fleet.learn(outcome, before, breaker.state(now));
        Some(self.circuit_state())
    }

    /// Pacing learns from a response (that arrived at `now`); a pause it starts is the
    /// fleet's too.
    pub fn observe(
        &self,
        status: u16,
        headers: &HeaderMap,
        server_delay: Option<Duration>,
        now: Instant,
    ) {
        let Some(pacer) = &self.pacer else {
            return;
        };
        let pause = pacer.observe(status, headers, server_delay, now);
        if let (Some(pause), Some(fleet)) = (pause, &self.fleet) {
            fleet.publish_pause(pause);
        }
    }

    async fn admit_local(
        &self,
        estimated_tokens: u64,
        now: Instant,
        until: Instant,
    ) -> Result<Duration, NotAdmitted> {
        if let Some(breaker) = &self.breaker {
            breaker
                .admit(now)
                .map_err(|open| NotAdmitted::CircuitOpen {
                    retry_after: open.retry_after,
                })?;
        }
        let mut waited = Duration::ZERO;
        if let Some(pacer) = &self.pacer {
            // The slot taken here, waited for here: no future of its own to poll.
            waited = pacer
                .reserve(now, until)
                .map_err(|r| NotAdmitted::RateLimited {
                    retry_after: r.retry_after,
                })?;
            if !waited.is_zero() {
                tokio::time::sleep(waited).await;
            }
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::config::Config;
    use crate::tasks::Tasks;

    #[derive(Default)]
    struct Counts {
        commands: AtomicU32,
        ups: AtomicU32,
    }

    impl crate::fleet::Health for Counts {
        fn command(&self, _took: Duration, _ok: bool) {
            self.commands.fetch_add(1, Ordering::Relaxed);
        }
        fn up(&self, up: bool) {
            if up {
                self.ups.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// With Redis unreachable, admissions are this replica's own, decided at once:
    /// no request waits for Redis, and none is failed because of it.
    #[tokio::test(start_paused = true)]
    async fn with_redis_down_the_local_limiter_decides_at_once() {
        let text = "[redis]\nurl = \"redis://127.0.0.1:1/0\"\n\
                    [[upstream]]\nname = \"a\"\nbase_url = \"https://x\"\n\
                    requests_per_minute = 60\nrequests_burst = 1\nmax_queue_wait = \"0s\"\n";
        let config = Config::from_toml(text, &|_| None).expect("valid");
        let counts = Arc::new(Counts::default());
        let tasks = Arc::new(Tasks::default());
        let redis = config.redis.as_ref().expect("[redis]");
        let store = Store::start(redis, counts.clone(), tasks.clone());
        let limits = UpstreamLimits::new(&config.upstreams[0], Some(&store));
        assert!(limits.fleet.is_some(), "an upstream with a limit shares it");

        let now = Instant::now();
        assert_eq!(limits.admit(0, now, now).await, Ok(Duration::ZERO));
        assert!(matches!(
            limits.admit(0, now, now).await,
            Err(NotAdmitted::RateLimited { .. })
        ));
        assert_eq!(Instant::now(), now, "no time spent on Redis");
        assert_eq!(
            counts.commands.load(Ordering::Relaxed),
            0,
            "no command sent"
        );
        assert_eq!(counts.ups.load(Ordering::Relaxed), 0);
        store.close();
        tasks.shutdown(Duration::from_secs(1)).await;
        assert!(
            tasks.is_empty(),
            "the reconnect task ends when the store closes"
        );
    }

    #[test]
    fn an_upstream_with_nothing_to_share_has_no_fleet_state() {
        let text = "[redis]\nurl = \"redis://127.0.0.1:1/0\"\n\
                    [[upstream]]\nname = \"a\"\nbase_url = \"https://x\"\n";
        let config = Config::from_toml(text, &|_| None).expect("valid");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _guard = runtime.enter();
        let redis = config.redis.as_ref().expect("[redis]");
        let store = Store::start(redis, Arc::new(Counts::default()), Arc::default());
        let limits = UpstreamLimits::new(&config.upstreams[0], Some(&store));
        assert!(limits.fleet.is_none(), "so it never calls Redis");
        store.close();
    }
}
