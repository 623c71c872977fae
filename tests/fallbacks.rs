//! SPEC §7 end to end against the mock upstream: a request handed to a fallback with
//! another model (same host), another provider (another shape and key), another org's
//! key, or a larger window; streams only before their first event.

mod common;

use std::path::Path;
use std::time::Duration;

use backstop::mock::{Fault, MockUpstream, StreamEnd, StreamScript};
use bytes::Bytes;
use common::{Collected, TestClient, eventually};
use http::{Method, StatusCode};
use http_body_util::Full;
use serde_json::{Value, json};

/// A backstop for `toml` (listeners and a failure log in `dir` are added), keys from `env`.
async fn proxy(toml: &str, env: &[(&str, &str)], dir: &Path) -> (backstop::Running, TestClient) {
    let text = format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{}\n\
         [retry]\nbase_delay = \"5ms\"\nthrottle_base_delay = \"5ms\"\nmax_delay = \"20ms\"\n{toml}",
        common::failure_log_toml(dir)
    );
    let lookup = |var: &str| {
        env.iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| (*v).to_owned())
    };
    let config =
        backstop::Config::from_toml(&text, &lookup).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let running = backstop::start(config).await.expect("start");
    let client = TestClient::new(running.proxy_addr());
    (running, client)
}

/// A port nothing listens on: connections to it are refused.
fn refusing_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    format!("http://{}", listener.local_addr().expect("addr"))
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

async fn post(
    client: &TestClient,
    path: &str,
    body: impl Into<Bytes>,
    auth: (&str, &str),
) -> Collected {
    let request = client
        .request(Method::POST, path)
        .header("content-type", "application/json")
        .header(auth.0, auth.1)
        .body(Full::new(body.into()))
        .expect("request");
    client.call(request).await
}

fn models_seen(mock: &MockUpstream) -> Vec<String> {
    let model = |r: &backstop::mock::Received| {
        r.json()
            .and_then(|j| j["model"].as_str().map(str::to_owned))
    };
    mock.received().iter().filter_map(model).collect()
}

/// The failure records written so far, once `n` are there (bounded wait).
async fn records(dir: &Path, n: usize) -> Vec<Value> {
    let read = || -> Vec<Value> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .flat_map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(5), || read().len() >= n).await,
        "{:?}",
        read()
    );
    read()
}

const MODEL_FALLBACK: &str = "[[upstream]]\nname = \"4o\"\nbase_url = \"{url}\"\nfallbacks = [\"mini\"]\n\
     [[upstream]]\nname = \"mini\"\nbase_url = \"{url}\"\nfallback_only = true\n\
     [upstream.models]\n\"gpt-4o\" = \"gpt-4o-mini\"\n";

#[tokio::test]
async fn an_overloaded_model_falls_back_to_a_smaller_one_on_the_same_host() {
    let mock = MockUpstream::start().await.expect("mock");
    mock.push_n(Fault::ServerError(503), 3);
    let dir = tempfile::tempdir().expect("dir");
    let (running, client) = proxy(
        &MODEL_FALLBACK.replace("{url}", &mock.url()),
        &[],
        dir.path(),
    )
    .await;

    let response = post(
        &client,
        "/v1/chat/completions",
        chat("gpt-4o").to_string(),
        ("authorization", "Bearer sk-client"),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.header("x-backstop-model"), Some("gpt-4o-mini"));
    assert_eq!(response.header("x-backstop-upstream"), Some("mini"));
    assert_eq!(
        response.json()["model"],
        "gpt-4o-mini",
        "the mock echoes the model it got"
    );
    assert_eq!(
        models_seen(&mock),
        ["gpt-4o", "gpt-4o", "gpt-4o", "gpt-4o-mini"]
    );

    let records = records(dir.path(), 3).await;
    let handed: Vec<&Value> = records
        .iter()
        .filter(|r| r["decision"] == "fallback")
        .collect();
    assert_eq!(handed.len(), 1, "{records:?}");
    assert_eq!(handed[0]["upstream"], "4o");
    assert_eq!(handed[0]["fallback_to"], "mini");

    let stats = common::admin_get(&running, "/stats").await.json();
    let row = |name: &str| {
        stats["upstreams"]
            .as_array()
            .and_then(|a| a.iter().find(|u| u["name"] == name))
            .cloned()
            .expect("row")
    };
    assert_eq!(row("4o")["fallbacks"], 1, "{stats}");
    assert_eq!(row("4o")["fallbacks_to"]["mini"], 1, "{stats}");
    assert_eq!(row("mini")["fallbacks"], 0);
    let page = common::admin_get(&running, "/status").await.text();
    assert!(
        page.contains("<h2>Fallbacks</h2>") && page.contains("mini 1"),
        "{page}"
    );
}

