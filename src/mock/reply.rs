//! Turns a request and its [`Fault`] into bytes on the wire.

use std::io;

use serde_json::{Value, json};

use super::fault::{Fault, RetryAfter, StreamEnd, StreamScript};
use super::http1::Conn;
use super::openai::{self, Answer};
use super::{MockOptions, Received, sse};

/// What the connection does once a response is done.
pub(super) enum After {
    /// Read the next request.
    Continue,
    /// Close it normally (FIN).
    Close,
    /// Abort it with a RST; `wrote` says whether response bytes went out first.
    Reset { wrote: bool },
}

/// A complete (non-streaming) response.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.to_string().into_bytes(),
        }
    }

    fn has(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// Adds `content-type`, `content-length`, `x-request-id` and `connection: close`
    /// where missing.
    fn finish(mut self, n: usize, keep_alive: bool) -> Reply {
        let mut defaults = vec![
            ("content-type", "application/json".to_string()),
            ("x-request-id", format!("mock-{n}")),
        ];
        if !self.has("transfer-encoding") {
            defaults.push(("content-length", self.body.len().to_string()));
        }
        if !keep_alive {
            defaults.push(("connection", "close".to_string()));
        }
        for (name, value) in defaults {
            if !self.has(name) {
                self.headers.push((name.to_string(), value));
            }
        }
        self
    }

    async fn send(self, conn: &mut Conn, keep_alive: bool) -> io::Result<After> {
        conn.write_head(self.status, &self.headers).await?;
        conn.write_all(&self.body).await?;
        Ok(if keep_alive {
            After::Continue
        } else {
            After::Close
        })
    }
}

/// Answers request number `n` as `fault` says.
pub(super) async fn answer(
    conn: &mut Conn,
    opts: &MockOptions,
    req: &Received,
    n: usize,
    fault: Fault,
    keep_alive: bool,
) -> io::Result<After> {
    let reply = match fault {
        Fault::Ok => return normal(conn, opts, req, n, keep_alive).await,
        Fault::Stall(pause) => {
            if conn.wait_or_hangup(Some(pause)).await {
                return Ok(After::Close);
            }
            return normal(conn, opts, req, n, keep_alive).await;
        }
        Fault::Delayed(pause, inner) => {
            if conn.wait_or_hangup(Some(pause)).await {
                return Ok(After::Close);
            }
            return Box::pin(answer(conn, opts, req, n, *inner, keep_alive)).await;
        }
        Fault::Stream(script) => return sse::stream(conn, req, n, &script, keep_alive).await,
        Fault::ResetBeforeHeaders => return Ok(After::Reset { wrote: false }),
        Fault::ResetMidBody => return reset_mid_body(conn, req, n).await,
        Fault::ErrorBodyCut(status) => {
            let mut reply = Reply::json(status, &server_error(status));
            reply
                .headers
                .push(("transfer-encoding".into(), "chunked".into()));
            let reply = reply.finish(n, true);
            conn.write_head(reply.status, &reply.headers).await?;
            conn.write_chunk(&reply.body[..reply.body.len() / 2])
                .await?;
            return Ok(After::Reset { wrote: true });
        }
        Fault::Respond {
            status,
            headers,
            body,
        } => Reply {
            status,
            headers,
            body: body.into_bytes(),
        },
        Fault::RateLimited(retry_after) => {
            let mut reply = Reply::json(429, &rate_limited(req, &retry_after));
            reply.headers = retry_after.headers();
            reply
        }
        Fault::QuotaExhausted => Reply::json(429, &quota_exhausted()),
        Fault::ContentFilter => Reply::json(400, &content_filter()),
        Fault::ServerError(status) => Reply::json(status, &server_error(status)),
    };
    reply.finish(n, keep_alive).send(conn, keep_alive).await
}

/// The normal answer for the path, after `opts.latency`.
async fn normal(
    conn: &mut Conn,
    opts: &MockOptions,
    req: &Received,
    n: usize,
    keep_alive: bool,
) -> io::Result<After> {
    if !opts.latency.is_zero() && conn.wait_or_hangup(Some(opts.latency)).await {
        return Ok(After::Close);
    }
    match openai::answer(req, n) {
        Answer::Json(status, body) => {
            Reply::json(status, &body)
                .finish(n, keep_alive)
                .send(conn, keep_alive)
                .await
        }
        Answer::Stream => {
            let script = StreamScript {
                chunks: opts.stream_chunks,
                gap: opts.stream_gap,
                end: StreamEnd::Done,
                first_event_delay: std::time::Duration::ZERO,
                line_ending: opts.stream_line_ending,
            };
            sse::stream(conn, req, n, &script, keep_alive).await
        }
    }
}

/// Headers with the full `content-length` and half of the normal JSON body (also for a
/// request that asked for a stream), then RST.
async fn reset_mid_body(conn: &mut Conn, req: &Received, n: usize) -> io::Result<After> {
    let (status, body) = openai::json_answer(req, n);
    let reply = Reply::json(status, &body).finish(n, true);
    conn.write_head(reply.status, &reply.headers).await?;
    conn.write_all(&reply.body[..reply.body.len() / 2]).await?;
    Ok(After::Reset { wrote: true })
}

fn rate_limited(req: &Received, retry_after: &RetryAfter) -> Value {
    let kind = match retry_after {
        RetryAfter::ResetTokens(_) => "tokens",
        _ => "requests",
    };
    let message = format!(
        "Rate limit reached for {} in organization org-mock on {kind} per min. Please try again later.",
        openai::model(req)
    );
    openai::error(&message, Some(kind), Some("rate_limit_exceeded"))
}

fn quota_exhausted() -> Value {
    let message = "You exceeded your current quota, please check your plan and billing details.";
    openai::error(
        message,
        Some("insufficient_quota"),
        Some("insufficient_quota"),
    )
}

/// Azure's shape: `type` null, the verdict in `innererror`.
fn content_filter() -> Value {
    let filtered = json!({"filtered": true, "severity": "high"});
    let safe = json!({"filtered": false, "severity": "safe"});
    json!({"error": {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content \
                    management policy. Please modify your prompt and retry.",
        "type": null,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
        "innererror": {
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {"hate": safe, "self_harm": safe, "sexual": safe, "violence": filtered},
        },
    }})
}

fn server_error(status: u16) -> Value {
    let message = match status {
        502 => "Bad gateway.",
        503 => "The engine is currently overloaded, please try again later.",
        504 => "Gateway timeout.",
        _ => "The server had an error while processing your request. Sorry about that!",
    };
    openai::error(message, Some("server_error"), Some("server_error"))
}
