//! SPEC §9 "Memory under load": request bodies kept for replay share
//! `retry_buffer_total_bytes`; once it is spent new bodies are streamed once, so memory
//! does not grow with the number of large requests in flight.
//!
//! backstop runs as its own process here, so its memory is measured alone (the mock
//! upstream, in this process, keeps every body it receives).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use backstop::mock::{Fault, MockOptions, MockUpstream};
use bytes::Bytes;
use common::process::spawn_serve;
use common::scrape::Scrape;
use common::{TestClient, failure_log_toml};
use http::{Method, StatusCode};
use http_body_util::Full;

const BUDGET: u64 = 64 * 1024 * 1024;
const BODY: usize = 10 * 1024 * 1024;

/// A chat request whose one message is a long document: `BODY` bytes in all.
fn large_body() -> Bytes {
    let head = r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":""#;
    let tail = r#""}]}"#;
    let mut body = Vec::with_capacity(BODY);
    body.extend_from_slice(head.as_bytes());
    body.resize(BODY - tail.len(), b'a');
    body.extend_from_slice(tail.as_bytes());
    Bytes::from(body)
}

/// `VmHWM` (peak resident set) of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib * 1024
}

async fn metrics(admin: &TestClient) -> Scrape {
    let response = admin.get("/metrics").await;
    assert_eq!(response.status, StatusCode::OK);
    Scrape::parse(response.text())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_beyond_the_budget_are_streamed_once_and_memory_stays_bounded() {
    // A slow upstream: every request is in flight at once.
    let mock = MockUpstream::start_with(MockOptions {
        latency: Duration::from_secs(2),
        ..MockOptions::default()
    })
    .await
    .expect("mock starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("backstop.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
             retry_buffer_total_bytes = {BUDGET}\n{}\
             [retry]\nbase_delay = \"10ms\"\nthrottle_base_delay = \"10ms\"\n\
             [[upstream]]\nname = \"mock\"\nbase_url = \"{}\"\n",
            failure_log_toml(dir.path()),
            mock.url()
        ),
    )
    .expect("write config");
    let proxy = spawn_serve(&config).await;
    let pid = proxy.child.id().expect("backstop runs");
    let client = TestClient::new(proxy.proxy_addr);
    let admin = TestClient::new(proxy.admin_addr);
    let idle_rss = peak_rss(pid);

    // Watch the gauge while the requests run.
    let (highest, done) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let watcher = {
        let (highest, done, admin) = (highest.clone(), done.clone(), admin.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let held = metrics(&admin)
                    .await
                    .value("backstop_retry_buffer_bytes", &[]);
                highest.fetch_max(held as u64, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        })
    };

    let body = large_body();
    let send = |client: TestClient, body: Bytes| async move {
        let request = client
            .request(Method::POST, "/v1/chat/completions")
            .header("content-type", "application/json")
            .body(Full::new(body))
            .expect("request");
        client.call(request).await
    };
    let requests: Vec<_> = (0..40)
        .map(|_| tokio::spawn(send(client.clone(), body.clone())))
        .collect();
    for request in requests {
        let response = request.await.expect("request task");
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    }
    done.store(true, Ordering::Relaxed);
    watcher.await.expect("gauge watcher");

    let peak = peak_rss(pid);
    let scrape = metrics(&admin).await;
    let exhausted = scrape.value("backstop_retry_buffer_exhausted_total", &[]);
    let highest = highest.load(Ordering::Relaxed);
    eprintln!(
        "idle RSS {} MiB, peak RSS {} MiB, highest gauge {} MiB, {exhausted} of 40 bodies streamed once",
        idle_rss >> 20,
        peak >> 20,
        highest >> 20
    );
    assert!(peak < 200 << 20, "peak RSS {} MiB", peak >> 20);
    assert!(highest <= BUDGET, "gauge over the budget: {highest}");
    assert!(highest > 0, "some bodies were kept");
    // At most 6 bodies of 10 MiB fit in 64 MiB, and all 40 were in flight together.
    assert!(
        (34.0..=40.0).contains(&exhausted),
        "streamed once for lack of budget: {exhausted}"
    );
    assert_eq!(scrape.value("backstop_retry_buffer_bytes", &[]), 0.0);
    assert_eq!(mock.request_count(), 40);

    // With the budget free again, a large body is kept, and retried after a 503.
    mock.push(Fault::ServerError(503));
    let request = client
        .request(Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(body.clone()))
        .expect("request");
    let response = client.call(request).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.header("x-backstop-attempts"), Some("2"));
    let received = mock.received();
    assert_eq!(received.len(), 42);
    assert!(received[40..].iter().all(|r| r.body.len() == BODY));
    let scrape = metrics(&admin).await;
    assert_eq!(
        scrape.value("backstop_retry_buffer_exhausted_total", &[]),
        exhausted
    );
    assert_eq!(scrape.value("backstop_retry_buffer_bytes", &[]), 0.0);
}
