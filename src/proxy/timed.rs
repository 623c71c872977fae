//! A future with a deadline, like `tokio::time::timeout_at`, that looks at its timer
//! only when it must.
//!
//! An attempt's send is woken several times before its response head arrives (the
//! request written, the head read). tokio's `Timeout` polls its `Sleep` after each
//! pending poll of the send, which re-registers the task's waker with the timer every
//! time. Once the timer is armed for this task's waker, it needs polling again only
//! when it has fired (`Sleep::is_elapsed`, an atomic load) or when the future has
//! moved to another task (a different waker). A timer polled while the task's
//! cooperative budget was spent did not register, so it does not count as armed.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::time::{Instant, Sleep};

/// The deadline passed before the future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

pin_project_lite::pin_project! {
    /// `future`, given up at `until`.
    pub struct Timed<F> {
        #[pin]
        future: F,
        #[pin]
        timer: Sleep,
        // The waker the timer was last polled with: it wakes that task when it fires.
        armed_for: Option<Waker>,
    }
}

/// `future` until `until`: its output, or `TimedOut`.
pub fn timed<F: Future>(until: Instant, future: F) -> Timed<F> {
    Timed {
        future,
        timer: tokio::time::sleep_until(until),
        armed_for: None,
    }
}

impl<F: Future> Future for Timed<F> {
    type Output = Result<F::Output, TimedOut>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        let armed = this
            .armed_for
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        if armed && !this.timer.is_elapsed() {
            return Poll::Pending;
        }
        // With the task's cooperative budget spent, the timer's poll registers nothing
        // (and the task is woken to try again): it is armed only by a poll that could.
        let could_register = tokio::task::coop::has_budget_remaining();
        match this.timer.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(TimedOut)),
            Poll::Pending => {
                if !armed && could_register {
                    *this.armed_for = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// `future`'s output; a panic, not a hang, if a timer it relies on is never seen.
    async fn within_a_minute<F: Future>(future: F) -> F::Output {
        match tokio::time::timeout(Duration::from_secs(60), future).await {
            Ok(output) => output,
            Err(_) => panic!("still pending after a minute"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_future_that_finishes_in_time_gives_its_output() {
        let until = Instant::now() + Duration::from_secs(2);
        let late = tokio::time::sleep(Duration::from_secs(1));
        assert_eq!(
            within_a_minute(timed(until, async {
                late.await;
                7
            }))
            .await,
            Ok(7)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_future_still_pending_at_the_deadline_times_out_then() {
        let start = Instant::now();
        let until = start + Duration::from_secs(1);
        let never = std::future::pending::<()>();
        assert_eq!(within_a_minute(timed(until, never)).await, Err(TimedOut));
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_future_woken_many_times_still_times_out_at_the_deadline() {
        // Woken every 100 ms without finishing: the timer is armed once, and its firing
        // is still seen.
        let start = Instant::now();
        let until = start + Duration::from_millis(1050);
        let busy = async {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        assert_eq!(within_a_minute(timed(until, busy)).await, Err(TimedOut));
        assert_eq!(start.elapsed(), Duration::from_millis(1050));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deadline_first_looked_at_with_the_tasks_budget_spent_still_fires() {
        // The send spends the task's whole cooperative budget on its first poll: the
        // timer's first poll then registers nothing, and must be polled again.
        let start = Instant::now();
        let mut first = true;
        let greedy = std::future::poll_fn(move |cx| {
            if std::mem::take(&mut first) {
                while tokio::task::coop::has_budget_remaining() {
                    let spend = std::pin::pin!(tokio::task::coop::consume_budget());
                    let _ = spend.poll(cx);
                }
            }
            Poll::<()>::Pending
        });
        let until = start + Duration::from_secs(1);
        assert_eq!(within_a_minute(timed(until, greedy)).await, Err(TimedOut));
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_future_moved_to_another_task_times_out_there() {
        // Polled once on this task (arming the timer for its waker), then awaited on
        // another task: the timer is armed again for the new waker.
        let start = Instant::now();
        let mut future = Box::pin(timed(
            start + Duration::from_secs(1),
            std::future::pending::<()>(),
        ));
        let first = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
        assert!(first.is_pending());
        let other = tokio::spawn(within_a_minute(future));
        assert_eq!(other.await.ok(), Some(Err(TimedOut)));
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }
}
