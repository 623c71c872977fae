//! SPEC §8, when Redis fails: killed mid-load, stalled past `timeout`, or refusing the
//! password. A request is never failed or slowed past `timeout` because of it.

mod common;

use std::time::{Duration, Instant};

use backstop::mock::MockUpstream;
use common::TestClient;
use common::fleet::{chat, count, fire, redis_table, redis_up_becomes, replica, scrape};
use common::process::Proxy;
use common::redis_server::RedisServer;
use http::StatusCode;

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
