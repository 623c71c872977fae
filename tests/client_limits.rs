//! SPEC §9 "Client connections": `client_header_timeout`, `client_idle_timeout` and
//! `max_connections` hold off clients that keep connections hostage, and never cut a
//! request in progress (an SSE stream, a slow request body).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use backstop::mock::{Fault, StreamEnd, StreamScript};
use common::{Harness, TestClient, raw_exchange, scrape, sse_data, timed_frames};
use http::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads from `stream` until the peer closes it (EOF or reset); `None` if it is still
/// open at `limit`. Everything read is discarded.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(limit, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    closed.ok().map(|()| start.elapsed())
}

/// Reads one response (head and `content-length` body) from a keep-alive connection.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("response in time")
            .expect("read");
        assert!(
            n > 0,
            "closed mid-response: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .expect("content-length");
            if got.len() >= end + 4 + length {
                return text;
            }
        }
    }
}

const MODELS: &[u8] = b"GET /v1/models HTTP/1.1\r\nHost: backstop\r\n\r\n";
const MODELS_THEN_CLOSE: &[u8] =
    b"GET /v1/models HTTP/1.1\r\nHost: backstop\r\nConnection: close\r\n\r\n";

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.expect("connect")
}

#[tokio::test]
async fn silent_and_half_sent_connections_are_closed_at_the_header_timeout() {
    let header_timeout = Duration::from_secs(2);
    let h = Harness::start_with("client_header_timeout = \"2s\"").await;
    let addr = h.proxy.proxy_addr();
    let opened = Instant::now();
    let mut hostages = Vec::new();
    for _ in 0..300 {
        hostages.push(connect(addr).await);
    }
    for _ in 0..10 {
        let mut half = connect(addr).await;
        half.write_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: backstop\r\nContent-Type: app",
        )
        .await
        .expect("write half a head");
        hostages.push(half);
    }

    // Meanwhile, normal requests go through.
    for _ in 0..5 {
        let response = TestClient::new(addr).get("/v1/models").await;
        assert_eq!(response.status, StatusCode::OK);
    }

    let limit = header_timeout + Duration::from_secs(1);
    for (i, stream) in hostages.iter_mut().enumerate() {
        let left = limit.saturating_sub(opened.elapsed());
        assert!(
            closed_within(stream, left).await.is_some(),
            "connection {i} still open {:?} after it was opened",
            opened.elapsed()
        );
    }
    let response = TestClient::new(addr).get("/v1/models").await;
    assert_eq!(response.status, StatusCode::OK, "still serving");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_not_before() {
    // The idle timeout is the longer one here: an idle connection outlives the header
    // timeout, and is closed at its own.
    let h =
        Harness::start_with("client_header_timeout = \"1s\"\nclient_idle_timeout = \"3s\"").await;
    let mut stream = connect(h.proxy.proxy_addr()).await;
    stream.write_all(MODELS).await.expect("write");
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));

    // Idle for longer than the header timeout: still open for the next request.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    stream.write_all(MODELS).await.expect("write");
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));

    let idle_from = Instant::now();
    let closed = closed_within(&mut stream, Duration::from_secs(6))
        .await
        .expect("closed once idle for client_idle_timeout");
    assert!(
        closed >= Duration::from_millis(2900),
        "closed after {closed:?}, before client_idle_timeout"
    );
    assert!(
        idle_from.elapsed() < Duration::from_millis(4500),
        "{closed:?}"
    );
}

#[tokio::test]
async fn a_stream_with_a_pause_longer_than_both_timeouts_is_not_cut() {
    let h =
        Harness::start_with("client_header_timeout = \"1s\"\nclient_idle_timeout = \"1s\"").await;
    h.mock.push(Fault::Stream(StreamScript {
        chunks: 3,
        gap: Duration::from_millis(2500),
        end: StreamEnd::Done,
        ..StreamScript::default()
    }));
    let response = h.client.send(common::stream_request(&h.client)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let frames = timed_frames(response.into_body(), Duration::from_secs(20)).await;
    let bytes: Vec<u8> = frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
    let events = sse_data(&bytes);
    assert_eq!(events.len(), 4, "3 chunks and [DONE]: {events:?}");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn a_slow_request_body_is_not_cut_by_the_client_timeouts() {
    let h =
        Harness::start_with("client_header_timeout = \"1s\"\nclient_idle_timeout = \"1s\"").await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    let (first, rest) = body.as_bytes().split_at(body.len() / 2);
    let mut stream = connect(h.proxy.proxy_addr()).await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: backstop\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream.write_all(first).await.expect("first half");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stream.write_all(rest).await.expect("second half");
    assert!(read_response(&mut stream).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn connections_over_max_connections_are_closed_unanswered_and_counted() {
    let h = Harness::start_with("max_connections = 50").await;
    let addr = h.proxy.proxy_addr();
    let mut held = Vec::new();
    for _ in 0..50 {
        held.push(connect(addr).await);
    }
    // Each of the 50 is answered, so all are accepted and counted open.
    for stream in &mut held {
        stream.write_all(MODELS).await.expect("write");
        assert!(read_response(stream).await.starts_with("HTTP/1.1 200"));
    }

    let answer = raw_exchange(addr, MODELS_THEN_CLOSE, Duration::from_secs(5)).await;
    assert_eq!(answer, "", "the 51st connection is closed unanswered");
    let refused = scrape(&h.proxy)
        .await
        .value("backstop_connections_refused_total", &[]);
    assert_eq!(refused, 1.0);

    // Ten close; a new connection is served once backstop has seen them go (a
    // bounded poll: each try is a fresh connection).
    held.truncate(40);
    let mut answer = String::new();
    for _ in 0..100 {
        answer = raw_exchange(addr, MODELS_THEN_CLOSE, Duration::from_secs(5)).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "a new connection is served once others closed: {answer:?}"
    );
}
