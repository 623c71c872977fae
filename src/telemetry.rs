//! `tracing` setup: human-readable text by default, JSON lines with `--log-format json`
//! (or `BACKSTOP_LOG_FORMAT=json`). Level from `BACKSTOP_LOG` (then `RUST_LOG`), default
//! `info` (`warn` for the demo, whose output is its own). Logs go to stderr, with colour only when it is a
//! terminal. No API key or prompt text is ever a field.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

pub fn init(format: LogFormat, default_level: &str) {
    let filter = std::env::var("BACKSTOP_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal: a file or a container log
        // (`kubectl logs`) would get the escape codes as text, whatever `TERM` says.
        .with_ansi(std::io::stderr().is_terminal());
    // A second init (tests, demo) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
