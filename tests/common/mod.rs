//! Shared test harness: a backstop in-process in front of a mock upstream, an HTTP client,
//! raw-socket helpers and bounded polling. Each test gets its own ports.
#![allow(dead_code)]

pub mod chains;
pub mod egress;
pub mod fleet;
pub mod process;
pub mod redis_server;
pub mod replay;
pub mod scrape;
pub mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use backstop::events::RecordingObserver;
use backstop::mock::MockUpstream;
use backstop::{Config, Running};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A `[failure_log]` table pointing at `dir`.
pub fn failure_log_toml(dir: &Path) -> String {
    format!("[failure_log]\ndir = {:?}\n", dir.display().to_string())
}

/// Where configs without their own `[failure_log]` write: one temp dir per test
/// process, so no test ever writes into the repository.
fn shared_failure_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::Builder::new()
            .prefix("backstop-test-failures-")
            .tempdir()
            .expect("temp dir for failure logs")
    })
    .path()
}

/// A config with both listeners on ephemeral ports and one upstream at `base_url`;
/// `extra` is TOML placed before the upstream table (top-level keys, `[retry]`).
/// Without a `[failure_log]` table in `extra`, the failure log goes to a temp dir.
pub fn config(base_url: &str, extra: &str) -> Config {
    config_with_env(base_url, extra, "", &|_| None)
}

/// Like `config`, with keys added to the `[[upstream]]` table and an env for `api_key_env`.
pub fn config_with_env(
    base_url: &str,
    extra: &str,
    upstream_extra: &str,
    env: backstop::config::EnvLookup<'_>,
) -> Config {
    let failure_log = if extra.contains("[failure_log]") {
        String::new()
    } else {
        failure_log_toml(shared_failure_dir())
    };
    let text = format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{extra}\n{failure_log}\
         [[upstream]]\nname = \"mock\"\nbase_url = \"{base_url}\"\n{upstream_extra}\n"
    );
    Config::from_toml(&text, env).unwrap_or_else(|e| panic!("test config invalid: {e}\n{text}"))
}

/// Short backoffs: end-to-end tests measure the proxy, not the sleep between tries.
pub const FAST: &str =
    "[retry]\nbase_delay = \"5ms\"\nthrottle_base_delay = \"10ms\"\nmax_delay = \"20ms\"";

/// A chat completion request body for `model`, as an SDK sends it.
pub fn chat(model: &str) -> serde_json::Value {
    serde_json::json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// A streamed chat completion request (`"stream": true`) to `client`'s backstop.
pub fn stream_request(client: &TestClient) -> Request<Full<Bytes>> {
    let body = serde_json::json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    client
        .request(Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request")
}

/// Starts backstop from `toml` (its listeners on ephemeral ports are added, and a
/// failure log in a temp dir unless `toml` has one), with `env` for `api_key_env`.
/// Every event also goes to the returned recording observer.
pub async fn start_toml(
    toml: &str,
    env: &[(&str, &str)],
) -> (Running, TestClient, Arc<RecordingObserver>) {
    let failure_log = if toml.contains("[failure_log]") {
        String::new()
    } else {
        failure_log_toml(shared_failure_dir())
    };
    let text =
        format!("listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n{failure_log}{toml}");
    let lookup = |var: &str| {
        env.iter()
            .find(|(k, _)| *k == var)
            .map(|(_, v)| (*v).to_owned())
    };
    let config = Config::from_toml(&text, &lookup).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let observer = Arc::new(RecordingObserver::default());
    let running = backstop::start_with_observer(config, observer.clone())
        .await
        .expect("start");
    let client = TestClient::new(running.proxy_addr());
    (running, client, observer)
}

/// The Python with the openai SDK (and the other test packages): `BACKSTOP_TEST_PYTHON`,
/// else the `.venv` that scripts/test makes; `None` when `BACKSTOP_SKIP_PYTHON` is set.
/// Whether the tool `name` runs (`name version_arg`). Missing, it fails the test when
/// CI is set (`.ci/run` installs it: `package`) and skips it otherwise.
pub fn tool_or_skip(name: &str, version_arg: &str, package: &str) -> bool {
    let runs = std::process::Command::new(name)
        .arg(version_arg)
        .output()
        .is_ok();
    if !runs {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is not installed (.ci/run and scripts/test install it)"
        );
        eprintln!("skipped: {name} is not installed (apt-get install {package})");
    }
    runs
}

/// A port free on 127.0.0.1 a moment ago, for a tool that binds it itself.
pub fn free_port() -> Option<u16> {
    Some(
        std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port(),
    )
}

pub fn python() -> Option<std::path::PathBuf> {
    if std::env::var_os("BACKSTOP_SKIP_PYTHON").is_some() {
        return None;
    }
    let python = std::env::var_os("BACKSTOP_TEST_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python").into());
    assert!(
        python.exists(),
        "no test Python at {}: run scripts/test (it makes .venv), \
         or set BACKSTOP_TEST_PYTHON, or BACKSTOP_SKIP_PYTHON=1 to skip",
        python.display()
    );
    Some(python)
}

