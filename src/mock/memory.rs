//! An upstream in memory, for service tests of the request path (`stack::serve`) on a
//! paused tokio clock: no sockets, and every delay is a tokio timer, so a test of
//! backoff, deadlines, the first-event hold or idle timeouts runs in microseconds and
//! sees exact times.
//!
//! Each request takes the next `Step` of the script (a normal JSON answer once the
//! script is empty) and is recorded with the (virtual) time it arrived.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body as HttpBody, Frame};
use parking_lot::Mutex;
use tokio::time::{Instant, Sleep};

use crate::body::{Body, BoxError};
use crate::config::Upstream;
use crate::proxy::client::SendError;
use crate::proxy::{Transport, UpstreamBody};

/// What the upstream does with one request.
#[derive(Debug, Clone)]
pub enum Step {
    /// The connection is refused (a connect error: nothing was sent).
    Refuse,
    /// Connected and sent, then the connection broke before a response head.
    Reset,
    /// Never answers.
    Hang,
    /// Answers (see `Reply`).
    Respond(Reply),
}

/// A response: its head after `after`, then each body part after its own pause.
#[derive(Debug, Clone)]
pub struct Reply {
    pub after: Duration,
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<(Duration, Part)>,
}

/// A piece of a response body.
#[derive(Debug, Clone)]
pub enum Part {
    Data(Bytes),
    /// The body breaks here (the connection reset mid-body).
    Break,
    /// Nothing more, ever: the body stalls.
    Stall,
}

impl Reply {
    /// `status` with a JSON body, sent at once.
    pub fn json(status: u16, body: &str) -> Reply {
        Reply {
            after: Duration::ZERO,
            status,
            headers: vec![("content-type", "application/json".into())],
            body: vec![(Duration::ZERO, Part::Data(Bytes::from(body.to_owned())))],
        }
    }

    /// A 200 SSE stream with no events yet (add them with `then`).
    pub fn sse() -> Reply {
        Reply {
            after: Duration::ZERO,
            status: 200,
            headers: vec![("content-type", "text/event-stream".into())],
            body: Vec::new(),
        }
    }

    /// The head comes after `delay`.
    pub fn after(mut self, delay: Duration) -> Reply {
        self.after = delay;
        self
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_owned()));
        self
    }

    /// `part` follows, `gap` after the previous one.
    pub fn then(mut self, gap: Duration, part: Part) -> Reply {
        self.body.push((gap, part));
        self
    }

    /// An SSE event with this data follows, `gap` after the previous part.
    pub fn event(self, gap: Duration, data: &str) -> Reply {
        self.then(gap, Part::Data(Bytes::from(format!("data: {data}\n\n"))))
    }
}

/// A request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
}

/// The in-memory upstream. Share it with `Arc` to keep reading what it saw.
#[derive(Debug, Default)]
pub struct MemoryUpstream {
    script: Mutex<VecDeque<Step>>,
    seen: Mutex<Vec<Seen>>,
}

/// The answer once the script is spent.
const OK_BODY: &str = r#"{"id":"chatcmpl-mem","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;

impl MemoryUpstream {
    pub fn new(script: impl IntoIterator<Item = Step>) -> MemoryUpstream {
        MemoryUpstream {
            script: Mutex::new(script.into_iter().collect()),
            seen: Mutex::default(),
        }
    }

    /// Adds steps at the end of the script.
    pub fn push(&self, steps: impl IntoIterator<Item = Step>) {
        self.script.lock().extend(steps);
    }

    /// Every request received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }

    fn next(&self, request: &Request<Body>) -> Step {
        self.seen.lock().push(Seen {
            at: Instant::now(),
            method: request.method().clone(),
            uri: request.uri().to_string(),
            headers: request.headers().clone(),
        });
        self.script
            .lock()
            .pop_front()
            .unwrap_or_else(|| Step::Respond(Reply::json(200, OK_BODY)))
    }
}

impl Transport for MemoryUpstream {
    fn send(
        &self,
        _upstream: &Upstream,
        request: Request<Body>,
    ) -> impl Future<Output = Result<Response<UpstreamBody>, SendError>> + Send {
        let step = self.next(&request);
        async move {
            match step {
                Step::Refuse => Err(SendError::Connect(Box::new(io::Error::from(
                    io::ErrorKind::ConnectionRefused,
                )))),
                Step::Reset => Err(SendError::Broken(Box::new(io::Error::from(
                    io::ErrorKind::ConnectionReset,
                )))),
                Step::Hang => std::future::pending().await,
                Step::Respond(reply) => {
                    tokio::time::sleep(reply.after).await;
                    response(reply)
                }
            }
        }
    }
}

fn response(reply: Reply) -> Result<Response<UpstreamBody>, SendError> {
    let mut response = Response::new(UpstreamBody::from_body(crate::body::empty()));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).map_err(|_| SendError::BadRequest("bad status"))?;
    for (name, value) in reply.headers {
        let value = value
            .parse()
            .map_err(|_| SendError::BadRequest("bad header value"))?;
        response.headers_mut().append(name, value);
    }
    let body = ScriptedBody::new(reply.body);
    *response.body_mut() = UpstreamBody::from_body(crate::body::Body::new(body));
    Ok(response)
}

/// A body that plays its parts on tokio time: each after its gap. The in-memory
/// upstream's response bodies; a test's slow client body too.
pub struct ScriptedBody {
    parts: VecDeque<(Duration, Part)>,
    pause: Option<Pin<Box<Sleep>>>,
}

impl ScriptedBody {
    pub fn new(parts: impl IntoIterator<Item = (Duration, Part)>) -> ScriptedBody {
        ScriptedBody {
            parts: parts.into_iter().collect(),
            pause: None,
        }
    }
}

impl HttpBody for ScriptedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some((gap, _)) = self.parts.front() else {
            return Poll::Ready(None);
        };
        let gap = *gap;
        if !gap.is_zero() {
            let pause = self
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(gap)));
            ready!(pause.as_mut().poll(cx));
        }
        self.pause = None;
        match self.parts.pop_front().map(|(_, part)| part) {
            Some(Part::Data(bytes)) => Poll::Ready(Some(Ok(Frame::data(bytes)))),
            Some(Part::Break) => {
                let broken = io::Error::from(io::ErrorKind::ConnectionReset);
                Poll::Ready(Some(Err(Box::new(broken))))
            }
            Some(Part::Stall) => {
                // Stays stalled: nothing will ever wake this body again.
                self.parts.push_front((Duration::ZERO, Part::Stall));
                Poll::Pending
            }
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.parts.is_empty()
    }
}
