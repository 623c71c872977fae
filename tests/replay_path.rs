//! Replay as a service (`stack::serve`) on a paused tokio clock, with an in-memory
//! upstream: a repeat waits exactly as long as the call it joins, and a kept response
//! is answered without any time passing.

use std::sync::Arc;
use std::time::Duration;

use backstop::body::Body;
use backstop::events::{Observer, RecordingObserver};
use backstop::mock::memory::{MemoryUpstream, Reply, Step};
use backstop::runtime::Runtime;
use backstop::{Config, stack};
use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;

struct Path {
    runtime: Runtime,
    upstream: MemoryUpstream,
    _store: tempfile::TempDir,
}

impl Path {
    fn new(script: impl IntoIterator<Item = Step>) -> Path {
        let store = tempfile::tempdir().expect("tempdir");
        let text = format!(
            "[replay]\ndir = {:?}\n[[upstream]]\nname = \"mem\"\nbase_url = \"http://upstream.test\"\n",
            store.path().display().to_string()
        );
        let config = Config::from_toml(&text, &|_| None).expect("valid test config");
        Path {
            runtime: Runtime::new(config, None).expect("runtime"),
            upstream: MemoryUpstream::new(script),
            _store: store,
        }
    }

    async fn send(&self, key: &str) -> (Response<Body>, Bytes) {
        let observer: Arc<dyn Observer> = Arc::new(RecordingObserver::default());
        let request = Request::builder()
            .method(Method::POST)
            .uri("/v1/chat/completions")
            .header("authorization", "Bearer sk-test")
            .header("idempotency-key", key)
            .body(Full::new(Bytes::from_static(
                br#"{"model":"m","messages":[]}"#,
            )))
            .expect("request");
        let response = stack::serve(&self.runtime, &self.upstream, observer, request).await;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        (Response::from_parts(parts, backstop::body::empty()), bytes)
    }
}

fn replayed(response: &Response<Body>) -> bool {
    response.headers().get("x-backstop-replayed").is_some()
}

#[tokio::test(start_paused = true)]
async fn a_repeat_in_flight_waits_exactly_until_the_first_answers() {
    let answer =
        Reply::json(200, r#"{"id":"chatcmpl-1","choices":[]}"#).after(Duration::from_secs(10));
    let path = Path::new([Step::Respond(answer)]);
    let start = Instant::now();
    let second = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sent = Instant::now();
        let (response, body) = path.send("k").await;
        (response, body, sent.elapsed())
    };
    let ((first, first_body), (second, second_body, waited)) = tokio::join!(path.send("k"), second);
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(10),
        "neither took longer"
    );
    assert_eq!(
        waited,
        Duration::from_secs(9),
        "the repeat waited for the first, no more"
    );
    assert_eq!(path.upstream.seen().len(), 1, "one upstream call");
    assert!(!replayed(&first) && replayed(&second));
    assert_eq!(first_body, second_body);
}

#[tokio::test(start_paused = true)]
async fn a_kept_response_is_answered_without_any_time_passing() {
    let answer =
        Reply::json(200, r#"{"id":"chatcmpl-2","choices":[]}"#).after(Duration::from_secs(30));
    let path = Path::new([Step::Respond(answer)]);
    let (first, _) = path.send("k").await;
    assert!(!replayed(&first));
    let start = Instant::now();
    let (again, _) = path.send("k").await;
    assert!(replayed(&again));
    assert_eq!(start.elapsed(), Duration::ZERO, "no upstream, no wait");
    assert_eq!(path.upstream.seen().len(), 1);
}
