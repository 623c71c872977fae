//! The README's "Fallbacks" recipes, run as written: each TOML block is taken from
//! README.md, only its provider hosts pointed at mock upstreams (or at a port that
//! refuses connections, for a provider that is down).

mod common;

use backstop::mock::{Fault, MockUpstream};
use bytes::Bytes;
use common::TestClient;
use common::chains::refusing_url;
use http::{Method, StatusCode};
use http_body_util::Full;
use serde_json::json;

const OPENAI: &str = "https://api.openai.com";
const AZURE: &str = "https://my-resource.openai.azure.com";

/// The TOML block under the README heading that starts with `heading`.
fn recipe(heading: &str) -> String {
    let readme = include_str!("../README.md");
    let at = readme
        .find(&format!("### Recipe: {heading}"))
        .unwrap_or_else(|| panic!("no recipe {heading:?} in README.md"));
    let block = &readme[at..];
    let start = block.find("```toml\n").expect("a toml block") + 8;
    let len = block[start..].find("```").expect("its end");
    block[start..start + len].to_owned()
}

/// backstop running `toml` with quick retries; every `api_key_env` is set.
async fn run(toml: &str) -> (backstop::Running, TestClient) {
    let env = [
        "OPENAI_API_KEY",
        "AZURE_OPENAI_API_KEY",
        "OPENAI_KEY_ORG_A",
        "OPENAI_KEY_ORG_B",
    ]
    .map(|var| (var, format!("key-of-{var}")));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (running, client, _) = common::start_toml(&format!("{}\n{toml}", common::FAST), &env).await;
    (running, client)
}

async fn chat(client: &TestClient, path: &str, model: &str) -> common::Collected {
    let body = json!({"model": model, "messages": [{"role": "user", "content": "hi"}]});
    let request = client
        .request(Method::POST, path)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    client.call(request).await
}

#[tokio::test]
async fn recipe_a_smaller_model_when_the_big_one_is_overloaded() {
    let openai = MockUpstream::start().await.expect("mock");
    openai.push_n(Fault::ServerError(503), 3);
    let (_running, client) = run(&recipe("a smaller model").replace(OPENAI, &openai.url())).await;
    let response = chat(&client, "/v1/chat/completions", "gpt-4o").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("x-backstop-model"), Some("gpt-4o-mini"));
    assert_eq!(openai.request_count(), 4);
}

#[tokio::test]
async fn recipe_openai_down_then_azure_and_back() {
    let azure = MockUpstream::start().await.expect("mock");
    let toml = recipe("OpenAI down");
    let (_running, client) = run(&toml
        .replace(OPENAI, &refusing_url())
        .replace(AZURE, &azure.url()))
    .await;
    let response = chat(&client, "/v1/chat/completions", "gpt-4o").await;
    assert_eq!(response.status, StatusCode::OK);
    let got = &azure.received()[0];
    assert_eq!(got.path, "/openai/v1/chat/completions");
    assert_eq!(got.header("api-key"), Some("key-of-AZURE_OPENAI_API_KEY"));
    assert_eq!(got.json().expect("json")["model"], "my-gpt4o-deployment");

    let openai = MockUpstream::start().await.expect("mock");
    let (_running, client) = run(&toml
        .replace(OPENAI, &openai.url())
        .replace(AZURE, &refusing_url()))
    .await;
    let path = "/openai/deployments/my-gpt4o-deployment/chat/completions?api-version=2024-10-21";
    let response = chat(&client, path, "my-gpt4o-deployment").await;
    assert_eq!(response.status, StatusCode::OK);
    let got = &openai.received()[0];
    assert_eq!(
        (got.path.as_str(), got.query.as_deref()),
        ("/v1/chat/completions", None)
    );
    assert_eq!(
        got.header("authorization"),
        Some("Bearer key-of-OPENAI_API_KEY")
    );
    assert_eq!(got.json().expect("json")["model"], "gpt-4o");
}

#[tokio::test]
async fn recipe_another_orgs_key_when_the_quota_is_spent() {
    let openai = MockUpstream::start().await.expect("mock");
    openai.push(Fault::QuotaExhausted);
    let (_running, client) = run(&recipe("the org's quota").replace(OPENAI, &openai.url())).await;
    let response = chat(&client, "/v1/chat/completions", "gpt-4o").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("x-backstop-upstream"), Some("org-b"));
    let keys: Vec<_> = openai
        .received()
        .iter()
        .filter_map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    assert_eq!(
        keys,
        [
            "Bearer key-of-OPENAI_KEY_ORG_A",
            "Bearer key-of-OPENAI_KEY_ORG_B"
        ]
    );
}
