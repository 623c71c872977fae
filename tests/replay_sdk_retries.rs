//! SPEC §6, SDK retries without a key, end to end: a call whose client gave up is
//! finished and its response given to the SDK's retry (`x-stainless-retry-count` ≥ 1)
//! without a second upstream call; a request without the header, or whose client got
//! its answer, is never matched; an abandoned stream without a key is cancelled.

mod common;

use std::time::Duration;

use backstop::mock::{Fault, StreamEnd, StreamScript};
use bytes::Bytes;
use common::replay::{ALICE, replaying};
use common::{Harness, TestClient, chat, scrape, within};
use http::{Method, StatusCode};
use http_body_util::Full;
use tokio::io::AsyncWriteExt;

/// Writes `body` as try `retry` of the SDK would, on a raw connection left open
/// (closed by backstop after the response).
async fn send(h: &Harness, body: &str, retry: u32) -> tokio::net::TcpStream {
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
         content-type: application/json\r\n\
         authorization: {ALICE}\r\nx-stainless-retry-count: {retry}\r\n\
         x-stainless-read-timeout: 0.2\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(h.proxy.proxy_addr())
        .await
        .expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    stream
}

#[tokio::test]
async fn a_joined_retry_waits_past_its_read_timeout_and_never_calls_the_upstream() {
    let (h, _dir) = replaying("", "").await;
    h.mock.push(Fault::Stall(Duration::from_millis(600)));
    let body = chat("m").to_string();
    send_and_leave(&h, &body, 0, 1).await;
    // Try 1 joins the call in flight; its 0.2 s read timeout passes while it waits
    // (its client stays): it keeps waiting rather than calling the upstream again.
    let mut joined = send(&h, &body, 1).await;
    let mut answer = Vec::new();
    let read = tokio::io::AsyncReadExt::read_to_end(&mut joined, &mut answer);
    within(Duration::from_secs(5), read).await.expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("x-backstop-replayed: true"), "{answer}");
    let last = h.client.call(sdk_retry(&h.client, &body, Some(2))).await;
    assert_eq!(last.header("x-backstop-replayed"), Some("true"));
    assert_eq!(
        h.mock.request_count(),
        1,
        "one upstream call for three tries"
    );
    let metrics = scrape(&h.proxy).await;
    let joins = metrics.value("backstop_replay_joins_total", &[("upstream", "mock")]);
    assert_eq!(joins, 1.0);
    h.proxy.shutdown().await;
}

/// Sends `body` as an SDK retry would (`x-stainless-retry-count: retry`) on a raw
/// connection, and closes it once the mock has seen `seen` requests: a client that
/// timed out.
async fn send_and_leave(h: &Harness, body: &str, retry: u32, seen: usize) {
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         authorization: {ALICE}\r\nx-stainless-retry-count: {retry}\r\n\
         x-stainless-read-timeout: 0.2\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(h.proxy.proxy_addr())
        .await
        .expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write");
    assert!(h.mock.wait_for_requests(seen, Duration::from_secs(5)).await);
    drop(stream);
}

fn sdk_retry(client: &TestClient, body: &str, retry: Option<u32>) -> http::Request<Full<Bytes>> {
    let mut request = client
        .request(Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", ALICE);
    if let Some(n) = retry {
        request = request.header("x-stainless-retry-count", n.to_string());
    }
    request
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request")
}

#[tokio::test]
async fn an_sdk_retry_gets_the_abandoned_call_finished_for_it() {
    let (h, _dir) = replaying("", "").await;
    h.mock.push(Fault::Stall(Duration::from_millis(400)));
    let body = chat("m").to_string();
    send_and_leave(&h, &body, 0, 1).await;
    // The first call is finished without its client (not cut at its 0.2 s read
    // timeout); the retry joins it or finds it kept.
    let retry = h.client.call(sdk_retry(&h.client, &body, Some(1))).await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.header("x-backstop-replayed"), Some("true"));
    assert_eq!(h.mock.request_count(), 1, "one upstream call for both");
    let kept_too = h.client.call(sdk_retry(&h.client, &body, Some(2))).await;
    assert_eq!(kept_too.header("x-backstop-replayed"), Some("true"));
    let metrics = scrape(&h.proxy).await;
    let labels = [("upstream", "mock"), ("reason", "sdk_retry")];
    assert_eq!(metrics.value("backstop_replays_total", &labels), 2.0);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn without_the_retry_header_or_after_a_full_answer_nothing_is_matched() {
    let (h, _dir) = replaying("", "").await;
    let body = chat("m").to_string();
    let first = h.client.call(sdk_retry(&h.client, &body, Some(0))).await;
    assert_eq!(first.status, StatusCode::OK);
    let plain = h.client.call(sdk_retry(&h.client, &body, None)).await;
    assert_eq!(
        plain.header("x-backstop-replayed"),
        None,
        "no header, no match"
    );
    let retry = h.client.call(sdk_retry(&h.client, &body, Some(1))).await;
    assert_eq!(
        retry.header("x-backstop-replayed"),
        None,
        "the first client got it in full"
    );
    assert_eq!(h.mock.request_count(), 3);
    h.proxy.shutdown().await;
}

#[tokio::test]
async fn an_abandoned_stream_without_a_key_is_cancelled_not_finished() {
    let (h, _dir) = replaying("", "").await;
    h.mock.push(Fault::Stream(StreamScript {
        end: StreamEnd::StallAfter(1),
        ..StreamScript::default()
    }));
    let body = serde_json::json!({"model": "m", "stream": true, "messages": []}).to_string();
    send_and_leave(&h, &body, 0, 1).await;
    let (cancelled, _) = common::scrape_until(&h.proxy, Duration::from_secs(5), |s| {
        s.value("backstop_in_flight_requests", &[("upstream", "mock")]) == 0.0
    })
    .await;
    assert!(cancelled, "the stream was cancelled when its client left");
    let retry = within(
        Duration::from_secs(5),
        h.client.call(sdk_retry(&h.client, &body, Some(1))),
    )
    .await;
    assert_eq!(
        retry.header("x-backstop-replayed"),
        None,
        "a stopped stream stops billing"
    );
    h.proxy.shutdown().await;
}
