//! The client for every upstream: keep-alive connections pooled per upstream
//! (`pool`), rustls with the `ring` provider set explicitly, HTTP/1.1 and HTTP/2 chosen
//! by ALPN, on hyper's connection API.
//!
//! Why not hyper-util's pooled `Client`: a proxy sends one request per client request,
//! so the client's own work is on every request. Measured with callgrind on a minimal
//! proxy, hyper-util's `Client` (pool key hashing, checkout bookkeeping, a task spawned
//! per response to return its connection once the body is read) was a quarter of all
//! user-space instructions; lending a connection out of a per-upstream stack costs a
//! lock and a pop. What it did that matters is done here too: connect (with the
//! connect timeout) and TLS through the same connector, origin-form and `Host` for
//! HTTP/1.1, a connection closed by the server while idle replaced before the request
//! goes out (the request is handed back unsent), idle connections closed after
//! `pool_idle_timeout`.

use std::future::Future;
use std::sync::Arc;

use driven::Driven;
use h1::{Unsent, answered_h1, wire_h1};
use http::header::{HOST, UPGRADE};
use http::uri::Scheme;
use http::{Method, Request, Response, Uri};
use hyper::client::conn::{TrySendError, http1, http2};
use hyper_rustls::MaybeHttpsStream;
use hyper_util::client::legacy::connect::{Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tower::Service;

use super::UpstreamBody;
use super::connectors::{self, Direct, ThroughProxy};
use super::h2_pool::{H2Counts, StreamLease};
use super::h2_settings::{StreamLimit, sniffed};
use super::pool::Pool;
use super::wire_form::{host_header, refused_by_forward_proxy, to_absolute_form, to_wire_form};
use crate::body::{Body, BoxError};
use crate::config::{Config, ConfigError, Upstream};
use crate::names::NameMap;
use crate::tasks::Tasks;

/// Connections to every configured upstream.
pub struct UpstreamClient {
    connector: Direct,
    /// Offers only HTTP/1.1: a WebSocket handshake needs an HTTP/1.1 upgrade.
    connector_h1: Direct,
    /// For upstreams behind an egress proxy: TLS over a `CONNECT` tunnel.
    through_proxy: NameMap<ThroughProxy>,
    /// For `http://` upstreams: the same TCP connector without the TLS wrapper, so each
    /// plain connection's task does not carry room for a TLS session it never uses.
    plain: HttpConnector,
    pools: NameMap<Arc<Pool>>,
    idle_timeout: std::time::Duration,
    /// Also the longest wait for a new HTTP/2 connection's settings.
    connect_timeout: std::time::Duration,
    /// Connection tasks, owned here so shutdown waits for them.
    tasks: Arc<Tasks>,
}

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection: refused, unreachable, DNS, TLS handshake, connect timeout.
    #[error("cannot connect: {0}")]
    Connect(#[source] BoxError),
    /// The connection failed while sending or waiting for the response head.
    #[error(transparent)]
    Request(#[from] hyper::Error),
    /// The exchange broke before a response head (any other transport).
    #[error("the exchange broke: {0}")]
    Broken(#[source] BoxError),
    #[error("bad upstream request: {0}")]
    BadRequest(&'static str),
}

impl SendError {
    pub fn is_connect(&self) -> bool {
        matches!(self, SendError::Connect(_))
    }
}

enum Conn {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>, Arc<StreamLimit>),
}

impl UpstreamClient {
    /// Sends `request` (its URI in origin or absolute form: `Transport::send`) to
    /// `upstream` on a pooled connection or a new one.
    ///
    /// Not an `async fn`: an `async fn` keeps its arguments twice in its future, and
    /// copies the request (~240 bytes) from one to the other.
    #[expect(
        clippy::manual_async_fn,
        reason = "an async fn keeps its arguments twice"
    )]
    pub fn send(
        &self,
        upstream: &Upstream,
        mut request: Request<Body>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, SendError>> + Send {
        async move {
            // Borrowed from the map, not counted once more per request.
            let unlisted;
            let pool = match self.pools.get(upstream.name.as_str()) {
                Some(pool) => pool,
                None => {
                    let host = host_header(upstream);
                    unlisted = Pool::new(self.idle_timeout, self.tasks.clone(), host);
                    &unlisted
                }
            };
            // A handshake is a GET: other methods skip the header lookup.
            if request.method() == Method::GET && request.headers().contains_key(UPGRADE) {
                return Box::pin(self.send_upgrade(request, upstream)).await;
            }
            if pool.h2.is_open() {
                return self.send_on_h2(pool, request, upstream).await;
            }
            // Pooled connections first; one the server closed meanwhile hands the request
            // back unsent, and the next one (or a new one) gets it.
            while let Some(mut sender) = pool.take() {
                // Usually ready at once; one that closed meanwhile is passed over.
                if !sender.is_ready() && sender.ready().await.is_err() {
                    continue;
                }
                wire_h1(pool, &mut request, upstream)?;
                let answer = sender.try_send_request(request).await;
                match answered_h1(answer, pool, sender, upstream) {
                    Ok(response) => return Ok(response),
                    Err(Unsent::Again(back)) => request = *back,
                    Err(Unsent::Failed(e)) => return Err(e),
                }
            }
            Box::pin(self.send_on_connected(pool, request, upstream, None)).await
        }
    }

    /// On a new connection. Always boxed by the caller: connecting (TLS, HTTP/2
    /// handshake) and the first send on what it opened are large futures that would
    /// otherwise sit inside every request's future, and be copied with it, for the
    /// few requests that open a connection. `opening` (HTTP/2: this request opens the
    /// connection the others wait for) is let go once it is open.
    async fn send_on_connected(
        &self,
        pool: &Arc<Pool>,
        request: Request<Body>,
        upstream: &Upstream,
        opening: Option<tokio::sync::MutexGuard<'_, ()>>,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let conn = self.connect(upstream, false).await?;
        drop(opening);
        send_on_new(pool, conn, request, upstream).await
    }

    /// A WebSocket handshake: on a new HTTP/1.1 connection of its own, never pooled
    /// (after `101` it carries the session, taken with `hyper::upgrade::on`).
    async fn send_upgrade(
        &self,
        mut request: Request<Body>,
        upstream: &Upstream,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let Conn::H1(mut sender) = self.connect(upstream, true).await? else {
            return Err(SendError::BadRequest("an upgrade needs HTTP/1.1"));
        };
        to_wire_form(&mut request, host_header(upstream).as_ref(), upstream)?;
        let response = sender.send_request(request).await?;
        refused_by_forward_proxy(&response, upstream)?;
        Ok(response.map(|body| UpstreamBody::new(body, None)))
    }

    /// On an HTTP/2 upstream: a stream on a connection with room, else on a new
    /// connection (opened by one request at a time; the others then look again).
    async fn send_on_h2(
        &self,
        pool: &Arc<Pool>,
        request: Request<Body>,
        upstream: &Upstream,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let stream = match pool.h2.lease() {
            Some(stream) => stream,
            None => {
                let opening = pool.h2.opening().await;
                match pool.h2.lease() {
                    Some(stream) => stream,
                    None => {
                        let connected =
                            self.send_on_connected(pool, request, upstream, Some(opening));
                        return Box::pin(connected).await;
                    }
                }
            }
        };
        send_h2(stream, request, upstream).await
    }

    /// A new connection to `upstream` (through its egress proxy, if any); `upgrade`:
    /// HTTP/1.1 only, able to hand over its IO after `101`. Where it goes is the
    /// upstream's, not the request's: a request a closed pooled connection handed back
    /// is already in origin form, without scheme or host.
    async fn connect(&self, upstream: &Upstream, upgrade: bool) -> Result<Conn, SendError> {
        let uri = upstream.base_url.origin();
        if uri.scheme() == Some(&Scheme::HTTP) {
            // Through a forward proxy, TCP goes to the proxy and requests in absolute form.
            let to = upstream
                .proxy
                .as_ref()
                .map_or(uri, |proxy| proxy.uri().clone());
            let stream = connect_with(self.plain.clone(), to).await?;
            return self.handshake_h1(stream, upgrade).await;
        }
        let stream: MaybeHttpsStream<TokioIo<TcpStream>> =
            match (self.through_proxy.get(upstream.name.as_str()), upgrade) {
                (Some(tunnel), false) => connect_with(tunnel.any.clone(), uri).await?,
                (Some(tunnel), true) => connect_with(tunnel.h1_only.clone(), uri).await?,
                (None, false) => connect_with(self.connector.clone(), uri).await?,
                (None, true) => connect_with(self.connector_h1.clone(), uri).await?,
            };
        if upgrade || !stream.connected().is_negotiated_h2() {
            return self.handshake_h1(stream, upgrade).await;
        }
        let limit = StreamLimit::new();
        let stream = TokioIo::new(sniffed(TokioIo::new(stream), limit.clone()));
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(stream)
            .await
            .map_err(|e| SendError::Connect(e.into()))?;
        self.drive(conn);
        // The server's SETTINGS come first thing: wait for its stream limit, or
        // requests would be placed as if the connection had none.
        limit.settled(self.connect_timeout).await;
        Ok(Conn::H2(sender, limit))
    }

    async fn handshake_h1<T>(&self, stream: T, upgrade: bool) -> Result<Conn, SendError>
    where
        T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let (sender, conn) = http1::Builder::new()
            .handshake(stream)
            .await
            .map_err(|e| SendError::Connect(e.into()))?;
        if upgrade {
            self.drive(conn.with_upgrades());
        } else {
            self.drive(conn);
        }
        Ok(Conn::H1(sender))
    }

    /// Runs a connection's I/O in its own task, owned by this client, until it closes.
    fn drive<F>(&self, conn: F)
    where
        F: Future<Output = Result<(), hyper::Error>> + Send + 'static,
    {
        self.tasks.spawn(Driven { conn });
    }

    /// Shutdown, once no request is left: closes idle connections, waits briefly for
    /// connection tasks to end, and aborts the rest.
    pub async fn shutdown(&self) {
        for pool in self.pools.values() {
            pool.close();
        }
        self.tasks.shutdown(std::time::Duration::from_secs(1)).await;
    }

    /// The tasks that drive this client's connections.
    pub fn tasks(&self) -> &Arc<Tasks> {
        &self.tasks
    }

    /// Open HTTP/2 connections to `upstream` and streams on them (`/stats`).
    pub fn h2_counts(&self, upstream: &str) -> H2Counts {
        self.pools
            .get(upstream)
            .map_or_else(H2Counts::default, |pool| pool.h2.counts())
    }

    /// Idle HTTP/1.1 connections kept for `upstream` (tests).
    pub fn idle_connections(&self, upstream: &str) -> usize {
        self.pools.get(upstream).map_or(0, |pool| pool.idle_count())
    }
}

async fn connect_with<C>(mut connector: C, uri: Uri) -> Result<C::Response, SendError>
where
    C: Service<Uri>,
    C::Error: Into<BoxError>,
{
    std::future::poll_fn(|cx| connector.poll_ready(cx))
        .await
        .map_err(|e| SendError::Connect(e.into()))?;
    connector
        .call(uri)
        .await
        .map_err(|e| SendError::Connect(e.into()))
}

/// Sends on a connection just opened: an HTTP/2 one joins the pool first.
async fn send_on_new(
    pool: &Arc<Pool>,
    conn: Conn,
    mut request: Request<Body>,
    upstream: &Upstream,
) -> Result<Response<UpstreamBody>, SendError> {
    match conn {
        Conn::H2(sender, limit) => {
            let stream = pool.h2.add(sender, limit);
            pool.start_sweeping();
            send_h2(stream, request, upstream).await
        }
        Conn::H1(mut sender) => {
            let closed = || {
                SendError::Connect("the new connection closed before the request was sent".into())
            };
            sender.ready().await.map_err(|_| closed())?;
            wire_h1(pool, &mut request, upstream)?;
            let answer = sender.try_send_request(request).await;
            match answered_h1(answer, pool, sender, upstream) {
                Ok(response) => Ok(response),
                Err(Unsent::Again(_)) => Err(closed()),
                Err(Unsent::Failed(e)) => Err(e),
            }
        }
    }
}

async fn send_h2(
    stream: StreamLease,
    mut request: Request<Body>,
    upstream: &Upstream,
) -> Result<Response<UpstreamBody>, SendError> {
    // The client's `Host` named backstop; the upstream's host goes in `:authority`.
    to_absolute_form(&mut request, upstream)?;
    request.headers_mut().remove(HOST);
    let mut sender = stream.sender();
    sender.ready().await?;
    let response = sender
        .try_send_request(request)
        .await
        .map_err(TrySendError::into_error)?;
    Ok(response.map(|body| UpstreamBody::on_stream(body, stream)))
}

/// The client for `config`'s upstreams; its connection tasks go to `tasks`.
pub fn build(config: &Config, tasks: Arc<Tasks>) -> Result<UpstreamClient, ConfigError> {
    let tls = connectors::tls_config(config)?;
    let tcp = connectors::tcp(config);
    let pools = config
        .upstreams
        .iter()
        .map(|u| {
            let pool = Pool::new(config.pool_idle_timeout, tasks.clone(), host_header(u));
            (u.name.as_str().into(), pool)
        })
        .collect();
    let through_proxy = config
        .upstreams
        .iter()
        .filter_map(|u| {
            let tunnel = ThroughProxy::new(u, &tls, &tcp, config)?;
            if let Some(proxy) = &u.proxy {
                tracing::info!(upstream = %u.name, %proxy, from = %proxy.source, "egress proxy");
            }
            Some((u.name.as_str().into(), tunnel))
        })
        .collect();
    Ok(UpstreamClient {
        connector: connectors::direct(&tls, &tcp, false),
        connector_h1: connectors::direct(&tls, &tcp, true),
        through_proxy,
        plain: tcp,
        pools,
        idle_timeout: config.pool_idle_timeout,
        connect_timeout: config.connect_timeout,
        tasks,
    })
}

mod driven;
mod h1;
#[cfg(test)]
mod tests;
