//! Clock readings handed on. A step that read the clock and then did not wait hands
//! its reading to the next, which takes it as "now" instead of reading the clock again:
//! the request's start is when its body was read (a small body arrives with the head),
//! and that is when it is admitted and its first attempt starts, unless one of them
//! waited. Each read saved is ~40 instructions; the steps would read it a dozen times.

use std::future::Future;
use std::pin::pin;

use tokio::time::Instant;

/// `future`'s output, and whether it waited at all (returned `Pending` once).
pub(super) async fn unless_waited<F: Future>(future: F) -> (F::Output, bool) {
    let mut future = pin!(future);
    let mut waited = false;
    let output = std::future::poll_fn(|cx| {
        let polled = future.as_mut().poll(cx);
        waited |= polled.is_pending();
        polled
    })
    .await;
    (output, waited)
}

/// `reading` if nothing has waited since it was taken, else the clock read now.
pub(super) fn now_or(reading: Option<Instant>) -> Instant {
    reading.unwrap_or_else(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_future_ready_at_once_did_not_wait() {
        assert_eq!(unless_waited(async { 7 }).await, (7, false));
    }

    #[tokio::test(start_paused = true)]
    async fn a_future_that_slept_waited() {
        let slept = async { tokio::time::sleep(Duration::from_millis(5)).await };
        assert_eq!(unless_waited(slept).await, ((), true));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reading_is_used_only_when_given() {
        let then = Instant::now();
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(now_or(Some(then)), then);
        assert_eq!(now_or(None), then + Duration::from_secs(3));
    }
}
