//! One attempt on a real upstream, judged: send, then look at just enough of the
//! response to classify it — the first ≤ 64 KiB of an error body, or an SSE stream up
//! to its first event — and keep what was read so the client gets it all.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::proxy::UpstreamBody;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderMap, Response};
use http_body_util::BodyExt;
use tokio::time::Instant;

use crate::body::Body;
use crate::config::Upstream;
use crate::error::ProxyError;
use crate::limits::UpstreamLimits;
use crate::proxy::headers::{APIM_REQUEST_ID, X_REQUEST_ID, strip_hop_by_hop};
use crate::proxy::peek::{self, PeekEnd, error_prefix_full, has_first_event};
use crate::proxy::request_body::RequestBody;
use crate::proxy::response_body::{GuardedBody, StreamFate};
use crate::proxy::send::{SendFailure, outbound_request, send};
use crate::retry::classify::{Outcome, Retryable, classify_response, error_fields};
use crate::retry::driver::Attempted;
use crate::retry::server_delay::server_delay;
use crate::runtime::Runtime;

/// What an attempt hands back, with what the events need to know about it.
pub struct AttemptResult {
    pub response: Result<Response<Body>, ProxyError>,
    pub status: Option<u16>,
    pub duration: Duration,
    pub upstream_request_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
}

pub struct Context<'a> {
    pub runtime: &'a Runtime,
    pub upstream: &'a Upstream,
    pub parts: &'a Parts,
    pub deadline: Instant,
    /// Where the final response's body reports an early end.
    pub fate: Arc<StreamFate>,
    pub limits: &'a UpstreamLimits,
    /// The path and query to send (the client's, or rewritten for a fallback).
    pub path_and_query: &'a str,
}

/// The request body for each attempt: a cheap clone when buffered; a streamed body
/// only once (the policy never retries it).
pub struct Bodies(Option<RequestBody>);

impl Bodies {
    pub fn new(body: RequestBody) -> Bodies {
        Bodies(Some(body))
    }

    pub fn next(&mut self) -> Option<Body> {
        match &self.0 {
            Some(RequestBody::Buffered(bytes)) => Some(crate::body::full(bytes.clone())),
            _ => self.0.take().map(RequestBody::into_body),
        }
    }
}

