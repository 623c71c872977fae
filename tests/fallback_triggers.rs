//! SPEC §7's triggers end to end: `fallback_on` for a larger window or another org's
//! key, and streams that fall back only before their first event.

mod common;

use backstop::mock::{Fault, MockUpstream, StreamEnd, StreamScript};
use common::chains::{MODEL_FALLBACK, chat, models_seen, post, proxy};
use http::StatusCode;
use serde_json::json;

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
