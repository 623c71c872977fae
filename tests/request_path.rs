//! The request path as a service (`stack::serve`) on a paused tokio clock, with an
//! in-memory upstream (`mock::memory`): no sockets, no real sleeps. Time only moves when
//! every task waits on a timer, so the times these tests read are exact: a backoff is
//! seen to last exactly the delay that was reported for it.

use std::sync::Arc;
use std::time::Duration;

use backstop::body::Body;
use backstop::events::{Observer, RecordingObserver, Verdict};
use backstop::mock::memory::{MemoryUpstream, Part, Reply, Step};
use backstop::retry::GiveUp;
use backstop::runtime::Runtime;
use backstop::{Config, stack};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;

/// A runtime for one upstream (`upstream_keys` go in its table), the in-memory
/// upstream playing `script`, and an observer that keeps every report.
struct Path {
    runtime: Runtime,
    upstream: MemoryUpstream,
    observer: Arc<RecordingObserver>,
}

impl Path {
    fn new(top: &str, upstream_keys: &str, script: impl IntoIterator<Item = Step>) -> Path {
        let text = format!(
            "{top}\n[[upstream]]\nname = \"mem\"\nbase_url = \"http://upstream.test\"\n{upstream_keys}\n"
        );
        let config = Config::from_toml(&text, &|_| None).expect("valid test config");
        Path {
            runtime: Runtime::new(config, None).expect("runtime"),
            upstream: MemoryUpstream::new(script),
            observer: Arc::default(),
        }
    }

    async fn send(&self, request: Request<Full<Bytes>>) -> Response<Body> {
        let observer: Arc<dyn Observer> = self.observer.clone();
        stack::serve(&self.runtime, &self.upstream, observer, request).await
    }

    async fn chat(&self) -> Response<Body> {
        self.send(chat_request(false)).await
    }

    async fn send_body<B: backstop::body::ClientBody>(
        &self,
        request: Request<B>,
    ) -> Response<Body> {
        let observer: Arc<dyn Observer> = self.observer.clone();
        stack::serve(&self.runtime, &self.upstream, observer, request).await
    }
}

/// A client body that sends its first chunk, then nothing more, never ending.
struct StallingBody(Option<Bytes>);

impl http_body::Body for StallingBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        match self.0.take() {
            Some(chunk) => std::task::Poll::Ready(Some(Ok(http_body::Frame::data(chunk)))),
            None => std::task::Poll::Pending,
        }
    }
}

