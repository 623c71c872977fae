//! The loop on a paused clock: delays are really slept, the deadline really stops it.

use crate::retry::Reason;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::config::{Config, RetrySettings};
use crate::retry::budget::RetryBudget;
use crate::retry::classify::Retryable;

fn settings(extra: &str) -> RetrySettings {
    let text = format!("[retry]\n{extra}\n[[upstream]]\nname=\"u\"\nbase_url=\"http://x\"\n");
    Config::from_toml(&text, &|_| None).expect("valid").retry
}

fn policy(s: RetrySettings) -> RetryPolicy<'static> {
    // A test's settings live as long as the test.
    let s: &'static RetrySettings = Box::leak(Box::new(s));
    let budget = Arc::new(RetryBudget::new(s));
    let deadline = Instant::now() + s.deadline;
    RetryPolicy::new(s, budget, deadline, true).with_seed(7)
}

const S503: Outcome = Outcome::Retry {
    reason: Reason::Status503,
    kind: Retryable::Throttle,
};

/// An attempt script: each call takes the next outcome and records when it ran.
async fn run(
    policy: &mut RetryPolicy<'_>,
    script: Vec<(Outcome, Option<Duration>)>,
) -> (Finished<usize>, Vec<Duration>) {
    let start = Instant::now();
    let mut times = Vec::new();
    let mut script = script.into_iter();
    let finished = {
        let times = &mut times;
        drive(
            policy,
            |n| {
                times.push(start.elapsed());
                let (outcome, server_delay) = script.next().expect("script long enough");
                async move {
                    Attempted {
                        value: n as usize,
                        outcome,
                        server_delay,
                    }
                }
            },
            |_, _, _| {},
        )
        .await
    };
    (finished, times)
}

#[tokio::test(start_paused = true)]
async fn retries_503_then_succeeds_after_backoff() {
    let mut p = policy(settings("throttle_base_delay = \"1s\"\nmax_delay = \"8s\""));
    let (done, times) = run(
        &mut p,
        vec![(S503, None), (S503, None), (Outcome::Success, None)],
    )
    .await;
    assert_eq!(done.attempts, 3);
    assert_eq!(done.value, 3);
    assert!(done.give_up.is_none());
    // Full jitter: first delay within [0, 1s], second within [0, 2s].
    assert!(times[1] <= Duration::from_secs(1), "{times:?}");
    assert!(times[2] - times[1] <= Duration::from_secs(2), "{times:?}");
}

#[tokio::test(start_paused = true)]
async fn honours_the_server_delay_exactly_plus_jitter() {
    let mut p = policy(settings(""));
    let asked = Duration::from_millis(1500);
    let (done, times) = run(&mut p, vec![(S503, Some(asked)), (Outcome::Success, None)]).await;
    assert_eq!(done.attempts, 2);
    assert!(
        times[1] >= asked && times[1] <= asked.mul_f64(1.2),
        "{times:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn stops_at_the_deadline_without_starting_a_backoff_past_it() {
    let mut p = policy(settings(
        "deadline = \"5s\"\nmax_retries = 10\nthrottle_base_delay = \"2s\"\nmax_delay = \"8s\"",
    ));
    let script = vec![(S503, Some(Duration::from_secs(2))); 11];
    let (done, times) = run(&mut p, script).await;
    assert_eq!(done.give_up, Some(GiveUp::DeadlineExceeded));
    assert!(
        *times.last().expect("times") < Duration::from_secs(5),
        "{times:?}"
    );
    assert!(
        done.attempts <= 3,
        "2 s delays (+20 %) fit at most twice in 5 s: {times:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn gives_up_with_the_last_value_when_retries_are_spent() {
    let mut p = policy(settings("max_retries = 2"));
    let (done, _) = run(&mut p, vec![(S503, None); 3]).await;
    assert_eq!(done.attempts, 3);
    assert_eq!(done.value, 3, "the last attempt's value is handed back");
    assert_eq!(done.give_up, Some(GiveUp::RetriesExhausted));
}
