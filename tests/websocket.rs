//! WebSockets through backstop (SPEC §9), with a real client (Python `websockets`, and
//! the openai SDK's Realtime client) and the mock upstream's WebSocket endpoint.
//!
//! Needs `.venv` from `scripts/test` (or BACKSTOP_TEST_PYTHON); BACKSTOP_SKIP_PYTHON=1
//! skips deliberately.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use backstop::mock::{Fault, MockUpstream};
use common::{eventually, scrape_until};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/ws_client.py");

fn python() -> Option<PathBuf> {
    if std::env::var_os("BACKSTOP_SKIP_PYTHON").is_some() {
        eprintln!("skipped: BACKSTOP_SKIP_PYTHON is set");
        return None;
    }
    let python = std::env::var_os("BACKSTOP_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python")));
    assert!(
        python.exists(),
        "no Python at {}: run scripts/test",
        python.display()
    );
    Some(python)
}

/// Runs `ws_client.py MODE TARGET` to completion; panics with its output on failure.
async fn client(python: &Path, mode: &str, target: &str) -> String {
    let out = common::within(
        Duration::from_secs(60),
        Command::new(python)
            .args([SCRIPT, mode, target])
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run python");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{mode} failed:\n{stdout}\n{stderr}");
    stdout
}

/// Two upstreams on one mock: OpenAI-style at `/`, Azure-style at `/openai/`, both
/// with an injected key, and a failure log in `dir`.
fn config(mock: &MockUpstream, dir: &Path) -> backstop::Config {
    let text = format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{}\
         [retry]\nbase_delay = \"10ms\"\nthrottle_base_delay = \"10ms\"\n\
         [[upstream]]\nname = \"mock\"\nbase_url = \"{url}\"\napi_key_env = \"KEY\"\n\
         [[upstream]]\nname = \"azure\"\nkind = \"azure\"\nbase_url = \"{url}\"\n\
         path_prefix = \"/openai/\"\napi_key_env = \"KEY\"\n",
        common::failure_log_toml(dir),
        url = mock.url()
    );
    let env = |name: &str| (name == "KEY").then(|| "sk-injected".to_owned());
    backstop::Config::from_toml(&text, &env).expect("config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_talks_through_backstop_byte_exact_and_either_side_closes() {
    let Some(python) = python() else { return };
    let mock = MockUpstream::start().await.expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let proxy = backstop::start(config(&mock, dir.path()))
        .await
        .expect("start");
    let ws = format!("ws://{}", proxy.proxy_addr());

    client(&python, "echo", &format!("{ws}/v1/echo")).await;
    client(&python, "server-close", &format!("{ws}/openai/echo")).await;

    // The upstream saw backstop's key, sent the way each kind expects, and not the client's.
    let handshakes = mock.received();
    let (openai, azure) = (&handshakes[0], &handshakes[1]);
    assert_eq!(openai.header("authorization"), Some("Bearer sk-injected"));
    assert_eq!(openai.header("api-key"), None);
    assert_eq!(azure.header("api-key"), Some("sk-injected"));
    assert_eq!(azure.header("authorization"), None);
    for h in [openai, azure] {
        assert_eq!(h.header("upgrade"), Some("websocket"));
        assert!(
            h.header("sec-websocket-key").is_some() && h.header("sec-websocket-version").is_some()
        );
    }
    // Both sessions are over: the gauge is back to 0, and each handshake counted as 101.
    let (closed, s) = scrape_until(&proxy, Duration::from_secs(10), |s| {
        s.value("backstop_websocket_sessions", &[]) == 0.0
    })
    .await;
    assert!(closed, "sessions still counted as open:\n{}", s.text);
    assert_eq!(
        s.value(
            "backstop_requests_total",
            &[("upstream", "mock"), ("status", "101")]
        ),
        1.0
    );
    assert_eq!(
        s.value(
            "backstop_requests_total",
            &[("upstream", "azure"), ("status", "101")]
        ),
        1.0
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_answered_503_is_retried_and_recorded_then_connects() {
    let Some(python) = python() else { return };
    let mock = MockUpstream::start().await.expect("mock");
    mock.push(Fault::ServerError(503));
    let dir = tempfile::tempdir().expect("dir");
    let proxy = backstop::start(config(&mock, dir.path()))
        .await
        .expect("start");

    client(
        &python,
        "echo",
        &format!("ws://{}/v1/realtime-ish", proxy.proxy_addr()),
    )
    .await;

    assert_eq!(mock.request_count(), 2, "one 503, then the 101");
    let recorded = eventually(Duration::from_secs(5), || {
        records(dir.path())
            .iter()
            .any(|r| r["status"] == 503 && r["decision"] == "retry")
    })
    .await;
    assert!(
        recorded,
        "no failure record of the 503: {:?}",
        records(dir.path())
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_realtime_client_completes_a_session_with_only_the_base_url_changed() {
    let Some(python) = python() else { return };
    let mock = MockUpstream::start().await.expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let proxy = backstop::start(config(&mock, dir.path()))
        .await
        .expect("start");

    let out = client(
        &python,
        "realtime",
        &format!("http://{}/v1", proxy.proxy_addr()),
    )
    .await;

    assert!(
        out.contains("realtime ok") && out.contains("response.done"),
        "{out}"
    );
    let handshake = &mock.received()[0];
    assert_eq!(handshake.path, "/v1/realtime");
    assert_eq!(
        handshake.header("authorization"),
        Some("Bearer sk-injected")
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_open_at_sigterm_works_through_the_grace_then_ends_and_backstop_exits_0() {
    let Some(python) = python() else { return };
    let mock = MockUpstream::start().await.expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("backstop.toml");
    let toml = format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace = \"3s\"\n{}\
         [[upstream]]\nname = \"mock\"\nbase_url = \"{}\"\n",
        common::failure_log_toml(&dir.path().join("failures")),
        mock.url()
    );
    std::fs::write(&file, toml).expect("write config");
    let mut backstop = common::process::spawn_serve(&file).await;
    let mut session = Command::new(&python)
        .args([
            SCRIPT,
            "hold",
            &format!("ws://{}/v1/hold", backstop.proxy_addr),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn python");
    let mut said = BufReader::new(session.stdout.take().expect("stdout")).lines();
    let mut stdin = session.stdin.take().expect("stdin");
    let mut next_line = async || {
        common::within(Duration::from_secs(30), said.next_line())
            .await
            .expect("read")
            .unwrap_or_default()
    };
    assert_eq!(next_line().await, "open");

    common::process::signal(&backstop.child, "TERM");
    common::process::wait_for_log(&mut backstop.logs, "draining", Duration::from_secs(10)).await;
    stdin.write_all(b"go\n").await.expect("tell the client");
    assert_eq!(
        next_line().await,
        "echoed",
        "the session works during the grace"
    );
    assert_eq!(
        next_line().await,
        "closed",
        "the session ends at the end of the grace"
    );

    let status = common::within(Duration::from_secs(30), backstop.child.wait())
        .await
        .expect("backstop exits");
    assert_eq!(status.code(), Some(0));
}

/// Every failure record in `dir`.
fn records(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}
