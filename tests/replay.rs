//! SPEC §6, replay by `Idempotency-Key` end to end against the mock: a response paid
//! for once is given again without a second upstream call; scoped by credential; never
//! a non-2xx; across a restart; for `ttl` only; journaled as `replayed`. SDK retries
//! without a key are in `replay_sdk_retries.rs`.

mod common;

use std::path::Path;
use std::time::Duration;

use backstop::mock::{Fault, StreamScript};
use bytes::Bytes;
use common::replay::{ALICE, replay_toml, replaying};
use common::{FAST, Harness, TestClient, chat, scrape, within};
use http::{Method, StatusCode};
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn keyed(client: &TestClient, key: &str, auth: &str, body: &str) -> http::Request<Full<Bytes>> {
    client
        .request(Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", auth)
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request")
}

#[tokio::test]
async fn the_same_key_twice_is_one_upstream_call_with_the_same_response() {
    let (h, _dir) = replaying("", "").await;
    let body = chat("gpt-4o").to_string();
    let first = h
        .client
        .call(keyed(&h.client, "item-190", ALICE, &body))
        .await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("x-backstop-replayed"), None);
    let second = h
        .client
        .call(keyed(&h.client, "item-190", ALICE, &body))
        .await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(h.mock.request_count(), 1, "no second upstream call");
    assert_eq!(second.body, first.body, "byte for byte");
    assert_eq!(second.header("x-backstop-replayed"), Some("true"));
    let original = first.header("x-backstop-request-id").expect("id");
    assert_eq!(second.header("x-backstop-replay-of"), Some(original));
    assert_ne!(
        second.header("x-backstop-request-id"),
        Some(original),
        "its own id"
    );
    assert_eq!(
        second.header("x-backstop-attempts"),
        Some("0"),
        "no attempt"
    );
    assert_eq!(second.header("x-request-id"), first.header("x-request-id"));
    assert_eq!(second.header("content-type"), first.header("content-type"));
    let metrics = scrape(&h.proxy).await;
    let labels = [("upstream", "mock"), ("reason", "idempotency_key")];
    assert_eq!(metrics.value("backstop_replays_total", &labels), 1.0);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn a_stream_is_replayed_as_the_same_sse_bytes() {
    let (h, _dir) = replaying("", "").await;
    let body = serde_json::json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let first = h
        .client
        .call(keyed(&h.client, "stream-1", ALICE, &body))
        .await;
    assert!(
        first
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/event-stream"))
    );
    let second = h
        .client
        .call(keyed(&h.client, "stream-1", ALICE, &body))
        .await;
    assert_eq!(h.mock.request_count(), 1);
    assert_eq!(second.header("x-backstop-replayed"), Some("true"));
    assert_eq!(second.header("content-type"), first.header("content-type"));
    assert!(first.text().contains("data: [DONE]"), "{}", first.text());
    assert_eq!(second.body, first.body, "the same SSE bytes");
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn a_keyed_stream_whose_client_leaves_mid_stream_is_read_to_its_end_and_kept() {
    let (h, _dir) = replaying("", "").await;
    h.mock.push(Fault::Stream(StreamScript {
        chunks: 6,
        gap: Duration::from_millis(40),
        ..StreamScript::default()
    }));
    let body = serde_json::json!({"model": "m", "stream": true, "messages": []}).to_string();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         authorization: {ALICE}\r\nidempotency-key: left-mid-stream\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(h.proxy.proxy_addr())
        .await
        .expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    // Read until the first event has arrived, then leave with the rest still coming.
    let mut seen = Vec::new();
    let first_event = async {
        while !String::from_utf8_lossy(&seen).contains("data: ") {
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).await.expect("read");
            assert!(n > 0, "closed before the first event");
            seen.extend_from_slice(&buf[..n]);
        }
    };
    within(Duration::from_secs(5), first_event).await;
    drop(stream);
    // The rest of the stream is read without its client and kept: the repeat (which
    // joins it if it is still being read) gets every event, with no second call.
    let again = within(
        Duration::from_secs(5),
        h.client
            .call(keyed(&h.client, "left-mid-stream", ALICE, &body)),
    )
    .await;
    assert_eq!(again.header("x-backstop-replayed"), Some("true"));
    let text = again.text();
    assert_eq!(text.matches("chat.completion.chunk").count(), 6, "{text}");
    assert!(text.contains("data: [DONE]"), "{text}");
    assert_eq!(h.mock.request_count(), 1, "one upstream call");
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422_not_to_be_retried() {
    let (h, _dir) = replaying("", "").await;
    h.client
        .call(keyed(&h.client, "k", ALICE, &chat("a").to_string()))
        .await;
    let reused = h
        .client
        .call(keyed(&h.client, "k", ALICE, &chat("b").to_string()))
        .await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.json()["error"]["code"], "idempotency_key_reused");
    assert_eq!(reused.json()["error"]["type"], "backstop_error");
    assert_eq!(reused.header("x-should-retry"), Some("false"));
    assert_eq!(h.mock.request_count(), 1);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn the_same_key_with_another_credential_is_its_own_call() {
    let (h, _dir) = replaying("", "").await;
    let body = chat("m").to_string();
    h.client.call(keyed(&h.client, "k", ALICE, &body)).await;
    let bob = h
        .client
        .call(keyed(&h.client, "k", "Bearer sk-bob", &body))
        .await;
    assert_eq!(bob.status, StatusCode::OK);
    assert_eq!(bob.header("x-backstop-replayed"), None);
    assert_eq!(
        h.mock.request_count(),
        2,
        "two API keys never share a response"
    );
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn concurrent_duplicates_are_one_upstream_call_and_both_are_answered() {
    let (h, _dir) = replaying("", "").await;
    h.mock.push(Fault::Stall(Duration::from_millis(300)));
    let body = chat("m").to_string();
    let (a, b) = tokio::join!(
        h.client.call(keyed(&h.client, "dup", ALICE, &body)),
        async {
            assert!(h.mock.wait_for_requests(1, Duration::from_secs(5)).await);
            h.client.call(keyed(&h.client, "dup", ALICE, &body)).await
        }
    );
    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
    assert_eq!(a.body, b.body);
    assert_eq!(h.mock.request_count(), 1);
    assert_eq!(b.header("x-backstop-replayed"), Some("true"));
    let metrics = scrape(&h.proxy).await;
    assert_eq!(
        metrics.value("backstop_replay_joins_total", &[("upstream", "mock")]),
        1.0
    );
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn a_duplicate_waiting_on_a_first_that_fails_is_proxied_afresh() {
    let (h, _dir) = replaying("", "max_retries = 0").await;
    h.mock.push(Fault::Delayed(
        Duration::from_millis(300),
        Box::new(Fault::ServerError(503)),
    ));
    let body = chat("m").to_string();
    let (a, b) = tokio::join!(
        h.client.call(keyed(&h.client, "dup", ALICE, &body)),
        async {
            assert!(h.mock.wait_for_requests(1, Duration::from_secs(5)).await);
            h.client.call(keyed(&h.client, "dup", ALICE, &body)).await
        }
    );
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(b.status, StatusCode::OK, "the waiter went upstream itself");
    assert_eq!(b.header("x-backstop-replayed"), None);
    assert_eq!(h.mock.request_count(), 2);
    let metrics = scrape(&h.proxy).await;
    let joins = metrics.value("backstop_replay_joins_total", &[("upstream", "mock")]);
    assert_eq!(joins, 1.0, "it did wait first");
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn a_non_2xx_is_never_kept_and_the_repeat_goes_upstream() {
    let (h, _dir) = replaying("", "max_retries = 0").await;
    h.mock.push(Fault::ServerError(503));
    let body = chat("m").to_string();
    let first = h.client.call(keyed(&h.client, "k", ALICE, &body)).await;
    assert_eq!(first.status, StatusCode::SERVICE_UNAVAILABLE);
    let second = h.client.call(keyed(&h.client, "k", ALICE, &body)).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.header("x-backstop-replayed"), None);
    assert_eq!(h.mock.request_count(), 2);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn a_restart_between_the_two_still_replays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!("{FAST}\n{}", replay_toml(dir.path(), ""));
    let mock = backstop::mock::MockUpstream::start().await.expect("mock");
    let body = chat("m").to_string();
    let first = {
        let proxy = backstop::start(common::config(&mock.url(), &extra))
            .await
            .expect("start");
        let client = TestClient::new(proxy.proxy_addr());
        let first = client.call(keyed(&client, "k", ALICE, &body)).await;
        proxy.shutdown().await;
        first
    };
    let proxy = backstop::start(common::config(&mock.url(), &extra))
        .await
        .expect("restart");
    let client = TestClient::new(proxy.proxy_addr());
    let second = client.call(keyed(&client, "k", ALICE, &body)).await;
    assert_eq!(second.header("x-backstop-replayed"), Some("true"));
    assert_eq!(second.body, first.body);
    assert_eq!(mock.request_count(), 1);
    proxy.shutdown().await;
}

#[tokio::test]
async fn after_its_ttl_the_repeat_goes_upstream() {
    let (h, _dir) = replaying("ttl = \"1s\"", "").await;
    let body = chat("m").to_string();
    let started = std::time::Instant::now();
    h.client.call(keyed(&h.client, "k", ALICE, &body)).await;
    let again = h.client.call(keyed(&h.client, "k", ALICE, &body)).await;
    assert_eq!(
        again.header("x-backstop-replayed"),
        Some("true"),
        "within the ttl"
    );
    // Repeats are replayed until the entry expires; then one goes upstream.
    let mut fresh_at = None;
    for _ in 0..60 {
        let repeat = h.client.call(keyed(&h.client, "k", ALICE, &body)).await;
        if repeat.header("x-backstop-replayed").is_none() {
            fresh_at = Some(started.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let fresh_at = fresh_at.expect("expired within 3 s");
    assert!(fresh_at >= Duration::from_secs(1), "{fresh_at:?}");
    assert_eq!(h.mock.request_count(), 2);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn a_key_over_255_characters_is_400() {
    let (h, _dir) = replaying("", "").await;
    let long = "k".repeat(256);
    let response = h
        .client
        .call(keyed(&h.client, &long, ALICE, &chat("m").to_string()))
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.json()["error"]["code"], "invalid_idempotency_key");
    assert_eq!(h.mock.request_count(), 0);
    h.proxy.shutdown().await;
}

/// Every journal record in `dir` (one file per day).
fn journal(dir: &Path) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(dir)
        .expect("journal dir")
        .filter_map(Result::ok)
    {
        let text = std::fs::read_to_string(entry.path()).expect("read");
        lines.extend(
            text.lines()
                .map(|l| serde_json::from_str(l).expect("JSON line")),
        );
    }
    lines
}

#[tokio::test]
async fn the_journal_records_a_replay_as_replayed_of_the_original() {
    let journal_dir = tempfile::tempdir().expect("tempdir");
    let extra = format!(
        "[journal]\ndir = {:?}\n",
        journal_dir.path().display().to_string()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::start_with(&format!("{extra}\n{FAST}\n{}", replay_toml(dir.path(), ""))).await;
    let body = chat("m").to_string();
    let first = h.client.call(keyed(&h.client, "k", ALICE, &body)).await;
    let second = h.client.call(keyed(&h.client, "k", ALICE, &body)).await;
    h.proxy.shutdown().await;
    let records = journal(journal_dir.path());
    assert_eq!(records.len(), 2, "{records:#?}");
    let original = first.header("x-backstop-request-id").expect("id");
    let replay = records
        .iter()
        .find(|r| r["request_id"] == second.header("x-backstop-request-id").expect("id"))
        .expect("the replay's record");
    assert_eq!(replay["outcome"], "replayed");
    assert_eq!(replay["replay_of"], original);
    assert_eq!(replay["attempts"], 0);
    assert_eq!(replay["status"], 200);
    assert_eq!(replay["idempotency_key"], "k");
    let paid = records
        .iter()
        .find(|r| r["request_id"] == original)
        .expect("original");
    assert_eq!(paid["outcome"], "ok");
    assert!(paid.get("replay_of").is_none());
    // Neither a key nor a prompt reaches the store's files.
    for entry in std::fs::read_dir(dir.path())
        .expect("store")
        .filter_map(Result::ok)
    {
        let bytes = std::fs::read(entry.path()).expect("read");
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains("sk-alice") && !text.contains("\"hi\""),
            "{text}"
        );
    }
}

#[tokio::test]
async fn a_store_that_cannot_be_written_leaves_proxying_at_200() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("file.txt");
    std::fs::write(&file, "not a directory").expect("write");
    let extra = format!("{FAST}\n{}", replay_toml(&file.join("sub"), ""));
    let h = Harness::start_with(&extra).await;
    let body = chat("m").to_string();
    for _ in 0..3 {
        let response = h.client.call(keyed(&h.client, "k", ALICE, &body)).await;
        assert_eq!(response.status, StatusCode::OK);
    }
    assert!(h.mock.request_count() >= 1);
    h.proxy.shutdown().await;
}
