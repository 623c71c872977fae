//! The one connection to Redis, and the task that keeps it.
//!
//! Requests use the connection only while it is up; a command that fails or takes
//! longer than `timeout` marks it down at once, so the next requests go straight to
//! local state without touching Redis. The reconnect task (owned by the server's
//! `Tasks`) then reconnects with backoff and marks it up again.
//!
//! redis-rs drives a multiplexed connection on a task it spawns itself; that task is
//! aborted when the last handle to the connection is dropped, which this link owns.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionInfo, ErrorKind, RedisError, RedisResult};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// Where Redis's health is reported (metrics implement it).
pub trait Health: Send + Sync + 'static {
    /// One command, how long it took, and whether it worked (a timeout did not).
    fn command(&self, took: Duration, ok: bool);
    /// The connection is usable (`true`) or not.
    fn up(&self, up: bool);
}

/// Redis could not answer in time: use local state for this decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// Reconnect backoff: from `FIRST_BACKOFF`, doubling, at most `MAX_BACKOFF`.
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Connecting (TCP, TLS, AUTH) happens off the request path, so it may take longer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) struct Link {
    /// `None` if the URL cannot be used: never connects.
    info: Option<ConnectionInfo>,
    /// The URL as logs may show it (password redacted).
    shown: String,
    timeout: Duration,
    connection: ArcSwapOption<MultiplexedConnection>,
    broken: Notify,
    /// Connection attempts made so far (start-up waits for the first).
    attempts: watch::Sender<u64>,
    health: Arc<dyn Health>,
}

impl Link {
    pub(super) fn new(
        info: Option<ConnectionInfo>,
        shown: String,
        timeout: Duration,
        health: Arc<dyn Health>,
    ) -> Link {
        Link {
            info,
            shown,
            timeout,
            connection: ArcSwapOption::empty(),
            broken: Notify::new(),
            attempts: watch::Sender::new(0),
            health,
        }
    }

    pub(super) fn is_up(&self) -> bool {
        self.connection.load().is_some()
    }

    /// Runs one command on the connection within `timeout`. Down, failed or late:
    /// `Unavailable` (the caller decides locally), counted, and a broken connection
    /// is handed to the reconnect task.
    pub(super) async fn call<T>(
        &self,
        command: impl AsyncFnOnce(&mut MultiplexedConnection) -> RedisResult<T>,
    ) -> Result<T, Unavailable> {
        let Some(shared) = self.connection.load_full() else {
            return Err(Unavailable);
        };
        let mut connection = (*shared).clone();
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, command(&mut connection)).await;
        let took = started.elapsed();
        match result {
            Ok(Ok(value)) => {
                self.health.command(took, true);
                Ok(value)
            }
            Ok(Err(error)) => {
                self.health.command(took, false);
                if breaks_connection(&error) {
                    self.mark_down(&shared, &error.to_string());
                } else {
                    tracing::warn!(error = %error, "redis command failed; deciding locally");
                }
                Err(Unavailable)
            }
            Err(_elapsed) => {
                self.health.command(took, false);
                self.mark_down(&shared, "command timed out");
                Err(Unavailable)
            }
        }
    }

    /// Stops handing out `broken` (if it is still the one in use) and wakes the
    /// reconnect task.
    fn mark_down(&self, broken: &Arc<MultiplexedConnection>, why: &str) {
        let previous = self.connection.compare_and_swap(broken, None);
        let was_current = previous
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, broken));
        if was_current {
            self.health.up(false);
            tracing::warn!(
                redis = %self.shown,
                error = why,
                "redis unavailable: limits and circuit state are this replica's own until it is back"
            );
        }
        self.broken.notify_waiters();
    }

    /// Drops the connection for good (the reconnect task was stopped first).
    pub(super) fn close(&self) {
        if self.connection.swap(None).is_some() {
            self.health.up(false);
        }
    }

    /// Waits until the first connection attempt has ended (or `limit`).
    pub(super) async fn first_attempt(&self, limit: Duration) {
        let mut attempts = self.attempts.subscribe();
        let _ = tokio::time::timeout(limit, attempts.wait_for(|n| *n > 0)).await;
    }

    /// The reconnect task: connects, waits for the connection to break or for `stop`,
    /// reconnects with backoff. Ends when `stop` changes or its sender is dropped.
    pub(super) async fn keep_connected(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff = FIRST_BACKOFF;
        let mut failures = 0u64;
        loop {
            let attempt = self.connect().await;
            self.attempts.send_modify(|n| *n += 1);
            match attempt {
                Ok(connection) => {
                    if failures > 0 {
                        tracing::info!(redis = %self.shown, "redis reachable again: limits are shared");
                    } else {
                        tracing::info!(redis = %self.shown, "redis connected: limits are shared");
                    }
                    failures = 0;
                    backoff = FIRST_BACKOFF;
                    let broken = self.broken.notified();
                    tokio::pin!(broken);
                    broken.as_mut().enable();
                    self.connection.store(Some(Arc::new(connection)));
                    self.health.up(true);
                    tokio::select! {
                        () = broken => {}
                        _ = stop.changed() => return,
                    }
                    self.connection.store(None);
                    self.health.up(false);
                }
                Err(error) => {
                    failures += 1;
                    self.report_failure(&error, failures);
                }
            }
            let jitter = backoff.mul_f64(fastrand::f64() * 0.2);
            tokio::select! {
                () = tokio::time::sleep(backoff + jitter) => {}
                _ = stop.changed() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn connect(&self) -> RedisResult<MultiplexedConnection> {
        let Some(info) = &self.info else {
            return Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "the redis URL cannot be used",
            )));
        };
        let client = redis::Client::open(info.clone())?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(self.timeout));
        let connect = client.get_multiplexed_async_connection_with_config(&config);
        match tokio::time::timeout(CONNECT_TIMEOUT + self.timeout, connect).await {
            Ok(result) => result,
            Err(_) => Err(RedisError::from((ErrorKind::Io, "connect timed out"))),
        }
    }

    /// The first failure (and a refused password, always) is a warning; the retries
    /// that follow are debug logs, so a long outage does not flood the log.
    fn report_failure(&self, error: &RedisError, failures: u64) {
        if refused_password(error) {
            if failures == 1 || failures.is_power_of_two() {
                tracing::warn!(
                    redis = %self.shown,
                    "redis refused the password (check password_env): limits and circuit \
                     state are this replica's own; retrying"
                );
            }
        } else if failures == 1 {
            tracing::warn!(
                redis = %self.shown,
                error = %error,
                "cannot connect to redis: limits and circuit state are this replica's own \
                 until it is reachable; retrying in the background"
            );
        } else {
            tracing::debug!(redis = %self.shown, error = %error, failures, "redis still unreachable");
        }
    }
}

/// Whether an error means the connection is no good (rather than one command's fault).
fn breaks_connection(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
}

fn refused_password(error: &RedisError) -> bool {
    error.kind() == ErrorKind::AuthenticationFailed
        || matches!(error.code(), Some("WRONGPASS" | "NOAUTH"))
}
