//! SPEC §1: everything is forwarded unchanged except hop-by-hop headers and Host, and
//! responses stream through as they arrive.

mod common;

use std::time::Duration;

use backstop::mock::{Fault, MockUpstream, StreamEnd, StreamScript};
use bytes::Bytes;
use common::{Harness, TestClient, config, config_with_env, raw_exchange, sse_data, timed_frames};
use http::{Method, StatusCode};
use http_body_util::Full;
use serde_json::json;

fn chat(stream: bool) -> serde_json::Value {
    let mut body = common::chat("gpt-4o-mini");
    body["stream"] = json!(stream);
    body
}

#[tokio::test]
async fn json_chat_completion_passes_through_with_request_id() {
    let h = Harness::start().await;
    let response = h
        .client
        .post_json("/v1/chat/completions", chat(false))
        .await;

    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.json()["object"], "chat.completion");
    assert_eq!(response.json()["model"], "gpt-4o-mini");
    let id = response
        .header("x-backstop-request-id")
        .expect("request id header");
    assert!(id.len() >= 16, "{id}");
    assert_eq!(
        response.header("x-request-id"),
        Some("mock-1"),
        "upstream headers pass through"
    );
    assert_eq!(response.header("x-backstop-attempts"), Some("1"));

    let received = h.mock.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "POST");
    assert_eq!(received[0].path, "/v1/chat/completions");
    assert_eq!(
        received[0].header("authorization"),
        Some("Bearer sk-test-client")
    );
    assert_eq!(received[0].json(), Some(chat(false)));
}

#[tokio::test]
async fn every_method_path_and_query_is_forwarded() {
    let h = Harness::start().await;
    for method in [Method::GET, Method::DELETE, Method::PUT, Method::PATCH] {
        let request = h
            .client
            .request(method.clone(), "/v1/files/file-1?purpose=batch&limit=2")
            .body(Full::new(Bytes::new()))
            .expect("request");
        let response = h.client.call(request).await;
        assert_eq!(
            response.status,
            StatusCode::NOT_FOUND,
            "the mock's own 404 for {method}"
        );
    }
    let received = h.mock.received();
    let methods: Vec<&str> = received.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["GET", "DELETE", "PUT", "PATCH"]);
    for r in &received {
        assert_eq!(r.path, "/v1/files/file-1");
        assert_eq!(r.query.as_deref(), Some("purpose=batch&limit=2"));
    }
}

#[tokio::test]
async fn sse_stream_passes_through_with_chunk_timing_preserved() {
    let h = Harness::start().await;
    let gap = Duration::from_millis(80);
    h.mock.push(Fault::Stream(StreamScript {
        chunks: 6,
        gap,
        end: StreamEnd::Done,
        first_event_delay: Duration::ZERO,
        ..StreamScript::default()
    }));
    let request = h
        .client
        .request(Method::POST, "/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(chat(true).to_string())))
        .expect("request");
    let response = h.client.send(request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/event-stream")
    );

    let frames = timed_frames(response.into_body(), Duration::from_secs(10)).await;
    let all: Vec<u8> = frames.iter().flat_map(|(_, b)| b.to_vec()).collect();
    let events = sse_data(&all);
    assert_eq!(events.len(), 7, "6 chunks and [DONE]: {events:?}");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));

    // Not buffered: the first event arrives long before the last one was even sent
    // (5 gaps of 80 ms), and events arrive spread out, not in one lump.
    let first = frames.first().expect("frames").0;
    let last = frames.last().expect("frames").0;
    assert!(
        last - first >= Duration::from_millis(300),
        "events bunched: first {first:?}, last {last:?}"
    );
    assert!(
        frames.len() >= 5,
        "expected separate frames, got {}",
        frames.len()
    );
}

#[tokio::test]
async fn azure_path_api_version_and_api_key_reach_the_upstream_intact() {
    let h = Harness::start().await;
    let path = "/openai/deployments/my-gpt4o/chat/completions?api-version=2024-10-21";
    let request = h
        .client
        .request(Method::POST, path)
        .header("api-key", "azure-client-key")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(chat(false).to_string())))
        .expect("request");
    let response = h.client.call(request).await;
    assert_eq!(response.status, StatusCode::OK);

    let received = &h.mock.received()[0];
    assert_eq!(
        received.path,
        "/openai/deployments/my-gpt4o/chat/completions"
    );
    assert_eq!(received.query.as_deref(), Some("api-version=2024-10-21"));
    assert_eq!(received.header("api-key"), Some("azure-client-key"));
}

