//! SPEC §2, one end-to-end test per rule, against the fault-injecting mock.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use backstop::events::{RecordingObserver, Verdict};
use backstop::mock::{Fault, MockUpstream, RetryAfter, StreamEnd, StreamScript};
use bytes::Bytes;
use common::{FAST, Harness, TestClient, config, sse_data, stream_request, timed_frames};
use http::{Method, StatusCode};
use http_body_util::Full;

/// Short delays so the suite stays fast; the rules are the same at any scale.
fn chat() -> serde_json::Value {
    common::chat("gpt-4o-mini")
}

fn gaps(mock: &MockUpstream) -> Vec<Duration> {
    let received = mock.received();
    received.windows(2).map(|w| w[1].at - w[0].at).collect()
}

#[tokio::test]
async fn retries_503_then_succeeds() {
    let h = Harness::start_with(FAST).await;
    h.mock.push_n(Fault::ServerError(503), 2);
    let response = h.client.post_json("/v1/chat/completions", chat()).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.json()["object"], "chat.completion");
    assert_eq!(response.header("x-backstop-attempts"), Some("3"));
    assert_eq!(response.header("x-should-retry"), None);
    assert_eq!(
        response.header("x-request-id"),
        Some("mock-3"),
        "the answering attempt's headers"
    );
    assert_eq!(h.mock.request_count(), 3);
    let bodies: Vec<_> = h.mock.received().iter().map(|r| r.body.clone()).collect();
    assert!(
        bodies.iter().all(|b| b == &bodies[0]),
        "every attempt replays the same body"
    );
}

#[tokio::test]
async fn every_attempt_emits_one_event_with_its_decision() {
    let mock = MockUpstream::start().await.expect("mock");
    let observer = Arc::new(RecordingObserver::default());
    let proxy = backstop::start_with_observer(config(&mock.url(), FAST), observer.clone())
        .await
        .expect("start");
    mock.push_n(Fault::ServerError(503), 2);
    TestClient::new(proxy.proxy_addr())
        .post_json("/v1/chat/completions", chat())
        .await;

    let events = observer.events();
    let summary: Vec<(u32, &str, Option<u16>, Verdict)> = events
        .iter()
        .map(|e| (e.attempt, e.outcome.reason().as_str(), e.status, e.verdict))
        .collect();
    assert_eq!(
        summary,
        [
            (1, "status_503", Some(503), Verdict::Retry),
            (2, "status_503", Some(503), Verdict::Retry),
            (3, "success", Some(200), Verdict::Returned),
        ]
    );
    assert!(events[0].delay.is_some() && events[2].delay.is_none());
    assert_eq!(events[0].error_code.as_deref(), Some("server_error"));
    assert_eq!(events[0].upstream_request_id.as_deref(), Some("mock-1"));
    assert!(events.iter().all(|e| e.request_id == events[0].request_id && &*e.endpoint == "/v1/chat/completions"));
    assert!(events[2].is_final() && !events[0].is_final());
}

#[tokio::test]
async fn does_not_retry_400_content_filter() {
    let h = Harness::start_with(FAST).await;
    h.mock.push(Fault::ContentFilter);
    let response = h.client.post_json("/v1/chat/completions", chat()).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        response.json()["error"]["code"],
        "content_filter",
        "the upstream body as it was"
    );
    assert_eq!(response.header("x-backstop-attempts"), Some("1"));
    assert_eq!(response.header("x-should-retry"), None);
    assert_eq!(h.mock.request_count(), 1);
}

#[tokio::test]
async fn does_not_retry_other_4xx() {
    let h = Harness::start_with(FAST).await;
    for status in [400u16, 401, 403, 404, 413, 422] {
        h.mock.push(Fault::Respond {
            status,
            headers: vec![],
            body: "{\"error\":{\"message\":\"no\"}}".into(),
        });
    }
    for status in [400u16, 401, 403, 404, 413, 422] {
        let response = h.client.post_json("/v1/chat/completions", chat()).await;
        assert_eq!(response.status.as_u16(), status);
    }
    assert_eq!(h.mock.request_count(), 6, "one attempt each");
}

