//! SPEC §4 metrics end to end: a real backstop, a scripted mock upstream, and `/metrics`
//! scraped before and after, compared with exact deltas.

mod common;

use std::time::Duration;

use backstop::mock::{Fault, StreamScript};
use bytes::Bytes;
use common::scrape::Scrape;
use common::{FAST, Harness, admin_get, chat, config_with_env, scrape, timed_frames};
use http::Method;
use http_body_util::Full;
use serde_json::json;

const REQUESTS: &str = "backstop_requests_total";
const ATTEMPTS: &str = "backstop_upstream_attempts_total";
const RETRIES: &str = "backstop_retries_total";
const TOKENS_COUNT: &str = "gen_ai_client_token_usage_count";
const TOKENS_SUM: &str = "gen_ai_client_token_usage_sum";

/// Scrapes until `name{labels}` reaches `at_least` (request events land when the
/// response body has ended, a moment after the client has read it).
async fn scrape_when(h: &Harness, name: &str, labels: &[(&str, &str)], at_least: f64) -> Scrape {
    let mut last = scrape(&h.proxy).await;
    for _ in 0..200 {
        if last.value(name, labels) >= at_least {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
        last = scrape(&h.proxy).await;
    }
    panic!("{name}{labels:?} never reached {at_least}:\n{}", last.text);
}

#[tokio::test]
async fn counts_a_503_503_200_request_exactly() {
    let h = Harness::start_with(FAST).await;
    let before = scrape(&h.proxy).await;
    h.mock.push_n(Fault::ServerError(503), 2);

    let response = h
        .client
        .post_json("/v1/chat/completions", chat("gpt-4o"))
        .await;
    assert_eq!(response.status, 200);

    let ok = [
        ("upstream", "mock"),
        ("endpoint", "chat_completions"),
        ("status", "200"),
    ];
    let after = scrape_when(&h, REQUESTS, &ok, before.value(REQUESTS, &ok) + 1.0).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };

    // One request, answered 200, after three attempts: two retryable failures, one success.
    assert_eq!(delta(REQUESTS, &[("upstream", "mock")]), 1.0);
    assert_eq!(delta(REQUESTS, &ok), 1.0);
    let attempts = |outcome| {
        [
            ("upstream", "mock"),
            ("endpoint", "chat_completions"),
            ("outcome", outcome),
        ]
    };
    assert_eq!(delta(ATTEMPTS, &attempts("retryable_failure")), 2.0);
    assert_eq!(delta(ATTEMPTS, &attempts("success")), 1.0);
    assert_eq!(delta(ATTEMPTS, &attempts("fatal_failure")), 0.0);
    // Two retries, both for a 503, each with a backoff.
    assert_eq!(
        delta(RETRIES, &[("upstream", "mock"), ("reason", "status_503")]),
        2.0
    );
    assert_eq!(delta(RETRIES, &[("upstream", "mock")]), 2.0);
    assert_eq!(
        delta("backstop_backoff_seconds_count", &[("upstream", "mock")]),
        2.0
    );
    assert_eq!(
        delta("backstop_retries_suppressed_total", &[("upstream", "mock")]),
        0.0
    );
    // Durations: one request, three attempts.
    let mock_chat = [("upstream", "mock"), ("endpoint", "chat_completions")];
    assert_eq!(
        delta("backstop_request_duration_seconds_count", &mock_chat),
        1.0
    );
    assert_eq!(
        delta(
            "backstop_upstream_attempt_duration_seconds_count",
            &mock_chat
        ),
        3.0
    );
    // A success in the end: nothing in flight, no failures in a row.
    assert_eq!(
        after.value("backstop_in_flight_requests", &[("upstream", "mock")]),
        0.0
    );
    assert_eq!(
        after.value("backstop_consecutive_failures", &[("upstream", "mock")]),
        0.0
    );
    // The OTel view of the same call: one chat operation, no error.
    let op = [
        ("gen_ai_operation_name", "chat"),
        ("gen_ai_provider_name", "openai"),
        ("error_type", ""),
    ];
    assert_eq!(
        delta("gen_ai_client_operation_duration_seconds_count", &op),
        1.0
    );
}

