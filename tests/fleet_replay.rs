//! SPEC §8 `[replay] store = "redis"`: replay entries and in-flight markers shared by a
//! fleet of backstop processes through a real redis-server, all on 127.0.0.1. A repeat
//! on another replica is replayed, or waits for the call still running on the first.

mod common;

use std::path::Path;
use std::time::Duration;

use backstop::mock::{Fault, MockUpstream};
use bytes::Bytes;
use common::fleet::{redis_table, redis_up_becomes, replica, scrape};
use common::process::Proxy;
use common::redis_server::RedisServer;
use common::{Collected, TestClient, chat, eventually};
use http::{Method, StatusCode};
use http_body_util::Full;

const ALICE: &str = "Bearer sk-alice";

/// `[redis]` and `[replay] store = "redis"` for replica `n` (its own local store dir).
fn sharing(redis: &RedisServer, dir: &Path, n: usize) -> String {
    format!(
        "{}[replay]\nstore = \"redis\"\ndir = {:?}\n",
        redis_table(redis),
        dir.join(format!("replay-{n}")).display().to_string()
    )
}

async fn two_replicas(redis: &RedisServer, mock: &MockUpstream, dir: &Path) -> (Proxy, Proxy) {
    let upstream = format!("base_url = \"{}\"", mock.url());
    let a = replica(dir, 0, &upstream, &sharing(redis, dir, 0), &[]).await;
    let b = replica(dir, 1, &upstream, &sharing(redis, dir, 1), &[]).await;
    for proxy in [&a, &b] {
        assert!(redis_up_becomes(proxy, 1.0, Duration::from_secs(5)).await);
    }
    (a, b)
}

async fn keyed(proxy: &Proxy, key: &str, body: &str) -> Collected {
    let client = TestClient::new(proxy.proxy_addr);
    let request = client
        .request(Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .header("authorization", ALICE)
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("request");
    client.call(request).await
}

#[tokio::test]
async fn a_key_answered_by_one_replica_is_replayed_by_another() {
    let Some(redis) = RedisServer::start(None).await else {
        return;
    };
    let mock = MockUpstream::start().await.expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let (a, b) = two_replicas(&redis, &mock, dir.path()).await;
    let body = chat("gpt-4o").to_string();

    let first = keyed(&a, "batch-7-item-190", &body).await;
    assert_eq!(first.status, StatusCode::OK);
    // Its marker is released only after its entry is stored: B either finds the entry
    // or waits for the marker to go, never calls the upstream.
    let second = keyed(&b, "batch-7-item-190", &body).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.header("x-backstop-replayed"), Some("true"));
    assert_eq!(
        second.header("x-backstop-replay-of"),
        first.header("x-backstop-request-id")
    );
    assert_eq!(second.body, first.body, "byte for byte");
    assert_eq!(mock.request_count(), 1, "one upstream call for the fleet");

    let other_body = chat("gpt-4o-mini").to_string();
    let reused = keyed(&b, "batch-7-item-190", &other_body).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.json()["error"]["code"], "idempotency_key_reused");
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn a_repeat_on_another_replica_waits_for_the_call_running_on_the_first() {
    let Some(redis) = RedisServer::start(None).await else {
        return;
    };
    let mock = MockUpstream::start().await.expect("mock");
    mock.push(Fault::Stall(Duration::from_millis(800)));
    let dir = tempfile::tempdir().expect("dir");
    let (a, b) = two_replicas(&redis, &mock, dir.path()).await;
    let body = chat("gpt-4o").to_string();

    let (body_a, key) = (body.clone(), "slow-one");
    let on_a = tokio::spawn({
        let client_addr = a.proxy_addr;
        async move {
            let proxy = TestClient::new(client_addr);
            let request = proxy
                .request(Method::POST, "/v1/chat/completions")
                .header("content-type", "application/json")
                .header("authorization", ALICE)
                .header("idempotency-key", key)
                .body(Full::new(Bytes::from(body_a)))
                .expect("request");
            proxy.call(request).await
        }
    });
    assert!(
        eventually(Duration::from_secs(5), || mock.request_count() == 1).await,
        "the first call reached the upstream"
    );
    let on_b = keyed(&b, key, &body).await;
    let on_a = on_a.await.expect("first request");
    assert_eq!(on_a.status, StatusCode::OK);
    assert_eq!(on_b.status, StatusCode::OK);
    assert_eq!(on_b.header("x-backstop-replayed"), Some("true"));
    assert_eq!(on_b.body, on_a.body);
    assert_eq!(
        mock.request_count(),
        1,
        "the repeat joined the running call"
    );
    let joins = scrape(&b)
        .await
        .value("backstop_replay_joins_total", &[("upstream", "m")]);
    assert_eq!(joins, 1.0);
}

#[tokio::test]
async fn with_redis_gone_each_replica_still_replays_its_own() {
    let Some(redis) = RedisServer::start(None).await else {
        return;
    };
    let mock = MockUpstream::start().await.expect("mock");
    let dir = tempfile::tempdir().expect("dir");
    let (a, b) = two_replicas(&redis, &mock, dir.path()).await;
    drop(redis);
    for proxy in [&a, &b] {
        let body = chat("gpt-4o").to_string();
        let first = keyed(proxy, "no-redis", &body).await;
        assert_eq!(first.status, StatusCode::OK, "Redis down fails no request");
        let again = keyed(proxy, "no-redis", &body).await;
        assert_eq!(again.header("x-backstop-replayed"), Some("true"));
    }
    assert_eq!(
        mock.request_count(),
        2,
        "one call per replica: without Redis, replay is each replica's own"
    );
}
