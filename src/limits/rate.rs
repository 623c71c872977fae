//! Client-side rate limits per upstream (`requests_per_minute`, `tokens_per_minute`) on
//! governor's GCRA, so the upstream sees requests spread over the minute the way
//! providers enforce them (per second), instead of a burst that earns 429s.
//!
//! Waiting is FIFO-fair: admissions queue on a fair async mutex, and only the head of
//! the queue asks governor (which alone would let a lucky late-comer overtake). The
//! wait is bounded by `max_queue_wait` and the request's deadline, and ends at once if
//! the client leaves (the future is dropped, and so its place in the queue).
//!
//! Tokens are estimated before sending (request bytes / 4 + `max_tokens`, or
//! `default_max_tokens`) and corrected from the response's `usage`. Governor cannot
//! refund or charge after the fact, so the difference goes into a small ledger: a debt
//! (more tokens were used than estimated) is added to the next admission's cost, a
//! credit is taken off it. The ledger is bounded to one burst either way.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

use crate::config::RateLimit;

type Direct = RateLimiter<NotKeyed, InMemoryState, DefaultClock>;

pub struct RateGate {
    requests: Option<Direct>,
    tokens: Option<(Direct, u32)>,
    queue: tokio::sync::Mutex<()>,
    ledger: AtomicI64,
    clock: DefaultClock,
}

/// Not admitted in time: the client is told to come back after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: Duration,
}

impl RateGate {
    pub fn new(limit: &RateLimit) -> RateGate {
        let requests = limit
            .requests_per_minute
            .zip(request_burst(limit))
            .map(|(rpm, burst)| RateLimiter::direct(Quota::per_minute(rpm).allow_burst(burst)));
        let tokens = limit.tokens_per_minute.map(|tpm| {
            let burst = token_burst(tpm);
            (
                RateLimiter::direct(Quota::per_minute(tpm).allow_burst(burst)),
                burst.get(),
            )
        });
        RateGate {
            requests,
            tokens,
            queue: tokio::sync::Mutex::new(()),
            ledger: AtomicI64::new(0),
            clock: DefaultClock::default(),
        }
    }

