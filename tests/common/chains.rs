//! Helpers for the fallback tests: a backstop for a chain of upstreams, a port that
//! refuses connections, and what the mock upstreams saw.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use backstop::mock::MockUpstream;
use bytes::Bytes;
use http::Method;
use http_body_util::Full;
use serde_json::{Value, json};

use super::{Collected, TestClient, eventually};

/// A backstop for `toml` (listeners and a failure log in `dir` are added), keys from `env`.
pub async fn proxy(
    toml: &str,
    env: &[(&str, &str)],
    dir: &Path,
) -> (backstop::Running, TestClient) {
    let text = format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{}\n\
         [retry]\nbase_delay = \"5ms\"\nthrottle_base_delay = \"5ms\"\nmax_delay = \"20ms\"\n{toml}",
        super::failure_log_toml(dir)
    );
    let lookup = |var: &str| {
        env.iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| (*v).to_owned())
    };
    let config =
        backstop::Config::from_toml(&text, &lookup).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let running = backstop::start(config).await.expect("start");
    let client = TestClient::new(running.proxy_addr());
    (running, client)
}

/// A port nothing listens on: connections to it are refused.
pub fn refusing_url() -> String {
    format!("http://{}", refusing_addr())
}

/// An address whose connections are refused: a socket bound to it that never listens,
/// kept for the rest of the test process. A port merely bound and let go could be
/// handed to the next socket that binds port 0 — a mock started by the same test —
/// and then the "refused" upstream answers.
pub fn refusing_addr() -> std::net::SocketAddr {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
    let any_port = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    socket.bind(&any_port.into()).expect("bind");
    let addr = socket
        .local_addr()
        .expect("addr")
        .as_socket()
        .expect("an inet address");
    std::mem::forget(socket);
    addr
}

pub fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

pub async fn post(
    client: &TestClient,
    path: &str,
    body: impl Into<Bytes>,
    auth: (&str, &str),
) -> Collected {
    let request = client
        .request(Method::POST, path)
        .header("content-type", "application/json")
        .header(auth.0, auth.1)
        .body(Full::new(body.into()))
        .expect("request");
    client.call(request).await
}

pub fn models_seen(mock: &MockUpstream) -> Vec<String> {
    let model = |r: &backstop::mock::Received| {
        r.json()
            .and_then(|j| j["model"].as_str().map(str::to_owned))
    };
    mock.received().iter().filter_map(model).collect()
}

/// The failure records written so far, once `n` are there (bounded wait).
pub async fn records(dir: &Path, n: usize) -> Vec<Value> {
    let read = || -> Vec<Value> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .flat_map(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect()
    };
    assert!(
        eventually(Duration::from_secs(5), || read().len() >= n).await,
        "{:?}",
        read()
    );
    read()
}

/// A primary `4o` that falls back to `mini`, same host, `gpt-4o` → `gpt-4o-mini`.
pub const MODEL_FALLBACK: &str = "[[upstream]]\nname = \"4o\"\nbase_url = \"{url}\"\nfallbacks = [\"mini\"]\n\
     [[upstream]]\nname = \"mini\"\nbase_url = \"{url}\"\nfallback_only = true\n\
     [upstream.models]\n\"gpt-4o\" = \"gpt-4o-mini\"\n";
