//! `backstop mock-upstream`: the mock as a standalone server.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::fault::LineEnding;
use super::{MockOptions, MockRateLimit, MockUpstream};

/// Runs an OpenAI-compatible upstream with injectable faults.
#[derive(clap::Args, Debug, Clone)]
pub struct MockArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,
    /// Share of requests (0 to 1) answered with --fail-status at random.
    #[arg(long, default_value_t = 0.0, value_parser = parse_fail_rate)]
    pub fail_rate: f64,
    /// Status of the random failures (an HTTP status, 100-599).
    #[arg(long, default_value_t = 503, value_parser = clap::value_parser!(u16).range(100..=599))]
    pub fail_status: u16,
    /// Delay before every normal answer, e.g. 50ms.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    pub latency: Duration,
    /// Content chunks in a streamed answer.
    #[arg(long, default_value_t = 5)]
    pub stream_chunks: usize,
    /// Pause between streamed chunks, e.g. 10ms.
    #[arg(long, default_value = "10ms", value_parser = humantime::parse_duration)]
    pub stream_gap: Duration,
    /// How the lines of streamed answers end: lf, cr (a lone CR), crlf, or mixed (all
    /// three in turn); every one is valid SSE.
    #[arg(long, value_enum, default_value_t = LineEnding::Lf)]
    pub stream_line_ending: LineEnding,
    /// Seed for the random failures, for reproducible runs.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Enforce a provider-style limit, e.g. `60/1m` or `5/500ms`: answers carry
    /// `x-ratelimit-*` headers and requests over the limit get 429 with `retry-after-ms`.
    #[arg(long, value_parser = parse_rate_limit, value_name = "N/DURATION")]
    pub rate_limit: Option<MockRateLimit>,
}

fn parse_rate_limit(value: &str) -> Result<MockRateLimit, String> {
    let (n, window) = value
        .split_once('/')
        .ok_or_else(|| format!("`{value}` should look like 60/1m (requests/window)"))?;
    let requests: u32 = n
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{n}` is not a positive number of requests"))?;
    let window =
        humantime::parse_duration(window.trim()).map_err(|e| format!("`{window}`: {e}"))?;
    if window.is_zero() {
        return Err("the window must be longer than 0".to_owned());
    }
    Ok(MockRateLimit { requests, window })
}

fn parse_fail_rate(value: &str) -> Result<f64, String> {
    let rate: f64 = value
        .parse()
        .map_err(|_| format!("`{value}` is not a number"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("must be between 0 and 1, got {rate}"))
    }
}

impl From<&MockArgs> for MockOptions {
    fn from(args: &MockArgs) -> Self {
        MockOptions {
            listen: args.listen,
            fail_rate: args.fail_rate,
            fail_status: args.fail_status,
            latency: args.latency,
            stream_chunks: args.stream_chunks,
            stream_gap: args.stream_gap,
            stream_line_ending: args.stream_line_ending,
            seed: args.seed,
            rate_limit: args.rate_limit,
            // Nothing reads them in the standalone server: a bench's millions of
            // requests would otherwise all stay in memory.
            keep_received: 0,
        }
    }
}

/// Starts the mock, prints `mock upstream listening on http://ADDR`, and serves until
/// Ctrl-C or SIGTERM.
pub async fn run(args: MockArgs) -> io::Result<()> {
    let mock = MockUpstream::start_with(MockOptions::from(&args)).await?;
    println!("mock upstream listening on {}", mock.url());
    shutdown_signal().await?;
    tracing::info!(requests = mock.request_count(), "mock upstream stopping");
    mock.shutdown().await;
    Ok(())
}

async fn shutdown_signal() -> io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result,
            _ = terminate.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: MockArgs,
    }

    fn parse(argv: &[&str]) -> Result<MockArgs, String> {
        Cli::try_parse_from(std::iter::once("mock").chain(argv.iter().copied()))
            .map(|cli| cli.args)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let args = parse(&[]).expect("no arguments is valid");
        assert_eq!(
            args.listen,
            "127.0.0.1:8081".parse().expect("literal address")
        );
        let opts = MockOptions::from(&args);
        assert_eq!(opts.fail_rate, 0.0);
        assert_eq!(opts.fail_status, 503);
        assert_eq!(opts.latency, Duration::ZERO);
        assert_eq!(opts.stream_chunks, 5);
        assert_eq!(opts.stream_gap, Duration::from_millis(10));
        assert_eq!(opts.seed, None);
    }

    #[test]
    fn parses_a_rate_limit_and_rejects_bad_ones() {
        let args = parse(&["--rate-limit", "5/500ms"]).expect("valid");
        assert_eq!(
            MockOptions::from(&args).rate_limit,
            Some(MockRateLimit {
                requests: 5,
                window: Duration::from_millis(500)
            })
        );
        for bad in ["5", "0/1s", "x/1s", "5/soon", "5/0s"] {
            assert!(parse(&["--rate-limit", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_human_durations_and_seed() {
        let args = parse(&[
            "--latency",
            "50ms",
            "--stream-gap",
            "1s",
            "--seed",
            "7",
            "--fail-rate",
            "0.25",
        ])
        .expect("valid arguments");
        assert_eq!(args.latency, Duration::from_millis(50));
        assert_eq!(args.stream_gap, Duration::from_secs(1));
        assert_eq!(args.seed, Some(7));
        assert_eq!(args.fail_rate, 0.25);
    }

    #[test]
    fn rejects_fail_rate_outside_zero_to_one() {
        let error = parse(&["--fail-rate", "1.5"]).expect_err("1.5 is out of range");
        assert!(error.contains("must be between 0 and 1"), "{error}");
        assert!(parse(&["--fail-rate", "lots"]).is_err());
    }

    #[test]
    fn rejects_status_that_is_not_http() {
        let error = parse(&["--fail-status", "700"]).expect_err("700 is not a status");
        assert!(error.contains("700"), "{error}");
    }

    #[tokio::test]
    async fn run_fails_when_the_port_is_taken() {
        let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a port");
        let addr = taken.local_addr().expect("bound address").to_string();
        let args = parse(&["--listen", &addr]).expect("valid arguments");
        let error = run(args).await.expect_err("port in use");
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    }
}
