//! The command line: `serve` (the default), `check-config`, `failures`, `requests`,
//! `mock-upstream`, `demo`.

mod check_config;
mod daily_files;
pub mod failures;
pub mod requests;
mod serve;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::Source;
use crate::telemetry::{self, LogFormat};

/// backstop — a sidecar proxy that makes OpenAI / Azure OpenAI calls survive
/// 429 storms, 5xx errors, dropped connections and stalls.
///
/// Point your app's OPENAI_BASE_URL at http://127.0.0.1:8080/v1 (or AzureOpenAI's
/// azure_endpoint at http://127.0.0.1:8080) and run `backstop` next to it.
#[derive(Debug, Parser)]
#[command(name = "backstop", version, about, long_about)]
pub struct Cli {
    /// Config file (TOML). Without one, an embedded default proxies
    /// 127.0.0.1:8080 to https://api.openai.com.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "BACKSTOP_CONFIG",
        value_name = "FILE"
    )]
    config: Option<PathBuf>,

    /// Log format on stderr. Level comes from BACKSTOP_LOG or RUST_LOG (default info).
    #[arg(long, global = true, env = "BACKSTOP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the proxy (the default command). SIGTERM/SIGINT drain and exit;
    /// SIGHUP reloads the config file.
    Serve,
    /// Validate the config and print the effective config (every default filled in).
    CheckConfig,
    /// Read the failure log: a table of today's failures (UTC), or --date / --since,
    /// filtered by --upstream / --tag / --error-type; --json or --summary.
    Failures(failures::FailuresArgs),
    /// Read the request journal ([journal]): a table of today's requests (UTC), or
    /// --date / --since, filtered by --upstream / --tag / --outcome; --json or
    /// --summary (per upstream and tag: calls, failure rate, retries, p50/p95,
    /// tokens); `requests show ID` prints a stored response body.
    Requests(requests::RequestsArgs),
    /// Run an OpenAI-compatible upstream with injectable faults, for demos and tests.
    MockUpstream(crate::mock::cli::MockArgs),
    /// Start a flaky mock upstream and backstop in front of it, send a burst of
    /// requests (JSON and streaming) and print what happened.
    Demo(crate::demo::DemoArgs),
}

/// Exit code for a config that was refused before any port was bound.
pub const EXIT_CONFIG: u8 = 2;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(
        cli.command,
        Some(Command::Demo(_) | Command::Failures(_) | Command::Requests(_))
    ) {
        "warn"
    } else {
        "info"
    };
    telemetry::init(cli.log_format, default_level);
    let source = Source::from_option(cli.config.as_deref());
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig => check_config::run(&source),
        Command::Failures(args) => failures::run(&args, cli.config.as_deref()),
        Command::Requests(args) => requests::run(&args, cli.config.as_deref()),
        Command::Serve => block_on(serve::run(source)),
        Command::Demo(args) => block_on(async move {
            match crate::demo::run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("backstop demo: {e}");
                    ExitCode::FAILURE
                }
            }
        }),
        Command::MockUpstream(args) => block_on(async move {
            match crate::mock::cli::run(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("backstop mock-upstream: {e}");
                    ExitCode::FAILURE
                }
            }
        }),
    }
}

fn block_on(future: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(future),
        Err(e) => {
            eprintln!("backstop: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}