#[tokio::test]
async fn only_the_model_value_changes_in_the_body() {
    let mock = MockUpstream::start().await.expect("mock");
    mock.push(Fault::ServerError(503));
    let dir = tempfile::tempdir().expect("dir");
    let toml = MODEL_FALLBACK.replace("{url}", &mock.url()).replace(
        "fallbacks = [\"mini\"]\n",
        "fallbacks = [\"mini\"]\n[upstream.retry]\nmax_retries = 0\n",
    );
    let (_running, client) = proxy(&toml, &[], dir.path()).await;
    let content = "line \\\"quoted\\\" \\u00e9 \\n model: gpt-4o ".repeat(40_000);
    let sent = format!(
        "{{ \"messages\" : [ {{\"role\":\"user\",\"content\":\"{content}\"}} ],\n  \"temperature\":0.50 ,\"model\"  :  \"gpt-4o\",\n\"metadata\":{{\"model\":\"gpt-4o\"}} }}"
    );
    assert!(sent.len() > 1_000_000);
    let response = post(
        &client,
        "/v1/chat/completions",
        sent.clone(),
        ("authorization", "Bearer sk-client"),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK);
    let received = mock.received();
    assert_eq!(
        received[0].body,
        sent.as_bytes(),
        "the primary got the client's bytes"
    );
    let expected = sent.replacen(
        "\"model\"  :  \"gpt-4o\"",
        "\"model\"  :  \"gpt-4o-mini\"",
        1,
    );
    assert!(
        received[1].body == expected.as_bytes(),
        "only the top-level model value changed"
    );
    assert_eq!(
        received[1].header("content-length"),
        Some(expected.len().to_string().as_str())
    );
}

#[tokio::test]
async fn a_body_without_a_model_or_not_json_is_forwarded_unchanged() {
    let mock = MockUpstream::start().await.expect("mock");
    mock.push_n(Fault::ServerError(503), 2);
    let dir = tempfile::tempdir().expect("dir");
    let toml = MODEL_FALLBACK.replace("{url}", &mock.url()).replace(
        "fallbacks = [\"mini\"]\n",
        "fallbacks = [\"mini\"]\n[upstream.retry]\nmax_retries = 0\n",
    );
    let (_running, client) = proxy(&toml, &[], dir.path()).await;
    for body in [r#"{"input":"no model here"}"#, "model=gpt-4o&not=json"] {
        let response = post(
            &client,
            "/v1/embeddings",
            body,
            ("authorization", "Bearer sk"),
        )
        .await;
        assert!(response.header("x-backstop-model").is_none());
        let last = mock.received().pop().expect("received");
        assert_eq!(last.body, body.as_bytes());
    }
}

#[tokio::test]
async fn an_openai_request_falls_back_to_azure_in_azure_shape_with_the_azure_key() {
    let azure = MockUpstream::start().await.expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let toml = format!(
        "[[upstream]]\nname = \"openai\"\nbase_url = \"{}\"\nfallbacks = [\"azure\"]\n[upstream.retry]\nmax_retries = 0\n\
         [[upstream]]\nname = \"azure\"\nkind = \"azure\"\nbase_url = \"{}\"\nfallback_only = true\napi_key_env = \"AZURE_KEY\"\n\
         [upstream.models]\n\"gpt-4o\" = \"my-gpt4o\"\n",
        refusing_url(),
        azure.url()
    );
    let (_running, client) = proxy(&toml, &[("AZURE_KEY", "azure-secret")], dir.path()).await;
    let response = post(
        &client,
        "/v1/chat/completions",
        chat("gpt-4o").to_string(),
        ("authorization", "Bearer sk-openai"),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.header("x-backstop-upstream"), Some("azure"));
    let got = &azure.received()[0];
    assert_eq!(got.path, "/openai/v1/chat/completions");
    assert_eq!(got.header("api-key"), Some("azure-secret"));
    assert_eq!(
        got.header("authorization"),
        None,
        "the OpenAI key never reaches Azure"
    );
    assert_eq!(models_seen(&azure), ["my-gpt4o"]);
}