    /// Waits for a turn (FIFO) and for both limits, until `until` at the latest.
    /// Returns how long it waited.
    pub async fn admit(&self, estimated_tokens: u64, until: Instant) -> Result<Duration, Refused> {
        let started = Instant::now();
        let refused = |wait: Duration| Refused {
            retry_after: wait.max(Duration::from_secs(1)),
        };
        // With no time to wait (`max_queue_wait = "0s"`) there is no queue to keep fair:
        // each request is admitted or refused at once, never for a lock held by another.
        let _turn = if until > started {
            let Ok(turn) = tokio::time::timeout_at(until, self.queue.lock()).await else {
                return Err(refused(Duration::from_secs(1)));
            };
            Some(turn)
        } else {
            None
        };
        if let Some(limiter) = &self.requests {
            loop {
                match limiter.check() {
                    Ok(()) => break,
                    Err(not_until) => {
                        let wait = not_until.wait_time_from(self.clock.now());
                        if Instant::now() + wait > until {
                            return Err(refused(wait));
                        }
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        if let Some((limiter, burst)) = &self.tokens {
            let debt = self.ledger.swap(0, Ordering::Relaxed);
            let cost = (estimated_tokens as i64 + debt).clamp(1, i64::from(*burst));
            let n = NonZeroU32::new(cost as u32).unwrap_or(NonZeroU32::MIN);
            loop {
                match limiter.check_n(n) {
                    Ok(Ok(())) => break,
                    Ok(Err(not_until)) => {
                        let wait = not_until.wait_time_from(self.clock.now());
                        if Instant::now() + wait > until {
                            self.ledger.fetch_add(debt, Ordering::Relaxed);
                            return Err(refused(wait));
                        }
                        tokio::time::sleep(wait).await;
                    }
                    // Cannot happen: the cost is clamped to the burst.
                    Err(_) => break,
                }
            }
            // What the clamp left unpaid stays owed.
            let unpaid = estimated_tokens as i64 + debt - cost;
            self.settle_difference(unpaid);
        }
        Ok(started.elapsed())
    }

    /// For a limit kept elsewhere (the fleet's): what this admission costs in tokens,
    /// the estimate plus what is owed (less what is credited), within one burst. The
    /// cost is taken off the ledger now; `refund` puts it back if it is not admitted.
    pub fn token_cost(&self, estimated_tokens: u64) -> TokenCost {
        let Some((_, burst)) = &self.tokens else {
            return TokenCost::default();
        };
        let debt = self.ledger.swap(0, Ordering::Relaxed);
        let owed = estimated_tokens as i64 + debt;
        let cost = owed.clamp(1, i64::from(*burst));
        // What the clamp left unpaid stays owed.
        self.settle_difference(owed - cost);
        TokenCost {
            cost: cost as u64,
            debt,
            unpaid: owed - cost,
        }
    }

    /// The admission `cost` was for did not happen: the ledger is as before.
    pub fn refund(&self, cost: TokenCost) {
        self.settle_difference(cost.debt - cost.unpaid);
    }

    /// Corrects the token estimate with what the response reported.
    pub fn settle(&self, estimated_tokens: u64, used_tokens: u64) {
        self.settle_difference(used_tokens as i64 - estimated_tokens as i64);
    }

    fn settle_difference(&self, difference: i64) {
        let Some((_, burst)) = &self.tokens else {
            return;
        };
        let bound = i64::from(*burst);
        let _ = self
            .ledger
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |owed| {
                Some((owed + difference).clamp(-bound, bound))
            });
    }

    /// Tokens owed (positive) or credited (negative) to the next admission.
    pub fn ledger(&self) -> i64 {
        self.ledger.load(Ordering::Relaxed)
    }

    pub fn limits_tokens(&self) -> bool {
        self.tokens.is_some()
    }
}

/// The tokens one admission is charged, and how the ledger moved to get there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCost {
    /// 0 when the upstream does not limit tokens.
    pub cost: u64,
    debt: i64,
    unpaid: i64,
}

/// `requests_burst`, by default one second's worth: ceil(rpm / 60). `None` without
/// `requests_per_minute`.
pub fn request_burst(limit: &RateLimit) -> Option<NonZeroU32> {
    let rpm = limit.requests_per_minute?;
    Some(
        limit
            .requests_burst
            .unwrap_or_else(|| per_second_ceiling(rpm)),
    )
}

/// Ten seconds' worth of tokens: large prompts fit, and a minute is still spread out.
pub fn token_burst(tpm: NonZeroU32) -> NonZeroU32 {
    NonZeroU32::new(tpm.get().div_ceil(6)).unwrap_or(NonZeroU32::MIN)
}

fn per_second_ceiling(rpm: NonZeroU32) -> NonZeroU32 {
    NonZeroU32::new(rpm.get().div_ceil(60)).unwrap_or(NonZeroU32::MIN)
}

/// The token cost guessed before sending: request bytes / 4 (a prompt's characters per
/// token, roughly, and JSON only adds bytes) plus the completion budget.
pub fn estimate_tokens(body_bytes: u64, max_tokens: Option<u64>, default_max_tokens: u32) -> u64 {
    body_bytes.div_ceil(4) + max_tokens.unwrap_or(u64::from(default_max_tokens))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(rpm: Option<u32>, burst: Option<u32>, tpm: Option<u32>) -> RateGate {
        RateGate::new(&RateLimit {
            requests_per_minute: rpm.and_then(NonZeroU32::new),
            requests_burst: burst.and_then(NonZeroU32::new),
            tokens_per_minute: tpm.and_then(NonZeroU32::new),
        })
    }

    #[test]
    fn estimate_uses_max_tokens_or_the_default() {
        assert_eq!(estimate_tokens(400, Some(50), 256), 150);
        assert_eq!(estimate_tokens(400, None, 256), 356);
        assert_eq!(estimate_tokens(1, None, 0), 1);
    }

    #[test]
    fn default_burst_is_one_seconds_worth() {
        assert_eq!(
            per_second_ceiling(NonZeroU32::new(500).expect("nz")).get(),
            9
        );
        assert_eq!(
            per_second_ceiling(NonZeroU32::new(60).expect("nz")).get(),
            1
        );
        assert_eq!(per_second_ceiling(NonZeroU32::new(1).expect("nz")).get(), 1);
    }

    #[tokio::test]
    async fn a_burst_passes_then_requests_are_refused_past_the_wait() {
        let g = gate(Some(60), Some(3), None);
        let soon = Instant::now() + Duration::from_millis(50);
        for _ in 0..3 {
            assert!(g.admit(0, soon).await.is_ok());
        }
        let refused = g.admit(0, soon).await.expect_err("over the burst");
        assert!(refused.retry_after >= Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn no_queue_wait_admits_the_burst_and_refuses_the_rest_at_once() {
        let g = gate(Some(600), Some(10), None);
        let now = Instant::now();
        let admitted = (0..20).map(|_| g.admit(0, now)).collect::<Vec<_>>();
        let mut passed = 0;
        for admission in admitted {
            match admission.await {
                Ok(waited) => {
                    assert_eq!(waited, Duration::ZERO);
                    passed += 1;
                }
                Err(refused) => assert!(refused.retry_after >= Duration::from_secs(1)),
            }
        }
        assert_eq!(passed, 10, "the burst, and not one more");
        assert_eq!(Instant::now(), now, "nobody waited");
    }

    #[tokio::test]
    async fn waiting_within_max_queue_wait_is_admitted() {
        let g = gate(Some(600), Some(1), None); // one per 100 ms
        let until = Instant::now() + Duration::from_secs(2);
        assert!(g.admit(0, until).await.is_ok());
        let waited = g.admit(0, until).await.expect("admitted after a wait");
        assert!(waited >= Duration::from_millis(50), "{waited:?}");
    }

    #[test]
    fn usage_corrects_the_ledger_within_one_burst() {
        let g = gate(None, None, Some(6000)); // burst 1000
        g.settle(100, 400);
        assert_eq!(g.ledger(), 300);
        g.settle(1000, 0);
        assert_eq!(g.ledger(), -700);
        g.settle(0, 1_000_000);
        assert_eq!(g.ledger(), 1000, "bounded");
    }

    #[test]
    fn a_shared_admission_pays_the_debt_and_a_refusal_restores_it() {
        let g = gate(None, None, Some(6000)); // burst 1000 tokens
        g.settle(0, 300);
        let cost = g.token_cost(50);
        assert_eq!(cost.cost, 350);
        assert_eq!(g.ledger(), 0);
        g.refund(cost);
        assert_eq!(g.ledger(), 300, "refused: still owed");
        g.settle(0, 1000);
        let cost = g.token_cost(500);
        assert_eq!((cost.cost, g.ledger()), (1000, 500), "one burst at most");
        g.refund(cost);
        assert_eq!(g.ledger(), 1000, "bounded to one burst");
    }

    #[tokio::test]
    async fn debt_makes_the_next_admission_cost_more() {
        let g = gate(None, None, Some(6000)); // burst 1000 tokens
        let soon = Instant::now() + Duration::from_millis(20);
        g.settle(0, 900); // owe 900
        assert!(g.admit(50, soon).await.is_ok(), "950 fits the burst");
        assert_eq!(g.ledger(), 0);
        assert!(
            g.admit(100, soon).await.is_err(),
            "the bucket was drained by the debt"
        );
    }
}
