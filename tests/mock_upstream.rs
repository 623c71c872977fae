//! The mock upstream, spoken to with raw HTTP/1.1 over a plain `TcpStream`, so that what
//! is checked is exactly what goes over the wire (resets, torn bodies, chunk timing).

use std::io;
use std::time::{Duration, Instant, SystemTime};

use backstop::mock::{
    Fault, MockOptions, MockUpstream, OTHER_DIMENSION_RESET, RetryAfter, StreamEnd, StreamScript,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on anything a test waits for; far above what any step needs.
const LIMIT: Duration = Duration::from_secs(5);

async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

fn post(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: mock\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: mock\r\n\r\n")
}

const CHAT: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"Say hello"}]}"#;
const CHAT_STREAM: &str =
    r#"{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"hi"}]}"#;

#[derive(Debug, Default)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Each chunk of a chunked body, with when it arrived.
    chunks: Vec<(Instant, String)>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("response body is JSON")
    }

    /// The `data:` payloads of an SSE body, one per chunk.
    fn events(&self) -> Vec<String> {
        let data = |(_, c): &(Instant, String)| {
            c.strip_prefix("data: ")
                .expect("an SSE data event")
                .trim_end()
                .to_string()
        };
        self.chunks.iter().map(data).collect()
    }
}

/// A raw HTTP/1.1 client on one connection.
struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(mock: &MockUpstream) -> Client {
        let stream = within("connect", TcpStream::connect(mock.addr()))
            .await
            .expect("connect to mock");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, raw: impl AsRef<[u8]>) {
        self.stream
            .write_all(raw.as_ref())
            .await
            .expect("send request");
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut scratch = [0u8; 16 * 1024];
        match self.stream.read(&mut scratch).await? {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
            n => {
                self.buf.extend_from_slice(&scratch[..n]);
                Ok(())
            }
        }
    }

    async fn head(&mut self) -> io::Result<Response> {
        loop {
            let mut slots = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut slots);
            if let httparse::Status::Complete(len) =
                parsed.parse(&self.buf).expect("valid response head")
            {
                let response = Response {
                    status: parsed.code.expect("status"),
                    headers: parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                    ..Response::default()
                };
                self.buf.drain(..len);
                return Ok(response);
            }
            self.fill().await?;
        }
    }

    async fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// The next chunk of a chunked body; `None` for the last (empty) chunk.
    async fn chunk(&mut self) -> io::Result<Option<String>> {
        let (used, size) = loop {
            match httparse::parse_chunk_size(&self.buf).expect("valid chunk size") {
                httparse::Status::Complete(found) => break found,
                httparse::Status::Partial => self.fill().await?,
            }
        };
        self.buf.drain(..used);
        let data = self.take(size as usize + 2).await?;
        assert_eq!(&data[size as usize..], b"\r\n", "chunk ends with CRLF");
        let text = String::from_utf8(data[..size as usize].to_vec()).expect("UTF-8 chunk");
        Ok((size > 0).then_some(text))
    }

    async fn body(&mut self, response: &mut Response) -> io::Result<()> {
        if response.header("transfer-encoding") == Some("chunked") {
            while let Some(chunk) = self.chunk().await? {
                response.body.extend_from_slice(chunk.as_bytes());
                response.chunks.push((Instant::now(), chunk));
            }
        } else {
            let length = response
                .header("content-length")
                .expect("content-length")
                .parse()
                .expect("number");
            response.body = self.take(length).await?;
        }
        Ok(())
    }

    async fn response(&mut self) -> io::Result<Response> {
        let mut response = self.head().await?;
        self.body(&mut response).await?;
        Ok(response)
    }

    /// Reads until the server closes: `Ok` on a clean close (FIN), the error on a reset.
    async fn until_closed(&mut self) -> io::Result<()> {
        loop {
            match self.fill().await {
                Ok(()) => continue,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

/// One request on a fresh connection.
async fn exchange(mock: &MockUpstream, raw: &str) -> Response {
    let mut client = Client::connect(mock).await;
    client.send(raw).await;
    within("response", client.response())
        .await
        .expect("a whole response")
}

async fn rate_limited_with(retry_after: RetryAfter) -> Response {
    let mock = MockUpstream::start().await.expect("start mock");
    mock.push(Fault::RateLimited(retry_after));
    let response = exchange(&mock, &post("/v1/chat/completions", CHAT)).await;
    assert_eq!(response.status, 429);
    assert_eq!(response.json()["error"]["code"], "rate_limit_exceeded");
    response
}

fn assert_reset(result: io::Result<impl std::fmt::Debug>) {
    match result {
        Err(e) => assert_eq!(
            e.kind(),
            io::ErrorKind::ConnectionReset,
            "expected a RST, got {e}"
        ),
        Ok(v) => panic!("expected a RST, got {v:?}"),
    }
}

// ---- normal answers ----

#[tokio::test]
async fn chat_completion_echoes_model_with_usage() {
    let mock = MockUpstream::start().await.expect("start mock");
    let response = exchange(&mock, &post("/v1/chat/completions", CHAT)).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.header("x-request-id"), Some("mock-1"));
    let body = response.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gpt-4o");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let usage = &body["usage"];
    assert!(usage["prompt_tokens"].as_u64().expect("prompt_tokens") > 0);
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(
            usage["prompt_tokens"].as_u64().unwrap_or(0)
                + usage["completion_tokens"].as_u64().unwrap_or(0)
        )
    );
}

#[tokio::test]
async fn chat_stream_sends_each_chunk_apart_then_done() {
    let opts = MockOptions {
        stream_chunks: 4,
        stream_gap: Duration::from_millis(40),
        ..MockOptions::default()
    };
    let mock = MockUpstream::start_with(opts).await.expect("start mock");
    let response = exchange(&mock, &post("/v1/chat/completions", CHAT_STREAM)).await;
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("text/event-stream"))
    );
    let events = response.events();
    assert_eq!(events.len(), 5, "4 content chunks and [DONE]: {events:?}");
    assert_eq!(events[4], "[DONE]");
    let chunks: Vec<Value> = events[..4]
        .iter()
        .map(|e| serde_json::from_str(e).expect("JSON chunk"))
        .collect();
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "gpt-4o");
        assert!(chunk["choices"][0]["delta"]["content"].is_string());
        assert!(
            chunk.get("usage").is_none(),
            "no usage field unless asked for"
        );
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
    assert!(chunks[2]["choices"][0]["finish_reason"].is_null());
    // Three gaps of 40 ms between the first and the last content chunk.
    let spread = response.chunks[3].0 - response.chunks[0].0;
    assert!(
        spread >= Duration::from_millis(100),
        "chunks arrived together: {spread:?}"
    );
}

