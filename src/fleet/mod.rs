//! Shared state across replicas (SPEC §8, `[redis]`): a fleet of sidecars in front of
//! one provider account keeps its rate limits, circuit state and the upstream's
//! pauses in Redis, so the fleet acts as one client of the provider.
//!
//! - `admission`: the one-round-trip script (circuit, pause, GCRA on Redis's clock);
//! - `share`: one upstream's use of it, and what it publishes (circuit opened or
//!   closed by this replica, a pause the upstream asked for);
//! - `link`: the connection, its timeout, and the task that reconnects it;
//! - `replay`: replay entries and in-flight markers shared by the fleet
//!   (`[replay] store = "redis"`).
//!
//! Redis is never why a request fails: down, slow (past `timeout`) or refusing, each
//! decision falls back to this replica's local limiter and breaker, and is counted.
//! An upstream with no limits and no breaker never calls Redis, and no request does
//! for replay unless `[replay] store = "redis"`.

pub mod admission;
mod link;
pub mod replay;
mod share;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Script};
use tokio::sync::watch;

use crate::config::RedisSettings;
use crate::tasks::Tasks;
use link::Link;
pub use link::{Health, Unavailable};
pub use share::UpstreamShare;

/// The fleet's store: one connection, shared by every upstream's limits.
pub struct Store {
    link: Arc<Link>,
    key_prefix: String,
    admission: Script,
    /// Where short publishing tasks run (the server's, so shutdown ends them).
    tasks: Arc<Tasks>,
    stop: watch::Sender<bool>,
}

impl Store {
    /// Starts connecting in the background (a task owned by `tasks`). Until the first
    /// connection, and whenever Redis is down, every decision is local.
    pub fn start(
        settings: &RedisSettings,
        health: Arc<dyn Health>,
        tasks: Arc<Tasks>,
    ) -> Arc<Store> {
        let (stop, stopped) = watch::channel(false);
        health.up(false);
        // Validation parsed this URL already; should it fail now, the link never
        // connects and every decision stays local.
        let info = settings.connection_info().ok();
        let link = Arc::new(Link::new(
            info,
            settings.shown.clone(),
            settings.timeout,
            health,
        ));
        tasks.spawn(link.clone().keep_connected(stopped));
        Arc::new(Store {
            link,
            key_prefix: settings.key_prefix.clone(),
            admission: Script::new(admission::SCRIPT),
            tasks,
            stop,
        })
    }

    pub fn is_up(&self) -> bool {
        self.link.is_up()
    }

    /// Waits (up to `limit`) for the first connection attempt, so a replica that can
    /// reach Redis shares its limits from its first request, and a refused password is
    /// logged before the server says it listens.
    pub async fn first_attempt(&self, limit: Duration) {
        self.link.first_attempt(limit).await;
    }

    /// Stops reconnecting and drops the connection (shutdown): redis-rs's driver task
    /// ends with the last handle.
    pub fn close(&self) {
        let _ = self.stop.send(true);
        self.link.close();
    }

    async fn call<T>(
        &self,
        command: impl AsyncFnOnce(&mut MultiplexedConnection) -> RedisResult<T>,
    ) -> Result<T, Unavailable> {
        self.link.call(command).await
    }

    /// Sends `writes` in the background (no request waits for them), bounded by
    /// `timeout` like every command; nothing while Redis is down.
    fn publish(self: &Arc<Self>, writes: redis::Pipeline) {
        if !self.is_up() {
            return;
        }
        let store = self.clone();
        self.tasks.spawn(async move {
            let _ = store
                .call(async |c| writes.query_async::<()>(c).await)
                .await;
        });
    }
}
