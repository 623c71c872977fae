//! `backstop demo`: a flaky mock upstream, backstop in front of it, a burst of JSON and
//! streaming requests through it, and a summary a newcomer can read. Everything runs
//! in this process on 127.0.0.1 ephemeral ports. The failure log goes to a fresh temp
//! directory, left in place at the end so its files can be read.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinSet;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;
use crate::events::{AttemptEvent, RecordingObserver};
use crate::failure_log::read::{Filter, read_days};
use crate::failure_log::summary::Summary;
use crate::mock::{MockOptions, MockUpstream};

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

/// What one request saw, as the client saw it.
struct Outcome {
    n: u32,
    stream: bool,
    status: u16,
    attempts: String,
    elapsed: Duration,
    note: String,
    request_id: String,
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

async fn send_burst(base: &str, args: &DemoArgs) -> Vec<Outcome> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut tasks = JoinSet::new();
    let mut outcomes = Vec::new();
    for n in 1..=args.requests {
        if tasks.len() >= args.concurrency as usize
            && let Some(Ok(outcome)) = tasks.join_next().await
        {
            outcomes.push(outcome);
        }
        let (client, base) = (client.clone(), base.to_owned());
        tasks.spawn(async move { one_request(&client, &base, n, n % 3 == 0).await });
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok(outcome) = done {
            outcomes.push(outcome);
        }
    }
    outcomes.sort_by_key(|o| o.n);
    outcomes
}

async fn one_request(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    base: &str,
    n: u32,
    stream: bool,
) -> Outcome {
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "stream": stream,
        "messages": [{"role": "user", "content": format!("demo request {n}")}],
    });
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-demo-not-a-real-key")
        .body(Full::new(Bytes::from(body.to_string())));
    let started = Instant::now();
    let mut outcome = Outcome {
        n,
        stream,
        status: 0,
        attempts: "-".into(),
        elapsed: Duration::ZERO,
        note: String::new(),
        request_id: String::new(),
    };
    let response = match request {
        Ok(request) => client.request(request).await,
        Err(e) => {
            outcome.note = e.to_string();
            return outcome;
        }
    };
    match response {
        Ok(response) => {
            outcome.status = response.status().as_u16();
            outcome.attempts = header(response.headers(), "x-backstop-attempts");
            outcome.request_id = header(response.headers(), "x-backstop-request-id");
            let body = response.into_body().collect().await.map(|b| b.to_bytes());
            outcome.note = match body {
                Ok(bytes) => describe(outcome.status, stream, &bytes),
                Err(e) => format!("body broke off: {e}"),
            };
        }
        Err(e) => outcome.note = format!("no response: {e}"),
    }
    outcome.elapsed = started.elapsed();
    outcome
}

fn header(headers: &http::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

/// A few words on what came back: chunks for a stream, the error code for a failure.
fn describe(status: u16, stream: bool, body: &[u8]) -> String {
    if status == 200 && stream {
        let text = String::from_utf8_lossy(body);
        let chunks = text.matches("data: {").count();
        return format!("{chunks} streamed chunks");
    }
    if status == 200 {
        return "completion".to_owned();
    }
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(|c| format!("error: {c}")))
        .unwrap_or_else(|| "error".to_owned())
}

/// "503 → wait 120 ms → 200" for the attempts of one request.
fn story(events: &[&AttemptEvent]) -> String {
    let mut out = String::new();
    for e in events {
        let what = e
            .status
            .map_or_else(|| e.outcome.reason().to_owned(), |s| s.to_string());
        out.push_str(&what);
        if let Some(delay) = e.delay {
            let _ = write!(out, " → wait {} ms → ", delay.as_millis());
        }
    }
    out
}