#[tokio::test]
async fn an_azure_deployment_request_falls_back_to_openai_in_openai_shape_with_its_key() {
    let openai = MockUpstream::start().await.expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let toml = format!(
        "[[upstream]]\nname = \"azure\"\nkind = \"azure\"\nbase_url = \"{}\"\npath_prefix = \"/openai/\"\nfallbacks = [\"openai\"]\n[upstream.retry]\nmax_retries = 0\n\
         [[upstream]]\nname = \"openai\"\nbase_url = \"{}\"\nfallback_only = true\napi_key_env = \"OPENAI_KEY\"\n\
         [upstream.models]\n\"my-gpt4o\" = \"gpt-4o\"\n",
        refusing_url(),
        openai.url()
    );
    let (_running, client) = proxy(&toml, &[("OPENAI_KEY", "sk-openai")], dir.path()).await;
    let path = "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21";
    let body = json!({"messages": [{"role": "user", "content": "hi"}]});
    let response = post(
        &client,
        path,
        body.to_string(),
        ("api-key", "azure-client-key"),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.header("x-backstop-model"), Some("gpt-4o"));
    let got = &openai.received()[0];
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(got.query, None, "no api-version for OpenAI");
    assert_eq!(got.header("authorization"), Some("Bearer sk-openai"));
    assert_eq!(got.header("api-key"), None);
    assert_eq!(
        models_seen(&openai),
        ["gpt-4o"],
        "the deployment, mapped, set as the model"
    );
}

const CONTEXT: &str = "[[upstream]]\nname = \"small\"\nbase_url = \"{url}\"\nfallbacks = [\"large\"]\n{on}\
     [[upstream]]\nname = \"large\"\nbase_url = \"{url}\"\nfallback_only = true\n\
     [upstream.models]\n\"gpt-4o\" = \"gpt-4.1\"\n";

fn context_length_exceeded() -> Fault {
    let body = json!({"error": {"message": "This model's maximum context length is 128000 tokens.", "type": "invalid_request_error", "param": "messages", "code": "context_length_exceeded"}});
    Fault::Respond {
        status: 400,
        headers: Vec::new(),
        body: body.to_string(),
    }
}

#[tokio::test]
async fn context_length_exceeded_goes_to_a_larger_window_only_with_fallback_on() {
    let mock = MockUpstream::start().await.expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    mock.push(context_length_exceeded());
    let toml = CONTEXT.replace("{url}", &mock.url()).replace("{on}", "");
    let (_running, client) = proxy(&toml, &[], dir.path()).await;
    let response = post(
        &client,
        "/v1/chat/completions",
        chat("gpt-4o").to_string(),
        ("authorization", "Bearer sk"),
    )
    .await;
    assert_eq!(
        response.status,
        StatusCode::BAD_REQUEST,
        "passed back at once"
    );
    assert_eq!(response.json()["error"]["code"], "context_length_exceeded");
    assert_eq!(models_seen(&mock), ["gpt-4o"]);

    let mock = MockUpstream::start().await.expect("mock");
    mock.push(context_length_exceeded());
    let on = "fallback_on = [\"retryable\", \"context_length_exceeded\"]\n";
    let toml = CONTEXT.replace("{url}", &mock.url()).replace("{on}", on);
    let (_running, client) = proxy(&toml, &[], dir.path()).await;
    let response = post(
        &client,
        "/v1/chat/completions",
        chat("gpt-4o").to_string(),
        ("authorization", "Bearer sk"),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("x-backstop-model"), Some("gpt-4.1"));
    assert_eq!(models_seen(&mock), ["gpt-4o", "gpt-4.1"]);
}

