//! Retry budget per upstream (storm protection). Retries without a limit turn an
//! upstream's bad minute into a retry storm that keeps it down: over any 10 s window,
//! retries may add at most `budget_ratio` of requests plus `budget_min_per_second` per
//! second. Built on tower's `TpsBudget`; the config is validated first because
//! `TpsBudget::new` panics outside its ranges. `0` and `0` mean no retries at all.
//!
//! `TpsBudget` charges `1 / ratio` deposits per retry, rounded down, so a ratio that is
//! not the inverse of a whole number allows slightly more (0.3 behaves as 1/3).

use std::time::Duration;

use tower::retry::budget::{Budget, TpsBudget};

use crate::config::RetrySettings;

pub struct RetryBudget(TpsBudget);

const WINDOW: Duration = Duration::from_secs(10);

impl RetryBudget {
    pub fn new(settings: &RetrySettings) -> RetryBudget {
        // Validated in config: ratio is finite and in 0..=10; TpsBudget takes 0..=1000.
        let ratio = settings.budget_ratio.clamp(0.0, 10.0) as f32;
        let per_second = settings.budget_min_per_second.min(i32::MAX as u32 / 100);
        RetryBudget(TpsBudget::new(WINDOW, per_second, ratio))
    }

    /// Every request (not attempt) earns the budget a little.
    pub fn deposit(&self) {
        self.0.deposit();
    }

    /// Takes one retry from the budget; false means "no retry".
    pub fn withdraw(&self) -> bool {
        self.0.withdraw()
    }
}

impl std::fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryBudget")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(ratio: f64, per_second: u32) -> RetrySettings {
        let text = format!(
            "[retry]\nbudget_ratio={ratio:?}\nbudget_min_per_second={per_second}\n[[upstream]]\nname=\"u\"\nbase_url=\"http://x\"\n"
        );
        crate::config::Config::from_toml(&text, &|_| None)
            .expect("valid")
            .retry
    }

    #[test]
    fn zero_ratio_and_zero_minimum_allow_no_retry() {
        let budget = RetryBudget::new(&settings(0.0, 0));
        for _ in 0..100 {
            budget.deposit();
        }
        assert!(!budget.withdraw());
    }

    #[test]
    fn ratio_allows_a_share_of_requests() {
        let budget = RetryBudget::new(&settings(0.2, 0));
        for _ in 0..100 {
            budget.deposit();
        }
        let allowed = (0..100).filter(|_| budget.withdraw()).count();
        assert_eq!(allowed, 20);
    }

    #[test]
    fn minimum_per_second_allows_retries_without_traffic() {
        let budget = RetryBudget::new(&settings(0.0, 1));
        let allowed = (0..100).filter(|_| budget.withdraw()).count();
        assert_eq!(allowed, 10, "1 per second over the 10 s window");
    }
}
