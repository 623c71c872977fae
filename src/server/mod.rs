//! Listeners and lifecycle: bind both ports, serve HTTP/1.1 and h2c, swap the runtime on
//! reload, and drain on shutdown.
//!
//! Shutdown order: `/readyz` turns 503, the proxy listener stops accepting, open
//! connections finish their in-flight requests (streams too) within `shutdown_grace`
//! and are then cut, and so are WebSocket sessions and requests replay finishes for a
//! client that left (they get the same `shutdown_grace`, counted from the same moment);
//! the failure log, the journal and the replay store write and fsync what those
//! requests recorded; the admin listener goes last so probes see the draining state.

mod accept;
mod counts;
pub mod limits;
mod ports;
pub mod version;
mod woken;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arc_swap::ArcSwap;
use tokio::sync::watch;

use crate::admin::{self, Admin, Phase, Readiness};
use crate::config::{Config, ConfigError};
use crate::events::{LogObserver, Observer, Observers};
use crate::failure_log::{self, FailureLog, FailureLogStats};
use crate::journal::Journal;
use crate::metrics::Recorder;
use crate::runtime::Runtime;
use counts::{Connections, Load};
use limits::Tracked;
use ports::{bind, client_limits, local_addr, proxy_handler};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot register metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("cannot listen on {addr} ({which}): {source}")]
    Bind {
        which: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started backstop: both listeners bound and serving.
pub struct Running {
    started: Started,
    failure_log: FailureLog,
    /// `None` without `[journal]`.
    journal: Option<Journal>,
}

/// Binds both listeners and starts serving. Nothing is bound if the config is refused.
pub async fn start(config: Config) -> Result<Running, StartError> {
    start_with_observer(config, Arc::new(LogObserver)).await
}

/// `start`, with every attempt event also going to `observer` (metrics get them too).
pub async fn start_with_observer(
    config: Config,
    observer: Arc<dyn Observer>,
) -> Result<Running, StartError> {
    let failure_log = FailureLog::start(&config.failure_log, failure_log::Options::default());
    start_with_failure_log(config, observer, failure_log).await
}

/// `start_with_observer` with a failure log built by the caller (tests and the
/// benchmark choose its clock and queue size). It is closed if starting fails.
pub async fn start_with_failure_log(
    config: Config,
    observer: Arc<dyn Observer>,
    failure_log: FailureLog,
) -> Result<Running, StartError> {
    let journal = config
        .journal
        .as_ref()
        .map(|settings| Journal::start(settings, failure_log::Options::default()));
    match serve_both(config, observer, &failure_log, journal.as_ref()).await {
        Ok(started) => Ok(Running {
            started,
            failure_log,
            journal,
        }),
        Err(e) => {
            failure_log.close().await;
            if let Some(journal) = journal {
                journal.close().await;
            }
            Err(e)
        }
    }
}

/// Everything of a `Running` but its failure log.
struct Started {
    proxy_addr: SocketAddr,
    admin_addr: SocketAddr,
    runtime: Arc<ArcSwap<Runtime>>,
    readiness: Arc<Readiness>,
    metrics: Arc<Recorder>,
    stop_proxy: watch::Sender<bool>,
    stop_admin: watch::Sender<bool>,
    proxy_task: tokio::task::JoinHandle<()>,
    admin_task: tokio::task::JoinHandle<()>,
}

async fn serve_both(
    config: Config,
    observer: Arc<dyn Observer>,
    failure_log: &FailureLog,
    journal: Option<&Journal>,
) -> Result<Started, StartError> {
    let (metrics, observer) = observers(&config, observer, failure_log, journal)?;
    let readiness = Arc::new(Readiness::default());
    readiness.set(Phase::Starting);
    let grace = config.shutdown_grace;
    let (proxy_at, admin_at) = (config.listen, config.admin_listen);
    let refused = Arc::new(AtomicU64::new(0));
    let (proxy_limits, admin_limits) = client_limits(&config, &refused);
    let runtime = first_runtime(config, &metrics, refused).await?;

    let proxy_listener = bind("listen", proxy_at).await?;
    let admin_listener = bind("admin_listen", admin_at).await?;
    let proxy_addr = local_addr(&proxy_listener, "listen", proxy_at)?;
    let admin_addr = local_addr(&admin_listener, "admin_listen", admin_at)?;

    let (stop_proxy, proxy_stopped) = watch::channel(false);
    let (stop_admin, admin_stopped) = watch::channel(false);
    let proxy_task = tokio::spawn(accept::serve(
        proxy_listener,
        proxy_stopped,
        grace,
        proxy_limits,
        proxy_handler(runtime.clone(), observer),
    ));
    let admin = Arc::new(Admin {
        readiness: readiness.clone(),
        metrics: metrics.clone(),
    });
    let admin_task = tokio::spawn(accept::serve(
        admin_listener,
        admin_stopped,
        grace,
        admin_limits,
        move |req, in_flight| {
            let admin = admin.clone();
            async move {
                let response = admin::handle(admin, req).await;
                Ok::<_, Infallible>(Tracked::response(response, in_flight))
            }
        },
    ));

    readiness.set(Phase::Ready);
    tracing::info!(%proxy_addr, %admin_addr, "backstop listening");
    Ok(Started {
        proxy_addr,
        admin_addr,
        runtime,
        readiness,
        metrics,
        stop_proxy,
        stop_admin,
        proxy_task,
        admin_task,
    })
}

/// The first runtime, its fleet connection tried (for a bounded time), and the metrics
/// that read from it attached.
async fn first_runtime(
    config: Config,
    metrics: &Arc<Recorder>,
    refused: Arc<AtomicU64>,
) -> Result<Arc<ArcSwap<Runtime>>, StartError> {
    let runtime = Runtime::first(config, metrics.clone())?;
    if let Some(fleet) = &runtime.fleet {
        // Bounded: an unreachable Redis only delays the start by this much.
        fleet.first_attempt(std::time::Duration::from_secs(3)).await;
    }
    let runtime = Arc::new(ArcSwap::from_pointee(runtime));
    metrics.attach_connections(Arc::new(Connections(runtime.clone())));
    metrics.attach_load(Arc::new(Load {
        refused,
        buffer_budget: runtime.load().buffer_budget.clone(),
    }));
    Ok(runtime)
}

/// The metrics recorder and everyone told of each request: the failure log, the
/// metrics, the caller's observer and the journal.
fn observers(
    config: &Config,
    observer: Arc<dyn Observer>,
    failure_log: &FailureLog,
    journal: Option<&Journal>,
) -> Result<(Arc<Recorder>, Arc<dyn Observer>), StartError> {
    // Each server has its own registry: no globals, so tests in one process do not mix.
    let metrics = Arc::new(Recorder::new(&prometheus::Registry::new(), config)?);
    metrics.attach_failure_log(Arc::new(failure_log.stats()));
    let mut observers = vec![failure_log.observer(), metrics.clone(), observer];
    if let Some(journal) = journal {
        metrics.attach_journal(Arc::new(journal.stats()));
        observers.push(journal.observer());
    }
    Ok((metrics, Arc::new(Observers(observers))))
}

impl Running {
    pub fn proxy_addr(&self) -> SocketAddr {
        self.started.proxy_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.started.admin_addr
    }

    /// Metrics, `/stats` and `/status`.
    pub fn metrics(&self) -> &Arc<Recorder> {
        &self.started.metrics
    }

    /// Counters of the failure log (records written, dropped, write errors).
    pub fn failure_log_stats(&self) -> FailureLogStats {
        self.failure_log.stats()
    }

    /// Counters of the request journal; `None` without `[journal]`.
    pub fn journal_stats(&self) -> Option<FailureLogStats> {
        self.journal.as_ref().map(Journal::stats)
    }

    /// Idle keep-alive connections to `upstream` waiting for a request (diagnostics, tests).
    pub fn idle_upstream_connections(&self, upstream: &str) -> usize {
        self.started
            .runtime
            .load()
            .client
            .idle_connections(upstream)
    }

    /// The config new requests use.
    pub fn config(&self) -> Arc<Config> {
        self.started.runtime.load().config.clone()
    }

    /// Swaps in a new config for new requests; in-flight requests keep the old one.
    /// Listen addresses cannot change without a restart (a warning says so).
    pub fn reload(&self, mut config: Config) -> Result<(), ConfigError> {
        if config.listen != self.config().listen
            || config.admin_listen != self.config().admin_listen
        {
            tracing::warn!("listen and admin_listen changes take effect only after a restart");
        }
        let current = self.config();
        if (
            config.client_header_timeout,
            config.client_idle_timeout,
            config.max_connections,
        ) != (
            current.client_header_timeout,
            current.client_idle_timeout,
            current.max_connections,
        ) {
            tracing::warn!(
                "client_header_timeout, client_idle_timeout and max_connections changes \
                 take effect only after a restart"
            );
        }
        let (new, old) = (&config.failure_log, &self.config().failure_log);
        if new.dir != old.dir || new.retention_days != old.retention_days {
            tracing::warn!("failure_log changes take effect only after a restart");
        }
        if config.journal != current.journal {
            tracing::warn!("[journal] changes take effect only after a restart");
            // The request path must keep matching the journal that runs.
            config.journal.clone_from(&current.journal);
        }
        if config.replay != current.replay {
            tracing::warn!("[replay] changes take effect only after a restart");
            config.replay.clone_from(&current.replay);
        }
        if config.redis != current.redis {
            tracing::warn!("[redis] changes take effect only after a restart");
            config.redis.clone_from(&current.redis);
        }
        let upstreams = config.upstreams.len();
        let next = Runtime::new(config, Some(&self.started.runtime.load()))?;
        self.started.runtime.store(Arc::new(next));
        self.started.metrics.on_config(&self.config());
        tracing::info!(upstreams, "config reloaded");
        Ok(())
    }

    /// Drains and stops: see the module doc for the order.
    pub async fn shutdown(self) {
        tracing::info!("draining");
        self.started.readiness.set(Phase::Draining);
        let _ = self.started.stop_proxy.send(true);
        let runtime = self.started.runtime.load_full();
        let (sessions, detached) = (runtime.sessions.clone(), runtime.detached.clone());
        let grace = self.config().shutdown_grace;
        let (proxy, (), ()) = tokio::join!(
            self.started.proxy_task,
            sessions.shutdown(grace),
            detached.shutdown(grace)
        );
        if let Err(e) = proxy {
            tracing::error!(error = %e, "proxy listener task failed");
        }
        // A handshake that completed while draining: its session is out of time too,
        // and so is a request detached while draining.
        sessions.shutdown(std::time::Duration::ZERO).await;
        detached.shutdown(std::time::Duration::ZERO).await;
        // Every request is over: the replay store writes what is queued (to Redis too,
        // so it closes first), then stop reconnecting to Redis, close upstream
        // connections and end their tasks.
        if let Some(replay) = &runtime.replay {
            replay.store.close().await;
        }
        if let Some(fleet) = &runtime.fleet {
            fleet.close();
        }
        runtime.client.shutdown().await;
        // Write and fsync what the requests recorded.
        self.failure_log.close().await;
        if let Some(journal) = self.journal {
            journal.close().await;
        }
        let _ = self.started.stop_admin.send(true);
        if let Err(e) = self.started.admin_task.await {
            tracing::error!(error = %e, "admin listener task failed");
        }
        tracing::info!("stopped");
    }

    /// Serves until `signal` completes, then drains.
    pub async fn run_until(self, signal: impl Future<Output = ()>) {
        signal.await;
        self.shutdown().await;
    }
}