#[tokio::test]
async fn chat_stream_with_include_usage_ends_with_usage_chunk() {
    let mock = MockUpstream::start().await.expect("start mock");
    let body =
        r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[]}"#;
    let events = exchange(&mock, &post("/v1/chat/completions", body))
        .await
        .events();
    assert_eq!(events.len(), 5 + 2, "5 chunks, usage, [DONE]: {events:?}");
    let usage: Value = serde_json::from_str(&events[5]).expect("JSON usage chunk");
    assert_eq!(usage["choices"], Value::Array(vec![]));
    assert_eq!(usage["usage"]["completion_tokens"], 5);
    assert_eq!(events[6], "[DONE]");
}

#[tokio::test]
async fn embeddings_models_and_azure_paths_have_openai_shapes() {
    let mock = MockUpstream::start().await.expect("start mock");
    let embeddings = exchange(
        &mock,
        &post("/v1/embeddings", r#"{"model":"e","input":["a","b"]}"#),
    )
    .await;
    assert_eq!(embeddings.status, 200);
    let body = embeddings.json();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"].as_array().map(Vec::len), Some(2));
    assert!(
        body["data"][1]["embedding"]
            .as_array()
            .is_some_and(|v| !v.is_empty())
    );
    assert!(body["usage"]["prompt_tokens"].is_u64());

    let models = exchange(&mock, &get("/v1/models")).await.json();
    assert_eq!(models["object"], "list");
    assert!(models["data"][0]["id"].is_string());

    let azure_body = r#"{"messages":[{"role":"user","content":"hi"}]}"#;
    let azure = exchange(
        &mock,
        &post(
            "/openai/deployments/my-gpt/chat/completions?api-version=2024-10-21",
            azure_body,
        ),
    )
    .await;
    assert_eq!(azure.status, 200);
    assert_eq!(
        azure.json()["model"],
        "my-gpt",
        "the deployment stands in for the model"
    );
    let azure_v1 = exchange(&mock, &post("/openai/v1/chat/completions", CHAT)).await;
    assert_eq!(azure_v1.json()["object"], "chat.completion");
}

#[tokio::test]
async fn unknown_path_gets_openai_shaped_404() {
    let mock = MockUpstream::start().await.expect("start mock");
    let response = exchange(&mock, &get("/v1/nothing-here")).await;
    assert_eq!(response.status, 404);
    let error = &response.json()["error"];
    assert_eq!(error["type"], "invalid_request_error");
    assert!(
        error["message"].is_string() && error.get("code").is_some() && error["param"].is_null()
    );
}

#[tokio::test]
async fn latency_delays_normal_answers() {
    let opts = MockOptions {
        latency: Duration::from_millis(150),
        ..MockOptions::default()
    };
    let mock = MockUpstream::start_with(opts).await.expect("start mock");
    let started = Instant::now();
    assert_eq!(exchange(&mock, &get("/v1/models")).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(150));
}

// ---- faults: error responses ----

#[tokio::test]
async fn respond_sends_status_headers_and_body_as_given() {
    let mock = MockUpstream::start().await.expect("start mock");
    mock.push(Fault::Respond {
        status: 418,
        headers: vec![
            ("x-should-retry".into(), "false".into()),
            ("content-type".into(), "text/plain".into()),
        ],
        body: "teapot".into(),
    });
    let response = exchange(&mock, &post("/v1/chat/completions", CHAT)).await;
    assert_eq!(response.status, 418);
    assert_eq!(response.header("x-should-retry"), Some("false"));
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert_eq!(response.header("x-request-id"), Some("mock-1"));
    assert_eq!(response.body, b"teapot");
}

#[tokio::test]
async fn rate_limited_sends_retry_after_ms() {
    let response = rate_limited_with(RetryAfter::Ms(1200)).await;
    assert_eq!(response.header("retry-after-ms"), Some("1200"));
    assert_eq!(response.header("retry-after"), None);
}

#[tokio::test]
async fn rate_limited_sends_azure_retry_after_ms() {
    let response = rate_limited_with(RetryAfter::AzureMs(750)).await;
    assert_eq!(response.header("x-ms-retry-after-ms"), Some("750"));
}

#[tokio::test]
async fn rate_limited_sends_retry_after_seconds_verbatim() {
    let response = rate_limited_with(RetryAfter::Seconds("1.5".into())).await;
    assert_eq!(response.header("retry-after"), Some("1.5"));
}

#[tokio::test]
async fn rate_limited_sends_retry_after_http_date() {
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
    let response = rate_limited_with(RetryAfter::HttpDate(at)).await;
    assert_eq!(
        response.header("retry-after"),
        Some("Sun, 06 Nov 1994 08:49:37 GMT")
    );
}

#[tokio::test]
async fn rate_limited_without_delay_sends_no_delay_header() {
    let response = rate_limited_with(RetryAfter::None).await;
    for name in [
        "retry-after",
        "retry-after-ms",
        "x-ms-retry-after-ms",
        "x-ratelimit-reset-requests",
    ] {
        assert_eq!(response.header(name), None, "{name}");
    }
}

#[tokio::test]
async fn rate_limited_on_requests_sends_exhausted_requests_reset() {
    let response = rate_limited_with(RetryAfter::ResetRequests("6m0s".into())).await;
    assert_eq!(response.header("x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(response.header("x-ratelimit-reset-requests"), Some("6m0s"));
    assert_ne!(response.header("x-ratelimit-remaining-tokens"), Some("0"));
    assert_eq!(
        response.header("x-ratelimit-reset-tokens"),
        Some(OTHER_DIMENSION_RESET)
    );
}

#[tokio::test]
async fn rate_limited_on_tokens_sends_exhausted_tokens_reset() {
    let response = rate_limited_with(RetryAfter::ResetTokens("17ms".into())).await;
    assert_eq!(response.header("x-ratelimit-remaining-tokens"), Some("0"));
    assert_eq!(response.header("x-ratelimit-reset-tokens"), Some("17ms"));
    assert_ne!(response.header("x-ratelimit-remaining-requests"), Some("0"));
    assert_eq!(response.json()["error"]["type"], "tokens");
}

#[tokio::test]
async fn quota_exhausted_is_429_insufficient_quota() {
    let mock = MockUpstream::start().await.expect("start mock");
    mock.push(Fault::QuotaExhausted);
    let response = exchange(&mock, &post("/v1/chat/completions", CHAT)).await;
    assert_eq!(response.status, 429);
    assert_eq!(response.json()["error"]["code"], "insufficient_quota");
    assert_eq!(response.json()["error"]["type"], "insufficient_quota");
}

#[tokio::test]
async fn content_filter_is_400_content_filter() {
    let mock = MockUpstream::start().await.expect("start mock");
    mock.push(Fault::ContentFilter);
    let response = exchange(&mock, &post("/v1/chat/completions", CHAT)).await;
    assert_eq!(response.status, 400);
    assert_eq!(response.json()["error"]["code"], "content_filter");
}

#[tokio::test]
async fn server_error_has_its_status_and_server_error_body() {
    let mock = MockUpstream::start().await.expect("start mock");
    mock.push(Fault::ServerError(502));
    let response = exchange(&mock, &post("/v1/chat/completions", CHAT)).await;
    assert_eq!(response.status, 502);
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.json()["error"]["type"], "server_error");
}

// ---- faults: transport ----

#[tokio::test]
async fn reset_before_headers_sends_rst_without_a_byte() {
    let mock = MockUpstream::start().await.expect("start mock");
    mock.push(Fault::ResetBeforeHeaders);
    let mut client = Client::connect(&mock).await;
    client.send(post("/v1/chat/completions", CHAT)).await;
    assert_reset(within("reset", client.until_closed()).await);
    assert!(client.buf.is_empty(), "no byte before the reset");
    assert_eq!(
        mock.request_count(),
        1,
        "the request was read before the reset"
    );
}

#[tokio::test]
async fn reset_mid_body_sends_headers_and_half_the_body_then_rst() {
    let mock = MockUpstream::start().await.expect("start mock");
    mock.push(Fault::ResetMidBody);
    let mut client = Client::connect(&mock).await;
    client.send(post("/v1/chat/completions", CHAT)).await;
    let mut response = within("head", client.head()).await.expect("headers arrive");
    assert_eq!(response.status, 200);
    let length: usize = response
        .header("content-length")
        .expect("length")
        .parse()
        .expect("number");
    assert_reset(within("torn body", client.body(&mut response)).await);
    assert!(
        !client.buf.is_empty() && client.buf.len() < length,
        "part of the body: {}",
        client.buf.len()
    );
}

#[tokio::test]
async fn stall_holds_the_headers_then_answers_normally() {
    let mock = MockUpstream::start().await.expect("start mock");
    mock.push(Fault::Stall(Duration::from_millis(200)));
    let started = Instant::now();
    let response = exchange(&mock, &post("/v1/chat/completions", CHAT)).await;
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(response.json()["object"], "chat.completion");
}

// ---- faults: streams ----

fn script(chunks: usize, end: StreamEnd) -> Fault {
    Fault::Stream(StreamScript {
        chunks,
        gap: Duration::from_millis(5),
        end,
        first_event_delay: Duration::ZERO,
        ..StreamScript::default()
    })
}

#[tokio::test]
async fn stream_script_applies_to_a_non_streaming_request_after_first_event_delay() {
    let mock = MockUpstream::start().await.expect("start mock");
    mock.push(Fault::Stream(StreamScript {
        chunks: 3,
        first_event_delay: Duration::from_millis(150),
        ..StreamScript::default()
    }));
    let mut client = Client::connect(&mock).await;
    client.send(post("/v1/chat/completions", CHAT)).await;
    let mut response = within("head", client.head()).await.expect("headers");
    let headers_at = Instant::now();
    within("body", client.body(&mut response))
        .await
        .expect("whole stream");
    assert!(
        response.chunks[0].0 - headers_at >= Duration::from_millis(100),
        "first event held back"
    );
    assert_eq!(response.events().len(), 4);
    assert_eq!(response.events()[3], "[DONE]");
}

#[tokio::test]
async fn stream_dying_after_k_events_sends_rst() {
    let mock = MockUpstream::start().await.expect("start mock");
    mock.push(script(5, StreamEnd::DieAfter(2)));
    let mut client = Client::connect(&mock).await;
    client.send(post("/v1/chat/completions", CHAT_STREAM)).await;
    let response = within("head", client.head()).await.expect("headers");
    assert_eq!(response.status, 200);
    for _ in 0..2 {
        let event = within("event", client.chunk())
            .await
            .expect("an event")
            .expect("not the end");
        assert!(event.contains("chat.completion.chunk"));
    }
    assert_reset(within("reset", client.chunk()).await);
}

#[tokio::test]
async fn stream_dying_after_zero_events_resets_right_after_headers() {
    let mock = MockUpstream::start().await.expect("start mock");
    mock.push(script(5, StreamEnd::DieAfter(0)));
    let mut client = Client::connect(&mock).await;
    client.send(post("/v1/chat/completions", CHAT_STREAM)).await;
    let response = within("head", client.head()).await.expect("headers");
    assert_eq!(response.status, 200);
    assert_reset(within("reset", client.chunk()).await);
}

#[tokio::test]
async fn stream_stalling_after_k_events_goes_silent_until_shutdown() {
    let mock = MockUpstream::start().await.expect("start mock");
    mock.push(script(5, StreamEnd::StallAfter(1)));
    let mut client = Client::connect(&mock).await;
    client.send(post("/v1/chat/completions", CHAT_STREAM)).await;
    within("head", client.head()).await.expect("headers");
    within("event", client.chunk())
        .await
        .expect("one event")
        .expect("not the end");
    let silence = tokio::time::timeout(Duration::from_millis(200), client.chunk()).await;
    assert!(silence.is_err(), "nothing after the stall: {silence:?}");
    within("shutdown", mock.shutdown()).await;
    within("close", client.until_closed())
        .await
        .expect("closed cleanly by shutdown");
}

#[tokio::test]
async fn stream_error_event_first_sends_one_error_event_and_ends() {
    let mock = MockUpstream::start().await.expect("start mock");
    mock.push(script(5, StreamEnd::ErrorEventFirst));
    let response = exchange(&mock, &post("/v1/chat/completions", CHAT_STREAM)).await;
    assert_eq!(response.status, 200);
    let events = response.events();
    assert_eq!(events.len(), 1, "{events:?}");
    let error: Value = serde_json::from_str(&events[0]).expect("JSON error event");
    assert!(error["error"]["message"].is_string());
}

// ---- queue, records, options, connections ----

#[tokio::test]
async fn faults_are_taken_in_queue_order_then_normal_answers_resume() {
    let mock = MockUpstream::start().await.expect("start mock");
    mock.push(Fault::ServerError(500));
    mock.push_n(Fault::RateLimited(RetryAfter::Ms(10)), 2);
    mock.push(Fault::ContentFilter);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            exchange(&mock, &post("/v1/chat/completions", CHAT))
                .await
                .status,
        );
    }
    assert_eq!(statuses, [500, 429, 429, 400, 200]);
}

