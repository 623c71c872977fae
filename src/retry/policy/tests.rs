use std::time::Duration;

use super::*;
use crate::config::Config;
use crate::retry::Reason;

fn settings(extra: &str) -> RetrySettings {
    let text = format!("[retry]\n{extra}\n[[upstream]]\nname=\"u\"\nbase_url=\"http://x\"\n");
    Config::from_toml(&text, &|_| None).expect("valid").retry
}

fn policy(extra: &str) -> (RetryPolicy<'static>, Instant) {
    // A test's settings live as long as the test.
    let s: &'static RetrySettings = Box::leak(Box::new(settings(extra)));
    let now = Instant::now();
    let budget = Arc::new(RetryBudget::new(s));
    let deadline = now + s.deadline;
    (
        RetryPolicy::new(s, budget, deadline, true).with_seed(1),
        now,
    )
}

const S503: Outcome = Outcome::Retry {
    reason: Reason::Status503,
    kind: Retryable::Throttle,
};
const RESET: Outcome = Outcome::Retry {
    reason: Reason::Reset,
    kind: Retryable::Ambiguous,
};
const FATAL: Outcome = Outcome::Fatal {
    reason: Reason::ContentFilter,
};

#[test]
fn success_and_fatal_end_at_once() {
    let (mut p, now) = policy("");
    assert_eq!(p.decide(Outcome::Success, None, now), Decision::Return);
    assert_eq!(
        p.decide(FATAL, None, now),
        Decision::GiveUp(GiveUp::NotRetryable)
    );
}

#[test]
fn retries_up_to_max_retries_then_gives_up() {
    let (mut p, now) = policy("max_retries = 2");
    assert!(matches!(p.decide(S503, None, now), Decision::Retry { .. }));
    assert!(matches!(p.decide(S503, None, now), Decision::Retry { .. }));
    assert_eq!(
        p.decide(S503, None, now),
        Decision::GiveUp(GiveUp::RetriesExhausted)
    );
}

#[test]
fn zero_max_retries_gives_up_on_the_first_failure() {
    let (mut p, now) = policy("max_retries = 0");
    assert_eq!(
        p.decide(S503, None, now),
        Decision::GiveUp(GiveUp::RetriesExhausted)
    );
}

