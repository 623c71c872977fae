//! The per-request retry decision: given what an attempt produced, return it, retry it
//! after a delay, or give up — and say why. Pure apart from the shared budget; time
//! comes in as an argument, randomness from a seedable generator.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::backoff::backoff;
use super::budget::RetryBudget;
use super::classify::{Outcome, Retryable};
use super::server_delay::with_jitter;
use crate::config::RetrySettings;

/// How late a timer may fire: tokio rounds a sleep up to the next millisecond.
const TIMER_TICK: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Hand this result to the client.
    Return,
    /// Try again after `delay` (`server_delay` is what the upstream asked for, if it did).
    Retry {
        delay: Duration,
        server_delay: Option<Duration>,
    },
    /// Stop, handing this result to the client.
    GiveUp(GiveUp),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The failure is not retryable (400, quota, certificate, x-should-retry: false…).
    NotRetryable,
    /// `max_retries` spent.
    RetriesExhausted,
    /// The upstream's retry budget is empty (storm protection).
    BudgetExhausted,
    /// Another attempt or its delay would end past the deadline.
    DeadlineExceeded,
    /// The server asked for a delay longer than `max_server_delay`.
    ServerDelayTooLong,
    /// The request body was too large to keep (`retry_buffer_bytes`): sent once only.
    BodyNotReplayable,
    /// A reset or timeout after sending, with `retry_ambiguous = false`.
    AmbiguousNotRetried,
}

impl GiveUp {
    /// Stable label for logs and `backstop_retries_suppressed_total{reason}`.
    pub fn reason(self) -> &'static str {
        match self {
            GiveUp::NotRetryable => "not_retryable",
            GiveUp::RetriesExhausted => "retries_exhausted",
            GiveUp::BudgetExhausted => "budget_exhausted",
            GiveUp::DeadlineExceeded => "deadline_exceeded",
            GiveUp::ServerDelayTooLong => "server_delay_too_long",
            GiveUp::BodyNotReplayable => "body_not_replayable",
            GiveUp::AmbiguousNotRetried => "ambiguous_not_retried",
        }
    }

    /// Backstop gave up on a retryable failure after spending retries, budget or time:
    /// tell the SDK (`x-should-retry: false`) so its retries do not multiply ours.
    pub fn spent_retries(self) -> bool {
        matches!(
            self,
            GiveUp::RetriesExhausted | GiveUp::BudgetExhausted | GiveUp::DeadlineExceeded
        )
    }
}

/// One request's retries on one upstream, under that upstream's settings (borrowed from
/// the config the request runs under).
pub struct RetryPolicy<'a> {
    settings: &'a RetrySettings,
    budget: Arc<RetryBudget>,
    deadline: Instant,
    replayable: bool,
    retries: u32,
    /// Drawn only when a retry's delay is (most requests never need one).
    rng: Option<fastrand::Rng>,
}

impl<'a> RetryPolicy<'a> {
    /// Starts a request: counts it towards the budget.
    pub fn new(
        settings: &'a RetrySettings,
        budget: Arc<RetryBudget>,
        deadline: Instant,
        replayable: bool,
    ) -> RetryPolicy<'a> {
        budget.deposit();
        RetryPolicy {
            settings,
            budget,
            deadline,
            replayable,
            retries: 0,
            rng: None,
        }
    }

    /// Fixes the random sequence (tests).
    pub fn with_seed(mut self, seed: u64) -> RetryPolicy<'a> {
        self.rng = Some(fastrand::Rng::with_seed(seed));
        self
    }

    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    pub fn decide(
        &mut self,
        outcome: Outcome,
        server_delay: Option<Duration>,
        now: Instant,
    ) -> Decision {
        self.decide_then(outcome, server_delay, || now)
    }

    /// `decide`, reading the time from `now` only when a retry is weighed against the
    /// deadline (an answered request, the usual one, needs no clock).
    pub fn decide_then(
        &mut self,
        outcome: Outcome,
        server_delay: Option<Duration>,
        now: impl FnOnce() -> Instant,
    ) -> Decision {
        let kind = match outcome {
            Outcome::Success => return Decision::Return,
            Outcome::Fatal { .. } => return Decision::GiveUp(GiveUp::NotRetryable),
            Outcome::Retry { kind, .. } => kind,
        };
        if kind == Retryable::Ambiguous && !self.settings.retry_ambiguous {
            return Decision::GiveUp(GiveUp::AmbiguousNotRetried);
        }
        if !self.replayable {
            return Decision::GiveUp(GiveUp::BodyNotReplayable);
        }
        if self.retries >= self.settings.max_retries {
            return Decision::GiveUp(GiveUp::RetriesExhausted);
        }
        let left = self.deadline.saturating_duration_since(now());
        let rng = self.rng.get_or_insert_with(fastrand::Rng::new);
        let delay = match server_delay {
            Some(asked) if asked > self.settings.max_server_delay => {
                return Decision::GiveUp(GiveUp::ServerDelayTooLong);
            }
            Some(asked) if asked >= left => return Decision::GiveUp(GiveUp::DeadlineExceeded),
            Some(asked) => with_jitter(asked, rng.f64()).min(left),
            None => backoff(self.settings, kind, self.retries, rng.f64()),
        };
        // tokio's timers fire on whole milliseconds, a sleep up to one late: a backoff
        // that does not end a tick before the deadline would start the next attempt at
        // it (or just past it), with no time left to answer.
        if delay + TIMER_TICK >= left {
            return Decision::GiveUp(GiveUp::DeadlineExceeded);
        }
        // Last, so a retry that would not happen anyway costs no budget.
        if !self.budget.withdraw() {
            return Decision::GiveUp(GiveUp::BudgetExhausted);
        }
        self.retries += 1;
        Decision::Retry {
            delay,
            server_delay,
        }
    }
}

#[cfg(test)]
mod tests;
