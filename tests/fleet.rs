//! SPEC §8: a fleet of backstop processes sharing limits and circuit state through a
//! real redis-server, all on 127.0.0.1. Real time with generous bounds.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use backstop::mock::{Fault, MockUpstream};
use common::process::{Proxy, spawn_serve_with_proxy_env};
use common::redis_server::RedisServer;
use common::scrape::Scrape;
use common::{Collected, TestClient};
use http::StatusCode;

/// One backstop process from `upstream` (the `[[upstream]]` table's keys) and
/// `extra` (tables such as `[redis]`), with `env` set for it.
async fn replica(dir: &Path, n: usize, upstream: &str, extra: &str, env: &[(&str, &str)]) -> Proxy {
    let file = dir.join(format!("backstop-{n}.toml"));
    let text = format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [failure_log]\ndir = {:?}\n[retry]\nmax_retries = 0\n{extra}\n\
         [[upstream]]\nname = \"m\"\n{upstream}\n",
        dir.join(format!("failures-{n}")).display().to_string()
    );
    std::fs::write(&file, text).expect("write config");
    spawn_serve_with_proxy_env(&file, "info", env).await
}

fn redis_table(redis: &RedisServer) -> String {
    format!("[redis]\nurl = \"{}\"\n", redis.url())
}

async fn scrape(proxy: &Proxy) -> Scrape {
    let response = TestClient::new(proxy.admin_addr).get("/metrics").await;
    assert_eq!(response.status, StatusCode::OK);
    Scrape::parse(response.text())
}

/// Scrapes until `backstop_redis_up` is `up` (every 20 ms, at most `limit`).
async fn redis_up_becomes(proxy: &Proxy, up: f64, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    loop {
        if scrape(proxy).await.value("backstop_redis_up", &[]) == up {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn chat() -> serde_json::Value {
    common::chat("gpt-4o")
}

/// `n` requests at once to each of `proxies`.
async fn fire(proxies: &[&Proxy], n: usize) -> Vec<(Collected, Duration)> {
    let mut tasks = Vec::new();
    for proxy in proxies {
        let client = TestClient::new(proxy.proxy_addr);
        for _ in 0..n {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let started = Instant::now();
                let r = client.post_json("/v1/chat/completions", chat()).await;
                (r, started.elapsed())
            }));
        }
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("request task"));
    }
    out
}

