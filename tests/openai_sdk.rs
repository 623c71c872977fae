//! The official `openai` Python SDK, unmodified, against backstop: how most users meet it.
//!
//! Needs a Python with `openai` installed: `scripts/test` makes `.venv` and sets
//! BACKSTOP_TEST_PYTHON. Set BACKSTOP_SKIP_PYTHON=1 to skip deliberately.

mod common;

use std::time::Duration;

use backstop::mock::{Fault, MockOptions, MockUpstream, StreamEnd, StreamScript};

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
    let dead_port = common::chains::refusing_addr().port();
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

/// A backstop in front of `toml`'s upstreams, keys from `env`; its base URL.
async fn backstop_for(toml: &str, env: &[(&str, &str)]) -> (backstop::Running, String) {
    let (running, _, _) = common::start_toml(&format!("{}\n{toml}", common::FAST), env).await;
    let url = format!("http://{}", running.proxy_addr());
    (running, url)
}

/// `primary` (at `primary_url`, with `primary_keys`) falls back to `fallback` (at
/// `fallback_url`, fallback_only, with `fallback_keys`).
fn chain(primary_url: &str, primary_keys: &str, fallback_url: &str, fallback_keys: &str) -> String {
    format!(
        "[[upstream]]\nname = \"primary\"\nbase_url = \"{primary_url}\"\nfallbacks = [\"fallback\"]\n{primary_keys}\n\
         [[upstream]]\nname = \"fallback\"\nbase_url = \"{fallback_url}\"\nfallback_only = true\n{fallback_keys}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_openai_python_sdk_gets_its_completion_through_each_fallback() {
    let Some(python) = common::python() else {
        eprintln!("skipped: BACKSTOP_SKIP_PYTHON is set");
        return;
    };
    let refusing = common::chains::refusing_url();
    let mini = "[upstream.models]\n\"gpt-4o\" = \"gpt-4o-mini\"\n";
    let model = MockUpstream::start().await.expect("mock");
    model.push_n(Fault::ServerError(503), 3);
    let (_a, model_url) = backstop_for(&chain(&model.url(), "", &model.url(), mini), &[]).await;

    let azure = MockUpstream::start().await.expect("mock");
    let to_azure = chain(
        &refusing,
        "",
        &azure.url(),
        "kind = \"azure\"\napi_key_env = \"AZURE_KEY\"\n[upstream.models]\n\"gpt-4o\" = \"my-gpt4o\"\n",
    );
    let (_b, to_azure_url) = backstop_for(&to_azure, &[("AZURE_KEY", "azure-secret")]).await;

    let openai = MockUpstream::start().await.expect("mock");
    let to_openai = chain(
        &refusing,
        "kind = \"azure\"\npath_prefix = \"/openai/\"",
        &openai.url(),
        "api_key_env = \"OPENAI_KEY\"\n[upstream.models]\n\"my-gpt4o\" = \"gpt-4o\"\n",
    );
    let (_c, to_openai_url) = backstop_for(&to_openai, &[("OPENAI_KEY", "sk-openai")]).await;

    let context = MockUpstream::start().await.expect("mock");
    let too_long = serde_json::json!({"error": {"message": "maximum context length", "type": "invalid_request_error", "code": "context_length_exceeded"}});
    context.push(Fault::Respond {
        status: 400,
        headers: Vec::new(),
        body: too_long.to_string(),
    });
    let larger = chain(
        &context.url(),
        "fallback_on = [\"context_length_exceeded\"]",
        &context.url(),
        "[upstream.models]\n\"gpt-4o\" = \"gpt-4.1\"\n",
    );
    let (_d, context_url) = backstop_for(&larger, &[]).await;

    let quota = MockUpstream::start().await.expect("mock");
    quota.push(Fault::QuotaExhausted);
    let orgs = chain(
        &quota.url(),
        "api_key_env = \"ORG_A\"\nfallback_on = [\"quota_exhausted\"]",
        &quota.url(),
        "api_key_env = \"ORG_B\"",
    );
    let (_e, quota_url) =
        backstop_for(&orgs, &[("ORG_A", "sk-org-a"), ("ORG_B", "sk-org-b")]).await;

    let stream = MockUpstream::start().await.expect("mock");
    stream.push(Fault::Stream(StreamScript {
        end: StreamEnd::DieAfter(0),
        ..StreamScript::default()
    }));
    let (_f, stream_url) = backstop_for(
        &chain(
            &stream.url(),
            "[upstream.retry]\nmax_retries = 0",
            &stream.url(),
            mini,
        ),
        &[],
    )
    .await;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/sdk_fallbacks.py");
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(&python)
            .arg(script)
            .env("BACKSTOP_MODEL_URL", model_url)
            .env("BACKSTOP_TO_AZURE_URL", to_azure_url)
            .env("BACKSTOP_TO_OPENAI_URL", to_openai_url)
            .env("BACKSTOP_CONTEXT_URL", context_url)
            .env("BACKSTOP_QUOTA_URL", quota_url)
            .env("BACKSTOP_STREAM_URL", stream_url)
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

    let got = &azure.received()[0];
    assert_eq!(got.path, "/openai/v1/chat/completions");
    assert_eq!(got.header("api-key"), Some("azure-secret"));
    assert_eq!(got.header("authorization"), None);
    assert_eq!(got.json().expect("json")["model"], "my-gpt4o");
    let got = &openai.received()[0];
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(got.query, None, "no api-version");
    assert_eq!(got.header("authorization"), Some("Bearer sk-openai"));
    assert_eq!(got.header("api-key"), None);
    let keys: Vec<_> = quota
        .received()
        .iter()
        .map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    assert_eq!(
        keys,
        [
            Some("Bearer sk-org-a".to_owned()),
            Some("Bearer sk-org-b".to_owned())
        ]
    );
}
