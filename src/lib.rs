//! backstop: a sidecar HTTP proxy that makes LLM API calls survive real-world failures.
//!
//! `start(config)` binds and serves in-process (tests use it); `run(config, shutdown)`
//! serves until `shutdown` completes and then drains. The CLI lives in `cli`.

pub mod admin;
pub mod body;
pub mod cli;
pub mod config;
pub mod demo;
pub mod error;
pub mod events;
pub mod failure_log;
pub mod fleet;
pub mod in_place;
pub mod journal;
pub mod json_stops;
pub mod limits;
pub mod metrics;
pub mod mock;
pub mod names;
pub mod proxy;
pub mod read_tap;
pub mod replay;
pub mod request_fingerprint;
pub mod request_meta;
pub mod response_capture;
pub mod retry;
pub mod routing;
pub mod runtime;
pub mod server;
pub mod stack;
pub mod tasks;
pub mod telemetry;

use std::future::Future;

pub use config::Config;
pub use server::{Running, StartError, start, start_with_failure_log, start_with_observer};

/// Serves `config` until `shutdown` completes, then drains (SPEC §5).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    start(config).await?.run_until(shutdown).await;
    Ok(())
}
