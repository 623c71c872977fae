//! The demo's burst of requests, as a client sees them.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinSet;

use super::DemoArgs;

/// What one request saw, as the client saw it.
pub(super) struct Outcome {
    pub n: u32,
    pub stream: bool,
    pub status: u16,
    pub attempts: String,
    pub elapsed: Duration,
    pub note: String,
    pub request_id: String,
}

pub(super) async fn send_burst(base: &str, args: &DemoArgs) -> Vec<Outcome> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let mut tasks = JoinSet::new();
    let mut outcomes = Vec::new();
    for n in 1..=args.requests {
        if tasks.len() >= args.concurrency as usize
            && let Some(Ok(outcome)) = tasks.join_next().await
        {
            outcomes.push(outcome);
        }
        let (client, base) = (client.clone(), base.to_owned());
        tasks.spawn(async move { one_request(&client, &base, n, n % 3 == 0).await });
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok(outcome) = done {
            outcomes.push(outcome);
        }
    }
    outcomes.sort_by_key(|o| o.n);
    outcomes
}

async fn one_request(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    base: &str,
    n: u32,
    stream: bool,
) -> Outcome {
    let body = serde_json::json!({
        "model": "gpt-4o-mini",
        "stream": stream,
        "messages": [{"role": "user", "content": format!("demo request {n}")}],
    });
    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("{base}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("authorization", "Bearer sk-demo-not-a-real-key")
        .body(Full::new(Bytes::from(body.to_string())));
    let started = Instant::now();
    let mut outcome = Outcome {
        n,
        stream,
        status: 0,
        attempts: "-".into(),
        elapsed: Duration::ZERO,
        note: String::new(),
        request_id: String::new(),
    };
    let response = match request {
        Ok(request) => client.request(request).await,
        Err(e) => {
            outcome.note = e.to_string();
            return outcome;
        }
    };
    match response {
        Ok(response) => {
            outcome.status = response.status().as_u16();
            outcome.attempts = header(response.headers(), "x-backstop-attempts");
            outcome.request_id = header(response.headers(), "x-backstop-request-id");
            let body = response.into_body().collect().await.map(|b| b.to_bytes());
            outcome.note = match body {
                Ok(bytes) => describe(outcome.status, stream, &bytes),
                Err(e) => format!("body broke off: {e}"),
            };
        }
        Err(e) => outcome.note = format!("no response: {e}"),
    }
    outcome.elapsed = started.elapsed();
    outcome
}

fn header(headers: &http::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

/// A few words on what came back: chunks for a stream, the error code for a failure.
fn describe(status: u16, stream: bool, body: &[u8]) -> String {
    if status == 200 && stream {
        let text = String::from_utf8_lossy(body);
        let chunks = text.matches("data: {").count();
        return format!("{chunks} streamed chunks");
    }
    if status == 200 {
        return "completion".to_owned();
    }
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["code"].as_str().map(|c| format!("error: {c}")))
        .unwrap_or_else(|| "error".to_owned())
}

/// "503 → wait 120 ms → 200" for the attempts of one request.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describe_names_streams_and_errors() {
        assert_eq!(
            describe(
                200,
                true,
                b"data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n"
            ),
            "2 streamed chunks"
        );
        assert_eq!(
            describe(503, false, br#"{"error":{"code":"server_error"}}"#),
            "error: server_error"
        );
        assert_eq!(describe(502, false, b"garbage"), "error");
    }
}
