//! The fault-injecting OpenAI-compatible mock upstream (`backstop mock-upstream`, and
//! the backbone of the end-to-end tests).
//!
//! It is a raw HTTP/1.1 server rather than hyper, so that faults are exact: a reset is a
//! real TCP RST, a torn body really stops half-way, a stall really sends nothing.
//!
//! Each request takes the next queued [`Fault`]; with an empty queue it gets the normal
//! answer for its path (or, with `fail_rate`, a random server error):
//!
//! - `POST …/chat/completions`: a `chat.completion` with `usage` and the request's
//!   `model`, or, with `"stream": true`, an SSE stream of `chat.completion.chunk`s
//!   (`stream_chunks` of them, `stream_gap` apart), a usage chunk when
//!   `stream_options.include_usage` is set, then `data: [DONE]`;
//! - `POST …/embeddings`: an embedding list; `GET …/models`: a model list;
//! - anything else: 404 with an OpenAI error body;
//! - a WebSocket handshake on any path: `101` and an echo session, or a minimal
//!   Realtime server on `…/realtime` (`websocket`).
//!
//! Paths match by their end, so OpenAI (`/v1/…`) and Azure shapes
//! (`/openai/deployments/{d}/…?api-version=…`, `/openai/v1/…`) are served alike. Every
//! response carries `x-request-id: mock-<n>`, n being the 1-based request number.

pub mod cli;
mod fault;
mod http1;
pub mod memory;
mod openai;
mod reply;
mod server;
mod sse;
mod websocket;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use fault::{
    Fault, LineEnding, OTHER_DIMENSION_RESET, RetryAfter, StreamEnd, StreamScript, http_date,
};
use server::Shared;

/// How the mock behaves when no fault is queued.
#[derive(Clone, Debug)]
pub struct MockOptions {
    /// Address to listen on. Default `127.0.0.1:0` (a free port).
    pub listen: SocketAddr,
    /// Share (0 to 1) of requests with an empty queue answered `fail_status`. Default 0.
    pub fail_rate: f64,
    /// Status of those random failures. Default 503.
    pub fail_status: u16,
    /// Delay before every normal answer. Default 0.
    pub latency: Duration,
    /// Content chunks in a normal SSE answer. Default 5.
    pub stream_chunks: usize,
    /// Pause between those chunks. Default 10 ms.
    pub stream_gap: Duration,
    /// How the lines of those streams end. Default LF.
    pub stream_line_ending: LineEnding,
    /// Seed for the random failures, for reproducible runs. Default: none (random).
    pub seed: Option<u64>,
    /// Enforce a provider-style request limit (fixed window, `x-ratelimit-*` headers,
    /// 429 over it). Applies to requests with an empty fault queue. Default: none.
    pub rate_limit: Option<MockRateLimit>,
    /// How many of the latest requests `received()` keeps; older ones are let go, so a
    /// mock left running under load does not grow without end. Default 10 000.
    pub keep_received: usize,
}

/// `requests` per `window`, as a provider enforces and reports it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MockRateLimit {
    pub requests: u32,
    pub window: Duration,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            fail_rate: 0.0,
            fail_status: 503,
            latency: Duration::ZERO,
            stream_chunks: 5,
            stream_gap: Duration::from_millis(10),
            stream_line_ending: LineEnding::Lf,
            seed: None,
            rate_limit: None,
            keep_received: 10_000,
        }
    }
}

impl MockOptions {
    /// Checks the values a caller could get wrong; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.fail_rate) {
            return Err(format!(
                "fail_rate must be between 0 and 1, got {}",
                self.fail_rate
            ));
        }
        if !(100..=599).contains(&self.fail_status) {
            return Err(format!(
                "fail_status must be an HTTP status (100-599), got {}",
                self.fail_status
            ));
        }
        Ok(())
    }
}

/// One request as the mock received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string, without the `?`.
    pub query: Option<String>,
    /// Every header in order, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body, chunked transfer coding removed.
    pub body: Bytes,
    /// When its head was read.
    pub at: Instant,
    /// The body parsed as JSON, once (large bodies are read by several answers).
    pub(crate) parsed: Arc<std::sync::OnceLock<Option<serde_json::Value>>>,
}

impl Received {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }

    /// Every value of a header, in order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        self.parsed
            .get_or_init(|| serde_json::from_slice(&self.body).ok())
            .clone()
    }
}

/// A running mock upstream. It owns its tasks: dropping it or calling
/// [`shutdown`](MockUpstream::shutdown) stops them and closes every connection.
pub struct MockUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// Dropping it stops the accept loop.
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl MockUpstream {
    /// Starts on `127.0.0.1` on a free port, with default options.
    pub async fn start() -> io::Result<MockUpstream> {
        MockUpstream::start_with(MockOptions::default()).await
    }

    /// Starts with these options; an invalid option is an `InvalidInput` error.
    pub async fn start_with(opts: MockOptions) -> io::Result<MockUpstream> {
        opts.validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let listener = TcpListener::bind(opts.listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(opts));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(server::accept_loop(listener, shared.clone(), stopped));
        tracing::debug!(%addr, "mock upstream started");
        Ok(MockUpstream {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, to use as a base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues a fault for the next request without one.
    pub fn push(&self, fault: Fault) {
        self.shared.push(fault, 1);
    }

    /// Queues the same fault for the next `n` requests.
    pub fn push_n(&self, fault: Fault, n: usize) {
        self.shared.push(fault, n);
    }

    /// The requests received so far (the latest `keep_received` of them), in arrival
    /// order, faulted ones included.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received()
    }

    pub fn request_count(&self) -> usize {
        *self.shared.count.borrow()
    }

    /// Waits until at least `n` requests have arrived; false if `timeout` passes first.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        let mut count = self.shared.count.subscribe();
        matches!(
            tokio::time::timeout(timeout, count.wait_for(|c| *c >= n)).await,
            Ok(Ok(_))
        )
    }

    /// Stops accepting, closes every connection and waits for all of it.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}
