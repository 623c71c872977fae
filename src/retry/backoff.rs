//! Full-jitter exponential backoff: `uniform(0, min(max_delay, base · 2^n))`, with the
//! throttle base for 429/503 and the plain base for everything else. Full jitter (not
//! tower's "base plus jitter") spreads a fleet of clients that failed together; the cap
//! applies to the computed value only, never to a delay the server asked for.

use std::time::Duration;

use super::classify::Retryable;
use crate::config::RetrySettings;

/// The delay before retry number `retry` (0 for the first retry); `rand01` in [0, 1).
pub fn backoff(settings: &RetrySettings, kind: Retryable, retry: u32, rand01: f64) -> Duration {
    let base = match kind {
        Retryable::Throttle => settings.throttle_base_delay,
        Retryable::Transient | Retryable::Ambiguous => settings.base_delay,
    };
    let ceiling = base
        .checked_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
        .unwrap_or(settings.max_delay)
        .min(settings.max_delay);
    ceiling.mul_f64(rand01.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn settings(base_ms: u64, throttle_ms: u64, max_ms: u64) -> RetrySettings {
        let text = format!(
            "[retry]\nbase_delay=\"{base_ms}ms\"\nthrottle_base_delay=\"{throttle_ms}ms\"\nmax_delay=\"{max_ms}ms\"\n\
             [[upstream]]\nname=\"u\"\nbase_url=\"http://x\"\n"
        );
        crate::config::Config::from_toml(&text, &|_| None)
            .expect("valid")
            .retry
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let s = settings(250, 1000, 8000);
        let top = |kind, n| backoff(&s, kind, n, 1.0);
        assert_eq!(top(Retryable::Transient, 0), Duration::from_millis(250));
        assert_eq!(top(Retryable::Transient, 1), Duration::from_millis(500));
        assert_eq!(top(Retryable::Transient, 3), Duration::from_millis(2000));
        assert_eq!(top(Retryable::Transient, 10), Duration::from_millis(8000));
        assert_eq!(top(Retryable::Throttle, 0), Duration::from_millis(1000));
        assert_eq!(top(Retryable::Throttle, 2), Duration::from_millis(4000));
        assert_eq!(
            top(Retryable::Throttle, 40),
            Duration::from_millis(8000),
            "no overflow"
        );
    }

    #[test]
    fn full_jitter_reaches_zero() {
        let s = settings(250, 1000, 8000);
        assert_eq!(backoff(&s, Retryable::Throttle, 3, 0.0), Duration::ZERO);
    }

    proptest! {
        #[test]
        fn every_backoff_lies_in_zero_to_max(
            base in 1u64..5_000, throttle in 1u64..5_000, extra in 0u64..60_000,
            retry in 0u32..64, r in 0.0f64..1.0, throttled in any::<bool>()
        ) {
            let max = base.max(throttle) + extra;
            let s = settings(base, throttle, max);
            let kind = if throttled { Retryable::Throttle } else { Retryable::Transient };
            let d = backoff(&s, kind, retry, r);
            prop_assert!(d <= Duration::from_millis(max));
        }

        #[test]
        fn server_delay_jitter_lies_in_d_to_1_2d(ms in 0u64..10_000_000, r in 0.0f64..1.0) {
            let d = Duration::from_millis(ms);
            let j = super::super::server_delay::with_jitter(d, r);
            prop_assert!(j >= d);
            prop_assert!(j <= d.mul_f64(1.2) + Duration::from_nanos(1));
        }
    }
}
