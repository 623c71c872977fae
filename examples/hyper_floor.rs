//! hyper-floor: the smallest reverse proxy that can be built from backstop's HTTP stack.
//!
//! A measuring stick for the benchmark (docs/benchmarks.md), not a product. It uses the
//! same crates, at Cargo.lock's versions, wired the way backstop wires them: the
//! hyper-util `auto` server (HTTP/1.1 + h2c) on a multi-thread tokio runtime, and the
//! pooled `hyper_util::client::legacy::Client` (plain `HttpConnector`, nodelay, the
//! same pool idle timeout). Per request it does only what any proxy in backstop's place
//! must: buffer the request body (backstop keeps it to replay on a retry), copy the
//! headers except `Host` and hop-by-hop ones, and stream the response back as it comes
//! (SSE included). No retries, metrics, logs, request ids or config.
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

use bytes::Bytes;
use http::header::{CONNECTION, HOST, HeaderName};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

type Upstream = Client<HttpConnector, Full<Bytes>>;
type ResponseBody = Either<Incoming, Full<Bytes>>;

/// Where requests go: scheme and authority of the base URL, and its path (no trailing `/`).
struct Target {
    scheme: Scheme,
    authority: Authority,
    prefix: String,
}

/// RFC 9110 §7.6.1 plus legacy names: the list backstop drops (src/proxy/headers.rs).
const HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream] = args.as_slice() else {
        eprintln!("usage: hyper_floor LISTEN_ADDR UPSTREAM_BASE_URL");
        std::process::exit(2);
    };
    let listen: SocketAddr = listen.parse().expect("LISTEN_ADDR is host:port");
    let base: Uri = upstream.parse().expect("UPSTREAM_BASE_URL is a URL");
    let target = Target {
        scheme: base.scheme().cloned().unwrap_or(Scheme::HTTP),
        authority: base
            .authority()
            .cloned()
            .expect("UPSTREAM_BASE_URL has a host"),
        prefix: base.path().trim_end_matches('/').to_owned(),
    };
    // As backstop's `block_on` (src/cli/mod.rs): one worker per CPU it may run on.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("the tokio runtime starts")
        .block_on(serve(listen, Arc::new(target)));
}

async fn serve(listen: SocketAddr, target: Arc<Target>) {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let client: Upstream = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90)) // backstop's default
        .build(http);
    let listener = TcpListener::bind(listen)
        .await
        .expect("LISTEN_ADDR is free");
    let builder = auto::Builder::new(TokioExecutor::new());
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
        let (client, target) = (client.clone(), target.clone());
        let service = service_fn(move |request| forward(client.clone(), target.clone(), request));
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}

/// One request: buffered body, cleaned headers, the upstream's response streamed back.
/// Failures become a bare 400 (unreadable request) or 502 (no upstream response).
async fn forward(
    client: Upstream,
    target: Arc<Target>,
    request: Request<Incoming>,
) -> Result<Response<ResponseBody>, Infallible> {
    let (mut parts, body) = request.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    let Ok(uri) = upstream_uri(&target, parts.uri.path_and_query()) else {
        return Ok(status(StatusCode::BAD_REQUEST));
    };
    strip_hop_by_hop(&mut parts.headers);
    parts.headers.remove(HOST); // hyper sets it from the upstream URI
    let mut outbound = Request::new(Full::new(body));
    *outbound.method_mut() = parts.method;
    *outbound.uri_mut() = uri;
    // An h2c request goes upstream as HTTP/1.1, as in backstop (src/proxy/send.rs).
    *outbound.version_mut() = Version::HTTP_11;
    *outbound.headers_mut() = parts.headers;
    match client.request(outbound).await {
        Ok(response) => {
            let (mut head, body) = response.into_parts();
            strip_hop_by_hop(&mut head.headers);
            Ok(Response::from_parts(head, Either::Left(body)))
        }
        Err(_) => Ok(status(StatusCode::BAD_GATEWAY)),
    }
}

fn upstream_uri(target: &Target, pq: Option<&PathAndQuery>) -> Result<Uri, http::Error> {
    let pq = pq
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let builder = Uri::builder()
        .scheme(target.scheme.clone())
        .authority(target.authority.clone());
    if target.prefix.is_empty() {
        builder.path_and_query(pq).build()
    } else {
        builder
            .path_and_query(format!("{}{pq}", target.prefix))
            .build()
    }
}

/// Removes hop-by-hop headers, including any named by `Connection`.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(CONNECTION) {
        let listed: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

fn status(code: StatusCode) -> Response<ResponseBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::new())));
    *response.status_mut() = code;
    response
}