#[tokio::test]
async fn one_mib_body_arrives_intact() {
    let h = Harness::start().await;
    let body: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let request = h
        .client
        .request(Method::POST, "/v1/files")
        .header("content-type", "application/octet-stream")
        .body(Full::new(Bytes::from(body.clone())))
        .expect("request");
    h.client.call(request).await;
    assert_eq!(h.mock.received()[0].body.as_ref(), body.as_slice());
}

#[tokio::test]
async fn body_above_retry_buffer_is_streamed_through_intact() {
    let h = Harness::start_with("retry_buffer_bytes = 1000\nmax_body_bytes = 100000").await;
    let body: Vec<u8> = (0..50_000u32).map(|i| (i % 13) as u8 + b'a').collect();
    let request = h
        .client
        .request(Method::POST, "/v1/files")
        .body(Full::new(Bytes::from(body.clone())))
        .expect("request");
    h.client.call(request).await;
    assert_eq!(h.mock.received()[0].body.as_ref(), body.as_slice());
}

#[tokio::test]
async fn oversized_body_gets_413_in_openai_shape_and_never_reaches_upstream() {
    let h = Harness::start_with("retry_buffer_bytes = 100\nmax_body_bytes = 1000").await;
    let request = h
        .client
        .request(Method::POST, "/v1/chat/completions")
        .body(Full::new(Bytes::from(vec![b'x'; 5000])))
        .expect("request");
    let response = h.client.call(request).await;
    assert_eq!(response.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(response.json()["error"]["type"], "backstop_error");
    assert_eq!(response.json()["error"]["code"], "request_too_large");
    assert!(response.header("x-backstop-request-id").is_some());
    assert_eq!(h.mock.request_count(), 0);
}

#[tokio::test]
async fn oversized_chunked_body_without_length_gets_413() {
    let h = Harness::start_with("retry_buffer_bytes = 100\nmax_body_bytes = 1000").await;
    let mut raw = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n".to_vec();
    for _ in 0..10 {
        raw.extend_from_slice(b"1f4\r\n");
        raw.extend_from_slice(&[b'y'; 500]);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let reply = raw_exchange(h.proxy.proxy_addr(), &raw, Duration::from_secs(10)).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("request_too_large"), "{reply}");
}

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_both_ways() {
    let h = Harness::start().await;
    h.mock.push(Fault::Respond {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("connection".into(), "x-upstream-hop".into()),
            ("x-upstream-hop".into(), "secret-hop".into()),
            ("keep-alive".into(), "timeout=5".into()),
            ("x-ratelimit-remaining-requests".into(), "99".into()),
        ],
        body: "{}".into(),
    });
    let request = h
        .client
        .request(Method::GET, "/v1/models")
        .header("connection", "x-client-hop")
        .header("x-client-hop", "1")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic abc")
        .header("x-end-to-end", "kept")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let response = h.client.call(request).await;

    let received = &h.mock.received()[0];
    for gone in ["x-client-hop", "te", "proxy-authorization"] {
        assert_eq!(received.header(gone), None, "{gone} reached the upstream");
    }
    assert_eq!(received.header("x-end-to-end"), Some("kept"));
    assert_eq!(
        received.header("host"),
        Some(h.mock.addr().to_string().as_str()),
        "Host is the upstream's"
    );

    assert_eq!(response.header("x-upstream-hop"), None);
    assert_eq!(response.header("keep-alive"), None);
    assert_eq!(
        response.header("x-ratelimit-remaining-requests"),
        Some("99")
    );
}