#[tokio::test]
async fn does_not_retry_quota_429() {
    let h = Harness::start_with(FAST).await;
    h.mock.push(Fault::QuotaExhausted);
    let response = h.client.post_json("/v1/chat/completions", chat()).await;
    assert_eq!(response.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.json()["error"]["code"], "insufficient_quota");
    assert_eq!(h.mock.request_count(), 1);
}

#[tokio::test]
async fn honours_retry_after_ms() {
    let h = Harness::start_with(FAST).await;
    h.mock.push(Fault::RateLimited(RetryAfter::Ms(300)));
    let response = h.client.post_json("/v1/chat/completions", chat()).await;
    assert_eq!(response.status, StatusCode::OK);
    let gap = gaps(&h.mock)[0];
    assert!(
        gap >= Duration::from_millis(300),
        "waited {gap:?}, asked 300 ms (max_delay is only 100 ms)"
    );
    assert!(
        gap < Duration::from_millis(300 * 12 / 10 + 250),
        "waited {gap:?}"
    );
}

#[tokio::test]
async fn honours_azure_retry_after_ms_and_float_seconds() {
    let h = Harness::start_with(FAST).await;
    h.mock.push(Fault::RateLimited(RetryAfter::AzureMs(200)));
    h.mock
        .push(Fault::RateLimited(RetryAfter::Seconds("0.25".into())));
    let response = h.client.post_json("/v1/chat/completions", chat()).await;
    assert_eq!(response.status, StatusCode::OK);
    let g = gaps(&h.mock);
    assert!(g[0] >= Duration::from_millis(200), "{g:?}");
    assert!(g[1] >= Duration::from_millis(250), "{g:?}");
}

#[tokio::test]
async fn honours_http_date_retry_after() {
    let h = Harness::start_with(FAST).await;
    // HTTP-dates have whole seconds: 2 s ahead means between 1 and 2 s from now.
    h.mock.push(Fault::RateLimited(RetryAfter::HttpDate(
        SystemTime::now() + Duration::from_secs(2),
    )));
    let response = h.client.post_json("/v1/chat/completions", chat()).await;
    assert_eq!(response.status, StatusCode::OK);
    let gap = gaps(&h.mock)[0];
    assert!(
        gap >= Duration::from_millis(900) && gap < Duration::from_millis(3000),
        "{gap:?}"
    );
}

#[tokio::test]
async fn honours_ratelimit_reset_of_the_exhausted_dimension() {
    let h = Harness::start_with(FAST).await;
    // The other dimension says 45 s: waiting that long would time the test out.
    h.mock.push(Fault::RateLimited(RetryAfter::ResetRequests(
        "300ms".into(),
    )));
    h.mock
        .push(Fault::RateLimited(RetryAfter::ResetTokens("0.2".into())));
    let response = h.client.post_json("/v1/chat/completions", chat()).await;
    assert_eq!(response.status, StatusCode::OK);
    let g = gaps(&h.mock);
    assert!(
        g[0] >= Duration::from_millis(300) && g[0] < Duration::from_secs(2),
        "{g:?}"
    );
    assert!(
        g[1] >= Duration::from_millis(200) && g[1] < Duration::from_secs(2),
        "{g:?}"
    );
}

#[tokio::test]
async fn passes_back_retry_after_beyond_max_server_delay_at_once() {
    let h = Harness::start_with(&format!("{FAST}\nmax_server_delay = \"1s\"")).await;
    h.mock
        .push(Fault::RateLimited(RetryAfter::Seconds("30".into())));
    let started = Instant::now();
    let response = h.client.post_json("/v1/chat/completions", chat()).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response.header("retry-after"),
        Some("30"),
        "the client sees the server's delay"
    );
    assert_eq!(response.header("x-backstop-attempts"), Some("1"));
    assert_eq!(h.mock.request_count(), 1);
}

#[tokio::test]
async fn obeys_upstream_x_should_retry_false() {
    let h = Harness::start_with(FAST).await;
    h.mock.push(Fault::Respond {
        status: 503,
        headers: vec![("x-should-retry".into(), "false".into())],
        body: "{}".into(),
    });
    let response = h.client.post_json("/v1/chat/completions", chat()).await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.mock.request_count(), 1);
}

