//! SPEC §6, the request journal end to end: exactly one record per request, whatever
//! its outcome, with its usage and request_sha256; response bodies kept byte-exact only
//! when asked; secrets and prompts never written; a disk that refuses never stops
//! proxying.

mod common;

use std::path::Path;
use std::time::Duration;

use backstop::mock::{Fault, StreamEnd, StreamScript};
use backstop::request_fingerprint::request_sha256;
use bytes::Bytes;
use common::{FAST, Harness, TestClient, chat, eventually, stream_request, timed_frames};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;

/// A `[journal]` table for `dir`, plus `more` keys.
pub fn journal_toml(dir: &Path, more: &str) -> String {
    format!("[journal]\ndir = {:?}\n{more}\n", dir.display().to_string())
}

/// Every journal record in `dir`, in file order; every line whole and JSON.
pub fn journal(dir: &Path) -> Vec<Value> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            assert!(
                name.starts_with("requests-") && name.ends_with(".jsonl"),
                "{name}"
            );
            let text = std::fs::read_to_string(f).expect("read journal file");
            assert!(text.is_empty() || text.ends_with('\n'), "whole lines only");
            text.lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("each line is JSON"))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// A backstop with a journal in its own temp dir.
async fn journaled(more: &str, extra: &str) -> (Harness, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::start_with(&format!(
        "{extra}\n{FAST}\n{}",
        journal_toml(dir.path(), more)
    ))
    .await;
    (h, dir)
}

/// Stops backstop (the journal writes and fsyncs on the way) and reads the journal.
async fn records_after_shutdown(h: Harness, dir: &Path) -> Vec<Value> {
    h.proxy.shutdown().await;
    journal(dir)
}

fn chat_request(client: &TestClient, body: &str) -> http::Request<Full<Bytes>> {
    client
        .request(Method::POST, "/v1/chat/completions?api-version=1")
        .header("content-type", "application/json")
        .header("x-backstop-tag", "quiz_generation")
        .header("idempotency-key", "batch-7-item-190")
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request")
}

#[tokio::test]
async fn a_200_is_one_ok_record_with_usage_and_request_sha256() {
    let (h, dir) = journaled("", "").await;
    let body = chat("gpt-4o-mini").to_string();
    let response = h.client.call(chat_request(&h.client, &body)).await;
    assert_eq!(response.status, StatusCode::OK);
    let id = response
        .header("x-backstop-request-id")
        .expect("id")
        .to_owned();

    let records = records_after_shutdown(h, dir.path()).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(r["request_id"], id.as_str());
    assert_eq!(r["outcome"], "ok");
    assert_eq!(
        (r["status"].as_u64(), r["attempts"].as_u64()),
        (Some(200), Some(1))
    );
    assert_eq!(r["upstream"], "mock");
    assert_eq!(r["method"], "POST");
    assert_eq!(r["endpoint"], "/v1/chat/completions", "no query");
    assert_eq!(r["model"], "gpt-4o-mini");
    assert_eq!(r["stream"], false);
    assert_eq!(r["tag"], "quiz_generation");
    assert_eq!(r["idempotency_key"], "batch-7-item-190");
    let want = request_sha256(&Method::POST, "/v1/chat/completions", body.as_bytes());
    assert_eq!(r["request_sha256"], want.to_string().as_str());
    assert!(
        r["usage"]["input_tokens"].as_u64().is_some_and(|n| n > 0),
        "{r}"
    );
    assert!(
        r["usage"]["output_tokens"].as_u64().is_some_and(|n| n > 0),
        "{r}"
    );
    assert!(r["duration_ms"].is_u64() && r["ttfc_ms"].is_u64(), "{r}");
    assert!(
        r["timestamp"]
            .as_str()
            .is_some_and(|t| t.len() == 27 && t.ends_with('Z'))
    );
    assert!(
        r.get("response").is_none(),
        "responses = false keeps no body: {r}"
    );
    assert!(r.get("response_truncated").is_none());
}

#[tokio::test]
async fn a_retried_then_200_request_is_one_ok_record_with_both_attempts() {
    let (h, dir) = journaled("", "").await;
    h.mock.push(Fault::ServerError(503));
    let response = h.client.post_json("/v1/chat/completions", chat("m")).await;
    assert_eq!(response.status, StatusCode::OK);
    let records = records_after_shutdown(h, dir.path()).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["outcome"], "ok");
    assert_eq!(records[0]["attempts"], 2);
    assert!(records[0]["usage"]["output_tokens"].is_u64());
}

#[tokio::test]
async fn a_503_in_the_end_is_one_failed_record() {
    let (h, dir) = journaled("", "").await;
    h.mock.push_n(Fault::ServerError(503), 3);
    let response = h.client.post_json("/v1/chat/completions", chat("m")).await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    let records = records_after_shutdown(h, dir.path()).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["outcome"], "failed");
    assert_eq!(records[0]["status"], 503);
    assert_eq!(records[0]["attempts"], 3);
    assert!(records[0].get("usage").is_none());
}

