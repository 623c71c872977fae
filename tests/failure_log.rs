//! SPEC §3, the failure log end to end: records through the real proxy, secrets kept
//! out, a disk that refuses, a full queue, midnight and retention on an injected clock.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backstop::events::{AttemptReport, LogObserver, Verdict};
use backstop::failure_log::{self, Clock, Day, FailureLog, Options};
use backstop::mock::{Fault, MockUpstream, StreamEnd, StreamScript};
use backstop::request_meta::RequestMeta;
use backstop::retry::{GiveUp, Outcome, Retryable};
use bytes::Bytes;
use common::{Harness, TestClient, config, eventually, failure_log_toml, timed_frames};
use http::{Method, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

const FAST: &str =
    "[retry]\nbase_delay = \"10ms\"\nthrottle_base_delay = \"20ms\"\nmax_delay = \"100ms\"";

fn chat() -> Value {
    json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "secret prompt text"}, {"role": "user", "content": "more"}]})
}

/// Every record in every file of `dir`, in file order.
fn records(dir: &Path) -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(f).expect("read log file");
            assert!(text.is_empty() || text.ends_with('\n'), "whole lines only");
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("each line is JSON"))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn every_file_text(dir: &Path) -> String {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn retried_503s_write_exactly_two_records_with_spec_fields() {
    let h = Harness::start_with(FAST).await;
    h.mock.push_n(Fault::ServerError(503), 2);
    let request = h
        .client
        .request(Method::POST, "/v1/chat/completions?api-version=1")
        .header("content-type", "application/json")
        .header("x-backstop-tag", "quiz_generation")
        .header("x-stainless-retry-count", "1")
        .body(Full::new(Bytes::from(chat().to_string())))
        .expect("request");
    let response = h.client.call(request).await;
    assert_eq!(response.status, StatusCode::OK);
    let request_id = response
        .header("x-backstop-request-id")
        .expect("id")
        .to_owned();

    let Harness {
        proxy, failure_dir, ..
    } = h;
    proxy.shutdown().await;
    let records = records(failure_dir.path());
    assert_eq!(records.len(), 2, "{records:#?}");
    for (n, r) in records.iter().enumerate() {
        assert_eq!(r["request_id"], request_id.as_str());
        assert_eq!(r["upstream"], "mock");
        assert_eq!(r["method"], "POST");
        assert_eq!(r["endpoint"], "/v1/chat/completions", "no query");
        assert_eq!(r["attempt"], n + 1);
        assert_eq!(r["final"], false);
        assert_eq!(r["error_type"], "server_error");
        assert_eq!(r["status"], 503);
        assert_eq!(r["error_code"], "server_error");
        assert!(r["error_message"].is_string());
        assert_eq!(r["decision"], "retry");
        assert_eq!(r["reason"], "status_503");
        assert!(r["delay_ms"].is_u64());
        assert!(r.get("server_delay_ms").is_none(), "absent, not null");
        assert_eq!(r["upstream_request_id"], format!("mock-{}", n + 1));
        assert_eq!(r["model"], "gpt-4o-mini");
        assert_eq!(r["stream"], false);
        assert_eq!(r["tag"], "quiz_generation");
        assert!(r["duration_ms"].is_u64());
        assert_eq!(
            r["context"],
            json!({"messages_count": 2, "client_retry_count": 1})
        );
        let ts = r["timestamp"].as_str().expect("timestamp");
        assert_eq!(ts.len(), "2026-05-01T10:00:00.123456Z".len(), "{ts}");
        assert!(ts.ends_with('Z'));
        assert!(
            r.as_object()
                .expect("object")
                .values()
                .all(|v| !v.is_null())
        );
    }
}

#[tokio::test]
async fn a_request_that_fails_in_the_end_writes_a_final_record() {
    let h = Harness::start_with(FAST).await;
    h.mock.push_n(Fault::ServerError(503), 3);
    let response = h.client.post_json("/v1/chat/completions", chat()).await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);

    let Harness {
        proxy, failure_dir, ..
    } = h;
    proxy.shutdown().await;
    let records = records(failure_dir.path());
    let summary: Vec<(u64, bool, &str, &str)> = records
        .iter()
        .map(|r| {
            (
                r["attempt"].as_u64().unwrap_or(0),
                r["final"].as_bool().unwrap_or(false),
                r["decision"].as_str().unwrap_or(""),
                r["reason"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, false, "retry", "status_503"),
            (2, false, "retry", "status_503"),
            (3, true, "give_up", "retries_exhausted"),
        ]
    );
    assert!(records[2].get("delay_ms").is_none());
}

#[tokio::test]
async fn a_non_retryable_failure_is_one_final_client_error() {
    let h = Harness::start_with(FAST).await;
    h.mock.push(Fault::ContentFilter);
    h.client.post_json("/v1/chat/completions", chat()).await;
    let Harness {
        proxy, failure_dir, ..
    } = h;
    proxy.shutdown().await;
    let records = records(failure_dir.path());
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["error_type"], "client_error");
    assert_eq!(records[0]["reason"], "content_filter");
    assert_eq!(records[0]["final"], true);
}

