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
//!
//! Its timer is one a finished `Timed` of this thread left behind (`spare`) when there
//! is one: moving a registered timer to a later deadline is an atomic update, where a
//! new timer is locked into tokio's timer wheel on its first poll and out of it when
//! dropped (~100 instructions a request fewer in all, `bench/callgrind`). A spare timer still holds
//! the waker of the task that last polled it (a handful per thread at most), and when
//! its old deadline passes unused it wakes that task once for nothing.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::runtime::{Handle, Id};
use tokio::time::{Instant, Sleep};

/// The deadline passed before the future finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

pin_project_lite::pin_project! {
    /// `future`, given up at `until`.
    pub struct Timed<F> {
        #[pin]
        future: F,
        until: Instant,
        // Taken when the future first waits, with the runtime whose driver it is in.
        timer: Option<(Id, Pin<Box<Sleep>>)>,
        // The waker the timer was last polled with: it wakes that task when it fires.
        armed_for: Option<Waker>,
    }

    impl<F> PinnedDrop for Timed<F> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(timer) = this.project().timer.take() {
                spare::give_back(timer);
            }
        }
    }
}

/// `future` until `until`: its output, or `TimedOut`.
pub fn timed<F: Future>(until: Instant, future: F) -> Timed<F> {
    Timed {
        future,
        until,
        timer: None,
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
        let until = *this.until;
        let (_, timer) = this.timer.get_or_insert_with(|| spare::timer(until));
        let armed = this
            .armed_for
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        if armed && !timer.is_elapsed() {
            return Poll::Pending;
        }
        // With the task's cooperative budget spent, the timer's poll registers nothing
        // (and the task is woken to try again): it is armed only by a poll that could.
        let could_register = tokio::task::coop::has_budget_remaining();
        match timer.as_mut().poll(cx) {
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

/// The timers finished `Timed`s of this thread left behind.
mod spare {
    use super::*;
    use std::cell::RefCell;

    /// At most this many are kept, the oldest let go first (one of a runtime that has
    /// ended is never taken again).
    const KEPT: usize = 8;

    thread_local! {
        static SPARE: RefCell<Vec<(Id, Pin<Box<Sleep>>)>> = const { RefCell::new(Vec::new()) };
    }

    /// A timer for `until` in the current runtime: a spare one of this runtime moved
    /// there, else a new one.
    pub(super) fn timer(until: Instant) -> (Id, Pin<Box<Sleep>>) {
        let runtime = Handle::current().id();
        let kept = SPARE
            .try_with(|spare| {
                let mut spare = spare.borrow_mut();
                let at = spare.iter().rposition(|(id, _)| *id == runtime)?;
                Some(spare.swap_remove(at).1)
            })
            .ok()
            .flatten();
        if let Some(mut timer) = kept {
            timer.as_mut().reset(until);
            // Fired at once only if `until` has passed: then a new timer fires as well.
            return (runtime, timer);
        }
        (runtime, Box::pin(tokio::time::sleep_until(until)))
    }

    pub(super) fn give_back(timer: (Id, Pin<Box<Sleep>>)) {
        // During the thread's exit there is no list any more: the timer is dropped.
        let _ = SPARE.try_with(|spare| {
            let mut spare = spare.borrow_mut();
            if spare.len() == KEPT {
                drop(spare.remove(0));
            }
            spare.push(timer);
        });
    }

    #[cfg(test)]
    pub(super) fn count() -> usize {
        SPARE.with(|spare| spare.borrow().len())
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

    /// Polls `future` once (it waits, taking a timer) and drops it.
    async fn wait_once_then_drop<F: Future>(future: Timed<F>) {
        let mut future = std::pin::pin!(future);
        let first = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
        assert!(first.is_pending());
    }

    #[tokio::test(start_paused = true)]
    async fn the_timer_a_finished_send_leaves_is_moved_to_the_next_ones_later_deadline() {
        let start = Instant::now();
        let before = spare::count();
        wait_once_then_drop(timed(
            start + Duration::from_secs(1),
            std::future::pending::<()>(),
        ))
        .await;
        assert_eq!(spare::count(), before + 1);
        let later = start + Duration::from_secs(5);
        let next = within_a_minute(timed(later, std::future::pending::<()>()));
        assert_eq!(next.await, Err(TimedOut));
        // It fired at its own deadline, not the one the timer was first set to.
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(spare::count(), before + 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_spare_timer_moved_to_an_earlier_deadline_fires_there() {
        let start = Instant::now();
        wait_once_then_drop(timed(
            start + Duration::from_secs(30),
            std::future::pending::<()>(),
        ))
        .await;
        let sooner = start + Duration::from_secs(2);
        assert_eq!(
            within_a_minute(timed(sooner, std::future::pending::<()>())).await,
            Err(TimedOut)
        );
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[test]
    fn a_timer_left_by_a_runtime_that_has_ended_is_not_used_by_the_next() {
        let runtime = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("runtime")
        };
        let first = runtime();
        first.block_on(async {
            let until = Instant::now() + Duration::from_secs(1);
            wait_once_then_drop(timed(until, std::future::pending::<()>())).await;
        });
        drop(first);
        let timed_out = runtime().block_on(async {
            let start = Instant::now();
            let until = start + Duration::from_secs(3);
            let result = within_a_minute(timed(until, std::future::pending::<()>())).await;
            (result, start.elapsed())
        });
        assert_eq!(timed_out, (Err(TimedOut), Duration::from_secs(3)));
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
