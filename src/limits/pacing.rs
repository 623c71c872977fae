//! Proactive pacing: use what the upstream says about its own limits to avoid 429s
//! instead of retrying them.
//!
//! - Every response's `x-ratelimit-remaining-requests` / `-reset-requests` (and
//!   `-limit-requests`) tell how many requests are left until when. Backstop counts its
//!   own admissions against that number, so requests already on their way are not
//!   forgotten; when none are left, admissions wait for the reset, and then the window
//!   starts again at the limit.
//! - When what is left is low (≤ 10 % of the limit), admissions are also spread over the
//!   rest of the window instead of spent at once.
//! - When `x-ratelimit-remaining-tokens` is ≤ 5 % of its limit, admissions pause until
//!   `x-ratelimit-reset-tokens`.
//! - When a 429 arrives anyway, admissions pause for the server's delay (1 s if it gave
//!   none) and the spacing is stretched by a factor that halves on each 429
//!   (multiplicative decrease) and recovers by 0.1 per success (additive increase).
//!
//! Slots are handed out under a lock, so concurrent requests get successive slots.

use parking_lot::Mutex;
use std::time::Duration;

use http::{HeaderMap, HeaderName};
use tokio::time::Instant;

use super::rate::Refused;
use crate::retry::server_delay::go_duration;

// Constants: read on every response, so no header-name parsing at run time.
const REMAINING_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-requests");
const RESET_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-reset-requests");
const LIMIT_REQUESTS: HeaderName = HeaderName::from_static("x-ratelimit-limit-requests");
const REMAINING_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-remaining-tokens");
const RESET_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-reset-tokens");
const LIMIT_TOKENS: HeaderName = HeaderName::from_static("x-ratelimit-limit-tokens");

#[derive(Debug)]
struct State {
    paused_until: Option<Instant>,
    /// Requests the upstream will still take before `resets_at`, less those admitted since.
    remaining: Option<f64>,
    resets_at: Option<Instant>,
    limit: Option<f64>,
    next_slot: Instant,
    /// 1.0 = no slowdown; halves per 429, floor 0.1.
    factor: f64,
    /// The factor last handed out by `changed_view` (NaN: never).
    reported_factor: f64,
}

#[derive(Debug)]
pub struct Pacer(Mutex<State>);

/// What `/stats` and metrics show about pacing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaceView {
    pub remaining: Option<f64>,
    pub paused_for: Duration,
    pub factor: f64,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer(Mutex::new(State {
            paused_until: None,
            remaining: None,
            resets_at: None,
            limit: None,
            next_slot: Instant::now(),
            factor: 1.0,
            reported_factor: f64::NAN,
        }))
    }
}

fn later(a: Option<Instant>, b: Instant) -> Instant {
    a.map_or(b, |a| a.max(b))
}

