//! The request path, assembled in this one place. Each step is its own module with a
//! typed input and output; in order:
//!
//! 1. **route** (`Runtime::route`) — a fresh request id first (every response carries
//!    it, errors included, so it exists before anything can fail); then the longest
//!    `path_prefix` picks the primary upstream. Only the path counts, never `Host`,
//!    `X-Forwarded-*` or an absolute-form URI's host. The chain is the primary and its
//!    own fallbacks (`Runtime::chain`), each a `Hop` that owns the upstream's shared
//!    budget and limits.
//! 2. **read** (`call`) — the body (413 above `max_body_bytes`, kept for retries up to
//!    `retry_buffer_bytes`), what backstop notes about the request, and one deadline for
//!    every attempt, backoff and fallback. After routing, because the primary's
//!    `idle_timeout` bounds the read.
//!
//!    Then **replay** (`replay`, only with `[replay]`) — answer from an earlier
//!    request's kept response, or wait for an identical one in flight, or go on with a
//!    ticket that keeps this one's response (`keep`). After the read, because the body
//!    hash is part of the match; before the hops, because a replay is no attempt. A
//!    request to be finished if its client leaves moves off its connection when the
//!    client leaves (`detach`).
//! 3. **for each hop:**
//!    - **admit** (`admit`) — circuit, pacing, rate limits; a refusal is the hop's
//!      only report, and an open circuit hands over to the next hop;
//!    - **attempts** (`attempts`, one `attempt` each, driven by `retry::driver`) —
//!      send, judge, report (`report`: one `AttemptReport` per attempt to the
//!      observers, the breaker and pacing learn from it); retryable failures that
//!      spend the hop's retries hand over to the next hop while the deadline allows.
//! 4. **respond** (`respond`) — the response as it was (or backstop's own error), with
//!    `x-backstop-*` headers and `x-should-retry`, its body watched (`watch`) for the
//!    request's one `RequestEvent`.
//!
//! A WebSocket handshake takes the same steps; its `101` then opens a session
//! (`websocket`).
//!
//! The clock is read where a step marks a new moment; a step that follows one that did
//! not wait takes its reading instead (`fresh`): a body that came with its head, its
//! admission and its first attempt all start when the request did.
//!
//! The path is generic over the client's body and the upstream (`proxy::Transport`), so
//! service tests drive it on a paused clock with an in-memory upstream
//! (`mock::memory`). A client that disconnects drops this future, which cancels the
//! attempt or backoff under way — unless replay's `finish_abandoned` keeps it running
//! (`detach`).

mod admit;
mod attempt;
mod attempts;
mod call;
mod detach;
mod fallback;
mod fresh;
mod keep;
mod replay;
mod report;
mod respond;
mod response_head;
mod rewrite;
mod served;
mod usage;
mod watch;
mod websocket;

use std::sync::Arc;

use http::{Request, Response};
use tokio::time::Instant;
use tracing::Instrument;

use crate::body::{Body, ClientBody};
use crate::error::ProxyError;
use crate::events::{Observer, Replayed};
use crate::proxy::Transport;
use crate::runtime::{Hop, Runtime};
use attempts::HopEnd;
use call::Call;
use detach::Detach;
use replay::Lookup;
use report::{Ident, Reporter};
use served::Served;

/// Whether `request` may outlive its client connection (`detach`, then
/// `serve_detached` instead of `serve`): only with `[replay] finish_abandoned`, and only
/// a request that replay may finish without its client.
pub fn detaches<B>(runtime: &Runtime, request: &Request<B>) -> bool {
    runtime.replay.as_ref().is_some_and(|r| {
        r.settings.finish_abandoned
            && (r.settings.sdk_retries
                || request
                    .headers()
                    .contains_key(crate::request_fingerprint::IDEMPOTENCY_KEY))
    }) && !crate::proxy::websocket::is_handshake(request.method(), request.headers())
}

pub use detach::handle as serve_detached;

