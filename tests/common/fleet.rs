//! For the fleet tests: backstop processes sharing a real redis-server, and what they
//! are asked and report.

use std::path::Path;
use std::time::{Duration, Instant};

use http::StatusCode;

use super::process::{Proxy, spawn_serve_with_proxy_env};
use super::redis_server::RedisServer;
use super::scrape::Scrape;
use super::{Collected, TestClient};

/// One backstop process from `upstream` (the `[[upstream]]` table's keys) and
/// `extra` (tables such as `[redis]`), with `env` set for it.
pub async fn replica(
    dir: &Path,
    n: usize,
    upstream: &str,
    extra: &str,
    env: &[(&str, &str)],
) -> Proxy {
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

pub fn redis_table(redis: &RedisServer) -> String {
    format!("[redis]\nurl = \"{}\"\n", redis.url())
}

pub async fn scrape(proxy: &Proxy) -> Scrape {
    let response = TestClient::new(proxy.admin_addr).get("/metrics").await;
    assert_eq!(response.status, StatusCode::OK);
    Scrape::parse(response.text())
}

/// Scrapes until `backstop_redis_up` is `up` (every 20 ms, at most `limit`).
pub async fn redis_up_becomes(proxy: &Proxy, up: f64, limit: Duration) -> bool {
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

pub fn chat() -> serde_json::Value {
    super::chat("gpt-4o")
}

/// `n` requests at once to each of `proxies`.
pub async fn fire(proxies: &[&Proxy], n: usize) -> Vec<(Collected, Duration)> {
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

/// What came back, for a failed assertion: `200 ×9, 429 rate_limited_locally ×51`.
pub fn outcomes(responses: &[(Collected, Duration)]) -> String {
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for (r, _) in responses {
        let body: Option<serde_json::Value> = serde_json::from_slice(&r.body).ok();
        let code = body.and_then(|b| b["error"]["code"].as_str().map(str::to_owned));
        let key = match code {
            Some(code) => format!("{} {code}", r.status.as_u16()),
            None => r.status.as_u16().to_string(),
        };
        *seen.entry(key).or_default() += 1;
    }
    let parts: Vec<String> = seen.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    parts.join(", ")
}

pub fn count(responses: &[(Collected, Duration)], status: StatusCode) -> usize {
    responses.iter().filter(|(r, _)| r.status == status).count()
}
