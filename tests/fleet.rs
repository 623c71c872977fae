//! SPEC §8: a fleet of backstop processes sharing limits and circuit state through a
//! real redis-server, all on 127.0.0.1. Real time with generous bounds.

mod common;

use std::time::{Duration, Instant};

use backstop::mock::{Fault, MockUpstream};
use common::TestClient;
use common::fleet::{chat, count, fire, outcomes, redis_table, redis_up_becomes, replica, scrape};
use common::redis_server::RedisServer;
use http::StatusCode;

const NO_WAIT: &str = "requests_per_minute = 600\nrequests_burst = 10\nmax_queue_wait = \"0s\"";

#[tokio::test]
async fn three_replicas_share_one_burst_with_no_queue_wait() {
    let Some(redis) = RedisServer::start(None).await else {
        return;
    };
    let mock = MockUpstream::start().await.expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let upstream = format!("base_url = \"{}\"\n{NO_WAIT}", mock.url());
    let mut fleet = Vec::new();
    for n in 0..3 {
        fleet.push(replica(dir.path(), n, &upstream, &redis_table(&redis), &[]).await);
    }
    for proxy in &fleet {
        assert!(redis_up_becomes(proxy, 1.0, Duration::from_secs(5)).await);
    }
    let responses = fire(&fleet.iter().collect::<Vec<_>>(), 20).await;
    let passed = count(&responses, StatusCode::OK);
    let seen = mock.request_count();
    assert_eq!(passed, seen, "{}", outcomes(&responses));
    assert!(
        (10..=13).contains(&seen),
        "one burst of 10 for the fleet (plus what refilled meanwhile), not 30: {}",
        outcomes(&responses)
    );
    let refused: Vec<_> = responses
        .iter()
        .filter(|(r, _)| r.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(refused.len(), 60 - passed);
    for (r, took) in refused {
        assert_eq!(r.json()["error"]["code"], "rate_limited_locally");
        assert!(
            *took < Duration::from_secs(1),
            "refused at once, not after {took:?}"
        );
    }
}

#[tokio::test]
async fn without_redis_each_replica_has_its_own_burst() {
    let mock = MockUpstream::start().await.expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let upstream = format!("base_url = \"{}\"\n{NO_WAIT}", mock.url());
    let mut fleet = Vec::new();
    for n in 0..3 {
        fleet.push(replica(dir.path(), n, &upstream, "", &[]).await);
    }
    let responses = fire(&fleet.iter().collect::<Vec<_>>(), 20).await;
    let seen = mock.request_count();
    assert_eq!(count(&responses, StatusCode::OK), seen);
    assert!(
        (30..=36).contains(&seen),
        "three bursts of 10: {}",
        outcomes(&responses)
    );
}

#[tokio::test]
async fn queued_requests_are_spread_at_the_fleet_rate() {
    let Some(redis) = RedisServer::start(None).await else {
        return;
    };
    let mock = MockUpstream::start().await.expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let upstream = format!(
        "base_url = \"{}\"\nrequests_per_minute = 600\nrequests_burst = 1\nmax_queue_wait = \"10s\"",
        mock.url()
    );
    let mut fleet = Vec::new();
    for n in 0..3 {
        fleet.push(replica(dir.path(), n, &upstream, &redis_table(&redis), &[]).await);
    }
    for proxy in &fleet {
        assert!(redis_up_becomes(proxy, 1.0, Duration::from_secs(5)).await);
    }
    let responses = fire(&fleet.iter().collect::<Vec<_>>(), 10).await;
    assert_eq!(
        count(&responses, StatusCode::OK),
        30,
        "all admitted after a wait"
    );
    let mut arrivals: Vec<Instant> = mock.received().iter().map(|r| r.at).collect();
    arrivals.sort();
    let span = arrivals[29] - arrivals[0];
    assert!(
        span >= Duration::from_millis(2500),
        "30 requests at 10/s take ~2.9 s, not {span:?}"
    );
    for (i, first) in arrivals.iter().enumerate() {
        let in_window = arrivals[i..]
            .iter()
            .take_while(|at| **at - *first < Duration::from_secs(1))
            .count();
        assert!(
            in_window <= 12,
            "{in_window} requests within one second from arrival {i}"
        );
    }
}

#[tokio::test]
async fn a_circuit_opened_through_one_replica_is_open_on_all() {
    let Some(redis) = RedisServer::start(None).await else {
        return;
    };
    let mock = MockUpstream::start().await.expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let upstream = format!(
        "base_url = \"{}\"\n[upstream.circuit_breaker]\nconsecutive_failures = 2\nopen_for = \"10s\"",
        mock.url()
    );
    let a = replica(dir.path(), 0, &upstream, &redis_table(&redis), &[]).await;
    let b = replica(dir.path(), 1, &upstream, &redis_table(&redis), &[]).await;
    for proxy in [&a, &b] {
        assert!(redis_up_becomes(proxy, 1.0, Duration::from_secs(5)).await);
    }
    mock.push_n(Fault::ServerError(503), 2);
    let through_a = TestClient::new(a.proxy_addr);
    for _ in 0..2 {
        let r = through_a.post_json("/v1/chat/completions", chat()).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    let published = common::eventually_async(Duration::from_secs(2), || {
        redis.exists("backstop:m:circuit:open")
    })
    .await;
    assert!(published, "replica A published the opening");

    let started = Instant::now();
    let r = TestClient::new(b.proxy_addr)
        .post_json("/v1/chat/completions", chat())
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["error"]["code"], "circuit_open");
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(
        mock.request_count(),
        2,
        "replica B never touched the upstream"
    );
    let s = scrape(&b).await;
    assert_eq!(s.value("backstop_circuit_state", &[("upstream", "m")]), 2.0);
}

#[tokio::test]
async fn an_upstream_without_limits_or_breaker_never_calls_redis() {
    let Some(redis) = RedisServer::start(None).await else {
        return;
    };
    let mock = MockUpstream::start().await.expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let upstream = format!("base_url = \"{}\"", mock.url());
    let proxy = replica(dir.path(), 0, &upstream, &redis_table(&redis), &[]).await;
    assert!(redis_up_becomes(&proxy, 1.0, Duration::from_secs(5)).await);
    let responses = fire(&[&proxy], 5).await;
    assert_eq!(count(&responses, StatusCode::OK), 5);
    let s = scrape(&proxy).await;
    assert_eq!(
        s.value("backstop_redis_command_duration_seconds_count", &[]),
        0.0
    );
}

#[tokio::test]
async fn once_the_shared_circuit_expires_one_replica_probes_and_its_success_closes_it_for_all() {
    let Some(redis) = RedisServer::start(None).await else {
        return;
    };
    let mock = MockUpstream::start().await.expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let upstream = format!(
        "base_url = \"{}\"\n[upstream.circuit_breaker]\nconsecutive_failures = 1\nopen_for = \"400ms\"",
        mock.url()
    );
    let a = replica(dir.path(), 0, &upstream, &redis_table(&redis), &[]).await;
    let b = replica(dir.path(), 1, &upstream, &redis_table(&redis), &[]).await;
    for proxy in [&a, &b] {
        assert!(redis_up_becomes(proxy, 1.0, Duration::from_secs(5)).await);
    }
    // The probe is slow, so every other request arrives while it is out.
    mock.push(Fault::ServerError(503));
    mock.push(Fault::Stall(Duration::from_millis(300)));
    let r = TestClient::new(a.proxy_addr)
        .post_json("/v1/chat/completions", chat())
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let published = common::eventually_async(Duration::from_secs(2), || {
        redis.exists("backstop:m:circuit:open")
    })
    .await;
    assert!(published);
    let expired = common::eventually_async(Duration::from_secs(2), || async {
        !redis.exists("backstop:m:circuit:open").await
    })
    .await;
    assert!(expired, "open_for passed");

    let responses = fire(&[&a, &b], 4).await;
    assert_eq!(
        count(&responses, StatusCode::OK),
        1,
        "one probe for the fleet"
    );
    assert_eq!(mock.request_count(), 2, "the failure, then only the probe");
    let closed = common::eventually_async(Duration::from_secs(2), || async {
        !redis.exists("backstop:m:circuit:half_open").await
    })
    .await;
    assert!(closed, "the probe's success closed the circuit for all");
    let responses = fire(&[&a, &b], 2).await;
    assert_eq!(count(&responses, StatusCode::OK), 4);
}

#[tokio::test]
async fn tokens_per_minute_is_shared_by_the_fleet() {
    let Some(redis) = RedisServer::start(None).await else {
        return;
    };
    let mock = MockUpstream::start().await.expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    // 6000 tokens a minute: a burst of 1000. Each request is estimated at ~420 tokens
    // (its bytes / 4 + max_tokens 400): two fit the fleet's burst (each replica alone
    // would let two through, four in all).
    let upstream = format!(
        "base_url = \"{}\"\ntokens_per_minute = 6000\nmax_queue_wait = \"0s\"",
        mock.url()
    );
    let a = replica(dir.path(), 0, &upstream, &redis_table(&redis), &[]).await;
    let b = replica(dir.path(), 1, &upstream, &redis_table(&redis), &[]).await;
    for proxy in [&a, &b] {
        assert!(redis_up_becomes(proxy, 1.0, Duration::from_secs(5)).await);
    }
    // At once, and answered only after all four were admitted: usage (which credits
    // back what was overestimated) is not known yet when the last one asks.
    mock.push_n(
        Fault::Delayed(Duration::from_millis(500), Box::new(Fault::Ok)),
        4,
    );
    let mut body = chat();
    body["max_tokens"] = serde_json::json!(400);
    let mut tasks = Vec::new();
    for proxy in [&a, &b, &a, &b] {
        let (client, body) = (TestClient::new(proxy.proxy_addr), body.clone());
        tasks.push(tokio::spawn(async move {
            client.post_json("/v1/chat/completions", body).await
        }));
    }
    let mut passed = 0;
    for task in tasks {
        let r = task.await.expect("request");
        if r.status == StatusCode::OK {
            passed += 1;
        } else {
            assert_eq!(r.json()["error"]["code"], "rate_limited_locally");
        }
    }
    assert_eq!(passed, 2, "the fleet's one burst of tokens");
    assert!(redis.exists("backstop:m:tpm").await);
}