fn chat_request(stream: bool) -> Request<Full<Bytes>> {
    let body = format!(r#"{{"model":"gpt-4o-mini","stream":{stream},"messages":[]}}"#);
    chat_with(Full::new(Bytes::from(body)))
}

/// A chat completion request carrying `body`.
fn chat_with<B>(body: B) -> Request<B> {
    Request::builder()
        .method(Method::POST)
        .uri("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(body)
        .expect("request")
}

/// The whole body of `response`, as text.
async fn text(response: Response<Body>) -> String {
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

fn status(code: u16) -> Step {
    Step::Respond(Reply::json(
        code,
        r#"{"error":{"message":"overloaded","type":"server_error"}}"#,
    ))
}

fn ok() -> Step {
    Step::Respond(Reply::json(200, r#"{"choices":[]}"#))
}

/// Every frame of `body` with the time it arrived after `since`.
async fn frames(body: Body, since: Instant) -> Vec<(Duration, Result<Bytes, String>)> {
    let mut body = body;
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let at = since.elapsed();
        match frame {
            Ok(frame) => {
                if let Ok(data) = frame.into_data() {
                    out.push((at, Ok(data)));
                }
            }
            Err(e) => {
                out.push((at, Err(e.to_string())));
                break;
            }
        }
    }
    out
}

const MS: Duration = Duration::from_millis(1);

#[tokio::test(start_paused = true)]
async fn retries_503_after_exactly_the_backoff_it_reports() {
    let p = Path::new(
        "[retry]\nthrottle_base_delay = \"1s\"\nmax_delay = \"8s\"",
        "",
        [status(503), status(503), ok()],
    );
    let response = p.chat().await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-backstop-attempts"], "3");

    let seen = p.upstream.seen();
    let reports = p.observer.events();
    assert_eq!(seen.len(), 3);
    assert_eq!(reports.len(), 3);
    for n in 0..2 {
        let delay = reports[n].delay.expect("a retry reports its delay");
        assert_eq!(reports[n].verdict, Verdict::Retry);
        // Full jitter: uniform(0, base · 2^n), throttling base for a 503.
        assert!(delay <= Duration::from_secs(1 << n), "{delay:?}");
        let gap = seen[n + 1].at - seen[n].at;
        assert!(gap >= delay && gap <= delay + MS, "{gap:?} vs {delay:?}");
    }
    assert_eq!(reports[2].verdict, Verdict::Returned);
}

#[tokio::test(start_paused = true)]
async fn every_attempt_sends_the_clients_headers_the_first_its_own_map_and_retries_a_copy() {
    let p = Path::new(
        "[retry]\nthrottle_base_delay = \"1ms\"",
        "",
        [status(503), status(503), ok()],
    );
    let mut request = chat_request(false);
    let headers = request.headers_mut();
    headers.insert("x-app-trace", "trace-1".parse().expect("value"));
    headers.insert("authorization", "Bearer sk-client".parse().expect("value"));
    let response = p.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);

    let seen = p.upstream.seen();
    assert_eq!(seen.len(), 3);
    for attempt in &seen {
        assert_eq!(attempt.headers["x-app-trace"], "trace-1");
        assert_eq!(attempt.headers["authorization"], "Bearer sk-client");
        assert_eq!(attempt.headers["content-type"], "application/json");
        assert_eq!(
            attempt.headers, seen[0].headers,
            "a retry sends what the first sent"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn never_starts_a_backoff_that_would_end_past_the_deadline() {
    let every_300ms = || {
        Step::Respond(
            Reply::json(503, r#"{"error":{"message":"busy"}}"#).header("retry-after-ms", "300"),
        )
    };
    let p = Path::new(
        "[retry]\nmax_retries = 10\ndeadline = \"1s\"",
        "",
        std::iter::repeat_with(every_300ms).take(20),
    );
    let started = Instant::now();
    let response = p.chat().await;
    let answered_after = started.elapsed();

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["x-should-retry"], "false");
    assert!(
        answered_after < Duration::from_secs(1),
        "{answered_after:?}"
    );
    let seen = p.upstream.seen();
    // 300 ms plus up to 20 % jitter each: three or four attempts fit in a second.
    let times: Vec<Duration> = seen.iter().map(|s| s.at - started).collect();
    assert!((3..=4).contains(&seen.len()), "{times:?}");
    let last = p.observer.events().pop().expect("reports");
    assert_eq!(last.give_up, Some(GiveUp::DeadlineExceeded));
    assert_eq!(last.verdict, Verdict::GiveUp);
}

#[tokio::test(start_paused = true)]
async fn holds_sse_headers_until_the_first_event_arrives() {
    let stream = Reply::sse()
        .then(
            Duration::from_millis(200),
            Part::Data(Bytes::from(": keep-alive\n\n")),
        )
        .event(
            Duration::from_millis(500),
            r#"{"choices":[{"delta":{"content":"hi"}}]}"#,
        )
        .event(Duration::from_millis(100), "[DONE]");
    let p = Path::new(
        "[retry]\nfirst_event_timeout = \"2s\"",
        "",
        [Step::Respond(stream)],
    );
    let started = Instant::now();
    let response = p.send(chat_request(true)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(700),
        "the head waits for the first event, not for the comment before it"
    );
    let frames = frames(response.into_body(), started).await;
    let text: String = frames
        .iter()
        .map(|(_, f)| String::from_utf8_lossy(f.as_ref().expect("clean")).into_owned())
        .collect();
    assert!(text.starts_with(": keep-alive\n\ndata: {"), "{text}");
    assert_eq!(frames.last().map(|f| f.0), Some(Duration::from_millis(800)));
}

#[tokio::test(start_paused = true)]
async fn a_stream_whose_first_event_is_too_late_is_retried() {
    let late = Reply::sse().event(Duration::from_secs(5), r#"{"choices":[]}"#);
    let prompt = Reply::sse()
        .event(Duration::from_millis(50), r#"{"choices":[]}"#)
        .event(Duration::ZERO, "[DONE]");
    let p = Path::new(
        "[retry]\nfirst_event_timeout = \"1s\"\nbase_delay = \"100ms\"",
        "",
        [Step::Respond(late), Step::Respond(prompt)],
    );
    let response = p.send(chat_request(true)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-backstop-attempts"], "2");
    let first = &p.observer.events()[0];
    assert_eq!(first.outcome.reason().as_str(), "first_event_timeout");
    assert_eq!(
        first.duration,
        Duration::from_secs(1),
        "cut at first_event_timeout"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_stalls_after_commit_ends_with_an_error_event_after_idle_timeout() {
    let stalls = Reply::sse()
        .event(Duration::ZERO, r#"{"choices":[{"delta":{"content":"a"}}]}"#)
        .then(Duration::ZERO, Part::Stall);
    let p = Path::new(
        "[retry]\nidle_timeout = \"3s\"",
        "",
        [Step::Respond(stalls)],
    );
    let started = Instant::now();
    let response = p.send(chat_request(true)).await;
    let frames = frames(response.into_body(), started).await;
    let (at, last) = frames.last().expect("frames");
    let last = String::from_utf8_lossy(last.as_ref().expect("an event, not an error")).into_owned();
    assert_eq!(*at, Duration::from_secs(3));
    assert!(last.contains("stream_idle_timeout"), "{last}");
    assert_eq!(p.upstream.seen().len(), 1, "never retried after commit");
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_sending_its_body_gets_a_400_after_exactly_idle_timeout() {
    let p = Path::new("[retry]\nidle_timeout = \"3s\"", "", [ok()]);
    let request = chat_with(StallingBody(Some(Bytes::from_static(b"{\"model\":"))));
    let started = Instant::now();
    let response = p.send_body(request).await;
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body = text(response).await;
    assert!(body.contains("bad_request_body"), "{body}");
    assert!(p.upstream.seen().is_empty(), "nothing was sent upstream");
}

#[tokio::test(start_paused = true)]
async fn an_error_body_that_breaks_while_peeked_reaches_the_client_broken() {
    let cut = Reply {
        body: vec![
            (
                Duration::ZERO,
                Part::Data(Bytes::from_static(b"{\"error\":{\"mess")),
            ),
            (Duration::ZERO, Part::Break),
        ],
        ..Reply::json(400, "")
    };
    let p = Path::new("", "", [Step::Respond(cut)]);
    let response = p.chat().await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let frames = frames(response.into_body(), Instant::now()).await;
    assert!(
        matches!(frames.last(), Some((_, Err(_)))),
        "the body must break, not end clean: {frames:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_fails_fast_until_open_for_has_passed() {
    let p = Path::new(
        "[retry]\nmax_retries = 0",
        "[upstream.circuit_breaker]\nconsecutive_failures = 2\nopen_for = \"30s\"",
        [status(503), status(503), ok()],
    );
    for _ in 0..2 {
        assert_eq!(p.chat().await.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    let refused = p.chat().await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(text(refused).await.contains("circuit_open"));
    assert_eq!(
        p.upstream.seen().len(),
        2,
        "an open circuit does not call the upstream"
    );

    tokio::time::sleep(Duration::from_secs(29)).await;
    assert_eq!(p.chat().await.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(p.upstream.seen().len(), 2, "still open after 29 s");

    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        p.chat().await.status(),
        StatusCode::OK,
        "the probe goes through"
    );
    assert_eq!(p.upstream.seen().len(), 3);
    assert_eq!(
        p.chat().await.status(),
        StatusCode::OK,
        "and closed the circuit"
    );
}

#[tokio::test(start_paused = true)]
async fn pacing_waits_for_the_reset_when_the_upstream_says_none_are_left() {
    let spent = Step::Respond(
        Reply::json(200, r#"{"choices":[]}"#)
            .header("x-ratelimit-limit-requests", "100")
            .header("x-ratelimit-remaining-requests", "0")
            .header("x-ratelimit-reset-requests", "2s"),
    );
    let p = Path::new("", "", [spent, ok()]);
    assert_eq!(p.chat().await.status(), StatusCode::OK);
    let waited_from = Instant::now();
    assert_eq!(p.chat().await.status(), StatusCode::OK);
    let seen = p.upstream.seen();
    assert!(
        seen[1].at - seen[0].at >= Duration::from_secs(2),
        "admitted only after the reset"
    );
    assert!(waited_from.elapsed() <= Duration::from_secs(2) + MS);
    let waited = p.observer.requests()[1].queue_wait;
    assert!(waited >= Duration::from_secs(2) - MS, "{waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_refused_connection_is_retried_and_a_reset_too() {
    let p = Path::new(
        "[retry]\nbase_delay = \"10ms\"",
        "",
        [Step::Refuse, Step::Reset, ok()],
    );
    let response = p.chat().await;
    assert_eq!(response.status(), StatusCode::OK);
    let reasons: Vec<&str> = p
        .observer
        .events()
        .iter()
        .map(|e| e.outcome.reason().as_str())
        .collect();
    assert_eq!(reasons, ["connect_error", "reset", "success"]);
}

#[tokio::test(start_paused = true)]
async fn no_headers_within_attempt_timeout_is_a_timeout_then_a_504() {
    let p = Path::new(
        "[retry]\nattempt_timeout = \"5s\"\nmax_retries = 1\nbase_delay = \"10ms\"",
        "",
        [Step::Hang, Step::Hang],
    );
    let started = Instant::now();
    let response = p.chat().await;
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_secs(10) && elapsed <= Duration::from_secs(10) + 20 * MS);
    let reports = p.observer.events();
    assert!(reports.iter().all(|r| r.duration == Duration::from_secs(5)));
}