#[tokio::test]
async fn gives_up_after_retries_and_counts_the_suppressed_retry() {
    let h = Harness::start_with(&format!("{FAST}\nmax_retries = 1")).await;
    h.mock.push_n(Fault::ServerError(503), 2);
    let response = h.client.post_json("/v1/chat/completions", chat("m")).await;
    assert_eq!(response.status, 503);
    let failed = [("upstream", "mock"), ("status", "503")];
    let after = scrape_when(&h, REQUESTS, &failed, 1.0).await;
    let suppressed = [("upstream", "mock"), ("reason", "retries_exhausted")];
    assert_eq!(
        after.value("backstop_retries_suppressed_total", &suppressed),
        1.0
    );
    assert_eq!(after.value(RETRIES, &[("upstream", "mock")]), 1.0);
    assert_eq!(
        after.value("backstop_consecutive_failures", &[("upstream", "mock")]),
        1.0
    );
    let op = [("gen_ai_operation_name", "chat"), ("error_type", "503")];
    assert_eq!(
        after.value("gen_ai_client_operation_duration_seconds_count", &op),
        1.0
    );
}

/// SPEC §4's table and §9's families: every family, with its type.
const FAMILIES: [(&str, &str); 27] = [
    ("backstop_requests_total", "counter"),
    ("backstop_request_duration_seconds", "histogram"),
    ("backstop_upstream_attempts_total", "counter"),
    ("backstop_upstream_attempt_duration_seconds", "histogram"),
    ("backstop_retries_total", "counter"),
    ("backstop_retries_suppressed_total", "counter"),
    ("backstop_backoff_seconds", "histogram"),
    ("backstop_in_flight_requests", "gauge"),
    ("backstop_websocket_sessions", "gauge"),
    ("backstop_consecutive_failures", "gauge"),
    ("backstop_circuit_state", "gauge"),
    ("backstop_rate_limit_wait_seconds", "histogram"),
    ("backstop_failure_records_total", "counter"),
    ("backstop_failure_records_dropped_total", "counter"),
    ("backstop_failure_log_errors_total", "counter"),
    ("backstop_journal_records_total", "counter"),
    ("backstop_journal_records_dropped_total", "counter"),
    ("backstop_journal_errors_total", "counter"),
    ("backstop_replays_total", "counter"),
    ("backstop_replay_joins_total", "counter"),
    ("gen_ai_client_token_usage", "histogram"),
    ("gen_ai_client_operation_duration_seconds", "histogram"),
    (
        "gen_ai_client_operation_time_to_first_chunk_seconds",
        "histogram",
    ),
    ("backstop_build_info", "gauge"),
    ("backstop_connections_refused_total", "counter"),
    ("backstop_retry_buffer_bytes", "gauge"),
    ("backstop_retry_buffer_exhausted_total", "counter"),
];

