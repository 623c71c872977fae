//! Circuit breaker per upstream (on only with an `[upstream.circuit_breaker]` table):
//! `consecutive_failures` retryable failures in a row open it for `open_for`; while open,
//! requests fail fast (or go to a fallback) without touching the upstream; after that one
//! request is let through as a probe (half-open); its success closes the circuit, its
//! failure opens it again. A probe that never reports (its client left) is replaced after
//! another `open_for`.

use parking_lot::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::CircuitBreaker;
use crate::retry::Outcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CircuitState {
    #[default]
    Closed,
    HalfOpen,
    Open,
}

impl CircuitState {
    /// `backstop_circuit_state`: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> i64 {
        match self {
            CircuitState::Closed => 0,
            CircuitState::HalfOpen => 1,
            CircuitState::Open => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Open => "open",
        }
    }
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_started: Instant },
}

#[derive(Debug)]
pub struct Breaker {
    settings: CircuitBreaker,
    state: Mutex<State>,
}

/// Not allowed through: the circuit is open for `retry_after` more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    pub retry_after: Duration,
}

impl Breaker {
    pub fn new(settings: CircuitBreaker) -> Breaker {
        Breaker {
            settings,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// May a request (or another attempt) go to this upstream now?
    pub fn admit(&self, now: Instant) -> Result<(), Open> {
        let mut state = self.state.lock();
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } if now < until => Err(Open {
                retry_after: until - now,
            }),
            State::Open { .. } => {
                *state = State::HalfOpen { probe_started: now };
                Ok(())
            }
            State::HalfOpen { probe_started } if now >= probe_started + self.settings.open_for => {
                *state = State::HalfOpen { probe_started: now };
                Ok(())
            }
            State::HalfOpen { probe_started } => Err(Open {
                retry_after: (probe_started + self.settings.open_for) - now,
            }),
        }
    }

    /// Counts an attempt's outcome: a retryable failure counts towards opening; any
    /// answer from the upstream (a success, or an error it chose to send) closes; a
    /// failure that says nothing about the upstream (a refused certificate, backstop's
    /// own refusals) leaves the state as it is.
    pub fn record(&self, outcome: Outcome, now: Instant) {
        match outcome {
            Outcome::Retry { .. } => self.failure(now),
            Outcome::Success => self.success(),
            Outcome::Fatal { reason } if reason.is_upstream_answer() => self.success(),
            Outcome::Fatal { .. } => {}
        }
    }

    /// An attempt failed in a retryable way (connect, reset, timeout, 429, 5xx…).
    pub fn failure(&self, now: Instant) {
        let mut state = self.state.lock();
        let open = State::Open {
            until: now + self.settings.open_for,
        };
        *state = match *state {
            State::Closed { failures }
                if failures + 1 >= self.settings.consecutive_failures.get() =>
            {
                open
            }
            State::Closed { failures } => State::Closed {
                failures: failures + 1,
            },
            State::HalfOpen { .. } | State::Open { .. } => open,
        };
    }

    /// The upstream answered (success, or a non-retryable error it chose to send).
    pub fn success(&self) {
        {
            let mut state = self.state.lock();
            *state = State::Closed { failures: 0 };
        }
    }

    pub fn state(&self, now: Instant) -> CircuitState {
        match *self.state.lock() {
            State::Closed { .. } => CircuitState::Closed,
            State::Open { until } if now >= until => CircuitState::HalfOpen,
            State::Open { .. } => CircuitState::Open,
            State::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    fn breaker(n: u32, open_ms: u64) -> Breaker {
        Breaker::new(CircuitBreaker {
            consecutive_failures: NonZeroU32::new(n).expect("nz"),
            open_for: Duration::from_millis(open_ms),
        })
    }

    #[test]
    fn opens_after_n_failures_in_a_row() {
        let b = breaker(3, 1000);
        let now = Instant::now();
        b.failure(now);
        b.failure(now);
        assert!(b.admit(now).is_ok());
        b.failure(now);
        assert_eq!(b.state(now), CircuitState::Open);
        assert_eq!(
            b.admit(now),
            Err(Open {
                retry_after: Duration::from_secs(1)
            })
        );
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = breaker(2, 1000);
        let now = Instant::now();
        b.failure(now);
        b.success();
        b.failure(now);
        assert_eq!(b.state(now), CircuitState::Closed);
    }

    #[test]
    fn half_open_lets_one_probe_through_and_its_success_closes() {
        let b = breaker(1, 100);
        let now = Instant::now();
        b.failure(now);
        let later = now + Duration::from_millis(150);
        assert!(b.admit(later).is_ok(), "the probe");
        assert!(b.admit(later).is_err(), "only one probe");
        assert_eq!(b.state(later), CircuitState::HalfOpen);
        b.success();
        assert!(b.admit(later).is_ok());
        assert_eq!(b.state(later), CircuitState::Closed);
    }

    #[test]
    fn a_failed_probe_opens_again() {
        let b = breaker(1, 100);
        let now = Instant::now();
        b.failure(now);
        let later = now + Duration::from_millis(150);
        assert!(b.admit(later).is_ok());
        b.failure(later);
        assert_eq!(b.state(later), CircuitState::Open);
    }

    #[test]
    fn a_silent_probe_is_replaced_after_open_for() {
        let b = breaker(1, 100);
        let now = Instant::now();
        b.failure(now);
        assert!(b.admit(now + Duration::from_millis(150)).is_ok());
        assert!(b.admit(now + Duration::from_millis(200)).is_err());
        assert!(
            b.admit(now + Duration::from_millis(260)).is_ok(),
            "a new probe"
        );
    }
}