/// A mock upstream that answers every request with 503.
pub async fn always_503() -> MockUpstream {
    let options = backstop::mock::MockOptions {
        fail_rate: 1.0,
        ..backstop::mock::MockOptions::default()
    };
    MockUpstream::start_with(options)
        .await
        .expect("mock starts")
}

/// A mock upstream and a backstop in front of it.
pub struct Harness {
    pub mock: MockUpstream,
    pub proxy: Running,
    pub client: TestClient,
    /// This test's own failure-log directory (unless `extra` named one).
    pub failure_dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with("").await
    }

    pub async fn start_with(extra: &str) -> Harness {
        let mock = MockUpstream::start().await.expect("mock starts");
        let failure_dir = tempfile::tempdir().expect("temp dir");
        let extra = if extra.contains("[failure_log]") {
            extra.to_owned()
        } else {
            format!("{extra}\n{}", failure_log_toml(failure_dir.path()))
        };
        let proxy = backstop::start(config(&mock.url(), &extra))
            .await
            .expect("backstop starts");
        Harness {
            mock,
            client: TestClient::new(proxy.proxy_addr()),
            proxy,
            failure_dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.proxy.proxy_addr(), path)
    }
}

/// A tiny HTTP client (hyper-util, the same stack users' SDKs talk to).
#[derive(Clone)]
pub struct TestClient {
    addr: SocketAddr,
    inner: Client<HttpConnector, Full<Bytes>>,
}

pub struct Collected {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Collected {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl TestClient {
    pub fn new(addr: SocketAddr) -> TestClient {
        TestClient {
            addr,
            inner: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    pub fn request(&self, method: Method, path: &str) -> http::request::Builder {
        Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path))
    }

    /// Sends and returns the response with its body still streaming.
    pub async fn send(&self, request: Request<Full<Bytes>>) -> http::Response<Incoming> {
        within(Duration::from_secs(20), self.inner.request(request))
            .await
            .expect("request sent")
    }

    /// Sends and reads the whole response.
    pub async fn call(&self, request: Request<Full<Bytes>>) -> Collected {
        let response = self.send(request).await;
        let (parts, body) = response.into_parts();
        let body = within(Duration::from_secs(20), body.collect())
            .await
            .expect("body read")
            .to_bytes();
        Collected {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn post_json(&self, path: &str, json: serde_json::Value) -> Collected {
        let request = self
            .request(Method::POST, path)
            .header("content-type", "application/json")
            .header("authorization", "Bearer sk-test-client")
            .body(Full::new(Bytes::from(json.to_string())))
            .expect("request");
        self.call(request).await
    }

    pub async fn get(&self, path: &str) -> Collected {
        self.call(
            self.request(Method::GET, path)
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await
    }
}

/// Reads a streaming body frame by frame, noting when each data frame arrived.
pub async fn timed_frames(body: Incoming, limit: Duration) -> Vec<(Duration, Bytes)> {
    let start = Instant::now();
    let mut body = body;
    let mut frames = Vec::new();
    while let Some(Ok(frame)) = within(limit, body.frame()).await {
        if let Ok(data) = frame.into_data() {
            frames.push((start.elapsed(), data));
        }
    }
    frames
}

/// SSE `data:` payloads in a byte stream.
pub fn sse_data(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes)
        .split("\n\n")
        .filter_map(|event| {
            event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(str::to_owned)
        })
        .collect()
}

/// Writes raw bytes on a fresh connection and reads until the peer closes or `limit`.
pub async fn raw_exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Awaits `future`, panicking with a clear message after `limit`.
pub async fn within<F: std::future::Future>(limit: Duration, future: F) -> F::Output {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?}"))
}

/// Polls `check` every 10 ms until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls the async `check` every 20 ms until it holds or `limit` passes.
pub async fn eventually_async<F: std::future::Future<Output = bool>>(
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GETs `path` from backstop's admin listener.
pub async fn admin_get(proxy: &Running, path: &str) -> Collected {
    TestClient::new(proxy.admin_addr()).get(path).await
}

/// A fresh scrape of `/metrics`.
pub async fn scrape(proxy: &Running) -> scrape::Scrape {
    let response = admin_get(proxy, "/metrics").await;
    assert_eq!(response.status, StatusCode::OK);
    scrape::Scrape::parse(response.text())
}

/// Scrapes until `check` holds (every 20 ms, at most `limit`); the last scrape either way.
pub async fn scrape_until(
    proxy: &Running,
    limit: Duration,
    check: impl Fn(&scrape::Scrape) -> bool,
) -> (bool, scrape::Scrape) {
    let until = Instant::now() + limit;
    loop {
        let s = scrape(proxy).await;
        if check(&s) || Instant::now() >= until {
            return (check(&s), s);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