#[tokio::test]
async fn every_spec_family_is_in_the_first_scrape() {
    let h = Harness::start().await;
    let first = scrape(&h.proxy).await;
    let types = first.types();
    for (name, kind) in FAMILIES {
        assert_eq!(
            types.get(name).map(String::as_str),
            Some(kind),
            "{name}\n{}",
            first.text
        );
    }
    assert_eq!(
        types.len(),
        FAMILIES.len(),
        "no family beyond SPEC's table: {types:?}"
    );
    // Labels exactly as SPEC names them.
    let labels = |name: &str| -> Vec<String> {
        let line = first
            .text
            .lines()
            .find(|l| l.starts_with(name) && l.contains('{'))
            .expect(name);
        let inner = &line[line.find('{').expect("{") + 1..line.find('}').expect("}")];
        inner
            .split("\",")
            .map(|p| p.split('=').next().unwrap_or("").to_owned())
            .filter(|k| k != "le")
            .collect()
    };
    assert_eq!(
        labels("backstop_requests_total"),
        ["endpoint", "status", "upstream"]
    );
    assert_eq!(
        labels("backstop_upstream_attempts_total"),
        ["endpoint", "outcome", "upstream"]
    );
    assert_eq!(labels("backstop_retries_total"), ["reason", "upstream"]);
    assert_eq!(labels("backstop_circuit_state"), ["upstream"]);
    assert_eq!(
        labels("gen_ai_client_token_usage_bucket"),
        [
            "gen_ai_operation_name",
            "gen_ai_provider_name",
            "gen_ai_request_model",
            "gen_ai_token_type"
        ]
    );
    assert_eq!(
        labels("gen_ai_client_operation_duration_seconds_bucket"),
        [
            "error_type",
            "gen_ai_operation_name",
            "gen_ai_provider_name",
            "gen_ai_request_model"
        ]
    );
    assert_eq!(
        labels("gen_ai_client_operation_time_to_first_chunk_seconds_bucket"),
        [
            "error_type",
            "gen_ai_operation_name",
            "gen_ai_provider_name",
            "gen_ai_request_model"
        ]
    );
    assert_eq!(
        first.value(
            "backstop_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert_eq!(
        first.value("backstop_circuit_state", &[("upstream", "mock")]),
        0.0
    );
    assert_eq!(first.value("backstop_failure_records_total", &[]), 0.0);
}

#[tokio::test]
async fn token_usage_comes_from_a_json_response() {
    let h = Harness::start_with("[metrics]\nmodels = [\"gpt-4o\"]").await;
    let response = h
        .client
        .post_json("/v1/chat/completions", chat("gpt-4o"))
        .await;
    let usage = response.json()["usage"].clone();
    let model = [
        ("gen_ai_request_model", "gpt-4o"),
        ("gen_ai_provider_name", "openai"),
        ("gen_ai_operation_name", "chat"),
    ];
    let input = [model[0], model[1], model[2], ("gen_ai_token_type", "input")];
    let output = [
        model[0],
        model[1],
        model[2],
        ("gen_ai_token_type", "output"),
    ];
    let after = scrape_when(&h, TOKENS_COUNT, &input, 1.0).await;
    assert_eq!(after.value(TOKENS_COUNT, &input), 1.0);
    assert_eq!(
        after.value(TOKENS_SUM, &input),
        usage["prompt_tokens"].as_f64().expect("prompt_tokens")
    );
    assert_eq!(
        after.value(TOKENS_SUM, &output),
        usage["completion_tokens"]
            .as_f64()
            .expect("completion_tokens")
    );
    // A JSON call has no time to first chunk.
    assert_eq!(
        after.value(
            "gen_ai_client_operation_time_to_first_chunk_seconds_count",
            &model
        ),
        0.0
    );
}

#[tokio::test]
async fn token_usage_and_first_chunk_time_come_from_a_stream_with_include_usage() {
    let mock = backstop::mock::MockUpstream::start().await.expect("mock");
    let config = config_with_env(
        &mock.url(),
        "[metrics]\nmodels = [\"gpt-4o-mini\"]",
        "kind = \"azure\"",
        &|_| None,
    );
    let proxy = backstop::start(config).await.expect("start");
    let client = common::TestClient::new(proxy.proxy_addr());
    let body = json!({"model": "gpt-4o-mini", "stream": true, "stream_options": {"include_usage": true}, "messages": []});
    let request = client
        .request(Method::POST, "/v1/chat/completions")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let frames = timed_frames(
        client.send(request).await.into_body(),
        Duration::from_secs(10),
    )
    .await;
    let text: Vec<u8> = frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
    let last_usage = common::sse_data(&text)
        .iter()
        .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        .find(|v| v["usage"].is_object())
        .expect("a usage chunk")["usage"]
        .clone();

    let h = common::Harness {
        mock,
        client,
        proxy,
        failure_dir: tempfile::tempdir().expect("temp dir"),
    };
    let model = [
        ("gen_ai_request_model", "gpt-4o-mini"),
        ("gen_ai_provider_name", "azure.ai.openai"),
    ];
    let input = [model[0], model[1], ("gen_ai_token_type", "input")];
    let output = [model[0], model[1], ("gen_ai_token_type", "output")];
    let after = scrape_when(&h, TOKENS_COUNT, &input, 1.0).await;
    assert_eq!(
        after.value(TOKENS_SUM, &input),
        last_usage["prompt_tokens"].as_f64().expect("prompt")
    );
    assert_eq!(
        after.value(TOKENS_SUM, &output),
        last_usage["completion_tokens"]
            .as_f64()
            .expect("completion")
    );
    assert_eq!(
        after.value(
            "gen_ai_client_operation_time_to_first_chunk_seconds_count",
            &model
        ),
        1.0
    );
}

#[tokio::test]
async fn an_unknown_model_becomes_other() {
    let h = Harness::start_with("[metrics]\nmodels = [\"gpt-4o\"]").await;
    h.client
        .post_json("/v1/chat/completions", chat("my-finetune-123"))
        .await;
    let other = [
        ("gen_ai_request_model", "other"),
        ("gen_ai_token_type", "input"),
    ];
    let after = scrape_when(&h, TOKENS_COUNT, &other, 1.0).await;
    assert_eq!(after.value(TOKENS_COUNT, &other), 1.0);
    assert!(!after.text.contains("my-finetune-123"), "{}", after.text);
    assert_eq!(
        after.label_values("gen_ai_client_token_usage_count", "gen_ai_request_model"),
        ["gpt-4o", "other"]
    );
}

#[tokio::test]
async fn three_hundred_distinct_tags_stay_bounded() {
    let h = Harness::start().await;
    for i in 0..300 {
        let request = h
            .client
            .request(Method::GET, "/v1/models")
            .header("x-backstop-tag", format!("purpose_{i}"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        assert_eq!(h.client.call(request).await.status, 200);
    }
    let mut stats = serde_json::Value::Null;
    for _ in 0..200 {
        stats = admin_get(&h.proxy, "/stats").await.json();
        if stats["upstreams"][0]["total"] == 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let tags = stats["tags"].as_array().expect("tags");
    assert_eq!(tags.len(), 257, "the first 256 tags, then other");
    let other = tags.iter().find(|t| t["tag"] == "other").expect("other");
    assert_eq!(other["total"], 44);
    assert!(tags.iter().any(|t| t["tag"] == "purpose_0"));
    assert!(!tags.iter().any(|t| t["tag"] == "purpose_299"));
    // Tags never become metric labels.
    assert!(!scrape(&h.proxy).await.text.contains("purpose_"));
}

#[tokio::test]
async fn in_flight_counts_an_open_stream_until_the_client_leaves() {
    let h = Harness::start().await;
    h.mock.push(Fault::Stream(StreamScript {
        chunks: 100,
        gap: Duration::from_millis(30),
        ..StreamScript::default()
    }));
    let body = json!({"model": "m", "stream": true, "messages": []});
    let request = h
        .client
        .request(Method::POST, "/v1/chat/completions")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let response = h.client.send(request).await;
    let open = [("upstream", "mock")];
    scrape_when(&h, "backstop_in_flight_requests", &open, 1.0).await;
    drop(response);
    for _ in 0..200 {
        if scrape(&h.proxy)
            .await
            .value("backstop_in_flight_requests", &open)
            == 0.0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("in-flight gauge never went back to 0");
}

#[tokio::test]
async fn a_reload_creates_series_for_new_upstreams() {
    let h = Harness::start().await;
    let text = format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [[upstream]]\nname = \"mock\"\nbase_url = \"{0}\"\n\
         [[upstream]]\nname = \"azure-west\"\nkind = \"azure\"\nbase_url = \"{0}\"\npath_prefix = \"/openai/\"\n",
        h.mock.url()
    );
    let config = backstop::Config::from_toml(&text, &|_| None).expect("config");
    h.proxy.reload(config).expect("reload");
    let after = scrape(&h.proxy).await;
    assert!(after.has("backstop_circuit_state", &[("upstream", "azure-west")]));
    assert!(after.has(
        "gen_ai_client_token_usage_count",
        &[("gen_ai_provider_name", "azure.ai.openai")]
    ));
    let stats = admin_get(&h.proxy, "/stats").await.json();
    let names: Vec<&str> = stats["upstreams"]
        .as_array()
        .expect("upstreams")
        .iter()
        .filter_map(|u| u["name"].as_str())
        .collect();
    assert_eq!(names, ["azure-west", "mock"]);
}

#[tokio::test]
async fn unrouted_requests_count_under_upstream_none() {
    let mock = backstop::mock::MockUpstream::start().await.expect("mock");
    let config = config_with_env(&mock.url(), "", "path_prefix = \"/v1/\"", &|_| None);
    let proxy = backstop::start(config).await.expect("start");
    let client = common::TestClient::new(proxy.proxy_addr());
    assert_eq!(client.get("/elsewhere").await.status, 404);
    let h = common::Harness {
        mock,
        client,
        proxy,
        failure_dir: tempfile::tempdir().expect("temp dir"),
    };
    let none = [
        ("upstream", "none"),
        ("endpoint", "other"),
        ("status", "404"),
    ];
    let after = scrape_when(&h, REQUESTS, &none, 1.0).await;
    assert_eq!(after.value(REQUESTS, &none), 1.0);
    assert!(!after.text.contains("elsewhere"));
}
