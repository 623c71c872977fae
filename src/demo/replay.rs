//! The demo's replay scene (SPEC §6): a slow model, an SDK that gives up before it
//! answers and retries, and backstop with `[replay]` finishing the first call for it.
//! The retry is answered from that call: the upstream is called once.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncWriteExt;

use crate::config::Config;
use crate::mock::{MockOptions, MockUpstream};

/// The model's answer takes this long; the client gives up after `GIVE_UP`.
const MODEL_TIME: Duration = Duration::from_millis(600);
const GIVE_UP: Duration = Duration::from_millis(200);

/// Runs the scene; what to print.
pub(super) async fn scene(store_dir: &Path) -> Result<String, String> {
    let mock = MockUpstream::start_with(MockOptions {
        latency: MODEL_TIME,
        ..MockOptions::default()
    })
    .await
    .map_err(|e| format!("cannot start the mock upstream: {e}"))?;
    let dir = toml::Value::String(store_dir.display().to_string());
    let text = format!(
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n\
         [failure_log]\ndir = {dir}\n\
         [replay]\nsdk_retries = true\nfinish_abandoned = true\ndir = {dir}\n\
         [[upstream]]\nname = \"slow-model\"\nbase_url = \"{}\"\n",
        mock.url()
    );
    let config = Config::from_toml(&text, &|_| None).map_err(|e| format!("demo config: {e}"))?;
    let proxy = crate::start(config).await.map_err(|e| e.to_string())?;
    let body = serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "think"}]}).to_string();
    give_up(proxy.proxy_addr(), &body).await?;
    let retried = retry(proxy.proxy_addr(), body).await;
    let calls = mock.request_count();
    proxy.shutdown().await;
    mock.shutdown().await;
    let (status, replayed, of) = retried?;
    Ok(render(status, &replayed, &of, calls))
}

/// Try 0: the SDK's read timeout passes before the model answers; it hangs up.
async fn give_up(proxy: std::net::SocketAddr, body: &str) -> Result<(), String> {
    let first = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: demo\r\ncontent-type: application/json\r\n\
         authorization: Bearer sk-demo-not-a-real-key\r\nx-stainless-retry-count: 0\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(proxy)
        .await
        .map_err(|e| e.to_string())?;
    stream
        .write_all(first.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    tokio::time::sleep(GIVE_UP).await;
    drop(stream);
    Ok(())
}

/// Try 1: the SDK's retry, the same body; its status and replay headers.
async fn retry(proxy: std::net::SocketAddr, body: String) -> Result<(u16, String, String), String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let retry = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{proxy}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-demo-not-a-real-key")
        .header("x-stainless-retry-count", "1")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = client.request(retry).await.map_err(|e| e.to_string())?;
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    let (status, replayed, of) = (
        response.status().as_u16(),
        header("x-backstop-replayed"),
        header("x-backstop-replay-of"),
    );
    let _ = response.into_body().collect().await;
    Ok((status, replayed, of))
}

fn render(status: u16, replayed: &str, of: &str, calls: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nReplay ([replay] sdk_retries + finish_abandoned): a model that takes {} ms, an SDK \
         that gives up after {} ms and retries.",
        MODEL_TIME.as_millis(),
        GIVE_UP.as_millis()
    );
    let _ = writeln!(
        out,
        "  try 0  hung up before the answer; backstop finished the call and kept its response"
    );
    let _ = writeln!(
        out,
        "  try 1  {status}, x-backstop-replayed: {replayed}, x-backstop-replay-of: {of}"
    );
    let verdict = if replayed == "true" && calls == 1 {
        "the SDK's retry was served by replay"
    } else {
        "the retry was not replayed"
    };
    let _ = writeln!(
        out,
        "  upstream calls: {calls} ({verdict}; one call paid for, not two)"
    );
    out
}