/// The request path over any client body and any upstream transport, both borrowed
/// (service tests: an in-memory upstream). Never fails: errors become responses.
/// `serve_with`'s future itself, not an `async fn` around it: each level of nesting is
/// one more move of the whole request future (~5 KB) on every request.
pub fn serve<'a, B: ClientBody, T: Transport>(
    runtime: &'a Runtime,
    transport: &'a T,
    observer: Arc<dyn Observer>,
    request: Request<B>,
) -> impl Future<Output = Response<Body>> + 'a {
    serve_with((runtime, transport), observer, request, None)
}

/// `serve` on the runtime of the moment, owned by the request's future (so the server
/// boxes that future itself, with no future around it to hold the runtime), through
/// the runtime's own upstream client.
pub fn serve_owned<B: ClientBody>(
    runtime: Arc<Runtime>,
    observer: Arc<dyn Observer>,
    request: Request<B>,
) -> impl Future<Output = Response<Body>> {
    serve_with(runtime, observer, request, None)
}

/// Where a request is served from: the runtime and the transport its attempts take.
trait Serving: Send + Sync {
    type Transport: Transport;
    fn runtime(&self) -> &Runtime;
    fn transport(&self) -> &Self::Transport;
}

impl<T: Transport> Serving for (&Runtime, &T) {
    type Transport = T;
    fn runtime(&self) -> &Runtime {
        self.0
    }
    fn transport(&self) -> &T {
        self.1
    }
}

impl Serving for Arc<Runtime> {
    type Transport = crate::proxy::UpstreamClient;
    fn runtime(&self) -> &Runtime {
        self
    }
    fn transport(&self) -> &crate::proxy::UpstreamClient {
        &self.client
    }
}

/// `serve`, for a request that may outlive its client connection when `detach` is
/// given. Not an `async fn`, which would keep the request twice in its future (its
/// argument and its local) and copy it from one to the other.
#[expect(
    clippy::manual_async_fn,
    reason = "an async fn keeps its arguments twice"
)]
fn serve_with<S: Serving, B: ClientBody>(
    serving: S,
    observer: Arc<dyn Observer>,
    mut request: Request<B>,
    detach: Option<Arc<Detach>>,
) -> impl Future<Output = Response<Body>> {
    async move {
        let (runtime, transport) = (serving.runtime(), serving.transport());
        let started = Instant::now();
        let ident = Ident::new(&request);
        let upgrade = websocket::client_side(&mut request);
        // The path only: a query may carry `key=` credentials.
        let span = tracing::debug_span!("request", id = %ident.id, method = %ident.method, path = %ident.endpoint);
        let mut served = Served::new(detach);
        // A closure, not a future held in a variable: awaited where it is made, the
        // (2 KiB) future is built where it runs instead of being copied there.
        let forwarding = || {
            forward(
                runtime,
                transport,
                &observer,
                request,
                &ident,
                &mut served,
                started,
            )
        };
        // Only an enabled span (debug logs on) is worth entering on every poll.
        let result = if span.is_disabled() {
            forwarding().await
        } else {
            forwarding().instrument(span.clone()).await
        };
        // Only with `[journal] responses = true` is the body the client gets kept.
        let keep_response = runtime
            .config
            .journal
            .as_ref()
            .filter(|j| j.responses)
            .map(|j| j.max_response_bytes);
        let Some(client) = upgrade else {
            return respond::respond(
                result,
                served,
                ident,
                observer,
                started,
                &span,
                keep_response,
            );
        };
        let (session_observer, upstream) = (observer.clone(), served.upstream.clone());
        let response = respond::respond(result, served, ident, observer, started, &span, None);
        websocket::open(runtime, session_observer, upstream, client, response)
            .instrument(span)
            .await
    }
}

