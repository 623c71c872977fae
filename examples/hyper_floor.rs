//! hyper-floor: the smallest reverse proxy that can be built from backstop's HTTP stack.
//!
//! A measuring stick for the benchmark (docs/benchmarks.md), not a product. It is wired
//! the way backstop is: hyper's HTTP/1.1 and h2c servers, told apart per connection by
//! backstop's own `server::version`, on a multi-thread tokio runtime, and backstop's own
//! upstream client (`backstop::proxy::client`: hyper
//! connections pooled per upstream, the same connector and pool idle timeout). Per
//! request it does only what any proxy in backstop's place must: buffer the request body
//! (backstop keeps it to replay on a retry), drop `Host` and hop-by-hop headers (with
//! backstop's own function), and stream the response back as it comes (SSE included).
//! No retries, limits, metrics, events, logs, request ids or usage accounting.
//!
//! backstop's CPU per request over nginx's then splits into what this stack costs
//! (hyper-floor / nginx) and what backstop's own features cost (backstop / hyper-floor).
//!
//! Usage: `hyper_floor LISTEN_ADDR UPSTREAM_BASE_URL`, e.g.
//! `hyper_floor 127.0.0.1:18381 http://127.0.0.1:18081`. Stops on SIGTERM/SIGINT
//! (the default action): nothing is drained, which a benchmark does not need.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use backstop::body::Body;
use backstop::config::{Config, Upstream};
use backstop::proxy::UpstreamClient;
use backstop::proxy::headers::strip_hop_by_hop;
use backstop::server::version::{self, Version as Wire};
use bytes::Bytes;
use http::header::HOST;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream] = args.as_slice() else {
        eprintln!("usage: hyper_floor LISTEN_ADDR UPSTREAM_BASE_URL");
        std::process::exit(2);
    };
    let listen: SocketAddr = listen.parse().expect("LISTEN_ADDR is host:port");
    // backstop's defaults for everything else (connect timeout, pool idle timeout, TLS).
    let toml = format!("[[upstream]]\nname = \"floor\"\nbase_url = \"{upstream}\"\n");
    let config = Config::from_toml(&toml, &|_| None).expect("UPSTREAM_BASE_URL is a URL");
    // As backstop's `block_on` (src/cli/mod.rs): one worker per CPU it may run on.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
        .block_on(serve(listen, config));
}

async fn serve(listen: SocketAddr, config: Config) {
    let client = Arc::new(backstop::proxy::client::build(&config, Arc::default()).expect("client"));
    let upstream = Arc::new(config.upstreams[0].clone());
    let listener = TcpListener::bind(listen)
        .await
        .expect("LISTEN_ADDR is free");
    let builders = Arc::new((
        http1::Builder::new(),
        http2::Builder::new(TokioExecutor::new()),
    ));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(_) => {
                // e.g. EMFILE: back off briefly instead of spinning, as backstop does.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (client, upstream) = (client.clone(), upstream.clone());
        // Boxed as in backstop: the dispatcher keeps a slot the future's size.
        let service =
            service_fn(move |request| Box::pin(forward(client.clone(), upstream.clone(), request)));
        let builders = builders.clone();
        tokio::spawn(async move {
            match version::detect(stream).await {
                Ok((Wire::H1, io)) => {
                    let _ = builders.0.serve_connection(TokioIo::new(io), service).await;
                }
                Ok((Wire::H2, io)) => {
                    let conn = builders.1.serve_connection(TokioIo::new(io), service);
                    let _ = Box::pin(conn).await;
                }
                Err(_) => {}
            }
        });
    }
}

/// One request: buffered body, cleaned headers, the upstream's response streamed back.
/// Failures become a bare 400 (unreadable request) or 502 (no upstream response).
async fn forward(
    client: Arc<UpstreamClient>,
    upstream: Arc<Upstream>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (mut parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let Ok(uri) = upstream_uri(&upstream, parts.uri.path_and_query()) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(HOST); // the client sets it from the upstream
    let mut outbound = Request::new(full(body));
    *outbound.method_mut() = parts.method;
    *outbound.uri_mut() = uri;
    // An h2c request goes upstream as HTTP/1.1, as in backstop (src/proxy/send.rs).
    *outbound.version_mut() = Version::HTTP_11;
    *outbound.headers_mut() = parts.headers;
    match client.send(&upstream, outbound).await {
        Ok(response) => {
            let (mut head, body) = response.into_parts();
            strip_hop_by_hop(&mut head.headers);
            let body = Body::new(body);
            Ok(Response::from_parts(head, body))
        }
        Err(_) => Ok(status(StatusCode::BAD_GATEWAY)),
    }
}

fn upstream_uri(upstream: &Upstream, pq: Option<&PathAndQuery>) -> Result<Uri, http::Error> {
    let pq = pq.map_or("/", PathAndQuery::as_str);
    let base = &upstream.base_url;
    Uri::builder()
        .scheme(base.scheme.clone())
        .authority(base.authority.clone())
        .path_and_query(format!("{}{pq}", base.path))
        .build()
}

fn full(bytes: Bytes) -> Body {
    Body::new(Full::new(bytes).map_err(|never| match never {}))
}

fn status(code: StatusCode) -> Response<Body> {
    let mut response = Response::new(full(Bytes::new()));
    *response.status_mut() = code;
    response
}
