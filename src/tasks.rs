//! Background tasks with an owner: upstream connection tasks, pool sweeps, connections
//! waiting to rejoin their pool. Shutdown waits for them (up to a grace) and aborts what
//! is left, so nothing outlives the server by accident.
//!
//! One `Tasks` is shared by every runtime a server builds (a reload keeps it), so a
//! reload never cuts a connection that an in-flight response is still reading.

use std::future::Future;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::task::JoinSet;

#[derive(Debug, Default)]
pub struct Tasks {
    set: Mutex<JoinSet<()>>,
}

impl Tasks {
    /// Runs `task` in the background, owned by this set.
    pub fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut set = self.set.lock();
        // Reap what has finished, so the set holds only live tasks.
        while set.try_join_next().is_some() {}
        set.spawn(task);
    }

    /// How many tasks are still running (tests, diagnostics).
    pub fn len(&self) -> usize {
        let mut set = self.set.lock();
        while set.try_join_next().is_some() {}
        set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits up to `grace` for every task to end, then aborts the rest and waits for
    /// them to be gone.
    pub async fn shutdown(&self, grace: Duration) {
        let mut set = std::mem::take(&mut *self.set.lock());
        let all_done = async { while set.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all_done).await.is_err() {
            tracing::debug!(left = set.len(), "aborting background tasks");
            set.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn shutdown_waits_for_tasks_then_aborts_what_is_left() {
        let tasks = Tasks::default();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        tasks.spawn(async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            let _ = done_tx.send(());
        });
        tasks.spawn(std::future::pending());
        assert_eq!(tasks.len(), 2);
        tasks.shutdown(Duration::from_secs(1)).await;
        assert!(done_rx.await.is_ok(), "the short task was let finish");
        assert!(tasks.is_empty(), "the endless one was aborted");
    }
}