/// Steps 1–2, route, read and replay, then step 3 through the chain
/// (`Chain::through`).
async fn forward<B: ClientBody, T: Transport>(
    runtime: &Runtime,
    transport: &T,
    observer: &Arc<dyn Observer>,
    request: Request<B>,
    ident: &Ident,
    served: &mut Served,
    started: Instant,
) -> Result<Response<Body>, ProxyError> {
    let (parts, body) = request.into_parts();
    let primary = runtime
        .route(parts.uri.path())
        .ok_or_else(|| ProxyError::NoRoute {
            path: parts.uri.path().to_owned(),
        })?;
    tracing::debug!(upstream = %primary.name, "routed");
    served.at(primary);
    served.start(observer, &primary.name, ident, started);

    let read = Call::read(&parts, body, runtime, primary, started).await?;
    let mut call = Call::new(parts, read);
    served.meta = call.meta.clone();
    if let Some(replay) = &runtime.replay {
        // The lookup may wait (for a call it joins): the reading is not fresh after it.
        call.fresh = None;
        let wait_until = call.read_at + primary.upstream.retry.deadline;
        match replay::lookup(replay, &call, &**observer, &primary.name, wait_until).await? {
            Lookup::Off => {}
            Lookup::Replay(kept, reason) => {
                served.replayed = Some(Replayed {
                    of: kept.request_id.as_ref().into(),
                    reason,
                });
                return Ok(replay::response(&kept));
            }
            Lookup::Proxy(ticket) => {
                if ticket.finish
                    && let Some(detach) = &served.detach
                {
                    detach.finish();
                    call.outlive_client(primary.upstream.retry.deadline);
                }
                served.ticket = Some(Box::new(ticket));
            }
        }
    }
    let chain = Chain {
        runtime,
        transport,
        observer: &**observer,
        ident,
    };
    chain.through(primary, &mut call, served).await
}

/// What step 3 needs besides the request: where the hops come from, how to reach
/// upstreams, who is told.
struct Chain<'a, T> {
    runtime: &'a Runtime,
    transport: &'a T,
    observer: &'a dyn Observer,
    ident: &'a Ident,
}

impl<T: Transport> Chain<'_, T> {
    /// Step 3: each hop of `primary`'s chain in turn, admitted then attempted, until
    /// one answers.
    async fn through(
        &self,
        primary: &Hop,
        call: &mut Call,
        served: &mut Served,
    ) -> Result<Response<Body>, ProxyError> {
        let meta = call.meta.clone();
        let mut last_error = None;
        // The request's model is read only if a fallback shares a host with an earlier hop.
        let chain = self.runtime.chain(primary, || meta.model());
        let mut chain = chain.enumerate().peekable();
        let fallback_on = primary.upstream.fallback_on;
        while let Some((index, hop)) = chain.next() {
            let next = chain.peek().filter(|_| call.replayable);
            // The primary (the chain's first hop) was noted when it was routed.
            if index > 0 {
                served.at(hop);
            }
            let reporter = Reporter {
                observer: self.observer,
                ident: self.ident,
                hop,
                meta: &meta,
                next: next.map(|(_, next)| fallback::Next {
                    name: &next.name,
                    on: fallback_on,
                }),
            };
            let fresh = call.fresh.take();
            match admit::admit(call, &reporter, served.attempts + 1, fresh).await {
                Ok(admitted) => {
                    call.fresh = admitted.fresh;
                    served.queue_wait += admitted.waited;
                    served.settle = admitted.settle.or(served.settle.take());
                }
                Err(refused) if refused.falls_back => {
                    last_error = Some(refused.error);
                    continue;
                }
                Err(refused) => return Err(refused.error),
            }
            match attempts::run(call, self.transport, &reporter, served, index).await {
                HopEnd::Answer(response) => return Ok(response),
                HopEnd::FallBack(error) => last_error = error.or(last_error),
            }
        }
        // Reached when every hop handed over (the last one's circuit was open, say).
        Err(last_error.unwrap_or(ProxyError::NoRoute {
            path: self.ident.endpoint.to_string(),
        }))
    }
}
