//! The retry loop, generic over what an attempt is: run an attempt, ask the policy,
//! sleep the delay, repeat. Kept free of HTTP so its timing is tested on a paused clock.
//!
//! A plain async loop rather than tower's `Retry` service: backstop must look inside a
//! response (status, headers, the first bytes of an error body, the first SSE event)
//! before deciding, rebuild the body it passes back, and report every decision as an
//! event; tower's `Policy::retry(&mut Req, &mut Result)` would hide all of that behind
//! two callbacks and a cloned request. The budget is still tower's `TpsBudget`.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::classify::Outcome;
use super::policy::{Decision, GiveUp, RetryPolicy};

/// What one attempt produced: the value to hand back, and how to judge it.
pub struct Attempted<T> {
    pub value: T,
    pub outcome: Outcome,
    pub server_delay: Option<Duration>,
}

/// The attempt that ended the request.
pub struct Finished<T> {
    pub value: T,
    /// How the last attempt was judged.
    pub outcome: Outcome,
    pub attempts: u32,
    pub give_up: Option<GiveUp>,
}

/// Runs attempts (`attempt(n)`, n from 1) until the policy returns or gives up.
/// `observe` sees every attempt with its decision, before any delay.
pub async fn drive<T, F, Fut>(
    policy: &mut RetryPolicy<'_>,
    mut attempt: F,
    mut observe: impl FnMut(u32, &Attempted<T>, &Decision),
) -> Finished<T>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Attempted<T>>,
{
    let mut n = 0;
    loop {
        n += 1;
        let attempted = attempt(n).await;
        let decision = policy.decide_then(attempted.outcome, attempted.server_delay, Instant::now);
        observe(n, &attempted, &decision);
        match decision {
            Decision::Return => {
                return Finished {
                    value: attempted.value,
                    outcome: attempted.outcome,
                    attempts: n,
                    give_up: None,
                };
            }
            Decision::GiveUp(why) => {
                return Finished {
                    value: attempted.value,
                    outcome: attempted.outcome,
                    attempts: n,
                    give_up: Some(why),
                };
            }
            Decision::Retry { delay, .. } => {
                drop(attempted);
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests;
