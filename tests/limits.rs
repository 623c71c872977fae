//! SPEC §2's last three bullets: client-side rate limits and pacing, the circuit
//! breaker, and fallback upstreams. Real time with small windows and generous bounds.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use backstop::events::{RecordingObserver, Verdict};
use backstop::mock::{Fault, MockOptions, MockRateLimit, MockUpstream};
use bytes::Bytes;
use common::{Collected, TestClient};
use http::{Method, StatusCode};
use http_body_util::Full;
use serde_json::json;

fn chat(max_tokens: u32) -> serde_json::Value {
    let mut body = common::chat("gpt-4o");
    body["max_tokens"] = json!(max_tokens);
    body
}

async fn proxy(
    toml: &str,
    env: &[(&str, &str)],
) -> (backstop::Running, TestClient, Arc<RecordingObserver>) {
    common::start_toml(toml, env).await
}

async fn concurrently(client: &TestClient, n: usize, body: serde_json::Value) -> Vec<Collected> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (client, body) = (client.clone(), body.clone());
            tokio::spawn(async move { client.post_json("/v1/chat/completions", body).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

#[tokio::test]
async fn a_burst_over_requests_per_minute_is_spread_over_time() {
    let mock = MockUpstream::start().await.expect("mock");
    let toml = format!(
        "[[upstream]]\nname = \"m\"\nbase_url = \"{}\"\nrequests_per_minute = 600\nrequests_burst = 2\nmax_queue_wait = \"5s\"\n",
        mock.url()
    );
    let (_p, client, _) = proxy(&toml, &[]).await;
    let responses = concurrently(&client, 6, chat(10)).await;
    assert!(responses.iter().all(|r| r.status == StatusCode::OK));
    let arrivals: Vec<_> = mock.received().iter().map(|r| r.at).collect();
    let span = *arrivals.last().expect("arrivals") - arrivals[0];
    // 2 at once, then one per 100 ms: the last arrives ~400 ms after the first.
    assert!(
        span >= Duration::from_millis(300),
        "arrivals spanned only {span:?}"
    );
    assert!(span < Duration::from_secs(3), "{span:?}");
}

#[tokio::test]
async fn a_burst_beyond_max_queue_wait_gets_local_429s() {
    let mock = MockUpstream::start().await.expect("mock");
    let toml = format!(
        "[[upstream]]\nname = \"m\"\nbase_url = \"{}\"\nrequests_per_minute = 60\nrequests_burst = 1\nmax_queue_wait = \"200ms\"\n",
        mock.url()
    );
    let (_p, client, observer) = proxy(&toml, &[]).await;
    let responses = concurrently(&client, 3, chat(10)).await;
    let refused: Vec<_> = responses
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(refused.len(), 2, "one passes, two would wait ~1 s and 2 s");
    for r in refused {
        assert_eq!(r.json()["error"]["code"], "rate_limited_locally");
        assert_eq!(r.json()["error"]["type"], "backstop_error");
        assert!(
            r.header("retry-after")
                .and_then(|v| v.parse::<u64>().ok())
                .is_some_and(|s| s >= 1)
        );
        assert_eq!(r.header("x-should-retry"), Some("true"));
        assert_eq!(r.header("x-backstop-attempts"), Some("0"));
    }
    assert_eq!(mock.request_count(), 1);
    let refusals = observer
        .events()
        .iter()
        .filter(|e| e.outcome.reason().as_str() == "rate_limited_locally")
        .count();
    assert_eq!(
        refusals, 2,
        "each refusal is an event (and so a failure-log record)"
    );
}

#[tokio::test]
async fn tokens_per_minute_admits_by_estimate() {
    let mock = MockUpstream::start().await.expect("mock");
    // 6000 per minute: a burst of 1000 tokens, refilled at 100 per second.
    let toml = format!(
        "[[upstream]]\nname = \"m\"\nbase_url = \"{}\"\ntokens_per_minute = 6000\nmax_queue_wait = \"300ms\"\n",
        mock.url()
    );
    let (_p, client, _) = proxy(&toml, &[]).await;
    let responses = concurrently(&client, 2, chat(900)).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status.as_u16()).collect();
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "{statuses:?}: the second ~920-token estimate does not fit"
    );
}