#[tokio::test]
async fn a_stream_broken_after_commit_gets_a_final_interrupted_record() {
    let h = Harness::start_with(FAST).await;
    h.mock.push(Fault::Stream(StreamScript {
        end: StreamEnd::DieAfter(2),
        ..StreamScript::default()
    }));
    let request = h
        .client
        .request(Method::POST, "/v1/chat/completions")
        .body(Full::new(Bytes::from(r#"{"model":"m","stream":true}"#)))
        .expect("request");
    let response = h.client.send(request).await;
    timed_frames(response.into_body(), Duration::from_secs(10)).await;
    let Harness {
        proxy, failure_dir, ..
    } = h;
    proxy.shutdown().await;
    let records = records(failure_dir.path());
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(r["error_type"], "stream_interrupted");
    assert_eq!(r["final"], true);
    assert_eq!(r["decision"], "give_up");
    assert_eq!(r["status"], 200);
    assert_eq!(r["attempt"], 1);
    assert_eq!(r["stream"], true);
}

#[tokio::test]
async fn no_api_key_reaches_the_log() {
    const MARKER: &str = "sk-backstopMARKER0123456789abcdefXYZ";
    let h = Harness::start_with(FAST).await;
    let leaky = format!(
        r#"{{"error":{{"message":"Incorrect API key provided: {MARKER}. See ?key={MARKER}","type":"invalid_request_error","code":"invalid_api_key"}}}}"#
    );
    h.mock.push(Fault::Respond {
        status: 503,
        headers: vec![],
        body: leaky.clone(),
    });
    h.mock.push(Fault::Respond {
        status: 401,
        headers: vec![],
        body: leaky,
    });
    let request = h
        .client
        .request(Method::POST, &format!("/v1/chat/completions?key={MARKER}"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {MARKER}"))
        .header("api-key", MARKER)
        .body(Full::new(Bytes::from(chat().to_string())))
        .expect("request");
    let response = h.client.call(request).await;
    assert_eq!(response.status, StatusCode::UNAUTHORIZED);

    let Harness {
        proxy, failure_dir, ..
    } = h;
    proxy.shutdown().await;
    let records = records(failure_dir.path());
    assert_eq!(records.len(), 2, "the log was written: {records:#?}");
    assert!(
        records[0]["error_message"]
            .as_str()
            .is_some_and(|m| m.contains("[redacted]")),
        "{records:#?}"
    );
    let text = every_file_text(failure_dir.path());
    assert!(!text.contains("backstopMARKER"), "{text}");
    assert!(!text.contains("secret prompt text"), "{text}");
}

#[tokio::test]
async fn records_reach_the_file_within_half_a_second() {
    let h = Harness::start_with(FAST).await;
    h.mock.push(Fault::ContentFilter);
    h.client.post_json("/v1/chat/completions", chat()).await;
    let dir = h.failure_dir.path().to_owned();
    assert!(
        eventually(Duration::from_millis(500), || records(&dir).len() == 1).await,
        "the record is in the file while the proxy runs"
    );
    assert_eq!(h.proxy.failure_log_stats().records_written(), 1);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn an_uncreatable_log_dir_leaves_proxying_at_200() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("file.txt");
    std::fs::write(&file, "not a directory").expect("write");
    let extra = format!("{FAST}\n{}", failure_log_toml(&file.join("sub")));
    let h = Harness::start_with(&extra).await;
    for _ in 0..3 {
        h.mock.push(Fault::ServerError(503));
        let response = h.client.post_json("/v1/chat/completions", chat()).await;
        assert_eq!(response.status, StatusCode::OK);
    }
    let stats = h.proxy.failure_log_stats();
    assert!(
        eventually(Duration::from_secs(2), || stats.write_errors() > 0).await,
        "the failure is counted"
    );
    h.proxy.shutdown().await;
    assert_eq!(stats.records_written(), 0);
    assert_eq!(stats.records_dropped(), 3, "lost records are counted");
}

/// A failed attempt event, as the request path would emit it.
fn failed_attempt(n: u32) -> AttemptReport {
    AttemptReport {
        request_id: format!("req-{n}").into(),
        upstream: "openai".into(),
        method: Method::POST,
        endpoint: "/v1/chat/completions".into(),
        endpoint_kind: "chat_completions",
        attempt: 1,
        outcome: Outcome::Retry {
            reason: backstop::retry::Reason::Status503,
            kind: Retryable::Throttle,
        },
        status: Some(503),
        verdict: Verdict::GiveUp,
        give_up: Some(GiveUp::RetriesExhausted),
        fallback_to: None,
        delay: None,
        server_delay: None,
        duration: Duration::from_millis(12),
        upstream_request_id: None,
        error_code: Some("server_error".into()),
        error_message: Some("overloaded".into()),
        meta: Arc::new(RequestMeta::default()),
    }
}

fn settings(dir: &Path, retention_days: u32) -> backstop::config::FailureLogSettings {
    let toml = format!(
        "{}retention_days = {retention_days}\n",
        failure_log_toml(dir)
    );
    config("http://127.0.0.1:9", &toml).failure_log
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options {
        capacity: 2,
        ..Options::default()
    };
    let (mut log, writer) = FailureLog::new(&settings(dir.path(), 30), options);
    let observer = log.observer();
    let started = std::time::Instant::now();
    for n in 0..10 {
        observer.attempt(&failed_attempt(n)); // the writer is not running: the queue fills
    }
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "never waits"
    );
    let stats = log.stats();
    assert_eq!(stats.records_dropped(), 8);

    log.start_writer(writer);
    log.close().await;
    assert_eq!(stats.records_written(), 2);
    assert_eq!(records(dir.path()).len(), 2);
}

/// The writer empties the queue at each `flush_every` tick, and sooner when an offer
/// finds it a quarter full: a burst between two ticks never fills it.
#[tokio::test]
async fn a_burst_between_ticks_is_taken_off_the_queue_before_it_fills() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = Options {
        capacity: 8,
        flush_every: Duration::from_secs(3600),
        ..Options::default()
    };
    let (mut log, writer) = FailureLog::new(&settings(dir.path(), 30), options);
    log.start_writer(writer);
    let observer = log.observer();
    // One record, taken by the writer's first tick once it has started.
    observer.attempt(&failed_attempt(0));
    assert!(common::eventually(Duration::from_secs(10), || log.queued() == 0).await);
    for n in 1..100 {
        observer.attempt(&failed_attempt(n));
        tokio::task::yield_now().await; // the writer's turn, on this one thread
    }
    let stats = log.stats();
    assert_eq!(stats.records_dropped(), 0, "no tick came, the nudges did");
    log.close().await;
    assert_eq!(stats.records_written(), 100);
    assert_eq!(records(dir.path()).len(), 100);
}

#[tokio::test]
async fn a_stuck_writer_never_slows_the_proxy() {
    let mock = MockUpstream::start().await.expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(
        &mock.url(),
        &format!("{FAST}\n{}", failure_log_toml(dir.path())),
    );
    let options = Options {
        capacity: 1,
        ..Options::default()
    };
    // The writer is held here, never run: the queue is full after one record.
    let (log, _writer) = FailureLog::new(&config.failure_log, options);
    let proxy = backstop::start_with_failure_log(config, Arc::new(LogObserver), log)
        .await
        .expect("start");
    let client = TestClient::new(proxy.proxy_addr());
    for _ in 0..5 {
        mock.push(Fault::ContentFilter);
        let response = client.post_json("/v1/chat/completions", chat()).await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST);
    }
    let stats = proxy.failure_log_stats();
    assert_eq!(stats.records_dropped(), 4);
    common::within(Duration::from_secs(10), proxy.shutdown()).await;
}

/// A clock the test moves by hand.
struct TestClock(AtomicI64);

impl TestClock {
    fn at(day: Day, micros_into_day: i64) -> Arc<TestClock> {
        Arc::new(TestClock(AtomicI64::new(day.start().0 + micros_into_day)))
    }

    fn set(&self, day: Day, micros_into_day: i64) {
        self.0
            .store(day.start().0 + micros_into_day, Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> SystemTime {
        let micros = u64::try_from(self.0.load(Ordering::SeqCst)).expect("after 1970");
        UNIX_EPOCH + Duration::from_micros(micros)
    }
}

const LAST_MS_OF_DAY: i64 = 86_400_000_000 - 1_000;

#[tokio::test]
async fn rolls_over_to_a_new_file_at_midnight_utc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let day = Day::from_civil(2026, 5, 1);
    let clock = TestClock::at(day, LAST_MS_OF_DAY);
    let options = Options {
        clock: clock.clone(),
        ..Options::default()
    };
    let log = FailureLog::start(&settings(dir.path(), 30), options);
    let observer = log.observer();
    let stats = log.stats();
    observer.attempt(&failed_attempt(1));
    assert!(eventually(Duration::from_secs(2), || stats.records_written() == 1).await);
    clock.set(Day(day.0 + 1), 1_000);
    observer.attempt(&failed_attempt(2));
    observer.attempt(&failed_attempt(3));
    log.close().await;

    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).expect(name);
    let first = read("failures-2026-05-01.jsonl");
    let second = read("failures-2026-05-02.jsonl");
    assert_eq!(first.lines().count(), 1, "{first}");
    assert!(
        first.contains("\"timestamp\":\"2026-05-01T23:59:59.999000Z\""),
        "{first}"
    );
    assert_eq!(second.lines().count(), 2, "{second}");
    assert!(
        second.contains("\"timestamp\":\"2026-05-02T00:00:00.001000Z\""),
        "{second}"
    );
    assert!(first.ends_with('\n') && second.ends_with('\n'));
}

#[tokio::test]
async fn retention_deletes_only_old_files_at_start_and_each_day() {
    let dir = tempfile::tempdir().expect("tempdir");
    let today = Day::from_civil(2026, 5, 31);
    let name = |d: i64| failure_log::file_name(Day(today.0 - d));
    for file in [
        name(40),
        name(31),
        name(30),
        name(0),
        "notes.txt".to_owned(),
        "failures-latest.jsonl".to_owned(),
    ] {
        std::fs::write(dir.path().join(file), "{}\n").expect("seed");
    }
    let clock = TestClock::at(today, 0);
    let options = Options {
        clock: clock.clone(),
        flush_every: Duration::from_millis(10),
        ..Options::default()
    };
    let log = FailureLog::start(&settings(dir.path(), 30), options);
    let exists = |f: &str| dir.path().join(f).exists();
    assert!(
        eventually(Duration::from_secs(2), || !exists(&name(31))).await,
        "older than 30 days: deleted at start"
    );
    assert!(!exists(&name(40)));
    assert!(exists(&name(30)) && exists(&name(0)));
    assert!(
        exists("notes.txt") && exists("failures-latest.jsonl"),
        "strangers stay"
    );

    clock.set(Day(today.0 + 1), 0);
    assert!(
        eventually(Duration::from_secs(2), || !exists(&name(30))).await,
        "a day later, the next oldest goes"
    );
    assert!(exists(&name(0)));
    log.close().await;
}
