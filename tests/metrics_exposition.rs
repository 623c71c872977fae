//! A real scrape, after real traffic, checked by real Prometheus tooling: `promtool
//! check metrics` (Debian's `prometheus` package; `.ci/run` installs it) and the
//! Python `prometheus_client` text parser (in the test venv that `scripts/test` makes).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use backstop::mock::Fault;
use bytes::Bytes;
use common::{Harness, scrape, timed_frames};
use http::Method;
use http_body_util::Full;
use serde_json::json;

/// Traffic that touches most families (retries, give-up, a stream with usage, an
/// unrouted path), then the scrape written to a file.
async fn scrape_after_traffic(dir: &Path) -> PathBuf {
    let h = Harness::start_with(
        "[retry]\nbase_delay = \"5ms\"\nthrottle_base_delay = \"10ms\"\nmax_delay = \"20ms\"\nmax_retries = 1\n\
         [metrics]\nmodels = [\"gpt-4o\"]",
    )
    .await;
    let chat = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    h.mock.push(Fault::ServerError(503));
    h.client
        .post_json("/v1/chat/completions", chat.clone())
        .await;
    h.mock.push_n(Fault::ServerError(503), 2);
    h.client
        .post_json("/v1/chat/completions", chat.clone())
        .await;
    h.client
        .post_json("/v1/embeddings", json!({"model": "e", "input": "x"}))
        .await;
    let stream = json!({"model": "gpt-4o", "stream": true, "stream_options": {"include_usage": true}, "messages": []});
    let request = h
        .client
        .request(Method::POST, "/v1/chat/completions")
        .body(Full::new(Bytes::from(stream.to_string())))
        .expect("request");
    timed_frames(
        h.client.send(request).await.into_body(),
        Duration::from_secs(10),
    )
    .await;
    let mut text = String::new();
    for _ in 0..200 {
        let s = scrape(&h.proxy).await;
        text = s.text.clone();
        if s.value("backstop_requests_total", &[]) >= 4.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let path = dir.join("scrape.prom");
    std::fs::write(&path, text).expect("write scrape");
    path
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

#[tokio::test]
async fn a_real_scrape_passes_promtool_check_metrics() {
    let promtool =
        std::env::var_os("PROMTOOL").map_or_else(|| PathBuf::from("promtool"), PathBuf::from);
    if std::process::Command::new(&promtool)
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            !in_ci(),
            "promtool is missing in CI: .ci/run installs Debian's prometheus package"
        );
        eprintln!("skipped: no promtool (apt-get install prometheus); CI is unset");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = scrape_after_traffic(dir.path()).await;
    let output = std::process::Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::fs::File::open(&path).expect("open scrape"))
        .output()
        .expect("promtool ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "promtool check metrics failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

#[tokio::test]
async fn a_real_scrape_parses_with_the_python_prometheus_client() {
    if std::env::var_os("BACKSTOP_SKIP_PYTHON").is_some() {
        eprintln!("skipped: BACKSTOP_SKIP_PYTHON is set");
        return;
    }
    let python = std::env::var_os("BACKSTOP_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python")));
    assert!(
        python.exists(),
        "no test Python at {}: run scripts/test (it makes .venv), or set \
         BACKSTOP_TEST_PYTHON, or BACKSTOP_SKIP_PYTHON=1 to skip",
        python.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = scrape_after_traffic(dir.path()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/parse_metrics.py");
    let output = std::process::Command::new(&python)
        .arg(script)
        .arg(&path)
        .output()
        .expect("python ran");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("ALL OK"),
        "prometheus_client could not parse the scrape\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
}
