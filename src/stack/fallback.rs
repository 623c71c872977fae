//! Fallback upstreams: when a request goes on to the next one (`fallback_on`, SPEC §7).
//! (Which ones, in what order: `Runtime::chain`; with what path and body: `rewrite`.)

use std::sync::Arc;

use crate::config::FallbackOn;
use crate::retry::{GiveUp, Reason};

/// The next hop of a request's chain, and what hands the request to it: the primary's
/// `fallback_on`, for every hop of its chain (the chain is the primary's own list).
#[derive(Debug, Clone, Copy)]
pub(super) struct Next<'a> {
    pub name: &'a Arc<str>,
    pub on: FallbackOn,
}

impl Next<'_> {
    /// Whether a hop that ended with `give_up` on a `reason` hands the request over.
    pub fn takes(&self, give_up: Option<GiveUp>, reason: Reason) -> bool {
        falls_back(self.on, give_up, reason)
    }
}

/// `retryable`: the upstream's own failure (retries, budget or time spent on retryable
/// failures, a delay too long to wait, an open circuit). The other triggers name the
/// not-retryable answers a different model or key may not give: a context window too
/// small, a content filter, a spent quota. Never any other 4xx.
pub(super) fn falls_back(on: FallbackOn, give_up: Option<GiveUp>, reason: Reason) -> bool {
    let retryable = matches!(
        give_up,
        Some(
            GiveUp::RetriesExhausted
                | GiveUp::BudgetExhausted
                | GiveUp::ServerDelayTooLong
                | GiveUp::DeadlineExceeded
        )
    ) || reason == Reason::CircuitOpen;
    let answer = give_up == Some(GiveUp::NotRetryable)
        && match reason {
            Reason::ContextLengthExceeded => on.context_length_exceeded,
            Reason::ContentFilter => on.content_filter,
            Reason::QuotaExhausted => on.quota_exhausted,
            _ => false,
        };
    (on.retryable && retryable) || answer
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETRYABLE: FallbackOn = FallbackOn {
        retryable: true,
        context_length_exceeded: false,
        content_filter: false,
        quota_exhausted: false,
    };

    #[test]
    fn by_default_only_the_upstreams_own_failures_fall_back() {
        let on = RETRYABLE;
        assert!(falls_back(
            on,
            Some(GiveUp::RetriesExhausted),
            Reason::Status503
        ));
        assert!(falls_back(
            on,
            Some(GiveUp::BudgetExhausted),
            Reason::Status503
        ));
        assert!(falls_back(
            on,
            Some(GiveUp::ServerDelayTooLong),
            Reason::Status429
        ));
        assert!(falls_back(
            on,
            Some(GiveUp::DeadlineExceeded),
            Reason::Status503
        ));
        assert!(falls_back(
            on,
            Some(GiveUp::NotRetryable),
            Reason::CircuitOpen
        ));
        for reason in [
            Reason::ContentFilter,
            Reason::ContextLengthExceeded,
            Reason::QuotaExhausted,
            Reason::NotRetryableStatus,
        ] {
            assert!(
                !falls_back(on, Some(GiveUp::NotRetryable), reason),
                "{reason}"
            );
        }
        assert!(!falls_back(on, None, Reason::Success));
    }

    #[test]
    fn fallback_on_names_the_answers_that_also_hand_over() {
        let on = FallbackOn {
            retryable: false,
            context_length_exceeded: true,
            quota_exhausted: true,
            content_filter: false,
        };
        let not = Some(GiveUp::NotRetryable);
        assert!(falls_back(on, not, Reason::ContextLengthExceeded));
        assert!(falls_back(on, not, Reason::QuotaExhausted));
        assert!(!falls_back(on, not, Reason::ContentFilter));
        assert!(!falls_back(on, not, Reason::NotRetryableStatus));
        assert!(
            !falls_back(on, Some(GiveUp::RetriesExhausted), Reason::Status503),
            "without retryable, a 503 storm is passed back"
        );
        let filter = FallbackOn {
            content_filter: true,
            ..on
        };
        assert!(falls_back(filter, not, Reason::ContentFilter));
    }
}
