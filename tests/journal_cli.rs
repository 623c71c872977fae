//! SPEC §6: `responses = true` keeps the exact bytes each client got (JSON and SSE),
//! bounded by `max_response_bytes`, and `backstop requests` reads the journal back: a
//! table, JSON lines, filters, a summary that matches what was sent, and
//! `requests show ID`.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use backstop::mock::Fault;
use bytes::Bytes;
use common::{FAST, Harness, chat, stream_request};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

fn journal_toml(dir: &Path, more: &str) -> String {
    format!("[journal]\ndir = {:?}\n{more}\n", dir.display().to_string())
}

async fn journaled(more: &str) -> (Harness, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::start_with(&format!("{FAST}\n{}", journal_toml(dir.path(), more))).await;
    (h, dir)
}

/// `backstop requests ARGS --dir DIR` (`show` takes its own `--dir`).
fn requests(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_backstop"))
        .arg("requests")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .env_remove("BACKSTOP_CONFIG")
        .output()
        .expect("backstop runs")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}

#[tokio::test]
async fn responses_true_keeps_json_and_sse_bodies_byte_exact_for_requests_show() {
    let (h, dir) = journaled("responses = true").await;
    let json = h.client.post_json("/v1/chat/completions", chat("m")).await;
    assert_eq!(json.status, StatusCode::OK);
    let json_id = json.header("x-backstop-request-id").expect("id").to_owned();
    let response = h.client.send(stream_request(&h.client)).await;
    let sse_id = response.headers()["x-backstop-request-id"]
        .to_str()
        .expect("id")
        .to_owned();
    let sse_bytes = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert!(sse_bytes.starts_with(b"data: "), "a stream");
    h.proxy.shutdown().await;

    let shown = requests(dir.path(), &["show", &json_id]);
    assert_eq!(
        stdout(&shown).as_bytes(),
        json.body.as_ref(),
        "JSON byte-exact"
    );
    let shown = requests(dir.path(), &["show", &sse_id]);
    assert_eq!(
        stdout(&shown).as_bytes(),
        sse_bytes.as_ref(),
        "SSE byte-exact"
    );

    let lines = stdout(&requests(dir.path(), &["--json"]));
    let records: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["response"]["status"], 200);
    assert_eq!(records[0]["response"]["content_type"], "application/json");
    let sse_type = records[1]["response"]["content_type"]
        .as_str()
        .unwrap_or_default();
    assert!(sse_type.starts_with("text/event-stream"), "{sse_type}");
}

#[tokio::test]
async fn a_body_over_max_response_bytes_is_left_out_and_show_says_why() {
    let (h, dir) = journaled("responses = true\nmax_response_bytes = 16").await;
    let json = h.client.post_json("/v1/chat/completions", chat("m")).await;
    assert_eq!(json.status, StatusCode::OK);
    let id = json.header("x-backstop-request-id").expect("id").to_owned();
    h.proxy.shutdown().await;

    let lines = stdout(&requests(dir.path(), &["--json"]));
    let record: Value = serde_json::from_str(lines.trim()).expect("one record");
    assert_eq!(record["response_truncated"], true);
    assert!(record["response"].get("body").is_none(), "{record}");
    let shown = requests(dir.path(), &["show", &id]);
    assert_eq!(shown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&shown.stderr).contains("max_response_bytes"));
}

#[tokio::test]
async fn show_without_a_kept_body_exits_1_with_the_reason() {
    let (h, dir) = journaled("").await;
    let json = h.client.post_json("/v1/chat/completions", chat("m")).await;
    let id = json.header("x-backstop-request-id").expect("id").to_owned();
    h.proxy.shutdown().await;
    let shown = requests(dir.path(), &["show", &id]);
    assert_eq!(shown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&shown.stderr).contains("responses was false"));
    let unknown = requests(dir.path(), &["show", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no request nope"));
}

fn tagged(tag: &str) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(Method::POST)
        .header("content-type", "application/json")
        .header("x-backstop-tag", tag)
        .body(Full::new(Bytes::from(chat("m").to_string())))
        .expect("request")
}

#[tokio::test]
async fn the_cli_summary_table_json_and_filters_match_what_was_sent() {
    let (h, dir) = journaled("").await;
    let url = h.url("/v1/chat/completions");
    let send = |tag: &str| {
        let mut r = tagged(tag);
        *r.uri_mut() = url.parse().expect("uri");
        h.client.call(r)
    };
    for _ in 0..3 {
        assert_eq!(send("quiz").await.status, StatusCode::OK);
    }
    h.mock.push(Fault::ServerError(503));
    assert_eq!(send("quiz").await.status, StatusCode::OK, "retried");
    h.mock.push_n(Fault::ServerError(503), 3);
    assert_eq!(send("essay").await.status, StatusCode::SERVICE_UNAVAILABLE);
    h.proxy.shutdown().await;

    let summary = stdout(&requests(dir.path(), &["--summary"]));
    assert!(
        summary.starts_with("requests: 5; failed: 1 (20.0%); retries: 3;"),
        "{summary}"
    );
    let row = |name: &str| {
        summary
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .map(|l| l.split_whitespace().take(5).collect::<Vec<_>>().join(" "))
    };
    assert_eq!(
        row("mock").as_deref(),
        Some("mock 5 1 20.0% 3"),
        "{summary}"
    );
    assert_eq!(row("quiz").as_deref(), Some("quiz 4 0 0.0% 1"), "{summary}");
    assert_eq!(
        row("essay").as_deref(),
        Some("essay 1 1 100.0% 2"),
        "{summary}"
    );

    let failed = stdout(&requests(dir.path(), &["--json", "--outcome", "failed"]));
    assert_eq!(failed.lines().count(), 1, "{failed}");
    assert!(failed.contains("\"tag\":\"essay\""), "{failed}");
    let quiz = stdout(&requests(dir.path(), &["--json", "--tag", "quiz"]));
    assert_eq!(quiz.lines().count(), 4);
    let none = stdout(&requests(dir.path(), &["--json", "--upstream", "other"]));
    assert_eq!(none, "");
    let recent = stdout(&requests(dir.path(), &["--json", "--since", "1h"]));
    assert_eq!(recent.lines().count(), 5);

    let table = stdout(&requests(dir.path(), &[]));
    let mut lines = table.lines();
    let header = lines.next().expect("header");
    assert!(
        header.starts_with("time (UTC)") && header.contains("outcome"),
        "{header}"
    );
    assert_eq!(lines.clone().count(), 5, "{table}");
    assert!(
        lines.any(|l| l.contains(" failed ") && l.contains("essay")),
        "{table}"
    );
}

#[tokio::test]
async fn torn_lines_are_skipped_with_a_note() {
    let dir = tempfile::tempdir().expect("tempdir");
    let today = backstop::failure_log::Micros::from_system(std::time::SystemTime::now()).day();
    let good = format!(
        "{{\"timestamp\":\"{today}T00:00:00.000000Z\",\"request_id\":\"a\",\"outcome\":\"ok\"}}\n"
    );
    std::fs::write(
        dir.path().join(format!("requests-{today}.jsonl")),
        format!("{good}{{\"timestamp\":\"{today}T00:00:01.0"),
    )
    .expect("seed");
    let out = requests(dir.path(), &["--json"]);
    assert_eq!(stdout(&out), good);
    assert!(String::from_utf8_lossy(&out.stderr).contains("skipped 1 unreadable line"));
}

#[test]
fn help_explains_the_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_backstop"))
        .args(["requests", "--help"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    for word in ["--summary", "--outcome", "show", "[journal]", "p50"] {
        assert!(text.contains(word), "{word} in {text}");
    }
}