#[tokio::test]
async fn every_response_carries_its_request_number() {
    let mock = MockUpstream::start().await.expect("start mock");
    mock.push(Fault::ServerError(503));
    mock.push(Fault::Ok);
    mock.push(script(1, StreamEnd::Done));
    let mut ids = Vec::new();
    for _ in 0..4 {
        let response = exchange(&mock, &post("/v1/chat/completions", CHAT)).await;
        assert!(response.header("content-type").is_some());
        ids.push(response.header("x-request-id").map(str::to_string));
    }
    let expected: Vec<Option<String>> = (1..=4).map(|n| Some(format!("mock-{n}"))).collect();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn received_records_method_path_query_headers_and_body() {
    let mock = MockUpstream::start().await.expect("start mock");
    mock.push(Fault::ServerError(500));
    let path = "/openai/deployments/d1/chat/completions?api-version=2024-10-21";
    let raw = format!(
        "POST {path} HTTP/1.1\r\nHost: mock\r\nApi-Key: k1\r\nX-Tag: a\r\nx-tag: b\r\nContent-Length: {}\r\n\r\n{CHAT}",
        CHAT.len()
    );
    exchange(&mock, &raw).await;
    exchange(&mock, &get("/v1/models")).await;
    let received = mock.received();
    assert_eq!(received.len(), 2, "faulted requests are recorded too");
    let first = &received[0];
    assert_eq!(first.method, "POST");
    assert_eq!(first.path, "/openai/deployments/d1/chat/completions");
    assert_eq!(first.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(first.headers[1], ("api-key".to_string(), "k1".to_string()));
    assert_eq!(first.header("API-KEY"), Some("k1"));
    assert_eq!(first.header_all("x-tag"), ["a", "b"]);
    assert_eq!(first.body, CHAT.as_bytes());
    assert_eq!(first.json().expect("JSON body")["model"], "gpt-4o");
    let second = &received[1];
    assert_eq!(
        (
            second.method.as_str(),
            second.path.as_str(),
            second.query.as_deref()
        ),
        ("GET", "/v1/models", None)
    );
    assert!(second.body.is_empty() && second.json().is_none());
    assert!(second.at >= first.at);
}

/// A mock that keeps the latest `n` requests it receives.
async fn keeping(n: usize) -> MockUpstream {
    MockUpstream::start_with(MockOptions {
        keep_received: n,
        ..MockOptions::default()
    })
    .await
    .expect("start mock")
}

#[tokio::test]
async fn received_keeps_only_the_latest_keep_received_requests_and_numbers_them_all() {
    let mock = keeping(2).await;
    let mut ids = Vec::new();
    for n in 1..=4 {
        let response = exchange(&mock, &get(&format!("/v1/models?n={n}"))).await;
        ids.push(response.header("x-request-id").map(str::to_string));
    }
    let queries: Vec<_> = mock.received().into_iter().map(|r| r.query).collect();
    assert_eq!(
        queries,
        [Some("n=3".to_string()), Some("n=4".to_string())],
        "the two latest, oldest first"
    );
    assert_eq!(mock.request_count(), 4, "every request is counted");
    let expected: Vec<Option<String>> = (1..=4).map(|n| Some(format!("mock-{n}"))).collect();
    assert_eq!(ids, expected, "numbers run on past the kept ones");
}

#[tokio::test]
async fn a_mock_keeping_no_requests_still_counts_and_numbers_them() {
    let mock = keeping(0).await;
    let first = exchange(&mock, &post("/v1/chat/completions", CHAT)).await;
    let second = exchange(&mock, &post("/v1/chat/completions", CHAT)).await;
    assert_eq!(first.header("x-request-id"), Some("mock-1"));
    assert_eq!(second.header("x-request-id"), Some("mock-2"));
    assert!(mock.received().is_empty());
    assert_eq!(mock.request_count(), 2);
}

#[tokio::test]
async fn received_decodes_a_chunked_request_body() {
    let mock = MockUpstream::start().await.expect("start mock");
    let (a, b) = CHAT.split_at(20);
    let raw = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: mock\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{a}\r\n{:x};ext=1\r\n{b}\r\n0\r\nx-trailer: t\r\n\r\n",
        a.len(),
        b.len()
    );
    let response = exchange(&mock, &raw).await;
    assert_eq!(response.status, 200, "the decoded body is valid JSON");
    assert_eq!(mock.received()[0].body, CHAT.as_bytes());
}

#[tokio::test]
async fn fail_rate_one_fails_every_request_with_fail_status() {
    let opts = MockOptions {
        fail_rate: 1.0,
        fail_status: 502,
        ..MockOptions::default()
    };
    let mock = MockUpstream::start_with(opts).await.expect("start mock");
    for _ in 0..3 {
        let response = exchange(&mock, &post("/v1/chat/completions", CHAT)).await;
        assert_eq!(response.status, 502);
        assert_eq!(response.json()["error"]["type"], "server_error");
    }
    mock.push(Fault::Ok);
    assert_eq!(
        exchange(&mock, &get("/v1/models")).await.status,
        200,
        "a queued fault wins over fail_rate"
    );
}

#[tokio::test]
async fn seeded_fail_rate_fails_the_same_requests_every_run() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let opts = MockOptions {
            fail_rate: 0.5,
            seed: Some(42),
            ..MockOptions::default()
        };
        let mock = MockUpstream::start_with(opts).await.expect("start mock");
        let mut statuses = Vec::new();
        for _ in 0..12 {
            statuses.push(exchange(&mock, &get("/v1/models")).await.status);
        }
        runs.push(statuses);
    }
    assert_eq!(runs[0], runs[1]);
    assert!(
        runs[0].contains(&503) && runs[0].contains(&200),
        "a mix: {:?}",
        runs[0]
    );
}

