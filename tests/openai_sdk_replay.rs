//! SPEC §6's headline with the official `openai` Python SDK: `OpenAI(timeout=0.5,
//! max_retries=2)` against a model that answers after 2 s. Without replay each of
//! the SDK's three tries is a new, billed upstream call and all time out; with
//! `[replay]` (sdk_retries, finish_abandoned) the upstream sees one call and the SDK
//! gets the completion.
//!
//! Why 2 s: the SDK's second try starts after a jittered 0.375–0.5 s backoff and gives
//! up 0.5 s later, between 1.375 and 1.5 s (plus its own overhead); its third starts
//! after 2.1 s. A model that answered at 1.5 s could reach a joined second try in the
//! very moment its SDK gave up on it, which then counts as a replay too. At 2 s the
//! answer is kept between the second try and the third, which replays it (or joins it,
//! if it is late) — one replay, whatever the jitter.
//!
//! Needs the Python that `scripts/test` makes (BACKSTOP_SKIP_PYTHON=1 skips).

mod common;

use std::time::Duration;

use backstop::mock::{MockOptions, MockUpstream};

/// A mock that answers after 2 s, and a backstop in front of it with `extra`.
async fn slow_model(extra: &str) -> (MockUpstream, backstop::Running) {
    let mock = MockUpstream::start_with(MockOptions {
        latency: Duration::from_millis(2000),
        ..MockOptions::default()
    })
    .await
    .expect("mock");
    let toml = format!(
        "{extra}\n[[upstream]]\nname = \"slow\"\nbase_url = \"{}\"\n",
        mock.url()
    );
    let (running, _, _) = common::start_toml(&toml, &[]).await;
    (mock, running)
}

/// Runs the SDK script against `proxy`, expecting `expect`; `hide` keeps the SDK's
/// read timeout from backstop.
async fn sdk(python: &std::path::Path, proxy: &backstop::Running, expect: &str, hide: bool) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sdk_replay.py");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(python)
            .arg(script)
            .env("BACKSTOP_URL", format!("http://{}", proxy.proxy_addr()))
            .env("EXPECT", expect)
            .env("HIDE_READ_TIMEOUT", if hide { "1" } else { "" })
            .env_remove("OPENAI_BASE_URL")
            .env_remove("OPENAI_API_KEY")
            .output(),
    )
    .await
    .expect("python finished in time")
    .expect("python ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("ALL OK"),
        "SDK script failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_replay_the_sdks_three_tries_are_three_upstream_calls_and_a_timeout() {
    let Some(python) = common::python() else {
        eprintln!("skipped: BACKSTOP_SKIP_PYTHON is set");
        return;
    };
    let (mock, proxy) = slow_model("").await;
    // Told the SDK's 0.5 s read timeout (`x-stainless-read-timeout`), backstop would
    // answer 504 (`x-should-retry: false`) at that same moment, racing the SDK's own
    // timer; with it hidden the SDK's own retries show, as the issue describes them.
    sdk(&python, &proxy, "timeout", true).await;
    assert!(mock.wait_for_requests(3, Duration::from_secs(2)).await);
    assert_eq!(mock.request_count(), 3, "each try was a new upstream call");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_replay_the_upstream_sees_one_call_and_the_sdk_gets_the_completion() {
    let Some(python) = common::python() else {
        eprintln!("skipped: BACKSTOP_SKIP_PYTHON is set");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let replay = format!(
        "[replay]\nsdk_retries = true\nfinish_abandoned = true\ndir = {:?}\n",
        dir.path().display().to_string()
    );
    let (mock, proxy) = slow_model(&replay).await;
    sdk(&python, &proxy, "completion", false).await;
    assert_eq!(
        mock.request_count(),
        1,
        "one upstream call for all three tries"
    );
    let metrics = common::scrape(&proxy).await;
    let replays = metrics.value(
        "backstop_replays_total",
        &[("upstream", "slow"), ("reason", "sdk_retry")],
    );
    assert_eq!(replays, 1.0);
    proxy.shutdown().await;
}
