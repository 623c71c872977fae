//! `Woken`: a future that is polled only when its own waker has fired.
//!
//! A connection's watchdogs (its clock, the stop signal) sit in a `select!` beside the
//! connection, and `select!` polls every branch each time the task wakes — which, for
//! the connection, is several times per request. A watchdog's timer or `Notify` is not
//! cheap to poll for nothing, so each is wrapped: until something wakes *it*, polling
//! it only notes the task's waker and answers `Pending`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use parking_lot::Mutex;

pin_project_lite::pin_project! {
    pub struct Woken<F> {
        #[pin]
        inner: F,
        signal: Arc<Signal>,
        // `signal` as a waker, made once: the inner future keeps seeing the same one,
        // so its timer or `Notify` never re-registers it.
        waker: Waker,
    }
}

/// Whether the inner future was woken since it was last polled, and the task to wake.
struct Signal {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(task) = self.task.lock().as_ref() {
            task.wake_by_ref();
        }
    }
}

impl<F: Future> Woken<F> {
    /// The first poll always reaches `inner`.
    pub fn new(inner: F) -> Woken<F> {
        let signal = Arc::new(Signal {
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        });
        Woken {
            inner,
            waker: Waker::from(signal.clone()),
            signal,
        }
    }
}

impl<F: Future> Future for Woken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        {
            let mut task = this.signal.task.lock();
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        // After noting the task: a wake from now on reaches it, one before is seen here.
        if !this.signal.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.inner.poll(&mut Context::from_waker(this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    /// Pending until `ready`, counting its polls and keeping the last waker it got.
    struct Probe {
        polls: Arc<AtomicU32>,
        ready: Arc<AtomicBool>,
        waker: Arc<Mutex<Option<Waker>>>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            *self.waker.lock() = Some(cx.waker().clone());
            if self.ready.load(Ordering::SeqCst) {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        }
    }

    /// Counts the wakes of the task polling `Woken`.
    struct Task(AtomicU32);
    impl Wake for Task {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_inner_future_is_polled_first_and_then_only_when_it_was_woken() {
        let (polls, ready, inner_waker) = (Arc::default(), Arc::default(), Arc::default());
        let probe = Probe {
            polls: Arc::clone(&polls),
            ready: Arc::clone(&ready),
            waker: Arc::clone(&inner_waker),
        };
        let mut woken = Box::pin(Woken::new(probe));
        let task = Arc::new(Task(AtomicU32::new(0)));
        let task_waker = Waker::from(task.clone());
        let mut cx = Context::from_waker(&task_waker);

        for _ in 0..5 {
            assert!(woken.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1, "polled once, never woken");

        ready.store(true, Ordering::SeqCst);
        let waker = inner_waker.lock().take().expect("the probe kept a waker");
        waker.wake();
        assert_eq!(
            task.0.load(Ordering::SeqCst),
            1,
            "its wake reached the task"
        );
        assert!(woken.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }
}