fn report(outcomes: &[Outcome], events: &[AttemptEvent], upstream_attempts: usize) -> String {
    let mut by_request: HashMap<&str, Vec<&AttemptEvent>> = HashMap::new();
    for e in events {
        by_request.entry(&e.request_id).or_default().push(e);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  {:>3}  {:<6}  {:>6}  {:>8}  {:>8}  attempts as backstop saw them",
        "#", "kind", "status", "attempts", "time"
    );
    let mut retried = 0;
    for o in outcomes {
        let kind = if o.stream { "stream" } else { "json" };
        let attempts = by_request
            .get(o.request_id.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        retried += usize::from(attempts.len() > 1);
        let _ = writeln!(
            out,
            "  {:>3}  {:<6}  {:>6}  {:>8}  {:>5} ms  {}  ({})",
            o.n,
            kind,
            o.status,
            o.attempts,
            o.elapsed.as_millis(),
            story(attempts),
            o.note
        );
    }
    let total = outcomes.len();
    let ok = outcomes.iter().filter(|o| o.status == 200).count();
    let failed = total - ok;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Summary: {total} requests, {ok} succeeded, {failed} failed ({:.0} % success).",
        100.0 * ok as f64 / total.max(1) as f64
    );
    let _ = writeln!(
        out,
        "  The upstream saw {upstream_attempts} attempts for {total} requests; {retried} requests were retried."
    );
    let _ = writeln!(
        out,
        "  Without backstop, those {retried} requests would have been errors in your app."
    );
    if failed > 0 {
        let _ = writeln!(
            out,
            "  Requests that still failed got the last upstream error as it was, plus x-should-retry: false\n  \
             so the SDK does not retry on top of backstop."
        );
    }
    let _ = writeln!(
        out,
        "\nTry it with your app: run `backstop` (it listens on 127.0.0.1:8080) and set"
    );
    let _ = writeln!(out, "  OPENAI_BASE_URL=http://127.0.0.1:8080/v1");
    out
}

/// backstop's own `/metrics`, as Prometheus would scrape it (every response body has
/// been read by now, so every request has been counted).
async fn scrape(admin: &str) -> Result<String, String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("{admin}/metrics")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let response = client.get(uri).await.map_err(|e| e.to_string())?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}

/// Sums the samples of `name` by the value of label `by`, in label order.
fn sum_by(scrape: &str, name: &str, by: &str) -> Vec<(String, f64)> {
    let mut sums: Vec<(String, f64)> = Vec::new();
    for line in scrape.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((series_name, labels)) = series.split_once('{') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let needle = format!("{by}=\"");
        let label = labels
            .split_once(&needle)
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(v, _)| v.to_owned());
        if series_name != name || value == 0.0 {
            continue;
        }
        if let Some(label) = label {
            match sums.iter_mut().find(|(l, _)| *l == label) {
                Some((_, sum)) => *sum += value,
                None => sums.push((label, value)),
            }
        }
    }
    sums.sort_by(|a, b| a.0.cmp(&b.0));
    sums
}

fn metrics_summary(scrape: &str, admin: &str) -> String {
    let line = |sums: Vec<(String, f64)>| {
        if sums.is_empty() {
            return "none".to_owned();
        }
        sums.iter()
            .map(|(label, v)| format!("{label} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::new();
    let _ = writeln!(out, "\nFrom backstop's own scrape ({admin}/metrics):");
    let _ = writeln!(
        out,
        "  backstop_requests_total by status            {}",
        line(sum_by(scrape, "backstop_requests_total", "status"))
    );
    let _ = writeln!(
        out,
        "  backstop_upstream_attempts_total by outcome  {}",
        line(sum_by(
            scrape,
            "backstop_upstream_attempts_total",
            "outcome"
        ))
    );
    let _ = writeln!(
        out,
        "  backstop_retries_total by reason             {}",
        line(sum_by(scrape, "backstop_retries_total", "reason"))
    );
    let _ = writeln!(
        out,
        "  backstop_retries_suppressed_total by reason  {}",
        line(sum_by(
            scrape,
            "backstop_retries_suppressed_total",
            "reason"
        ))
    );
    let _ = writeln!(
        out,
        "  gen_ai_client_token_usage_sum by token type  {}",
        line(sum_by(
            scrape,
            "gen_ai_client_token_usage_sum",
            "gen_ai_token_type"
        ))
    );
    let _ = writeln!(
        out,
        "  A running backstop serves the same on its admin port: /metrics, /stats (JSON per\n  \
         upstream and tag) and /status (a page to keep open)."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_names_streams_and_errors() {
        assert_eq!(
            describe(
                200,
                true,
                b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n"
            ),
            "2 streamed chunks"
        );
        assert_eq!(
            describe(503, false, br#"{"error":{"code":"server_error"}}"#),
            "error: server_error"
        );
        assert_eq!(describe(502, false, b"garbage"), "error");
    }

    #[test]
    fn metrics_summary_sums_series_by_label() {
        let scrape = "# TYPE backstop_retries_total counter\n\
            backstop_retries_total{reason=\"status_503\",upstream=\"a\"} 3\n\
            backstop_retries_total{reason=\"status_503\",upstream=\"b\"} 2\n\
            backstop_retries_total{reason=\"status_429\",upstream=\"a\"} 0\n";
        assert_eq!(
            sum_by(scrape, "backstop_retries_total", "reason"),
            [("status_503".to_owned(), 5.0)]
        );
    }
}
