//! Failure-log benchmark, not a timed test (ignored by default). Run it with
//!
//! ```sh
//! cargo test --release --test failure_log_bench -- --ignored --nocapture
//! ```
//!
//! 1. Writer throughput: 200 000 records through the real writer to a temp dir
//!    (target ≥ 50 000 records/s), and what offering one costs the request path.
//! 2. Proxy latency with every request failing (one record each): a normal failure log
//!    versus a saturated one (a queue of one whose writer never runs, so every record
//!    meets a full queue and is dropped). The request path must not notice.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use backstop::events::{AttemptReport, LogObserver, Verdict};
use backstop::failure_log::{FailureLog, Options};
use backstop::mock::{MockOptions, MockUpstream};
use backstop::request_meta::{BodyHints, RequestMeta};
use backstop::retry::{GiveUp, Outcome, Retryable};
use common::{TestClient, config, failure_log_toml};
use http::Method;
use serde_json::json;
use tokio::task::JoinSet;

const RECORDS: u32 = 200_000;
const REQUESTS: usize = 4_000;
const CONCURRENCY: usize = 16;

fn event(n: u32) -> AttemptReport {
    AttemptReport {
        request_id: format!("019a2b3c4d5e6f708192a3b4c5d6e7{n:02x}").into(),
        upstream: "openai".into(),
        method: Method::POST,
        endpoint: "/v1/chat/completions".into(),
        endpoint_kind: "chat_completions",
        attempt: 1 + n % 3,
        outcome: Outcome::Retry {
            reason: backstop::retry::Reason::Status429,
            kind: Retryable::Throttle,
        },
        status: Some(429),
        verdict: Verdict::GiveUp,
        give_up: Some(GiveUp::RetriesExhausted),
        fallback_to: None,
        delay: None,
        server_delay: Some(Duration::from_millis(1200)),
        duration: Duration::from_millis(85),
        upstream_request_id: Some("req_0123456789".into()),
        error_code: Some("rate_limit_exceeded".into()),
        error_message: Some(
            "Rate limit reached for gpt-4o-mini in organization org-abc on requests per min \
             (RPM): Limit 500, Used 500, Requested 1. Please try again in 120ms."
                .into(),
        ),
        meta: Arc::new({
            let mut meta = RequestMeta::with_hints(BodyHints {
                model: Some("gpt-4o-mini".into()),
                messages_count: Some(3),
                ..BodyHints::default()
            });
            meta.tag = Some("quiz_generation".into());
            meta
        }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture (release build)"]
async fn bench_writer_throughput() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = config("http://127.0.0.1:9", &failure_log_toml(dir.path())).failure_log;
    let options = Options {
        capacity: RECORDS as usize,
        ..Options::default()
    };
    let (mut log, writer) = FailureLog::new(&settings, options);
    let observer = log.observer();
    let stats = log.stats();
    let events: Vec<AttemptReport> = (0..RECORDS).map(event).collect();

    let started = Instant::now();
    log.start_writer(writer);
    let offer_started = Instant::now();
    for e in &events {
        observer.attempt(e);
    }
    let offer = offer_started.elapsed();
    log.close().await;
    let total = started.elapsed();

    let bytes: u64 = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert_eq!(stats.records_written(), u64::from(RECORDS));
    assert_eq!(stats.records_dropped(), 0);
    let rate = f64::from(RECORDS) / total.as_secs_f64();
    println!(
        "writer: {RECORDS} records, {:.1} MB in {:.3} s = {rate:.0} records/s (incl. final fsync); \
         offering one on the request path: {:.2} µs",
        bytes as f64 / 1e6,
        total.as_secs_f64(),
        offer.as_secs_f64() * 1e6 / f64::from(RECORDS)
    );
    assert!(
        rate >= 50_000.0,
        "{rate:.0} records/s is below the 50k/s target"
    );
}

/// p50 / p99 / max latency of `REQUESTS` failing requests, `CONCURRENCY` at a time.
async fn latencies(client: &TestClient) -> (Duration, Duration, Duration) {
    let mut times = Vec::with_capacity(REQUESTS);
    let mut tasks = JoinSet::new();
    for n in 0..REQUESTS {
        if tasks.len() >= CONCURRENCY
            && let Some(Ok(t)) = tasks.join_next().await
        {
            times.push(t);
        }
        let client = client.clone();
        tasks.spawn(async move {
            let started = Instant::now();
            let body =
                json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": n}]});
            let response = client.post_json("/v1/chat/completions", body).await;
            assert_eq!(response.status.as_u16(), 503);
            started.elapsed()
        });
    }
    while let Some(Ok(t)) = tasks.join_next().await {
        times.push(t);
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    (at(0.5), at(0.99), times[times.len() - 1])
}

async fn run_proxy(saturated: bool) -> (Duration, Duration, Duration, u64, u64) {
    let mock = MockUpstream::start_with(MockOptions {
        fail_rate: 1.0,
        ..MockOptions::default()
    })
    .await
    .expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!("[retry]\nmax_retries = 0\n{}", failure_log_toml(dir.path()));
    let config = config(&mock.url(), &extra);
    let options = Options {
        capacity: if saturated { 1 } else { 4096 },
        ..Options::default()
    };
    let (mut log, writer) = FailureLog::new(&config.failure_log, options);
    // Saturated: the writer is held here and never runs, so the queue stays full.
    let held = if saturated {
        Some(writer)
    } else {
        log.start_writer(writer);
        None
    };
    let proxy = backstop::start_with_failure_log(config, Arc::new(LogObserver), log)
        .await
        .expect("start");
    let client = TestClient::new(proxy.proxy_addr());
    latencies(&client).await; // warm up connections
    let (p50, p99, max) = latencies(&client).await;
    let stats = proxy.failure_log_stats();
    proxy.shutdown().await;
    drop(held);
    mock.shutdown().await;
    (
        p50,
        p99,
        max,
        stats.records_written(),
        stats.records_dropped(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture (release build)"]
async fn bench_proxy_latency_with_a_saturated_writer() {
    for saturated in [false, true] {
        let (p50, p99, max, written, dropped) = run_proxy(saturated).await;
        println!(
            "proxy, {REQUESTS} failing requests x2 (warm-up + measured), {CONCURRENCY} concurrent, \
             {} failure log: p50 {:.0} µs, p99 {:.0} µs, max {:.1} ms; records written {written}, dropped {dropped}",
            if saturated { "saturated" } else { "normal" },
            p50.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
            max.as_secs_f64() * 1e3,
        );
    }
}