#[tokio::test]
async fn tokens_per_minute_corrects_the_estimate_from_usage() {
    let mock = MockUpstream::start().await.expect("mock");
    let toml = format!(
        "[[upstream]]\nname = \"m\"\nbase_url = \"{}\"\ntokens_per_minute = 6000\nmax_queue_wait = \"300ms\"\n",
        mock.url()
    );
    let (_p, client, _) = proxy(&toml, &[]).await;
    // The first request is estimated at ~920 tokens but the mock reports a few dozen:
    // the credit pays for the second, which would otherwise wait ~9 s and be refused.
    let first = client.post_json("/v1/chat/completions", chat(900)).await;
    assert_eq!(first.status, StatusCode::OK);
    let used = first.json()["usage"]["total_tokens"]
        .as_u64()
        .expect("usage");
    assert!(used < 200, "the mock reports small usage ({used})");
    let started = Instant::now();
    let second = client.post_json("/v1/chat/completions", chat(900)).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text());
    assert!(started.elapsed() < Duration::from_millis(250));
}

/// Runs 20 requests, 4 at a time, against a mock that allows 5 per 500 ms; returns how
/// many 429s the mock sent.
async fn pacing_experiment(pacing: bool) -> (usize, usize) {
    let limit = MockRateLimit {
        requests: 5,
        window: Duration::from_millis(500),
    };
    let mock = MockUpstream::start_with(MockOptions {
        rate_limit: Some(limit),
        ..MockOptions::default()
    })
    .await
    .expect("mock");
    let toml = format!(
        "[retry]\nmax_retries = 6\nthrottle_base_delay = \"50ms\"\nmax_delay = \"500ms\"\nbudget_min_per_second = 100\n\
         [[upstream]]\nname = \"m\"\nbase_url = \"{}\"\npacing = {pacing}\nmax_queue_wait = \"5s\"\n",
        mock.url()
    );
    let (_p, client, _) = proxy(&toml, &[]).await;
    let mut ok = 0;
    for _ in 0..5 {
        ok += concurrently(&client, 4, chat(10))
            .await
            .iter()
            .filter(|r| r.status == StatusCode::OK)
            .count();
    }
    (mock.request_count() - ok, ok)
}

#[tokio::test]
async fn pacing_avoids_429s_that_retries_would_absorb() {
    let (with_pacing, ok_on) = pacing_experiment(true).await;
    let (without_pacing, ok_off) = pacing_experiment(false).await;
    eprintln!(
        "pacing experiment: 429s seen by the mock: pacing on {with_pacing} (ok {ok_on}/20), off {without_pacing} (ok {ok_off}/20)"
    );
    assert!(
        with_pacing < without_pacing,
        "pacing on: {with_pacing} 429s, off: {without_pacing}"
    );
    assert_eq!(ok_on, 20);
}