#[tokio::test]
async fn a_spent_quota_goes_to_another_orgs_key_on_the_same_host() {
    let mock = MockUpstream::start().await.expect("mock");
    mock.push(Fault::QuotaExhausted);
    let dir = tempfile::tempdir().expect("dir");
    let toml = format!(
        "[[upstream]]\nname = \"org-a\"\nbase_url = \"{url}\"\napi_key_env = \"ORG_A_KEY\"\nfallbacks = [\"org-b\"]\nfallback_on = [\"retryable\", \"quota_exhausted\"]\n\
         [[upstream]]\nname = \"org-b\"\nbase_url = \"{url}\"\napi_key_env = \"ORG_B_KEY\"\nfallback_only = true\n",
        url = mock.url()
    );
    let env = [("ORG_A_KEY", "sk-org-a"), ("ORG_B_KEY", "sk-org-b")];
    let (_running, client) = proxy(&toml, &env, dir.path()).await;
    let response = post(
        &client,
        "/v1/chat/completions",
        chat("gpt-4o").to_string(),
        ("authorization", "Bearer sk-app"),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.header("x-backstop-upstream"), Some("org-b"));
    assert!(
        response.header("x-backstop-model").is_none(),
        "the model was not rewritten"
    );
    let keys: Vec<String> = mock
        .received()
        .iter()
        .filter_map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    assert_eq!(
        keys,
        ["Bearer sk-org-a", "Bearer sk-org-b"],
        "one attempt each: a quota 429 is never retried"
    );
}

fn stream_request() -> String {
    json!({"model": "gpt-4o", "stream": true, "messages": [{"role": "user", "content": "count"}]})
        .to_string()
}

#[tokio::test]
async fn a_stream_that_dies_before_its_first_event_falls_back_and_streams_normally() {
    let mock = MockUpstream::start().await.expect("mock");
    let dies_at_once = StreamScript {
        end: StreamEnd::DieAfter(0),
        ..StreamScript::default()
    };
    mock.push(Fault::Stream(dies_at_once));
    let dir = tempfile::tempdir().expect("dir");
    let toml = MODEL_FALLBACK.replace("{url}", &mock.url()).replace(
        "fallbacks = [\"mini\"]\n",
        "fallbacks = [\"mini\"]\n[upstream.retry]\nmax_retries = 0\n",
    );
    let (_running, client) = proxy(&toml, &[], dir.path()).await;
    let response = post(
        &client,
        "/v1/chat/completions",
        stream_request(),
        ("authorization", "Bearer sk"),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("x-backstop-upstream"), Some("mini"));
    let events = common::sse_data(&response.body);
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    assert!(
        events.iter().all(|e| !e.contains("\"error\"")),
        "{events:?}"
    );
    assert_eq!(models_seen(&mock), ["gpt-4o", "gpt-4o-mini"]);
}

#[tokio::test]
async fn a_stream_that_dies_after_its_first_event_does_not_fall_back() {
    let mock = MockUpstream::start().await.expect("mock");
    let dies_later = StreamScript {
        end: StreamEnd::DieAfter(2),
        ..StreamScript::default()
    };
    mock.push(Fault::Stream(dies_later));
    let dir = tempfile::tempdir().expect("dir");
    let (_running, client) = proxy(
        &MODEL_FALLBACK.replace("{url}", &mock.url()),
        &[],
        dir.path(),
    )
    .await;
    let response = post(
        &client,
        "/v1/chat/completions",
        stream_request(),
        ("authorization", "Bearer sk"),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("x-backstop-upstream"), Some("4o"));
    let events = common::sse_data(&response.body);
    assert!(
        events.last().is_some_and(|e| e.contains("\"error\"")),
        "ends with an error event: {events:?}"
    );
    assert_eq!(mock.request_count(), 1, "committed: no retry, no fallback");
}
