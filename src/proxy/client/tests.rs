//! The client against a real upstream on 127.0.0.1.

use std::sync::Arc;

use http::{Request, StatusCode};

use super::build;
use crate::config::Config;
use crate::mock::MockUpstream;

fn config(base_url: &str) -> Config {
    let text = format!("[[upstream]]\nname = \"up\"\nbase_url = \"{base_url}\"\n");
    Config::from_toml(&text, &|_| None).expect("config")
}

/// A pooled connection the server closed just then hands its request back unsent, and
/// by then the request is in origin form (`/v1/models`, its host in `Host`). The new
/// connection it goes out on is the upstream's: where to connect is never read from
/// the request.
#[tokio::test]
async fn a_request_in_origin_form_goes_out_on_a_new_connection_to_its_upstream() {
    let upstream = MockUpstream::start().await.expect("mock upstream");
    let config = config(&upstream.url());
    let client = build(&config, Arc::default()).expect("client");
    let request = Request::get("/v1/models")
        .body(crate::body::empty())
        .expect("request");

    let response = client
        .send(&config.upstreams[0], request)
        .await
        .expect("sent on a new connection");

    assert_eq!(response.status(), StatusCode::OK);
    let received = upstream.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].path, "/v1/models");
    drop(response);
    client.shutdown().await;
    upstream.shutdown().await;
}