#[test]
fn server_delay_is_honoured_with_at_most_20_percent_jitter() {
    let (mut p, now) = policy("max_delay = \"1s\"");
    let asked = Duration::from_secs(5);
    match p.decide(S503, Some(asked), now) {
        Decision::Retry {
            delay,
            server_delay,
        } => {
            assert_eq!(server_delay, Some(asked));
            assert!(
                delay >= asked && delay <= asked.mul_f64(1.2),
                "{delay:?}: max_delay does not cap it"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn server_delay_beyond_max_server_delay_is_passed_back_at_once() {
    let (mut p, now) = policy("max_server_delay = \"10s\"");
    assert_eq!(
        p.decide(S503, Some(Duration::from_secs(11)), now),
        Decision::GiveUp(GiveUp::ServerDelayTooLong)
    );
}

#[test]
fn server_delay_past_the_deadline_is_not_waited() {
    let (mut p, now) = policy("deadline = \"3s\"");
    assert_eq!(
        p.decide(S503, Some(Duration::from_secs(5)), now),
        Decision::GiveUp(GiveUp::DeadlineExceeded)
    );
}

#[test]
fn a_backoff_that_would_end_past_the_deadline_is_not_started() {
    let (mut p, now) =
        policy("deadline = \"10s\"\nbase_delay = \"1s\"\nthrottle_base_delay = \"8s\"");
    // 9.99 s in: any positive backoff ends past the deadline (seed 1 gives a positive draw).
    let late = now + Duration::from_millis(9_990);
    assert_eq!(
        p.decide(S503, None, late),
        Decision::GiveUp(GiveUp::DeadlineExceeded)
    );
    assert_eq!(
        p.decide(S503, None, now + Duration::from_secs(10)),
        Decision::GiveUp(GiveUp::DeadlineExceeded)
    );
}

#[tokio::test(start_paused = true)]
async fn a_backoff_must_end_a_timer_tick_before_the_deadline() {
    // The same seed draws the same delay: first with time to spare, to learn it. (A
    // paused clock: the three policies count from the same `now`.)
    let (mut spare, now) = policy("deadline = \"10s\"");
    let Decision::Retry { delay, .. } = spare.decide(S503, None, now) else {
        panic!("a first 503 is retried");
    };
    let deadline = now + Duration::from_secs(10);
    let (mut close, _) = policy("deadline = \"10s\"");
    let within_a_tick = deadline - delay - Duration::from_micros(500);
    assert_eq!(
        close.decide(S503, None, within_a_tick),
        Decision::GiveUp(GiveUp::DeadlineExceeded),
        "the timer could fire at the deadline"
    );
    let (mut in_time, _) = policy("deadline = \"10s\"");
    let two_ticks = deadline - delay - Duration::from_millis(2);
    assert!(matches!(
        in_time.decide(S503, None, two_ticks),
        Decision::Retry { .. }
    ));
}

#[test]
fn ambiguous_failures_follow_retry_ambiguous() {
    let (mut on, now) = policy("retry_ambiguous = true");
    assert!(matches!(
        on.decide(RESET, None, now),
        Decision::Retry { .. }
    ));
    let (mut off, now) = policy("retry_ambiguous = false");
    assert_eq!(
        off.decide(RESET, None, now),
        Decision::GiveUp(GiveUp::AmbiguousNotRetried)
    );
}

#[test]
fn bodies_too_large_to_keep_are_never_retried() {
    let s = settings("");
    let now = Instant::now();
    let budget = Arc::new(RetryBudget::new(&s));
    let mut p = RetryPolicy::new(&s, budget, now + Duration::from_secs(60), false);
    assert_eq!(
        p.decide(S503, None, now),
        Decision::GiveUp(GiveUp::BodyNotReplayable)
    );
}

#[test]
fn an_empty_budget_stops_retries() {
    let (mut p, now) = policy("budget_ratio = 0.0\nbudget_min_per_second = 0");
    assert_eq!(
        p.decide(S503, None, now),
        Decision::GiveUp(GiveUp::BudgetExhausted)
    );
}

#[test]
fn only_spent_retries_budget_or_deadline_tell_the_client_not_to_retry() {
    let spent: Vec<GiveUp> = [
        GiveUp::NotRetryable,
        GiveUp::RetriesExhausted,
        GiveUp::BudgetExhausted,
        GiveUp::DeadlineExceeded,
        GiveUp::ServerDelayTooLong,
        GiveUp::BodyNotReplayable,
        GiveUp::AmbiguousNotRetried,
    ]
    .into_iter()
    .filter(|g| g.spent_retries())
    .collect();
    assert_eq!(
        spent,
        [
            GiveUp::RetriesExhausted,
            GiveUp::BudgetExhausted,
            GiveUp::DeadlineExceeded
        ]
    );
}

#[test]
fn throttling_waits_longer_than_transient_failures_on_average() {
    let (mut p, now) = policy(
        "max_retries = 20\nbase_delay = \"100ms\"\nthrottle_base_delay = \"1s\"\nmax_delay = \"8s\"\nbudget_min_per_second = 1000",
    );
    let mut total = |outcome| {
        (0..200)
            .map(|_| {
                p.retries = 0;
                match p.decide(outcome, None, now) {
                    Decision::Retry { delay, .. } => delay,
                    other => panic!("{other:?}"),
                }
            })
            .sum::<Duration>()
    };
    let throttle = total(S503);
    let transient = total(Outcome::Retry {
        reason: Reason::Status500,
        kind: Retryable::Transient,
    });
    assert!(throttle > transient * 4, "{throttle:?} vs {transient:?}");
}
