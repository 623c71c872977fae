//! SPEC §5 lifecycle: readiness, draining on SIGTERM (streams finish), SIGHUP reload.

mod common;

use std::time::Duration;

use backstop::mock::{Fault, MockUpstream, StreamEnd, StreamScript};
use bytes::Bytes;
use common::process::{signal, spawn_serve, wait_for_log};
use common::{
    Harness, TestClient, config, eventually, sse_data, stream_request, timed_frames, within,
};
use http::{Method, StatusCode};
use http_body_util::Full;

fn slow_stream(chunks: usize, gap_ms: u64) -> Fault {
    Fault::Stream(StreamScript {
        chunks,
        gap: Duration::from_millis(gap_ms),
        end: StreamEnd::Done,
        first_event_delay: Duration::ZERO,
        ..StreamScript::default()
    })
}

#[tokio::test]
async fn healthz_and_readyz_answer_on_the_admin_port() {
    let h = Harness::start().await;
    let admin = TestClient::new(h.proxy.admin_addr());
    assert_eq!(admin.get("/healthz").await.status, StatusCode::OK);
    let ready = admin.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.text(), "ready\n");
    assert_eq!(admin.get("/nope").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn shutdown_lets_an_open_stream_finish_and_reports_draining() {
    let h = Harness::start().await;
    h.mock.push(slow_stream(8, 100));
    let admin = TestClient::new(h.proxy.admin_addr());
    let response = h.client.send(stream_request(&h.client)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let reading = tokio::spawn(timed_frames(response.into_body(), Duration::from_secs(10)));

    let shutdown = tokio::spawn(h.proxy.shutdown());
    // While draining, /readyz says so (the admin listener stays up until the end).
    let readyz = within(Duration::from_secs(5), async {
        loop {
            let r = admin.get("/readyz").await;
            if r.status == StatusCode::SERVICE_UNAVAILABLE {
                return r.text();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(readyz, "draining\n");

    let frames = reading.await.expect("reader");
    let bytes: Vec<u8> = frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
    let events = sse_data(&bytes);
    assert_eq!(
        events.len(),
        9,
        "all 8 chunks and [DONE] arrived: {events:?}"
    );
    within(Duration::from_secs(10), shutdown)
        .await
        .expect("shutdown finished");
}

#[tokio::test]
async fn shutdown_cuts_streams_still_open_after_the_grace_period() {
    let mock = MockUpstream::start().await.expect("mock");
    mock.push(slow_stream(1000, 100));
    let proxy = backstop::start(config(&mock.url(), "shutdown_grace = \"300ms\""))
        .await
        .expect("start");
    let client = TestClient::new(proxy.proxy_addr());
    let response = client.send(stream_request(&client)).await;
    let reading = tokio::spawn(timed_frames(response.into_body(), Duration::from_secs(30)));
    within(Duration::from_secs(5), proxy.shutdown()).await;
    let frames = within(Duration::from_secs(5), reading)
        .await
        .expect("reader");
    assert!(frames.len() < 100, "the stream was cut at the grace period");
}

#[tokio::test]
async fn reload_swaps_the_upstream_for_new_requests() {
    let first = MockUpstream::start().await.expect("mock");
    let second = MockUpstream::start().await.expect("mock");
    let proxy = backstop::start(config(&first.url(), ""))
        .await
        .expect("start");
    let client = TestClient::new(proxy.proxy_addr());
    client.get("/v1/models").await;
    proxy.reload(config(&second.url(), "")).expect("reload");
    client.get("/v1/models").await;
    assert_eq!(first.request_count(), 1);
    assert_eq!(second.request_count(), 1);
}

#[tokio::test]
async fn sigterm_drains_an_open_stream_and_exits_zero() {
    let mock = MockUpstream::start().await.expect("mock");
    mock.push(slow_stream(6, 100));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("backstop.toml");
    std::fs::write(&file, config_text(&mock.url())).expect("write config");
    let mut proxy = spawn_serve(&file).await;

    let client = TestClient::new(proxy.proxy_addr);
    let response = client.send(stream_request(&client)).await;
    let reading = tokio::spawn(timed_frames(response.into_body(), Duration::from_secs(10)));
    signal(&proxy.child, "TERM");
    wait_for_log(&mut proxy.logs, "draining", Duration::from_secs(5)).await;

    let frames = reading.await.expect("reader");
    let bytes: Vec<u8> = frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
    assert_eq!(
        sse_data(&bytes).len(),
        7,
        "the stream finished after SIGTERM"
    );
    let status = within(Duration::from_secs(10), proxy.child.wait())
        .await
        .expect("exit");
    assert_eq!(status.code(), Some(0));
}

#[tokio::test]
async fn sighup_swaps_config_and_an_invalid_reload_keeps_the_old_one() {
    let first = MockUpstream::start().await.expect("mock");
    let second = MockUpstream::start().await.expect("mock");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("backstop.toml");
    std::fs::write(&file, config_text(&first.url())).expect("write config");
    let mut proxy = spawn_serve(&file).await;
    let client = TestClient::new(proxy.proxy_addr);

    client.get("/v1/models").await;
    assert_eq!(first.request_count(), 1);

    std::fs::write(&file, config_text(&second.url())).expect("write config");
    signal(&proxy.child, "HUP");
    wait_for_log(&mut proxy.logs, "config reloaded", Duration::from_secs(5)).await;
    client.get("/v1/models").await;
    assert_eq!(
        second.request_count(),
        1,
        "new requests go to the new upstream"
    );

    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nbogus_key = 1\n").expect("write config");
    signal(&proxy.child, "HUP");
    let refused = wait_for_log(&mut proxy.logs, "reload refused", Duration::from_secs(5)).await;
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or_default()
            .contains("bogus_key"),
        "{refused}"
    );
    let response = client.get("/v1/models").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(second.request_count(), 2, "the old config still serves");
    assert!(eventually(Duration::from_secs(1), || first.request_count() == 1).await);

    signal(&proxy.child, "TERM");
    let status = within(Duration::from_secs(10), proxy.child.wait())
        .await
        .expect("exit");
    assert_eq!(status.code(), Some(0));
}

fn config_text(base_url: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace = \"10s\"\n\
         [[upstream]]\nname = \"mock\"\nbase_url = \"{base_url}\"\n"
    )
}

#[tokio::test]
async fn debug_logs_never_contain_keys_or_prompt_text() {
    let mock = MockUpstream::start().await.expect("mock");
    mock.push(Fault::ServerError(503));
    mock.push(Fault::Respond {
        status: 400,
        headers: vec![],
        body: r#"{"error":{"message":"bad","code":"invalid"}}"#.into(),
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("backstop.toml");
    let text = format!(
        "{}[retry]\nbase_delay = \"1ms\"\n[failure_log]\ndir = \"{}\"\n",
        config_text(&mock.url()),
        dir.path().join("failures").display()
    );
    std::fs::write(&file, text).expect("write config");
    let mut proxy = common::process::spawn_serve_logging(&file, "debug").await;
    let client = TestClient::new(proxy.proxy_addr);
    for _ in 0..2 {
        let request = client
            .request(Method::POST, "/v1/chat/completions?key=sk-MARKER-query-key")
            .header("authorization", "Bearer sk-MARKER-bearer-key")
            .header("api-key", "sk-MARKER-api-key")
            .body(Full::new(Bytes::from(
                r#"{"model":"m","messages":[{"role":"user","content":"PROMPT-MARKER secret text"}]}"#,
            )))
            .expect("request");
        client.call(request).await;
    }
    signal(&proxy.child, "TERM");
    within(Duration::from_secs(10), proxy.child.wait())
        .await
        .expect("exit");
    let mut logged = String::new();
    // The reader task ends at EOF; take every line it read.
    while let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(2), proxy.logs.recv()).await
    {
        logged.push_str(&line.to_string());
        logged.push('\n');
    }
    assert!(logged.contains("retrying"), "debug logs were on: {logged}");
    assert!(
        !logged.contains("MARKER"),
        "a secret or prompt reached the logs:\n{logged}"
    );
}