#[tokio::test]
async fn obeys_upstream_x_should_retry_true() {
    let h = Harness::start_with(FAST).await;
    h.mock.push(Fault::Respond {
        status: 400,
        headers: vec![("x-should-retry".into(), "true".into())],
        body: "{}".into(),
    });
    let response = h.client.post_json("/v1/chat/completions", chat()).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(h.mock.request_count(), 2);
}

#[tokio::test]
async fn retries_connection_refused_then_returns_502() {
    let port = common::chains::refusing_addr().port();
    let proxy = backstop::start(config(&format!("http://127.0.0.1:{port}"), FAST))
        .await
        .expect("start");
    let response = TestClient::new(proxy.proxy_addr()).get("/v1/models").await;
    assert_eq!(response.status, StatusCode::BAD_GATEWAY);
    assert_eq!(response.json()["error"]["code"], "upstream_connect_error");
    assert_eq!(response.header("x-backstop-attempts"), Some("3"));
    assert_eq!(
        response.header("x-should-retry"),
        Some("false"),
        "the SDK must not multiply our retries"
    );
}

#[tokio::test]
async fn retries_reset_before_headers() {
    let h = Harness::start_with(FAST).await;
    h.mock.push(Fault::ResetBeforeHeaders);
    let response = h.client.post_json("/v1/chat/completions", chat()).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("x-backstop-attempts"), Some("2"));
}

