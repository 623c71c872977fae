//! `backstop demo`: a flaky mock upstream, backstop in front of it, a burst of JSON and
//! streaming requests through it, and a summary a newcomer can read. Everything runs
//! in this process on 127.0.0.1 ephemeral ports. The failure log goes to a fresh temp
//! directory, left in place at the end so its files can be read. Then one scene of
//! replay: an SDK-style retry served from the call its first try abandoned (`replay`).

mod replay;
mod report;
mod traffic;

use std::fmt::Write as _;
use std::time::Duration;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::events::RecordingObserver;
use crate::failure_log::read::{Filter, read_days};
use crate::failure_log::summary::Summary;
use crate::mock::{MockOptions, MockUpstream};

use report::{metrics_summary, report, scrape};
use traffic::send_burst;

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// How many requests to send (every third one streams).
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub requests: u32,
    /// Share of requests (0 to 1) the mock upstream answers with 503.
    #[arg(long, default_value_t = 0.3)]
    pub fail_rate: f64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub concurrency: u32,
    /// Seed for the mock's random failures (the same seed gives the same run).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

pub async fn run(args: DemoArgs) -> Result<(), String> {
    let options = MockOptions {
        fail_rate: args.fail_rate,
        latency: Duration::from_millis(20),
        stream_chunks: 5,
        stream_gap: Duration::from_millis(15),
        seed: Some(args.seed),
        ..MockOptions::default()
    };
    options.validate()?;
    let mock = MockUpstream::start_with(options)
        .await
        .map_err(|e| format!("cannot start the mock upstream: {e}"))?;
    let failure_dir = demo_failure_dir()?;
    let config = demo_config(&mock.url(), &failure_dir)?;
    let recorder = Arc::new(RecordingObserver::default());
    let proxy = crate::start_with_observer(config, recorder.clone())
        .await
        .map_err(|e| e.to_string())?;
    let base = format!("http://{}", proxy.proxy_addr());

    println!(
        "backstop demo: a flaky upstream, backstop in front of it, {} requests through it.\n",
        args.requests
    );
    println!(
        "  mock upstream  {}  ({:.0} % of requests get 503, 20 ms latency)",
        mock.url(),
        args.fail_rate * 100.0
    );
    println!(
        "  backstop       {base}  (admin http://{})",
        proxy.admin_addr()
    );
    println!(
        "                 up to 2 retries; backoff 50 ms (200 ms for 429/503), doubling, full jitter\n"
    );

    let outcomes = send_burst(&base, &args).await;
    print!(
        "{}",
        report(&outcomes, &recorder.events(), mock.request_count())
    );
    let admin = format!("http://{}", proxy.admin_addr());
    match scrape(&admin).await {
        Ok(text) => print!("{}", metrics_summary(&text, &admin)),
        Err(e) => println!("\n(cannot scrape {admin}/metrics: {e})"),
    }

    proxy.shutdown().await;
    mock.shutdown().await;
    print!("{}", failure_log_report(&failure_dir));
    match replay::scene(&failure_dir.join("replay")).await {
        Ok(text) => print!("{text}"),
        Err(e) => println!("\n(the replay scene could not run: {e})"),
    }
    Ok(())
}

/// A new directory under the system temp dir for this run's failure log.
fn demo_failure_dir() -> Result<PathBuf, String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("backstop-demo-{}-{nanos:09}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

/// Where the failure log went and its `backstop failures --summary`.
fn failure_log_report(dir: &Path) -> String {
    let mut out = String::new();
    let days = crate::failure_log::list_days(dir);
    let read = match read_days(dir, &days, &Filter::default()) {
        Ok(read) => read,
        Err(e) => {
            return format!(
                "\nThe failure log in {} cannot be read: {e}\n",
                dir.display()
            );
        }
    };
    let _ = writeln!(
        out,
        "\nEvery failed attempt is in the failure log: {}\n  \
         read it with `backstop failures --dir {} --since 1h` (or --json, --summary).\n",
        dir.display(),
        dir.display()
    );
    out.push_str(&Summary::of_entries(&read.entries).render());
    out
}

fn demo_config(mock_url: &str, failure_dir: &Path) -> Result<Config, String> {
    let dir = toml::Value::String(failure_dir.display().to_string());
    let text = format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\n\
         [retry]\nbase_delay = \"50ms\"\nthrottle_base_delay = \"200ms\"\nmax_delay = \"2s\"\n\
         [metrics]\nmodels = [\"gpt-4o-mini\"]\n\
         [failure_log]\ndir = {dir}\n\
         [[upstream]]\nname = \"mock\"\nbase_url = \"{mock_url}\"\n"
    );
    Config::from_toml(&text, &|_| None).map_err(|e| format!("demo config: {e}"))
}