#[tokio::test]
async fn absolute_uri_and_forged_host_still_go_only_to_the_configured_upstream() {
    let h = Harness::start().await;
    // A second server that must never be reached.
    let decoy = MockUpstream::start().await.expect("decoy");
    let decoy_host = decoy.addr().to_string();
    let requests = [
        format!(
            "GET http://{decoy_host}/v1/models HTTP/1.1\r\nhost: {decoy_host}\r\nconnection: close\r\n\r\n"
        ),
        format!(
            "GET /v1/models HTTP/1.1\r\nhost: {decoy_host}\r\nx-forwarded-host: {decoy_host}\r\nx-forwarded-proto: http\r\nforwarded: host={decoy_host}\r\nconnection: close\r\n\r\n"
        ),
    ];
    for raw in requests {
        let reply = raw_exchange(
            h.proxy.proxy_addr(),
            raw.as_bytes(),
            Duration::from_secs(10),
        )
        .await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    }
    assert_eq!(h.mock.request_count(), 2);
    assert_eq!(decoy.request_count(), 0, "the decoy was reached");
    assert!(h.mock.received().iter().all(|r| r.path == "/v1/models"));
}

#[tokio::test]
async fn unrouted_path_gets_404_in_openai_shape() {
    let mock = MockUpstream::start().await.expect("mock");
    let toml = format!(
        "[[upstream]]\nname=\"only-v1\"\nbase_url=\"{}\"\npath_prefix=\"/v1/\"\n",
        mock.url()
    );
    let (_proxy, client, _) = common::start_toml(&toml, &[]).await;
    let response = client.get("/admin/secrets").await;
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    assert_eq!(response.json()["error"]["code"], "no_route");
    assert_eq!(mock.request_count(), 0);
}

#[tokio::test]
async fn openai_upstream_injects_its_key_as_bearer() {
    let mock = MockUpstream::start().await.expect("mock");
    let env = |var: &str| (var == "TEST_OPENAI_KEY").then(|| "sk-from-env".to_owned());
    let config = config_with_env(&mock.url(), "", "api_key_env = \"TEST_OPENAI_KEY\"", &env);
    let proxy = backstop::start(config).await.expect("start");
    TestClient::new(proxy.proxy_addr())
        .post_json("/v1/chat/completions", chat(false))
        .await;
    let received = &mock.received()[0];
    assert_eq!(received.header("authorization"), Some("Bearer sk-from-env"));
    assert_eq!(
        received.header_all("authorization").len(),
        1,
        "the client's key is replaced, not added"
    );
}

#[tokio::test]
async fn azure_upstream_injects_its_key_as_api_key() {
    let mock = MockUpstream::start().await.expect("mock");
    let env = |var: &str| (var == "TEST_AZURE_KEY").then(|| "azure-from-env".to_owned());
    let config = config_with_env(
        &mock.url(),
        "",
        "kind = \"azure\"\napi_key_env = \"TEST_AZURE_KEY\"",
        &env,
    );
    let proxy = backstop::start(config).await.expect("start");
    let client = TestClient::new(proxy.proxy_addr());
    let request = client
        .request(
            Method::POST,
            "/openai/deployments/d/embeddings?api-version=2024-10-21",
        )
        .header("api-key", "client-key")
        .body(Full::new(Bytes::from(r#"{"input":"x"}"#)))
        .expect("request");
    let response = client.call(request).await;
    assert_eq!(response.status, StatusCode::OK);
    let received = &mock.received()[0];
    assert_eq!(received.header("api-key"), Some("azure-from-env"));
    assert_eq!(received.header("authorization"), None);
}

#[tokio::test]
async fn base_url_path_is_prepended_to_the_request_path() {
    let mock = MockUpstream::start().await.expect("mock");
    let proxy = backstop::start(config(&format!("{}/gateway/", mock.url()), ""))
        .await
        .expect("start");
    TestClient::new(proxy.proxy_addr()).get("/v1/models").await;
    assert_eq!(mock.received()[0].path, "/gateway/v1/models");
}

#[tokio::test]
async fn http2_cleartext_clients_are_served() {
    let h = Harness::start().await;
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http();
    let response = client
        .request(
            http::Request::get(h.url("/v1/models"))
                .body(Full::new(Bytes::new()))
                .expect("request"),
        )
        .await
        .expect("h2c request");
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(h.mock.received()[0].path, "/v1/models");
}
