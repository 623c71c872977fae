//! One attempt on an upstream: check the circuit (a retry may find it opened
//! meanwhile), build and send the outbound request, wait for its head within
//! `attempt_timeout`, then judge the response (`judge`): read just enough of it to
//! classify it, and keep what was read so the client gets it all.

mod judge;

use judge::Judged;
pub(super) use judge::is_event_stream;

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, Request, Response, Uri};
use tokio::time::Instant;

use crate::body::Body;
use crate::error::ProxyError;
use crate::events::UpstreamRequestId;
use crate::proxy::Transport;
use crate::proxy::send::{
    Forwarding, SendFailure, failure, outbound_request, outbound_uri, send, timed_out,
};
use crate::proxy::timed::TimedOut;
use crate::request_meta::RequestMeta;
use crate::retry::driver::Attempted;
use crate::retry::{Outcome, Reason};
use crate::runtime::Hop;

/// What an attempt hands back, with what its report needs to know about it.
pub struct AttemptResult {
    pub response: Result<Response<Body>, ProxyError>,
    /// The response is an SSE stream (`text/event-stream`), as judging it read.
    pub event_stream: bool,
    pub status: Option<u16>,
    pub duration: Duration,
    pub upstream_request_id: Option<UpstreamRequestId>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

/// What every attempt of one hop shares.
pub(super) struct Context<'a, T> {
    pub transport: &'a T,
    pub hop: &'a Hop,
    /// The client's method and URI.
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub deadline: Instant,
    /// The request: its final response's body reports an early end to its `fate`.
    pub meta: &'a Arc<RequestMeta>,
    /// The path and query to send (the client's, or rewritten for this hop).
    pub path_and_query: &'a str,
    /// The length of the body when this hop rewrote it (its `content-length`).
    pub rewritten_len: Option<u64>,
    /// How the request is forwarded (`Call::forwarding`).
    pub forwarding: Forwarding,
}

impl<T: Transport> Context<'_, T> {
    /// Attempt `n` of this hop (the first was admitted by the caller; later ones check
    /// the circuit, which may have opened meanwhile), sending `headers`: the client's
    /// own map or a copy (`KeptHeaders::next`). It starts at
    /// `fresh` when the admission just before it handed on its reading (`Call::fresh`).
    pub async fn run(
        &self,
        n: u32,
        body: Option<Body>,
        headers: HeaderMap,
        fresh: Option<Instant>,
    ) -> Attempted<AttemptResult> {
        let started = super::fresh::now_or(fresh);
        let upstream = &*self.hop.upstream;
        if n > 1
            && let Some(breaker) = &self.hop.limits.breaker
            && let Err(open) = breaker.admit(started)
        {
            let error = ProxyError::CircuitOpen {
                upstream: upstream.name.clone(),
                retry_after: open.retry_after,
            };
            return failed(started, Reason::CircuitOpen, error);
        }
        let Some(body) = body else {
            // Unreachable by policy (a streamed body is never retried); fail safe anyway.
            let error = ProxyError::BadRequest("the request body cannot be sent twice".into());
            return failed(started, Reason::BodyNotReplayable, error);
        };
        let uri = match outbound_uri(upstream, self.uri, self.path_and_query) {
            Ok(uri) => uri,
            Err(error) => return failed(started, Reason::BadRequest, error),
        };
        let request = self.outbound(uri, body, headers);
        let until = self.deadline.min(started + upstream.retry.attempt_timeout);
        // The response goes to `judge` as it is; only a failure is named here.
        let SendFailure { outcome, error } =
            match send(self.transport, upstream, request, until).await {
                Ok(Ok(response)) => {
                    return match judge::judge(self, response, started) {
                        Judged::Answered(attempted) => attempted,
                        Judged::Held(held) => judge::read_held(self, held, started).await,
                    };
                }
                Ok(Err(e)) => failure(upstream, &e),
                Err(TimedOut) => timed_out(upstream, started),
            };
        Attempted {
            outcome,
            ..failed(started, outcome.reason(), error)
        }
    }
}

impl<T> Context<'_, T> {
    /// The request this hop sends upstream. Built here, not in `run`: a local that is
    /// borrowed (`headers_mut`) is kept in the future's state across every await.
    fn outbound(&self, uri: Uri, body: Body, headers: HeaderMap) -> Request<Body> {
        let upstream = &*self.hop.upstream;
        let mut request =
            outbound_request(upstream, self.method, uri, body, headers, self.forwarding);
        if let Some(len) = self.rewritten_len {
            let headers = request.headers_mut();
            headers.insert(http::header::CONTENT_LENGTH, len.into());
        }
        request
    }
}

/// An attempt that produced no response to pass on: backstop's own error instead.
fn failed(started: Instant, reason: Reason, error: ProxyError) -> Attempted<AttemptResult> {
    Attempted {
        value: AttemptResult {
            event_stream: false,
            status: None,
            duration: started.elapsed(),
            upstream_request_id: None,
            error_code: Some(error.code().to_owned()),
            error_message: Some(error.to_string()),
            response: Err(error),
        },
        outcome: Outcome::Fatal { reason },
        server_delay: None,
    }
}