#[tokio::test]
async fn breaker_opens_fails_fast_half_opens_and_closes() {
    let mock = MockUpstream::start().await.expect("mock");
    let toml = format!(
        "[retry]\nmax_retries = 0\n[[upstream]]\nname = \"m\"\nbase_url = \"{}\"\n\
         [upstream.circuit_breaker]\nconsecutive_failures = 2\nopen_for = \"300ms\"\n",
        mock.url()
    );
    let (_p, client, observer) = proxy(&toml, &[]).await;
    mock.push_n(Fault::ServerError(503), 2);
    for _ in 0..2 {
        assert_eq!(
            client
                .post_json("/v1/chat/completions", chat(10))
                .await
                .status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    let started = Instant::now();
    let fast = client.post_json("/v1/chat/completions", chat(10)).await;
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(fast.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(fast.json()["error"]["code"], "circuit_open");
    assert_eq!(fast.header("x-should-retry"), Some("false"));
    assert_eq!(fast.header("retry-after"), Some("1"));
    assert_eq!(
        mock.request_count(),
        2,
        "the open circuit did not touch the upstream"
    );
    assert!(
        observer
            .events()
            .iter()
            .any(|e| e.outcome.reason().as_str() == "circuit_open" && e.is_final())
    );

    tokio::time::sleep(Duration::from_millis(350)).await;
    let probe = client.post_json("/v1/chat/completions", chat(10)).await;
    assert_eq!(
        probe.status,
        StatusCode::OK,
        "the half-open probe went through and succeeded"
    );
    let after = client.post_json("/v1/chat/completions", chat(10)).await;
    assert_eq!(after.status, StatusCode::OK, "closed again");
    assert_eq!(mock.request_count(), 4);
}

#[tokio::test]
async fn falls_back_to_a_second_upstream_with_its_own_key() {
    let primary = common::always_503().await;
    let backup = MockUpstream::start().await.expect("mock");
    let toml = format!(
        "[retry]\nbase_delay = \"5ms\"\nthrottle_base_delay = \"5ms\"\nmax_delay = \"20ms\"\n\
         [[upstream]]\nname = \"primary\"\nbase_url = \"{}\"\nfallbacks = [\"backup\"]\n\
         [[upstream]]\nname = \"backup\"\nbase_url = \"{}\"\npath_prefix = \"/backup/\"\napi_key_env = \"BACKUP_KEY\"\n",
        primary.url(),
        backup.url()
    );
    let (_p, client, observer) = proxy(&toml, &[("BACKUP_KEY", "sk-backup")]).await;
    let response = client.post_json("/v1/chat/completions", chat(10)).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("x-backstop-upstream"), Some("backup"));
    assert_eq!(
        response.header("x-backstop-attempts"),
        Some("4"),
        "3 on the primary, 1 on the backup"
    );
    assert_eq!(primary.request_count(), 3);
    let got = &backup.received()[0];
    assert_eq!(got.path, "/v1/chat/completions");
    assert_eq!(got.header("authorization"), Some("Bearer sk-backup"));
    let verdicts: Vec<Verdict> = observer.events().iter().map(|e| e.verdict).collect();
    assert_eq!(
        verdicts,
        [
            Verdict::Retry,
            Verdict::Retry,
            Verdict::Fallback,
            Verdict::Returned
        ]
    );
}

#[tokio::test]
async fn azure_fallback_rewrites_the_deployment_and_sends_its_api_key() {
    let primary = common::always_503().await;
    let backup = MockUpstream::start().await.expect("mock");
    let toml = format!(
        "[retry]\nmax_retries = 0\n\
         [[upstream]]\nname = \"azure-us\"\nkind = \"azure\"\nbase_url = \"{}\"\npath_prefix = \"/openai/\"\nfallbacks = [\"azure-eu\"]\n\
         [[upstream]]\nname = \"azure-eu\"\nkind = \"azure\"\nbase_url = \"{}\"\npath_prefix = \"/eu/\"\napi_key_env = \"EU_KEY\"\n\
         [upstream.deployment]\n\"gpt-4o\" = \"gpt4o-eu\"\n",
        primary.url(),
        backup.url()
    );
    let (_p, client, _) = proxy(&toml, &[("EU_KEY", "eu-secret")]).await;
    let request = client
        .request(
            Method::POST,
            "/openai/deployments/gpt4o-us/chat/completions?api-version=2024-10-21",
        )
        .header("api-key", "us-client-key")
        .body(Full::new(Bytes::from(chat(10).to_string())))
        .expect("request");
    let response = client.call(request).await;
    assert_eq!(response.status, StatusCode::OK);
    let got = &backup.received()[0];
    assert_eq!(got.path, "/openai/deployments/gpt4o-eu/chat/completions");
    assert_eq!(got.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(got.header("api-key"), Some("eu-secret"));
}

#[tokio::test]
async fn a_fallback_chain_never_repeats_a_host() {
    let first = common::always_503().await;
    let second = MockUpstream::start().await.expect("mock");
    let toml = format!(
        "[retry]\nmax_retries = 0\n\
         [[upstream]]\nname = \"a\"\nbase_url = \"{first}\"\nfallbacks = [\"same-host\", \"c\"]\n\
         [[upstream]]\nname = \"same-host\"\nbase_url = \"{first}/other\"\npath_prefix = \"/b/\"\n\
         [[upstream]]\nname = \"c\"\nbase_url = \"{second}\"\npath_prefix = \"/c/\"\n",
        first = first.url(),
        second = second.url()
    );
    let (_p, client, _) = proxy(&toml, &[]).await;
    let response = client.post_json("/v1/chat/completions", chat(10)).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("x-backstop-upstream"), Some("c"));
    assert_eq!(
        first.request_count(),
        1,
        "the same host was not tried twice"
    );
    assert_eq!(second.request_count(), 1);
}

#[tokio::test]
async fn an_open_circuit_sends_requests_straight_to_the_fallback() {
    let primary = common::always_503().await;
    let backup = MockUpstream::start().await.expect("mock");
    let toml = format!(
        "[retry]\nmax_retries = 0\n\
         [[upstream]]\nname = \"primary\"\nbase_url = \"{}\"\nfallbacks = [\"backup\"]\n\
         [upstream.circuit_breaker]\nconsecutive_failures = 1\nopen_for = \"10s\"\n\
         [[upstream]]\nname = \"backup\"\nbase_url = \"{}\"\npath_prefix = \"/backup/\"\n",
        primary.url(),
        backup.url()
    );
    let (_p, client, _) = proxy(&toml, &[]).await;
    for _ in 0..3 {
        let response = client.post_json("/v1/chat/completions", chat(10)).await;
        assert_eq!(response.status, StatusCode::OK);
    }
    assert_eq!(
        primary.request_count(),
        1,
        "after the first failure the circuit is open"
    );
    assert_eq!(backup.request_count(), 3);
}

#[tokio::test]
async fn the_deadline_covers_every_fallback() {
    let primary = common::always_503().await;
    let backup = MockUpstream::start().await.expect("mock");
    backup.push(Fault::Stall(Duration::from_secs(10)));
    let toml = format!(
        "[retry]\nbase_delay = \"5ms\"\nthrottle_base_delay = \"5ms\"\nmax_delay = \"20ms\"\n\
         [[upstream]]\nname = \"primary\"\nbase_url = \"{}\"\nfallbacks = [\"backup\"]\n\
         [[upstream]]\nname = \"backup\"\nbase_url = \"{}\"\npath_prefix = \"/backup/\"\n",
        primary.url(),
        backup.url()
    );
    let (_p, client, _) = proxy(&toml, &[]).await;
    let request = client
        .request(Method::POST, "/v1/chat/completions")
        .header("x-stainless-read-timeout", "0.8")
        .body(Full::new(Bytes::from(chat(10).to_string())))
        .expect("request");
    let started = Instant::now();
    let response = client.call(request).await;
    assert_eq!(response.status, StatusCode::GATEWAY_TIMEOUT);
    assert!(
        started.elapsed() < Duration::from_millis(1300),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(response.header("x-should-retry"), Some("false"));
}

#[tokio::test]
async fn pacing_state_is_visible_in_stats() {
    let mock = MockUpstream::start().await.expect("mock");
    let toml = format!(
        "[retry]\nmax_retries = 0\n[[upstream]]\nname = \"m\"\nbase_url = \"{}\"\n",
        mock.url()
    );
    let (running, client, _) = proxy(&toml, &[]).await;
    let admin = TestClient::new(running.admin_addr());
    client.post_json("/v1/chat/completions", chat(10)).await;
    let stats = admin.get("/stats").await.json();
    assert_eq!(stats["upstreams"][0]["pacing"]["factor"], 1.0, "{stats}");

    mock.push(Fault::RateLimited(backstop::mock::RetryAfter::Ms(50)));
    client.post_json("/v1/chat/completions", chat(10)).await;
    let stats = admin.get("/stats").await.json();
    assert_eq!(
        stats["upstreams"][0]["pacing"]["factor"], 0.5,
        "a 429 halves the rate: {stats}"
    );
}