impl Context<'_> {
    /// Attempt `n` of this upstream (the first was admitted by the caller; later ones
    /// check the circuit, which may have opened meanwhile).
    pub async fn run(&self, n: u32, body: Option<Body>) -> Attempted<AttemptResult> {
        let started = Instant::now();
        if let Some(open) = self
            .limits
            .breaker
            .as_ref()
            .and_then(|b| b.admit(started).err())
            .filter(|_| n > 1)
        {
            let error = ProxyError::CircuitOpen {
                upstream: self.upstream.name.clone(),
                retry_after: open.retry_after,
            };
            return failed(
                started,
                Outcome::Fatal {
                    reason: "circuit_open",
                },
                error,
            );
        }
        let Some(body) = body else {
            // Unreachable by policy (a streamed body is never retried); fail safe anyway.
            let error = ProxyError::BadRequest("the request body cannot be sent twice".into());
            return failed(
                started,
                Outcome::Fatal {
                    reason: "body_not_replayable",
                },
                error,
            );
        };
        let request = match outbound_request(self.upstream, self.parts, self.path_and_query, body) {
            Ok(request) => request,
            Err(error) => {
                return failed(
                    started,
                    Outcome::Fatal {
                        reason: "bad_request",
                    },
                    error,
                );
            }
        };
        let until = self
            .deadline
            .min(started + self.upstream.retry.attempt_timeout);
        match send(&self.runtime.client, self.upstream, request, until).await {
            Ok(response) => self.judge(response, started).await,
            Err(SendFailure { outcome, error }) => failed(started, outcome, error),
        }
    }

    async fn judge(
        &self,
        response: Response<UpstreamBody>,
        started: Instant,
    ) -> Attempted<AttemptResult> {
        let settings = &self.upstream.retry;
        let (mut head, body) = response.into_parts();
        strip_hop_by_hop(&mut head.headers);
        let status = head.status;
        let sse = is_event_stream(&head.headers);
        let upstream_request_id = upstream_request_id(&head.headers);
        let idle = settings.idle_timeout;

        if status.as_u16() >= 400 {
            let peeked = peek::peek(body, error_prefix_full, self.deadline, idle).await;
            let outcome = classify_response(status, &head.headers, &peeked.prefix);
            let (error_code, error_message) = error_fields(&peeked.prefix);
            let server_delay = server_delay(status, &head.headers, SystemTime::now());
            if let Some(pacer) = &self.limits.pacer {
                pacer.observe(status.as_u16(), &head.headers, server_delay);
            }
            let body = GuardedBody::with_prefix(peeked.prefix, peeked.rest, idle, sse)
                .watched_by(self.fate.clone())
                .boxed();
            return Attempted {
                value: AttemptResult {
                    response: Ok(Response::from_parts(head, body)),
                    status: Some(status.as_u16()),
                    duration: started.elapsed(),
                    upstream_request_id,
                    error_code,
                    error_message,
                },
                outcome,
                server_delay,
            };
        }

        if let Some(pacer) = &self.limits.pacer {
            pacer.observe(status.as_u16(), &head.headers, None);
        }
        let mut result = AttemptResult {
            response: Err(ProxyError::BadRequest(String::new())),
            status: Some(status.as_u16()),
            duration: Duration::ZERO,
            upstream_request_id,
            error_code: None,
            error_message: None,
        };
        if !(sse && status.is_success()) {
            result.response = Ok(Response::from_parts(
                head,
                GuardedBody::new(body, idle, sse)
                    .watched_by(self.fate.clone())
                    .boxed(),
            ));
            result.duration = started.elapsed();
            return Attempted {
                value: result,
                outcome: Outcome::Success,
                server_delay: None,
            };
        }

        // SSE: hold the 200 headers until the first event, so a stream that dies or
        // opens with an error before any content can still be retried.
        let until = self
            .deadline
            .min(Instant::now() + settings.first_event_timeout);
        let peeked = peek::peek(body, has_first_event(), until, settings.first_event_timeout).await;
        result.duration = started.elapsed();
        let name = self.upstream.name.clone();
        let outcome = match peeked.end {
            PeekEnd::Enough => {
                let first = peek::first_event(&peeked.prefix).unwrap_or_default();
                let outcome = if peek::is_error_event(&first) {
                    let (code, message) = error_fields(first.as_bytes());
                    result.error_code = code;
                    result.error_message = message;
                    Outcome::Retry {
                        reason: "stream_error_event",
                        kind: Retryable::Transient,
                    }
                } else {
                    Outcome::Success
                };
                let body = GuardedBody::with_prefix(peeked.prefix, peeked.rest, idle, true)
                    .watched_by(self.fate.clone())
                    .boxed();
                result.response = Ok(Response::from_parts(head, body));
                return Attempted {
                    value: result,
                    outcome,
                    server_delay: None,
                };
            }
            PeekEnd::TimedOut => {
                let error = ProxyError::Timeout {
                    upstream: name,
                    after: result.duration,
                };
                (
                    Outcome::Retry {
                        reason: "first_event_timeout",
                        kind: Retryable::Ambiguous,
                    },
                    error,
                )
            }
            PeekEnd::Complete | PeekEnd::Broken => {
                let error = ProxyError::Upstream {
                    upstream: name,
                    detail: "the stream ended before its first event".into(),
                };
                (
                    Outcome::Retry {
                        reason: "stream_died",
                        kind: Retryable::Ambiguous,
                    },
                    error,
                )
            }
        };
        let (outcome, error) = outcome;
        result.error_code = Some(error.code().to_owned());
        result.error_message = Some(error.to_string());
        result.response = Err(error);
        Attempted {
            value: result,
            outcome,
            server_delay: None,
        }
    }
}

fn failed(started: Instant, outcome: Outcome, error: ProxyError) -> Attempted<AttemptResult> {
    Attempted {
        value: AttemptResult {
            status: None,
            duration: started.elapsed(),
            upstream_request_id: None,
            error_code: Some(error.code().to_owned()),
            error_message: Some(error.to_string()),
            response: Err(error),
        },
        outcome,
        server_delay: None,
    }
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"))
}

fn upstream_request_id(headers: &HeaderMap) -> Option<String> {
    [X_REQUEST_ID, APIM_REQUEST_ID].iter().find_map(|name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    })
}
