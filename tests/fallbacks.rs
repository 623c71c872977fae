//! SPEC §7 end to end against the mock upstream: a request handed to a fallback with
//! another model on the same host (its body changed in the model alone) or another
//! provider (another shape and key). Triggers and streams: `fallback_triggers.rs`.

mod common;

use backstop::mock::{Fault, MockUpstream};
use common::chains::{MODEL_FALLBACK, chat, models_seen, post, proxy, records, refusing_url};
use http::StatusCode;
use serde_json::{Value, json};

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
