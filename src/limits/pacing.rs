//! Proactive pacing: use what the upstream says about its own limits to avoid 429s
//! instead of retrying them.
//!
//! - When `x-ratelimit-remaining-requests` is low (≤ 10 % of `x-ratelimit-limit-requests`,
//!   or ≤ 1 when no limit is given), admissions are spaced `reset / (remaining + 1)`
//!   apart, so the rest of the window is spread out instead of spent at once.
//! - When `x-ratelimit-remaining-tokens` is ≤ 5 % of its limit, admissions pause until
//!   `x-ratelimit-reset-tokens`.
//! - When a 429 arrives anyway, admissions pause for the server's delay (1 s if it gave
//!   none) and the spacing is stretched by a factor that halves on each 429
//!   (multiplicative decrease) and recovers by 0.1 per success (additive increase).
//!
//! Slots are handed out under a lock, so concurrent requests get successive slots.

use std::sync::Mutex;
use std::time::Duration;

use http::HeaderMap;
use tokio::time::Instant;

use super::rate::Refused;
use crate::retry::server_delay::go_duration;

#[derive(Debug)]
struct State {
    paused_until: Option<Instant>,
    spacing: Duration,
    next_slot: Instant,
    /// 1.0 = no slowdown; halves per 429, floor 0.1.
    factor: f64,
}

#[derive(Debug)]
pub struct Pacer(Mutex<State>);

/// What `/stats` and metrics show about pacing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaceView {
    pub spacing: Duration,
    pub paused_for: Duration,
    pub factor: f64,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer(Mutex::new(State {
            paused_until: None,
            spacing: Duration::ZERO,
            next_slot: Instant::now(),
            factor: 1.0,
        }))
    }
}

impl Pacer {
    /// Learns from a response's status and rate-limit headers.
    pub fn observe(&self, status: u16, headers: &HeaderMap, server_delay: Option<Duration>) {
        let now = Instant::now();
        let Ok(mut s) = self.0.lock() else { return };
        if status == 429 {
            let pause = server_delay.unwrap_or(Duration::from_secs(1));
            s.paused_until = Some(s.paused_until.map_or(now + pause, |p| p.max(now + pause)));
            s.factor = (s.factor * 0.5).max(0.1);
        } else if status < 400 {
            s.factor = (s.factor + 0.1).min(1.0);
        }
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        let reset = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| go_duration(v.trim()))
        };

        if let (Some(remaining), Some(window)) = (
            number("x-ratelimit-remaining-requests"),
            reset("x-ratelimit-reset-requests"),
        ) {
            let low = match number("x-ratelimit-limit-requests") {
                Some(limit) if limit > 0.0 => remaining <= limit * 0.1,
                _ => remaining <= 1.0,
            };
            s.spacing = if low {
                window.div_f64(remaining.max(0.0) + 1.0)
            } else {
                Duration::ZERO
            };
        }
        if let (Some(remaining), Some(limit), Some(window)) = (
            number("x-ratelimit-remaining-tokens"),
            number("x-ratelimit-limit-tokens"),
            reset("x-ratelimit-reset-tokens"),
        ) && limit > 0.0
            && remaining <= limit * 0.05
        {
            s.paused_until = Some(s.paused_until.map_or(now + window, |p| p.max(now + window)));
        }
    }

    /// Takes the next slot, waiting for it; refuses if it would start after `until`.
    pub async fn admit(&self, until: Instant) -> Result<Duration, Refused> {
        let wait = {
            let Ok(mut s) = self.0.lock() else {
                return Ok(Duration::ZERO);
            };
            let now = Instant::now();
            let mut start = now.max(s.next_slot);
            if let Some(p) = s.paused_until {
                start = start.max(p);
            }
            if start > until {
                return Err(Refused {
                    retry_after: (start - now).max(Duration::from_secs(1)),
                });
            }
            let spacing = s.spacing.div_f64(s.factor);
            s.next_slot = start + spacing;
            start - now
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(wait)
    }

    pub fn view(&self) -> PaceView {
        match self.0.lock() {
            Ok(s) => PaceView {
                spacing: s.spacing.div_f64(s.factor),
                paused_for: s.paused_until.map_or(Duration::ZERO, |p| {
                    p.saturating_duration_since(Instant::now())
                }),
                factor: s.factor,
            },
            Err(_) => PaceView {
                spacing: Duration::ZERO,
                paused_for: Duration::ZERO,
                factor: 1.0,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[tokio::test(start_paused = true)]
    async fn plenty_remaining_means_no_wait() {
        let p = Pacer::default();
        p.observe(
            200,
            &headers(&[
                ("x-ratelimit-limit-requests", "100"),
                ("x-ratelimit-remaining-requests", "80"),
                ("x-ratelimit-reset-requests", "10s"),
            ]),
            None,
        );
        let until = Instant::now() + Duration::from_secs(5);
        assert_eq!(p.admit(until).await, Ok(Duration::ZERO));
        assert_eq!(p.admit(until).await, Ok(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn low_remaining_spreads_the_rest_of_the_window() {
        let p = Pacer::default();
        p.observe(
            200,
            &headers(&[
                ("x-ratelimit-limit-requests", "100"),
                ("x-ratelimit-remaining-requests", "4"),
                ("x-ratelimit-reset-requests", "10s"),
            ]),
            None,
        );
        let until = Instant::now() + Duration::from_secs(60);
        let first = p.admit(until).await.expect("first");
        let second = p.admit(until).await.expect("second");
        assert_eq!(first, Duration::ZERO);
        assert_eq!(second, Duration::from_secs(2), "10 s over 5 slots");
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_and_halves_the_rate() {
        let p = Pacer::default();
        p.observe(429, &HeaderMap::new(), Some(Duration::from_millis(700)));
        assert_eq!(p.view().factor, 0.5);
        let waited = p
            .admit(Instant::now() + Duration::from_secs(5))
            .await
            .expect("admitted");
        assert_eq!(waited, Duration::from_millis(700));
        for _ in 0..10 {
            p.observe(200, &HeaderMap::new(), None);
        }
        assert_eq!(p.view().factor, 1.0, "additive recovery");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_past_the_wait_limit_is_refused() {
        let p = Pacer::default();
        p.observe(429, &HeaderMap::new(), Some(Duration::from_secs(30)));
        let refused = p
            .admit(Instant::now() + Duration::from_secs(5))
            .await
            .expect_err("too long");
        assert!(refused.retry_after >= Duration::from_secs(29));
    }

    #[tokio::test(start_paused = true)]
    async fn exhausted_tokens_pause_until_reset() {
        let p = Pacer::default();
        p.observe(
            200,
            &headers(&[
                ("x-ratelimit-limit-tokens", "10000"),
                ("x-ratelimit-remaining-tokens", "100"),
                ("x-ratelimit-reset-tokens", "1.5s"),
            ]),
            None,
        );
        assert_eq!(p.view().paused_for, Duration::from_millis(1500));
    }
}