#[tokio::test]
async fn a_request_too_large_is_one_refused_record_without_attempts() {
    let (h, dir) = journaled("", "max_body_bytes = 64\nretry_buffer_bytes = 64").await;
    let big = format!(r#"{{"model":"m","pad":"{}"}}"#, "x".repeat(200));
    let response = h.client.call(chat_request(&h.client, &big)).await;
    assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(h.mock.request_count(), 0);
    let records = records_after_shutdown(h, dir.path()).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["outcome"], "refused");
    assert_eq!(records[0]["status"], 413);
    assert_eq!(records[0]["attempts"], 0);
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_is_one_client_gone_record() {
    let (h, dir) = journaled("", "").await;
    h.mock.push(Fault::Stream(StreamScript {
        end: StreamEnd::StallAfter(1),
        ..StreamScript::default()
    }));
    let response = h.client.send(stream_request(&h.client)).await;
    let mut body = response.into_body();
    let first = tokio::time::timeout(Duration::from_secs(10), body.frame()).await;
    assert!(matches!(first, Ok(Some(Ok(_)))), "the stream started");
    drop(body);
    let stats = h.proxy.journal_stats().expect("journal on");
    assert!(
        eventually(Duration::from_secs(5), || stats.records_written() == 1).await,
        "the record is written once the client is gone"
    );
    let records = records_after_shutdown(h, dir.path()).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["outcome"], "client_gone");
    assert_eq!(records[0]["stream"], true);
}

#[tokio::test]
async fn a_stream_broken_after_commit_is_one_interrupted_record() {
    let (h, dir) = journaled("", "").await;
    h.mock.push(Fault::Stream(StreamScript {
        end: StreamEnd::DieAfter(2),
        ..StreamScript::default()
    }));
    let response = h.client.send(stream_request(&h.client)).await;
    timed_frames(response.into_body(), Duration::from_secs(10)).await;
    let records = records_after_shutdown(h, dir.path()).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["outcome"], "interrupted");
    assert_eq!(records[0]["status"], 200);
}

#[tokio::test]
async fn no_api_key_or_prompt_reaches_the_journal() {
    const MARKER: &str = "sk-backstopMARKER0123456789abcdefXYZ";
    const PROMPT: &str = "PROMPTMARKER the secret plan";
    let (h, dir) = journaled("responses = true", "").await;
    let body = serde_json::json!({"model": "m", "messages": [{"role": "user", "content": PROMPT}]});
    let request = h
        .client
        .request(Method::POST, &format!("/v1/chat/completions?key={MARKER}"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {MARKER}"))
        .header("api-key", MARKER)
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    assert_eq!(h.client.call(request).await.status, StatusCode::OK);
    let records = records_after_shutdown(h, dir.path()).await;
    assert_eq!(records.len(), 1, "the journal was written");
    let text: String = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(!text.contains("backstopMARKER"), "{text}");
    assert!(!text.contains("PROMPTMARKER"), "{text}");
}

#[tokio::test]
async fn a_journal_dir_that_cannot_exist_leaves_proxying_at_200() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("file.txt");
    std::fs::write(&file, "not a directory").expect("write");
    let extra = format!(
        "{FAST}\n{}",
        journal_toml(&file.join("sub"), "responses = true")
    );
    let h = Harness::start_with(&extra).await;
    for _ in 0..3 {
        let response = h.client.post_json("/v1/chat/completions", chat("m")).await;
        assert_eq!(response.status, StatusCode::OK);
    }
    let stats = h.proxy.journal_stats().expect("journal on");
    assert!(
        eventually(Duration::from_secs(2), || stats.write_errors() > 0).await,
        "the failure is counted"
    );
    h.proxy.shutdown().await;
    assert_eq!(stats.records_written(), 0);
    assert_eq!(stats.records_dropped(), 3, "lost records are counted");
}

#[tokio::test]
async fn records_reach_the_file_within_half_a_second() {
    let (h, dir) = journaled("", "").await;
    h.client.post_json("/v1/chat/completions", chat("m")).await;
    assert!(
        eventually(Duration::from_millis(500), || journal(dir.path()).len()
            == 1)
        .await,
        "the record is in the file while the proxy runs"
    );
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn without_a_journal_table_nothing_is_journaled() {
    let h = Harness::start_with(FAST).await;
    h.client.post_json("/v1/chat/completions", chat("m")).await;
    assert!(h.proxy.journal_stats().is_none());
    assert!(h.proxy.config().journal.is_none());
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn a_client_that_leaves_before_the_response_head_is_one_client_gone_record() {
    let (h, dir) = journaled("", "").await;
    h.mock.push(Fault::Stall(Duration::from_secs(5)));
    let body = chat("m").to_string();
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(h.proxy.proxy_addr())
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut stream, request.as_bytes())
        .await
        .expect("write");
    assert!(h.mock.wait_for_requests(1, Duration::from_secs(5)).await);
    drop(stream);
    let stats = h.proxy.journal_stats().expect("journal on");
    assert!(
        eventually(Duration::from_secs(5), || stats.records_written() == 1).await,
        "the record is written once the client is gone"
    );
    let records = records_after_shutdown(h, dir.path()).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(r["outcome"], "client_gone");
    assert!(r.get("status").is_none(), "it got no status: {r}");
    assert_eq!(r["attempts"], 0, "the attempt under way had not ended");
    assert_eq!(r["upstream"], "mock");
    assert!(r["request_sha256"].is_string(), "{r}");
}
