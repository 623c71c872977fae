//! `backstop serve`: start, reload on SIGHUP, drain on SIGTERM/SIGINT, exit 0.

use std::process::ExitCode;

use tokio::signal::unix::{SignalKind, signal};

use super::EXIT_CONFIG;
use crate::config::Source;
use crate::server::{self, StartError};

pub async fn run(source: Source) -> ExitCode {
    let config = match source.load() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("backstop: invalid config ({source}): {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let (mut term, mut int, mut hup) = match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) {
        (Ok(t), Ok(i), Ok(h)) => (t, i, h),
        _ => {
            eprintln!("backstop: cannot install signal handlers");
            return ExitCode::FAILURE;
        }
    };
    let running = match server::start(config).await {
        Ok(running) => running,
        Err(e @ StartError::Config(_)) => {
            eprintln!("backstop: invalid config ({source}): {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
        Err(e) => {
            eprintln!("backstop: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(config = %source, "serving");
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received"); break; }
            _ = int.recv() => { tracing::info!("SIGINT received"); break; }
            _ = hup.recv() => match source.load().map(|c| running.reload(c)) {
                Ok(Ok(())) => {}
                Ok(Err(e)) | Err(e) => {
                    tracing::error!(error = %e, "reload refused; keeping the running config");
                }
            },
        }
    }
    running.shutdown().await;
    ExitCode::SUCCESS
}