impl Pacer {
    /// Learns from a response's status and rate-limit headers. Returns the pause it
    /// started, if it started one (a 429, tokens nearly spent).
    pub fn observe(
        &self,
        status: u16,
        headers: &HeaderMap,
        server_delay: Option<Duration>,
        now: Instant,
    ) -> Option<Duration> {
        let mut s = self.0.lock();
        let mut started = None;
        if status == 429 {
            let pause = server_delay.unwrap_or(Duration::from_secs(1));
            s.paused_until = Some(later(s.paused_until, now + pause));
            s.factor = (s.factor * 0.5).max(0.1);
            started = Some(pause);
        } else if status < 400 {
            s.factor = (s.factor + 0.1).min(1.0);
        }
        if !headers
            .keys()
            .any(|name| name.as_str().starts_with("x-ratelimit-"))
        {
            return started;
        }
        let number = |name: &HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<f64>().ok())
        };
        let reset = |name: &HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| go_duration(v.trim()))
        };

        if let (Some(remaining), Some(window)) =
            (number(&REMAINING_REQUESTS), reset(&RESET_REQUESTS))
        {
            // The smaller count wins: ours already subtracts requests still in flight.
            s.remaining = Some(
                s.remaining
                    .map_or(remaining, |mine| mine.min(remaining))
                    .max(0.0),
            );
            s.resets_at = Some(now + window);
            s.limit = number(&LIMIT_REQUESTS).filter(|l| *l > 0.0).or(s.limit);
        }
        if let (Some(remaining), Some(limit), Some(window)) = (
            number(&REMAINING_TOKENS),
            number(&LIMIT_TOKENS),
            reset(&RESET_TOKENS),
        ) && limit > 0.0
            && remaining <= limit * 0.05
        {
            s.paused_until = Some(later(s.paused_until, now + window));
            started = started.max(Some(window));
        }
        started
    }

    /// Takes the next slot, waiting for it; refuses if it would start after `until`.
    /// `now` is the time of asking (the caller's clock read, shared with its other
    /// checks).
    pub async fn admit(&self, now: Instant, until: Instant) -> Result<Duration, Refused> {
        let wait = self.reserve(now, until)?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(wait)
    }

    /// Takes the next slot without waiting for it: how long until it starts (zero for
    /// an upstream that has said nothing of its limits, without clock arithmetic), or
    /// a refusal if that is after `until`. The caller waits (`admit`).
    pub fn reserve(&self, now: Instant, until: Instant) -> Result<Duration, Refused> {
        let mut s = self.0.lock();
        let mut start = now.max(s.next_slot);
        if let Some(p) = s.paused_until {
            start = start.max(p);
        }
        // A window that has reset by `start` starts again at the limit (or unknown).
        if s.resets_at.is_some_and(|t| t <= start) {
            s.remaining = s.limit;
            s.resets_at = None;
        }
        let mut spacing = Duration::ZERO;
        match (s.remaining, s.resets_at) {
            (Some(left), Some(reset)) if left < 1.0 => {
                // None left: the first slot after the reset, with a fresh window.
                start = start.max(reset);
                s.remaining = s.limit.map(|l| l - 1.0);
                s.resets_at = None;
            }
            (Some(left), Some(reset)) => {
                s.remaining = Some(left - 1.0);
                let low = s.limit.map_or(left <= 1.0, |l| left <= l * 0.1);
                if low {
                    spacing = reset.saturating_duration_since(start).div_f64(left + 1.0);
                }
            }
            (Some(left), None) => s.remaining = Some((left - 1.0).max(0.0)),
            (None, _) => {}
        }
        // No wait needed is no refusal, even with no time to wait at all.
        if start > until.max(now) {
            return Err(Refused {
                retry_after: (start - now).max(Duration::from_secs(1)),
            });
        }
        // Only a slot that constrains the next one moves `next_slot`. A slot taken at
        // once with no spacing does not: a request that read the clock a moment earlier
        // but takes the lock after this one is not behind it (with no time to wait, it
        // would be refused for that moment).
        if !spacing.is_zero() {
            s.next_slot = start + spacing.div_f64(s.factor);
        } else if start > now {
            s.next_slot = start;
        }
        Ok(if start <= now {
            Duration::ZERO
        } else {
            start - now
        })
    }

    /// The view, if the rate factor moved since the last time this returned one (so
    /// `/stats` is told of changes, not of every response).
    pub fn changed_view(&self) -> Option<PaceView> {
        let changed = {
            let mut s = self.0.lock();
            let changed = s.factor != s.reported_factor;
            s.reported_factor = s.factor;
            changed
        };
        changed.then(|| self.view())
    }

    pub fn view(&self) -> PaceView {
        let s = self.0.lock();
        PaceView {
            remaining: s.remaining,
            paused_for: s.paused_until.map_or(Duration::ZERO, |p| {
                p.saturating_duration_since(Instant::now())
            }),
            factor: s.factor,
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
            Instant::now(),
        );
        let until = Instant::now() + Duration::from_secs(5);
        assert_eq!(p.admit(Instant::now(), until).await, Ok(Duration::ZERO));
        assert_eq!(p.admit(Instant::now(), until).await, Ok(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn with_nothing_known_requests_asking_in_any_order_never_wait() {
        // Two requests with no time to wait (`max_queue_wait = "0s"`): the one that read
        // the clock later takes the lock first. Nothing asks for spacing, so the earlier
        // one is not behind it.
        let p = Pacer::default();
        let earlier = Instant::now();
        tokio::time::advance(Duration::from_millis(1)).await;
        let later = Instant::now();
        assert_eq!(p.reserve(later, later), Ok(Duration::ZERO));
        assert_eq!(p.reserve(earlier, earlier), Ok(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn once_none_are_left_every_request_waits_for_the_reset() {
        let p = Pacer::default();
        p.observe(
            200,
            &headers(&[
                ("x-ratelimit-limit-requests", "100"),
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "1s"),
            ]),
            None,
            Instant::now(),
        );
        let now = Instant::now();
        let until = now + Duration::from_secs(5);
        assert_eq!(p.reserve(now, until), Ok(Duration::from_secs(1)));
        assert_eq!(
            p.reserve(now, until),
            Ok(Duration::from_secs(1)),
            "the first slot of the new window is the earliest for the rest too"
        );
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
            Instant::now(),
        );
        let until = Instant::now() + Duration::from_secs(60);
        let first = p.admit(Instant::now(), until).await.expect("first");
        let second = p.admit(Instant::now(), until).await.expect("second");
        assert_eq!(first, Duration::ZERO);
        assert_eq!(second, Duration::from_secs(2), "10 s over 5 slots");
    }

    #[tokio::test(start_paused = true)]
    async fn a_429_pauses_and_halves_the_rate() {
        let p = Pacer::default();
        p.observe(
            429,
            &HeaderMap::new(),
            Some(Duration::from_millis(700)),
            Instant::now(),
        );
        assert_eq!(p.view().factor, 0.5);
        let waited = p
            .admit(Instant::now(), Instant::now() + Duration::from_secs(5))
            .await
            .expect("admitted");
        assert_eq!(waited, Duration::from_millis(700));
        for _ in 0..10 {
            p.observe(200, &HeaderMap::new(), None, Instant::now());
        }
        assert_eq!(p.view().factor, 1.0, "additive recovery");
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_past_the_wait_limit_is_refused() {
        let p = Pacer::default();
        p.observe(
            429,
            &HeaderMap::new(),
            Some(Duration::from_secs(30)),
            Instant::now(),
        );
        let refused = p
            .admit(Instant::now(), Instant::now() + Duration::from_secs(5))
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
            Instant::now(),
        );
        assert_eq!(p.view().paused_for, Duration::from_millis(1500));
        assert!(
            p.admit(Instant::now(), Instant::now() + Duration::from_secs(1))
                .await
                .is_err()
        );
    }
}