#[tokio::test]
async fn retries_stream_that_dies_before_first_event() {
    let h = Harness::start_with(FAST).await;
    h.mock.push(Fault::Stream(StreamScript {
        end: StreamEnd::DieAfter(0),
        ..StreamScript::default()
    }));
    let response = h.client.send(stream_request(&h.client)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-backstop-attempts"], "2");
    let frames = timed_frames(response.into_body(), Duration::from_secs(10)).await;
    let bytes: Vec<u8> = frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
    assert_eq!(sse_data(&bytes).last().map(String::as_str), Some("[DONE]"));
}

#[tokio::test]
async fn retries_stream_that_opens_with_an_error_event() {
    let h = Harness::start_with(FAST).await;
    h.mock.push(Fault::Stream(StreamScript {
        end: StreamEnd::ErrorEventFirst,
        ..StreamScript::default()
    }));
    let response = h.client.send(stream_request(&h.client)).await;
    assert_eq!(response.headers()["x-backstop-attempts"], "2");
    let frames = timed_frames(response.into_body(), Duration::from_secs(10)).await;
    let bytes: Vec<u8> = frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
    let events = sse_data(&bytes);
    assert!(
        !events.iter().any(|e| e.contains("\"error\"")),
        "{events:?}"
    );
}

#[tokio::test]
async fn never_retries_after_first_event() {
    let h = Harness::start_with(FAST).await;
    h.mock.push(Fault::Stream(StreamScript {
        chunks: 5,
        end: StreamEnd::DieAfter(2),
        ..StreamScript::default()
    }));
    let response = h.client.send(stream_request(&h.client)).await;
    assert_eq!(response.headers()["x-backstop-attempts"], "1");
    let frames = timed_frames(response.into_body(), Duration::from_secs(10)).await;
    let bytes: Vec<u8> = frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
    let events = sse_data(&bytes);
    assert_eq!(
        events.len(),
        3,
        "2 chunks, then the error event: {events:?}"
    );
    assert!(events[2].contains("stream_interrupted"));
    assert_eq!(h.mock.request_count(), 1);
}

#[tokio::test]
async fn first_event_timeout_bounds_the_header_hold() {
    let h = Harness::start_with(&format!(
        "{FAST}\nfirst_event_timeout = \"200ms\"\nmax_retries = 1"
    ))
    .await;
    let slow = StreamScript {
        first_event_delay: Duration::from_secs(5),
        ..StreamScript::default()
    };
    h.mock.push_n(Fault::Stream(slow), 2);
    let started = Instant::now();
    let response = h.client.send(stream_request(&h.client)).await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(h.mock.request_count(), 2);
}

#[tokio::test]
async fn stops_at_deadline_from_x_stainless_read_timeout() {
    let h = Harness::start_with(&format!("{FAST}\nmax_retries = 20")).await;
    h.mock.push_n(Fault::RateLimited(RetryAfter::Ms(400)), 20);
    let request = h
        .client
        .request(Method::POST, "/v1/chat/completions")
        .header("x-stainless-read-timeout", "1")
        .body(Full::new(Bytes::from(chat().to_string())))
        .expect("request");
    let started = Instant::now();
    let response = h.client.call(request).await;
    let elapsed = started.elapsed();
    assert_eq!(response.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(elapsed < Duration::from_millis(1300), "{elapsed:?}");
    assert!(
        h.mock.request_count() <= 3,
        "400 ms (+20 %) delays fit at most twice in 1 s"
    );
    assert_eq!(response.header("x-should-retry"), Some("false"));
}

#[tokio::test]
async fn budget_caps_retries_under_a_503_storm() {
    let mock = common::always_503().await;
    let extra = format!("{FAST}\nbudget_ratio = 0.1\nbudget_min_per_second = 0");
    let proxy = backstop::start(config(&mock.url(), &extra))
        .await
        .expect("start");
    let client = TestClient::new(proxy.proxy_addr());
    let mut suppressed = 0;
    for _ in 0..40 {
        let response = client.post_json("/v1/chat/completions", chat()).await;
        assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.header("x-should-retry"), Some("false"));
        if response.header("x-backstop-attempts") == Some("1") {
            suppressed += 1;
        }
    }
    // 40 requests earn 4 retries at 10 %: without a budget there would be 120 attempts.
    assert!(
        mock.request_count() <= 44,
        "{} attempts",
        mock.request_count()
    );
    assert!(suppressed >= 36, "{suppressed} requests got no retry");
}

#[tokio::test]
async fn zero_budget_means_no_retries_at_all() {
    let h = Harness::start_with(&format!(
        "{FAST}\nbudget_ratio = 0.0\nbudget_min_per_second = 0"
    ))
    .await;
    h.mock.push(Fault::ServerError(503));
    let response = h.client.post_json("/v1/chat/completions", chat()).await;
    assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(h.mock.request_count(), 1);
}

#[tokio::test]
async fn large_body_is_sent_once() {
    let h = Harness::start_with(&format!(
        "retry_buffer_bytes = 1000\nmax_body_bytes = 100000\n{FAST}"
    ))
    .await;
    h.mock.push(Fault::ServerError(503));
    let body = vec![b'z'; 5000];
    let request = h
        .client
        .request(Method::POST, "/v1/files")
        .body(Full::new(Bytes::from(body.clone())))
        .expect("request");
    let response = h.client.call(request).await;
    assert_eq!(
        response.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "passed back, not retried"
    );
    assert_eq!(
        response.header("x-should-retry"),
        None,
        "the client may still retry it"
    );
    assert_eq!(h.mock.request_count(), 1);
    assert_eq!(h.mock.received()[0].body.len(), 5000);
}

#[tokio::test]
async fn client_disconnect_cancels_the_retry() {
    let h = Harness::start_with(FAST).await;
    h.mock.push(Fault::RateLimited(RetryAfter::Ms(500)));
    let request = stream_request(&h.client);
    let sent = tokio::time::timeout(Duration::from_millis(150), h.client.send(request)).await;
    assert!(sent.is_err(), "the client gave up while backstop waited");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        h.mock.request_count(),
        1,
        "no attempt after the client left"
    );
}

#[tokio::test]
async fn upstream_ids_and_ratelimit_headers_pass_through() {
    let h = Harness::start_with(FAST).await;
    h.mock.push(Fault::Respond {
        status: 200,
        headers: vec![
            ("apim-request-id".into(), "apim-1".into()),
            ("x-ratelimit-remaining-requests".into(), "42".into()),
            ("x-ratelimit-reset-tokens".into(), "6m0s".into()),
        ],
        body: "{}".into(),
    });
    let response = h.client.post_json("/v1/chat/completions", chat()).await;
    assert_eq!(response.header("apim-request-id"), Some("apim-1"));
    assert_eq!(response.header("x-request-id"), Some("mock-1"));
    assert_eq!(
        response.header("x-ratelimit-remaining-requests"),
        Some("42")
    );
    assert_eq!(response.header("x-ratelimit-reset-tokens"), Some("6m0s"));
}
