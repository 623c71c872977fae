//! Upstream connections: kept open and reused between requests, replaced when the
//! upstream closed them, closed when idle too long — never at the cost of an attempt.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{TestClient, config, eventually};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BODY: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[]}"#;

/// How the counting upstream ends each exchange.
#[derive(Clone, Copy)]
enum After {
    /// Keep the connection for the next request.
    KeepAlive,
    /// Say `connection: close` and close.
    SayClose,
    /// Close silently right after the response, as a server whose keep-alive timeout is
    /// shorter than backstop's pool timeout does.
    CloseSilently,
}

/// A raw HTTP/1.1 upstream that counts connections accepted and still open.
struct Upstream {
    url: String,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
}

/// Accepts connections, counting them, and serves each with `serve`.
async fn counting_upstream<F, Fut>(serve: F) -> Upstream
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let accepted = Arc::new(AtomicUsize::new(0));
    let open = Arc::new(AtomicUsize::new(0));
    let (a, o) = (accepted.clone(), open.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            o.fetch_add(1, Ordering::SeqCst);
            let (open, served) = (o.clone(), serve(stream));
            tokio::spawn(async move {
                served.await;
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Upstream {
        url,
        accepted,
        open,
    }
}

async fn upstream(after: After) -> Upstream {
    counting_upstream(move |stream| answer_after_body(stream, after)).await
}

async fn answer_after_body(mut stream: TcpStream, after: After) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = stream.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = request_end(&buf) else {
            continue;
        };
        buf.drain(..end);
        let close = matches!(after, After::SayClose);
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n",
            BODY.len(),
            if close { "connection: close\r\n" } else { "" }
        );
        let sent = stream.write_all(format!("{head}{BODY}").as_bytes()).await;
        if sent.is_err() || !matches!(after, After::KeepAlive) {
            break;
        }
    }
}

/// The end of one request (head plus its content-length body) in `buf`.
fn request_end(buf: &[u8]) -> Option<usize> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let length = content_length(&head);
    (buf.len() >= head_end + length).then_some(head_end + length)
}

/// `content-length` of a lower-cased request head (0 without one).
fn content_length(head: &str) -> usize {
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0)
}

async fn proxy(up: &Upstream, extra: &str) -> (backstop::Running, TestClient) {
    let proxy = backstop::start(config(&up.url, extra))
        .await
        .expect("backstop starts");
    let client = TestClient::new(proxy.proxy_addr());
    (proxy, client)
}

async fn chat(client: &TestClient) -> common::Collected {
    client
        .post_json("/v1/chat/completions", json!({"model": "gpt-4o-mini"}))
        .await
}

#[tokio::test]
async fn sequential_requests_reuse_one_upstream_connection() {
    let up = upstream(After::KeepAlive).await;
    let (_proxy, client) = proxy(&up, "").await;
    for _ in 0..10 {
        let r = chat(&client).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), BODY);
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn concurrent_requests_open_connections_that_are_then_reused() {
    let up = upstream(After::KeepAlive).await;
    let (_proxy, client) = proxy(&up, "").await;
    for _ in 0..3 {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let client = client.clone();
            batch.spawn(async move { chat(&client).await.status });
        }
        while let Some(status) = batch.join_next().await {
            assert_eq!(status.expect("request task"), 200);
        }
    }
    // At most one connection per request in flight, however many batches follow.
    let accepted = up.accepted.load(Ordering::SeqCst);
    assert!((1..=8).contains(&accepted), "{accepted} connections");
}

#[tokio::test]
async fn connection_close_from_the_upstream_costs_no_attempt() {
    let up = upstream(After::SayClose).await;
    let (_proxy, client) = proxy(&up, "").await;
    for _ in 0..5 {
        let r = chat(&client).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-backstop-attempts"), Some("1"));
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn a_connection_closed_while_idle_is_replaced_before_the_request_goes_out() {
    let up = upstream(After::CloseSilently).await;
    let (_proxy, client) = proxy(&up, "").await;
    for _ in 0..5 {
        let r = chat(&client).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-backstop-attempts"), Some("1"));
        // The upstream closes after answering; once that is seen, the pooled
        // connection must not be used again.
        assert!(
            eventually(Duration::from_secs(5), || up.open.load(Ordering::SeqCst)
                == 0)
            .await
        );
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 5);
}

#[tokio::test]
async fn idle_connections_are_closed_after_pool_idle_timeout() {
    let up = upstream(After::KeepAlive).await;
    let (_proxy, client) = proxy(&up, "pool_idle_timeout = \"300ms\"").await;
    assert_eq!(chat(&client).await.status, 200);
    assert_eq!(up.open.load(Ordering::SeqCst), 1);
    assert!(
        eventually(Duration::from_secs(5), || up.open.load(Ordering::SeqCst)
            == 0)
        .await,
        "the idle connection was never closed"
    );
    // And the next request simply opens a new one.
    assert_eq!(chat(&client).await.status, 200);
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);
}

/// An upstream that answers a request marked `x-early: 1` as soon as its head arrives,
/// then reads the body it was sent; any other request is answered after its body.
async fn early_answering_upstream() -> Upstream {
    counting_upstream(answer_early_when_asked).await
}

async fn answer_early_when_asked(mut stream: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    'conn: loop {
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => break 'conn,
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        buf.drain(..head_end);
        let length = content_length(&head);
        let early = head.contains("x-early: 1");
        let (status, body) = if early {
            (
                "400 Bad Request",
                r#"{"error":{"message":"no","type":"invalid_request_error"}}"#,
            )
        } else {
            ("200 OK", BODY)
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if early && stream.write_all(response.as_bytes()).await.is_err() {
            break;
        }
        while buf.len() < length {
            match stream.read(&mut chunk).await {
                Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => break 'conn,
            }
        }
        buf.drain(..length);
        if !early && stream.write_all(response.as_bytes()).await.is_err() {
            break;
        }
    }
}

#[tokio::test]
async fn a_connection_still_sending_a_request_body_is_not_lent_to_the_next_request() {
    let up = early_answering_upstream().await;
    let (proxy, client) = proxy(&up, "retry_buffer_bytes = 1000").await;

    // A client streams a large body slowly; the upstream answers 400 after the head.
    let mut slow = tokio::net::TcpStream::connect(proxy.proxy_addr())
        .await
        .expect("connect");
    let head = "POST /v1/chat/completions HTTP/1.1\r\nhost: backstop\r\n\
                content-type: application/json\r\nx-early: 1\r\ncontent-length: 100000\r\n\r\n";
    slow.write_all(head.as_bytes()).await.expect("head");
    slow.write_all(&[b' '; 20_000]).await.expect("first part");
    let mut answer = vec![0u8; 4096];
    let n = common::within(Duration::from_secs(10), slow.read(&mut answer))
        .await
        .expect("read");
    assert!(
        String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );

    // The upstream connection is still busy with the first body: the next request must
    // not wait for it.
    let started = std::time::Instant::now();
    let r = common::within(Duration::from_secs(5), chat(&client)).await;
    assert_eq!(r.status, 200);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(up.accepted.load(Ordering::SeqCst), 2);

    // Once the first body is done, its connection is reused.
    slow.write_all(&[b' '; 80_000]).await.expect("rest");
    assert!(
        eventually(Duration::from_secs(5), || client_idle(&proxy) == 2).await,
        "both connections back in the pool"
    );
}

fn client_idle(proxy: &backstop::Running) -> usize {
    proxy.idle_upstream_connections("mock")
}
