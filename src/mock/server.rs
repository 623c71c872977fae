//! The accept loop and the per-connection request loop.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use super::fault::Fault;
use super::http1::{Conn, Incoming};
use super::openai;
use super::reply::{self, After};
use super::websocket;
use super::{MockOptions, Received};

/// State shared by the handle and every connection.
pub(super) struct Shared {
    pub opts: MockOptions,
    state: Mutex<State>,
    /// How many requests have been received; watched by `wait_for_requests`.
    pub count: watch::Sender<usize>,
}

struct State {
    queue: VecDeque<Fault>,
    /// The latest `opts.keep_received` requests.
    received: VecDeque<Received>,
    /// Every request so far: the next one's number is this + 1.
    total: usize,
    rng: fastrand::Rng,
    /// Start and count of the current fixed window of `opts.rate_limit`.
    window: (Instant, u32),
}

impl Shared {
    pub(super) fn new(opts: MockOptions) -> Shared {
        let rng = opts
            .seed
            .map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        Shared {
            opts,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                received: VecDeque::new(),
                total: 0,
                rng,
                window: (Instant::now(), 0),
            }),
            count: watch::Sender::new(0),
        }
    }

    fn state(&self) -> parking_lot::MutexGuard<'_, State> {
        self.state.lock()
    }

    pub(super) fn push(&self, fault: Fault, n: usize) {
        self.state().queue.extend(std::iter::repeat_n(fault, n));
    }

    pub(super) fn received(&self) -> Vec<Received> {
        self.state().received.iter().cloned().collect()
    }

    /// Records a request and picks its fault; returns its 1-based number too. One lock
    /// for both, so request numbers, the record order and the queue order agree.
    fn admit(&self, received: &Received) -> (usize, Fault) {
        let mut state = self.state();
        let limited = self.opts.rate_limit.is_some() && state.queue.is_empty();
        let fault = if limited {
            self.enforce_limit(&mut state, received)
        } else {
            None
        };
        state.total += 1;
        let n = state.total;
        if self.opts.keep_received > 0 {
            if state.received.len() == self.opts.keep_received {
                state.received.pop_front();
            }
            state.received.push_back(received.clone());
        }
        let fault = match fault.or_else(|| state.queue.pop_front()) {
            Some(fault) => fault,
            None if self.opts.fail_rate > 0.0 && state.rng.f64() < self.opts.fail_rate => {
                Fault::ServerError(self.opts.fail_status)
            }
            None => Fault::Ok,
        };
        self.count.send_replace(n);
        (n, fault)
    }
}

impl Shared {
    /// With `opts.rate_limit`: a fixed window like a provider's, reported in
    /// `x-ratelimit-*` headers on every answer and enforced with 429 + `retry-after-ms`.
    fn enforce_limit(&self, state: &mut State, req: &Received) -> Option<Fault> {
        let limit = self.opts.rate_limit?;
        let now = Instant::now();
        if now.duration_since(state.window.0) >= limit.window {
            state.window = (now, 0);
        }
        state.window.1 += 1;
        let used = state.window.1;
        let reset = (state.window.0 + limit.window).saturating_duration_since(now);
        let mut headers = vec![
            (
                "x-ratelimit-limit-requests".to_owned(),
                limit.requests.to_string(),
            ),
            (
                "x-ratelimit-remaining-requests".to_owned(),
                limit.requests.saturating_sub(used).to_string(),
            ),
            (
                "x-ratelimit-reset-requests".to_owned(),
                format!("{}ms", reset.as_millis()),
            ),
            ("content-type".to_owned(), "application/json".to_owned()),
        ];
        if used > limit.requests {
            headers.push(("retry-after-ms".to_owned(), reset.as_millis().to_string()));
            let body = openai::error(
                "Rate limit reached for requests",
                Some("requests"),
                Some("rate_limit_exceeded"),
            );
            return Some(Fault::Respond {
                status: 429,
                headers,
                body: body.to_string(),
            });
        }
        let (status, body) = openai::json_answer(req, state.total + 1);
        Some(Fault::Respond {
            status,
            headers,
            body: body.to_string(),
        })
    }
}

/// Accepts connections until `stop` fires (or its sender is dropped), then closes the
/// listener and every connection before returning.
pub(super) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, shared.clone()));
                }
                Err(error) => {
                    // E.g. out of file descriptors: back off briefly rather than spin.
                    tracing::warn!(%error, "mock upstream: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// Serves requests on one connection until it closes, keep-alive ends or a fault ends it.
async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(%error, "mock upstream: cannot set TCP_NODELAY");
    }
    let mut conn = Conn::new(stream);
    loop {
        let Incoming {
            received,
            keep_alive,
        } = match conn.read_request().await {
            Ok(Some(incoming)) => incoming,
            Ok(None) => return,
            Err(error) => {
                if error.kind() == io::ErrorKind::InvalidData {
                    bad_request(&mut conn, &error).await;
                }
                return;
            }
        };
        let (n, fault) = shared.admit(&received);
        tracing::debug!(n, method = %received.method, path = %received.path, ?fault, "mock upstream: request");
        if matches!(fault, Fault::Ok) && websocket::is_handshake(&received) {
            if let Err(error) = websocket::serve(conn, &received, n).await {
                tracing::debug!(%error, "mock upstream: websocket session ended");
            }
            return;
        }
        match reply::answer(&mut conn, &shared.opts, &received, n, fault, keep_alive).await {
            Ok(After::Continue) => continue,
            Ok(After::Close) | Err(_) => return,
            Ok(After::Reset { wrote }) => return conn.reset(wrote).await,
        }
    }
}

/// Answers a malformed request with a 400 and gives up on the connection.
async fn bad_request(conn: &mut Conn, error: &io::Error) {
    let body = openai::error(&error.to_string(), Some("invalid_request_error"), None).to_string();
    let headers = [
        ("content-type", "application/json".to_string()),
        ("content-length", body.len().to_string()),
        ("connection", "close".to_string()),
    ]
    .map(|(n, v)| (n.to_string(), v));
    if conn.write_head(400, &headers).await.is_ok() {
        let _ = conn.write_all(body.as_bytes()).await;
    }
}