#[tokio::test]
async fn invalid_options_are_refused() {
    for opts in [
        MockOptions {
            fail_rate: 1.5,
            ..MockOptions::default()
        },
        MockOptions {
            fail_status: 42,
            ..MockOptions::default()
        },
    ] {
        let error = MockUpstream::start_with(opts).await.err().expect("refused");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}

#[tokio::test]
async fn keep_alive_serves_two_requests_on_one_connection() {
    let mock = MockUpstream::start().await.expect("start mock");
    let mut client = Client::connect(&mock).await;
    client.send(post("/v1/chat/completions", CHAT)).await;
    let first = within("first", client.response())
        .await
        .expect("first response");
    client.send(post("/v1/chat/completions", CHAT_STREAM)).await;
    let second = within("second", client.response())
        .await
        .expect("second response");
    assert_eq!((first.status, second.status), (200, 200));
    assert_eq!(second.events().last().map(String::as_str), Some("[DONE]"));
    assert_eq!(second.header("x-request-id"), Some("mock-2"));
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let mock = MockUpstream::start().await.expect("start mock");
    let mut client = Client::connect(&mock).await;
    client
        .send("GET /v1/models HTTP/1.1\r\nHost: mock\r\nConnection: close\r\n\r\n")
        .await;
    let response = within("response", client.response())
        .await
        .expect("response");
    assert_eq!(response.header("connection"), Some("close"));
    within("close", client.until_closed())
        .await
        .expect("closed with FIN");
}

#[tokio::test]
async fn malformed_request_gets_400_and_close() {
    let mock = MockUpstream::start().await.expect("start mock");
    let mut client = Client::connect(&mock).await;
    client
        .send("POST /v1/chat/completions HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
        .await;
    let response = within("response", client.response())
        .await
        .expect("response");
    assert_eq!(response.status, 400);
    within("close", client.until_closed())
        .await
        .expect("closed");
}

#[tokio::test]
async fn wait_for_requests_reports_arrivals_within_the_timeout() {
    let mock = MockUpstream::start().await.expect("start mock");
    assert!(!mock.wait_for_requests(1, Duration::from_millis(50)).await);
    mock.push(Fault::Stall(Duration::from_secs(30)));
    let mut client = Client::connect(&mock).await;
    client.send(post("/v1/chat/completions", CHAT)).await;
    assert!(
        mock.wait_for_requests(1, LIMIT).await,
        "recorded while still stalled"
    );
    assert_eq!(mock.request_count(), 1);
}

#[tokio::test]
async fn shutdown_stops_accepting() {
    let mock = MockUpstream::start().await.expect("start mock");
    let addr = mock.addr();
    assert_eq!(mock.url(), format!("http://{addr}"));
    within("shutdown", mock.shutdown()).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "nothing listens after shutdown"
    );
}

#[tokio::test]
async fn expect_continue_gets_an_interim_100_before_the_body_is_sent() {
    let mock = MockUpstream::start().await.expect("start mock");
    let mut client = Client::connect(&mock).await;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: mock\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        CHAT.len()
    );
    client.send(head).await;
    let interim = within("100 Continue", client.head())
        .await
        .expect("interim response");
    assert_eq!(interim.status, 100);
    client.send(CHAT).await;
    let response = within("response", client.response())
        .await
        .expect("final response");
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn hyper_client_reads_json_and_sse_responses_on_a_pooled_client() {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client as Hyper;
    use hyper_util::rt::TokioExecutor;

    let mock = MockUpstream::start().await.expect("start mock");
    let client: Hyper<_, Full<bytes::Bytes>> = Hyper::builder(TokioExecutor::new()).build_http();
    for body in [CHAT, CHAT_STREAM, CHAT] {
        let request = http::Request::post(format!("{}/v1/chat/completions", mock.url()))
            .header("content-type", "application/json")
            .body(Full::new(bytes::Bytes::from(body)))
            .expect("valid request");
        let response = within("hyper response", client.request(request))
            .await
            .expect("response");
        assert_eq!(response.status(), 200);
        let bytes = within("hyper body", response.into_body().collect())
            .await
            .expect("whole body")
            .to_bytes();
        let text = String::from_utf8(bytes.to_vec()).expect("UTF-8 body");
        let streamed = body == CHAT_STREAM;
        assert_eq!(text.ends_with("data: [DONE]\n\n"), streamed, "{text}");
    }
    assert_eq!(mock.request_count(), 3);
}
