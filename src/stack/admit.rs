//! Step 3a, per hop: admission. The circuit first (failing fast costs nothing), then
//! pacing and the rate limits, which may make the request wait up to `max_queue_wait`
//! (never past its deadline). A refusal is reported as the hop's only attempt.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::call::Call;
use super::fresh;
use super::report::Reporter;
use crate::error::ProxyError;
use crate::events::Verdict;
use crate::limits::{NotAdmitted, UpstreamLimits, estimate_tokens};
use crate::retry::Reason;

/// Let through, after waiting this long; the token estimate to settle, when the
/// upstream limits tokens.
pub(super) struct Admitted {
    pub waited: Duration,
    /// When it was admitted, if admitting it did not wait: the first attempt's start.
    pub fresh: Option<Instant>,
    pub settle: Option<(Arc<UpstreamLimits>, u64)>,
}

/// Not let through: the error to answer with, and whether the next hop may take it.
pub(super) struct Refused {
    pub error: ProxyError,
    pub falls_back: bool,
}

/// Admits `call` to the reporter's hop; `attempt` numbers the report of a refusal. An
/// open circuit hands over when the reporter's next hop takes it. `fresh`: a clock
/// reading nothing has waited since, taken as now.
pub(super) async fn admit(
    call: &Call,
    reporter: &Reporter<'_>,
    attempt: u32,
    fresh: Option<Instant>,
) -> Result<Admitted, Refused> {
    let hop = reporter.hop;
    let limits = &hop.limits;
    // Tokens are estimated (from the body's hints) only for an upstream that limits them.
    let limits_tokens = limits.rate.as_ref().is_some_and(|r| r.limits_tokens());
    let estimate = if limits_tokens {
        let max_tokens = call.meta.hints().max_tokens;
        estimate_tokens(call.meta.body_bytes, max_tokens, limits.default_max_tokens)
    } else {
        0
    };
    let now = fresh::now_or(fresh);
    let until = call.deadline.min(now + hop.upstream.max_queue_wait);
    let admitted = limits.admit(estimate, now, until).await;
    reporter.circuit();
    // The name is copied only for a refusal's error, not for every admitted request.
    let name = || hop.upstream.name.clone();
    let (error, reason, falls_back) = match admitted {
        Ok(queued) => {
            let settle = limits_tokens.then(|| (limits.clone(), estimate));
            // Admitted locally at once: nothing waited, so `now` still is.
            let fresh = (queued.is_zero() && limits.fleet.is_none()).then_some(now);
            return Ok(Admitted {
                waited: queued,
                fresh,
                settle,
            });
        }
        Err(NotAdmitted::CircuitOpen { retry_after }) => (
            ProxyError::CircuitOpen {
                upstream: name(),
                retry_after,
            },
            Reason::CircuitOpen,
            reporter.hands_over(None, Reason::CircuitOpen),
        ),
        // A local rate limit is this replica's own choice: another hop would not help.
        Err(NotAdmitted::RateLimited { retry_after }) => (
            ProxyError::RateLimited {
                upstream: name(),
                retry_after,
            },
            Reason::RateLimitedLocally,
            false,
        ),
    };
    let verdict = if falls_back {
        Verdict::Fallback
    } else {
        Verdict::GiveUp
    };
    reporter.refused(attempt, reason, verdict, &error);
    Err(Refused { error, falls_back })
}