fn count(responses: &[(Collected, Duration)], status: StatusCode) -> usize {
    responses.iter().filter(|(r, _)| r.status == status).count()
}

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
    assert_eq!(passed, seen);
    assert!(
        (10..=13).contains(&seen),
        "one burst of 10 for the fleet (plus what refilled meanwhile), not 30: {seen}"
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
    assert!((30..=36).contains(&seen), "three bursts of 10: {seen}");
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

/// Requests one after another (every 10 ms) to each of `proxies` until `stop`; each
/// response's status and duration.
fn steady_load(
    proxies: &[&Proxy],
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<Vec<(StatusCode, Duration)>>> {
    proxies
        .iter()
        .map(|proxy| {
            let client = TestClient::new(proxy.proxy_addr);
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                while !*stop.borrow() {
                    let started = Instant::now();
                    let r = client.post_json("/v1/chat/completions", chat()).await;
                    out.push((r.status, started.elapsed()));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                out
            })
        })
        .collect()
}

#[tokio::test]
async fn redis_killed_mid_load_falls_back_to_local_limits_and_comes_back() {
    let Some(mut redis) = RedisServer::start(None).await else {
        return;
    };
    let mock = MockUpstream::start().await.expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let upstream = format!(
        "base_url = \"{}\"\nrequests_per_minute = 60000\nmax_queue_wait = \"5s\"",
        mock.url()
    );
    let a = replica(dir.path(), 0, &upstream, &redis_table(&redis), &[]).await;
    let b = replica(dir.path(), 1, &upstream, &redis_table(&redis), &[]).await;
    for proxy in [&a, &b] {
        assert!(redis_up_becomes(proxy, 1.0, Duration::from_secs(5)).await);
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let load = steady_load(&[&a, &b], stopped);
    tokio::time::sleep(Duration::from_millis(300)).await;

    redis.kill().await;
    for proxy in [&a, &b] {
        assert!(
            redis_up_becomes(proxy, 0.0, Duration::from_secs(1)).await,
            "backstop_redis_up is 0 within a second"
        );
    }
    let errors = scrape(&a).await.value("backstop_redis_errors_total", &[]);
    assert!(errors >= 1.0, "the failed command was counted");
    tokio::time::sleep(Duration::from_millis(300)).await;

    redis.restart().await;
    for proxy in [&a, &b] {
        assert!(
            redis_up_becomes(proxy, 1.0, Duration::from_secs(10)).await,
            "back to shared state after the restart"
        );
    }
    let _ = stop.send(true);
    let mut results = Vec::new();
    for task in load {
        results.extend(task.await.expect("load task"));
    }
    assert!(results.len() > 20, "{} requests", results.len());
    assert!(
        results.iter().all(|(status, _)| *status == StatusCode::OK),
        "every request succeeded: {results:?}"
    );
    let slowest = results
        .iter()
        .map(|(_, took)| *took)
        .max()
        .unwrap_or_default();
    assert!(
        slowest < Duration::from_millis(600),
        "no request waited much past the 100 ms timeout: {slowest:?}"
    );
    let r = TestClient::new(b.proxy_addr)
        .post_json("/v1/chat/completions", chat())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        redis.exists("backstop:m:rpm").await,
        "limits are shared again"
    );
}

#[tokio::test]
async fn a_redis_slower_than_timeout_never_slows_a_request() {
    let Some(redis) = RedisServer::start(None).await else {
        return;
    };
    let mock = MockUpstream::start().await.expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let upstream = format!(
        "base_url = \"{}\"\nrequests_per_minute = 60000\nmax_queue_wait = \"5s\"",
        mock.url()
    );
    let redis_toml = format!("{}timeout = \"50ms\"\n", redis_table(&redis));
    let proxy = replica(dir.path(), 0, &upstream, &redis_toml, &[]).await;
    assert!(redis_up_becomes(&proxy, 1.0, Duration::from_secs(5)).await);

    // Redis stops answering anyone for 1.5 s.
    let mut c = redis.connection().await;
    let sleeper = tokio::spawn(async move {
        let _ = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(1.5)
            .query_async::<()>(&mut c)
            .await;
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let responses = fire(&[&proxy], 10).await;
    assert_eq!(count(&responses, StatusCode::OK), 10);
    for (_, took) in &responses {
        assert!(
            *took < Duration::from_millis(500),
            "a request waited {took:?} for a stalled Redis"
        );
    }
    let s = scrape(&proxy).await;
    assert!(s.value("backstop_redis_errors_total", &[]) >= 1.0);
    let status = TestClient::new(proxy.admin_addr)
        .get("/status")
        .await
        .text();
    assert!(
        status.contains("Redis unreachable"),
        "/status shows the fallback"
    );
    sleeper.await.expect("sleeper");
    assert!(redis_up_becomes(&proxy, 1.0, Duration::from_secs(10)).await);
}

fn lines(proxy: &mut Proxy) -> String {
    let mut out = String::new();
    for line in &proxy.startup_logs {
        out.push_str(&line.to_string());
        out.push('\n');
    }
    while let Ok(line) = proxy.logs.try_recv() {
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

#[tokio::test]
async fn password_env_is_used_and_a_wrong_password_is_a_warning_not_a_crash() {
    const PASSWORD: &str = "fleet-s3cret-Pw";
    let Some(redis) = RedisServer::start(Some(PASSWORD)).await else {
        return;
    };
    let mock = MockUpstream::start().await.expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let upstream = format!(
        "base_url = \"{}\"\nrequests_per_minute = 6000\nmax_queue_wait = \"5s\"",
        mock.url()
    );
    let table = format!("{}password_env = \"REDIS_PASSWORD\"\n", redis_table(&redis));

    let mut good = replica(
        dir.path(),
        0,
        &upstream,
        &table,
        &[("REDIS_PASSWORD", PASSWORD)],
    )
    .await;
    assert!(redis_up_becomes(&good, 1.0, Duration::from_secs(5)).await);
    let r = TestClient::new(good.proxy_addr)
        .post_json("/v1/chat/completions", chat())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        redis.exists("backstop:m:rpm").await,
        "the limit is in Redis"
    );

    const WRONG: &str = "not-the-Pw-at-all";
    let mut wrong = replica(
        dir.path(),
        1,
        &upstream,
        &table,
        &[("REDIS_PASSWORD", WRONG)],
    )
    .await;
    let r = TestClient::new(wrong.proxy_addr)
        .post_json("/v1/chat/completions", chat())
        .await;
    assert_eq!(r.status, StatusCode::OK, "local limits serve meanwhile");
    assert_eq!(scrape(&wrong).await.value("backstop_redis_up", &[]), 0.0);
    let ready = TestClient::new(wrong.admin_addr).get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK, "stays ready");
    assert!(
        wrong.child.try_wait().expect("status").is_none(),
        "still running"
    );

    let logged = format!("{}{}", lines(&mut good), lines(&mut wrong));
    assert!(
        logged.contains("redis refused the password"),
        "a clear warning: {logged}"
    );
    assert!(!logged.contains(PASSWORD), "the password was logged");
    assert!(!logged.contains(WRONG), "the wrong password was logged");
}
