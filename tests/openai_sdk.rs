//! The official `openai` Python SDK, unmodified, against backstop: how most users meet it.
//!
//! Needs a Python with `openai` installed: `scripts/test` makes `.venv` and sets
//! BACKSTOP_TEST_PYTHON. Set BACKSTOP_SKIP_PYTHON=1 to skip deliberately.

mod common;

use std::time::Duration;

use backstop::mock::{MockOptions, MockUpstream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_openai_python_sdk_works_through_backstop() {
    let Some(python) = common::python() else {
        eprintln!("skipped: BACKSTOP_SKIP_PYTHON is set");
        return;
    };
    let mock = MockUpstream::start().await.expect("mock");
    let storm = MockUpstream::start_with(MockOptions {
        fail_rate: 1.0,
        ..MockOptions::default()
    })
    .await
    .expect("mock");
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let toml = format!(
        "[[upstream]]\nname = \"mock\"\nbase_url = \"{}\"\n\
         [[upstream]]\nname = \"azure\"\nkind = \"azure\"\nbase_url = \"{}\"\npath_prefix = \"/openai/\"\n\
         [[upstream]]\nname = \"dead\"\nbase_url = \"http://127.0.0.1:{dead_port}\"\npath_prefix = \"/dead/\"\n\
         [upstream.retry]\nbase_delay = \"10ms\"\n\
         [[upstream]]\nname = \"storm\"\nbase_url = \"{}\"\npath_prefix = \"/storm/\"\n\
         [upstream.retry]\nthrottle_base_delay = \"20ms\"\nbase_delay = \"10ms\"\n",
        mock.url(),
        mock.url(),
        storm.url()
    );
    let (proxy, _, _) = common::start_toml(&toml, &[]).await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sdk_smoke.py");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&python)
            .arg(script)
            .env("BACKSTOP_URL", format!("http://{}", proxy.proxy_addr()))
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
        output.status.success(),
        "SDK script failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("ALL OK"), "{stdout}");

    let received = mock.received();
    let sdk_request = received
        .iter()
        .find(|r| r.path == "/v1/chat/completions")
        .expect("a chat request");
    assert_eq!(
        sdk_request.header("authorization"),
        Some("Bearer sk-sdk-test")
    );
    assert!(
        sdk_request
            .header("user-agent")
            .is_some_and(|ua| ua.contains("OpenAI/Python"))
    );
    let azure_request = received
        .iter()
        .find(|r| r.path.starts_with("/openai/deployments/my-deployment/"))
        .expect("azure");
    assert_eq!(azure_request.header("api-key"), Some("azure-sdk-test"));
    assert_eq!(
        azure_request.query.as_deref(),
        Some("api-version=2024-10-21")
    );
}
