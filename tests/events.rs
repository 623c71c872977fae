//! The request path's events: what the failure log and metrics are built on.

mod common;

use std::sync::Arc;
use std::time::Duration;

use backstop::events::{BodyEnd, RecordingObserver, RequestEvent, Usage};
use backstop::mock::{Fault, MockUpstream, StreamEnd, StreamScript};
use bytes::Bytes;
use common::{TestClient, config, eventually, stream_request, timed_frames};
use http::Method;
use http_body_util::Full;
use serde_json::json;

struct Setup {
    mock: MockUpstream,
    client: TestClient,
    observer: Arc<RecordingObserver>,
    _proxy: backstop::Running,
}

async fn setup() -> Setup {
    let mock = MockUpstream::start().await.expect("mock");
    let observer = Arc::new(RecordingObserver::default());
    let proxy = backstop::start_with_observer(
        config(&mock.url(), "[retry]\nbase_delay = \"1ms\""),
        observer.clone(),
    )
    .await
    .expect("start");
    Setup {
        client: TestClient::new(proxy.proxy_addr()),
        mock,
        observer,
        _proxy: proxy,
    }
}

async fn one_request(observer: &RecordingObserver) -> RequestEvent {
    assert!(
        eventually(Duration::from_secs(5), || observer.requests().len() == 1).await,
        "no request event"
    );
    observer.requests().remove(0)
}

#[tokio::test]
async fn a_json_completion_reports_usage_model_and_tag() {
    let s = setup().await;
    let request = s
        .client
        .request(Method::POST, "/v1/chat/completions")
        .header("x-backstop-tag", "quiz_generation")
        .body(Full::new(Bytes::from(
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).to_string(),
        )))
        .expect("request");
    s.client.call(request).await;
    let event = one_request(&s.observer).await;
    assert_eq!(event.status, 200);
    assert_eq!(event.endpoint_kind, "chat_completions");
    assert_eq!(event.end, BodyEnd::Complete);
    assert_eq!(event.attempts, 1);
    assert_eq!(event.meta.model(), Some("gpt-4o"));
    assert_eq!(event.meta.tag.as_deref(), Some("quiz_generation"));
    assert_eq!(event.meta.hints().messages_count, Some(1));
    let usage = event.usage.expect("usage from the JSON body");
    assert!(
        usage.input_tokens > 0 && usage.output_tokens > 0,
        "{usage:?}"
    );
}

#[tokio::test]
async fn a_stream_with_include_usage_reports_usage_and_first_chunk_time() {
    let s = setup().await;
    let body = json!({"model": "m", "stream": true, "stream_options": {"include_usage": true}, "messages": []});
    let request = s
        .client
        .request(Method::POST, "/v1/chat/completions")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let response = s.client.send(request).await;
    timed_frames(response.into_body(), Duration::from_secs(10)).await;
    let event = one_request(&s.observer).await;
    assert!(event.meta.stream() && event.meta.hints().include_usage);
    assert!(
        matches!(
            event.usage,
            Some(Usage {
                input_tokens: 1..,
                output_tokens: 1..
            })
        ),
        "{:?}",
        event.usage
    );
    let first = event.time_to_first_chunk.expect("first chunk time");
    assert!(first <= event.duration);
}

#[tokio::test]
async fn a_stream_broken_after_commit_is_reported_as_interrupted() {
    let s = setup().await;
    s.mock.push(Fault::Stream(StreamScript {
        end: StreamEnd::DieAfter(2),
        ..StreamScript::default()
    }));
    let response = s.client.send(stream_request(&s.client)).await;
    timed_frames(response.into_body(), Duration::from_secs(10)).await;
    let event = one_request(&s.observer).await;
    assert_eq!(event.end, BodyEnd::Interrupted("stream_interrupted"));
}

#[tokio::test]
async fn a_client_that_leaves_mid_stream_is_reported() {
    let s = setup().await;
    s.mock.push(Fault::Stream(StreamScript {
        chunks: 100,
        gap: Duration::from_millis(50),
        ..StreamScript::default()
    }));
    let response = s.client.send(stream_request(&s.client)).await;
    drop(response);
    let event = one_request(&s.observer).await;
    assert_eq!(event.end, BodyEnd::ClientGone);
}

#[tokio::test]
async fn refused_requests_still_get_an_event() {
    let s = setup().await;
    let request = s
        .client
        .request(Method::POST, "/v1/chat/completions")
        .body(Full::new(Bytes::from(vec![b'x'; 70 * 1024 * 1024])))
        .expect("request");
    let response = s.client.call(request).await;
    assert_eq!(response.status, 413);
    let event = one_request(&s.observer).await;
    assert_eq!((event.status, event.attempts), (413, 0));
    assert_eq!(event.upstream.as_deref(), Some("mock"));
    assert_eq!(s.mock.request_count(), 0);
}
