//! Errors backstop produces itself: 502 when it never connected, 504 when the upstream
//! is too slow, always in the OpenAI error shape; broken or stalled streams end with an
//! error event so the SDK raises instead of hanging.

mod common;

use std::time::Duration;

use backstop::mock::{Fault, StreamEnd, StreamScript};
use bytes::Bytes;
use common::{Harness, TestClient, config, sse_data, stream_request, timed_frames};
use http::{Method, StatusCode};
use http_body_util::Full;
use serde_json::json;

#[tokio::test]
async fn connection_refused_gives_502_in_openai_shape() {
    let port = common::chains::refusing_addr().port();
    let proxy = backstop::start(config(&format!("http://127.0.0.1:{port}"), ""))
        .await
        .expect("start");
    let response = TestClient::new(proxy.proxy_addr()).get("/v1/models").await;

    assert_eq!(response.status, StatusCode::BAD_GATEWAY);
    let error = &response.json()["error"];
    assert_eq!(error["type"], "backstop_error");
    assert_eq!(error["code"], "upstream_connect_error");
    assert!(error["param"].is_null());
    assert!(response.header("x-backstop-request-id").is_some());
}

#[tokio::test]
async fn no_headers_within_attempt_timeout_gives_504_after_retries() {
    let h =
        Harness::start_with("[retry]\nattempt_timeout = \"200ms\"\nbase_delay = \"10ms\"").await;
    h.mock.push_n(Fault::Stall(Duration::from_secs(5)), 3);
    let response = h.client.get("/v1/models").await;
    assert_eq!(response.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(response.json()["error"]["code"], "upstream_timeout");
    assert_eq!(response.header("x-backstop-attempts"), Some("3"));
    assert_eq!(response.header("x-should-retry"), Some("false"));
}

#[tokio::test]
async fn reset_before_headers_gives_502_when_ambiguous_retries_are_off() {
    let h = Harness::start_with("[retry]\nretry_ambiguous = false").await;
    h.mock.push(Fault::ResetBeforeHeaders);
    let response = h.client.get("/v1/models").await;
    assert_eq!(response.status, StatusCode::BAD_GATEWAY);
    assert_eq!(response.json()["error"]["code"], "upstream_error");
    assert_eq!(response.header("x-backstop-attempts"), Some("1"));
    assert_eq!(
        response.header("x-should-retry"),
        None,
        "backstop did not spend retries"
    );
    assert_eq!(h.mock.request_count(), 1);
}

#[tokio::test]
async fn upstream_error_status_is_passed_back_unchanged() {
    let h = Harness::start().await;
    h.mock.push(Fault::ContentFilter);
    let response = h
        .client
        .post_json("/v1/chat/completions", json!({"model": "m"}))
        .await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(response.json()["error"]["code"], "content_filter");
}

#[tokio::test]
async fn ends_stalled_stream_with_error_event() {
    let h = Harness::start_with("[retry]\nidle_timeout = \"300ms\"").await;
    h.mock.push(Fault::Stream(StreamScript {
        chunks: 10,
        gap: Duration::from_millis(10),
        end: StreamEnd::StallAfter(3),
        first_event_delay: Duration::ZERO,
        ..StreamScript::default()
    }));
    let response = h.client.send(stream_request(&h.client)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let frames = timed_frames(response.into_body(), Duration::from_secs(10)).await;
    let bytes: Vec<u8> = frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
    let events = sse_data(&bytes);
    assert_eq!(
        events.len(),
        4,
        "3 chunks, then the error event: {events:?}"
    );
    let last: serde_json::Value = serde_json::from_str(&events[3]).expect("error event is JSON");
    assert_eq!(last["error"]["code"], "stream_idle_timeout");
}

#[tokio::test]
async fn stream_that_dies_mid_way_ends_with_an_error_event() {
    let h = Harness::start().await;
    h.mock.push(Fault::Stream(StreamScript {
        chunks: 10,
        gap: Duration::from_millis(5),
        end: StreamEnd::DieAfter(2),
        first_event_delay: Duration::ZERO,
        ..StreamScript::default()
    }));
    let response = h.client.send(stream_request(&h.client)).await;
    let frames = timed_frames(response.into_body(), Duration::from_secs(10)).await;
    let bytes: Vec<u8> = frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
    let events = sse_data(&bytes);
    let last: serde_json::Value =
        serde_json::from_str(events.last().expect("events")).expect("JSON");
    assert_eq!(last["error"]["code"], "stream_interrupted", "{events:?}");
    assert_eq!(events.len(), 3, "{events:?}");
}

/// `GET /v1/models`, with the response body left unread.
async fn models(h: &Harness) -> http::Response<hyper::body::Incoming> {
    let request = h.client.request(Method::GET, "/v1/models");
    h.client
        .send(request.body(Full::new(Bytes::new())).expect("request"))
        .await
}

#[tokio::test]
async fn torn_json_body_is_not_passed_off_as_complete() {
    let h = Harness::start().await;
    h.mock.push(Fault::ResetMidBody);
    let response = models(&h).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "headers were already sent"
    );
    let collected = http_body_util::BodyExt::collect(response.into_body()).await;
    assert!(
        collected.is_err(),
        "the client must see the body break, not a clean end"
    );
}

#[tokio::test]
async fn an_error_body_that_breaks_while_being_read_reaches_the_client_broken() {
    // The 503 is passed back (no retries), but its body broke after half of it: the
    // client must see it break, not a clean, shorter error body.
    let h = Harness::start_with("[retry]\nmax_retries = 0\n").await;
    h.mock.push(Fault::ErrorBodyCut(503));
    let response = models(&h).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let collected = http_body_util::BodyExt::collect(response.into_body())
        .await
        .map(|c| c.to_bytes());
    assert!(
        collected.is_err(),
        "the client must see the error body break, not a clean end: {collected:?}"
    );
}
