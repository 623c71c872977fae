//! The client's request body: kept in memory up to `retry_buffer_bytes` so the retry
//! engine can replay it; beyond that streamed through once (never retried); beyond
//! `max_body_bytes` refused with 413. Kept bodies share one `BufferBudget`: when it is
//! spent, a body is streamed once too.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::time::Instant;

use super::buffer_budget::{BufferBudget, BufferPermit};
use crate::body::{self, Body, BoxError, ClientBody};
use crate::error::ProxyError;

pub enum RequestBody {
    /// The whole body, cheap to clone for each attempt.
    Buffered(Bytes),
    /// Too large to keep: can be sent exactly once.
    Streaming(StreamingBody),
}

/// Limits for reading a request body.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub retry_buffer_bytes: u64,
    pub max_body_bytes: u64,
    /// Longest wait for the next chunk from the client.
    pub idle_timeout: Duration,
}

/// A body's share of the buffer budget while it is read.
struct Held {
    permit: BufferPermit,
    /// Bytes reserved up front (a `Content-Length` small enough to keep).
    reserved: Option<u64>,
    buffer_cap: usize,
}

impl RequestBody {
    /// Reads the body until it ends or passes `retry_buffer_bytes`, or until `budget`
    /// has no room for it. A kept body holds its bytes of `budget` until the last copy
    /// of it is dropped. Also says when the body had been read: `started` (the request's
    /// start) when it was all there already, as a small body is, without reading the
    /// clock again.
    pub async fn read<B: ClientBody>(
        incoming: B,
        content_length: Option<u64>,
        limits: BodyLimits,
        budget: &Arc<BufferBudget>,
        started: Instant,
    ) -> Result<(RequestBody, Instant), ProxyError> {
        if content_length.is_some_and(|n| n > limits.max_body_bytes) {
            return Err(ProxyError::BodyTooLarge {
                limit: limits.max_body_bytes,
            });
        }
        if content_length.is_some_and(|n| n > limits.retry_buffer_bytes) {
            // Too large to keep, and known to be: streamed from its first byte.
            let streamed = StreamingBody::new(Vec::new(), incoming, 0, None, &limits);
            return Ok((RequestBody::Streaming(streamed), started));
        }
        let mut permit = budget.permit();
        // A body announced small enough to keep is reserved whole before it is read, so
        // a spent budget is known before any of it is held.
        let reserved = content_length.filter(|&n| n <= limits.retry_buffer_bytes);
        if let Some(n) = reserved
            && !permit.grow(n)
        {
            let streamed =
                streamed_for_lack_of_budget(budget, (Vec::new(), None), incoming, 0, &limits);
            return Ok((streamed, started));
        }
        let buffer_cap = content_length.unwrap_or(0).min(limits.retry_buffer_bytes) as usize;
        let held = Held {
            permit,
            reserved,
            buffer_cap,
        };
        let mut waited = false;
        let body = RequestBody::keep(incoming, &limits, budget, held, &mut waited).await?;
        Ok((body, if waited { Instant::now() } else { started }))
    }

    /// Reads the body into memory while it fits, growing `held`'s share of `budget`
    /// chunk by chunk (unless reserved whole); streams the rest once it does not. Sets
    /// `waited` when a chunk had to be waited for.
    async fn keep<B: ClientBody>(
        mut incoming: B,
        limits: &BodyLimits,
        budget: &Arc<BufferBudget>,
        mut held: Held,
        waited: &mut bool,
    ) -> Result<RequestBody, ProxyError> {
        let mut chunks = Chunks::default();
        let mut total: u64 = 0;
        while let Some(data) = next_chunk(&mut incoming, limits.idle_timeout, waited).await? {
            let len = data.len() as u64;
            total += len;
            if total > limits.max_body_bytes {
                return Err(ProxyError::BodyTooLarge {
                    limit: limits.max_body_bytes,
                });
            }
            chunks.push(data);
            if total > limits.retry_buffer_bytes {
                return Ok(RequestBody::Streaming(StreamingBody::new(
                    chunks.into_vec(),
                    incoming,
                    total,
                    Some(held.permit),
                    limits,
                )));
            }
            if held.reserved.is_none() && !held.permit.grow(len) {
                return Ok(streamed_for_lack_of_budget(
                    budget,
                    (chunks.into_vec(), Some(held.permit)),
                    incoming,
                    total,
                    limits,
                ));
            }
        }
        held.permit.shrink_to(total);
        Ok(RequestBody::Buffered(kept(
            chunks.concat(held.buffer_cap),
            held.permit,
        )))
    }

    /// Whether this body can be sent again for a retry.
    pub fn is_replayable(&self) -> bool {
        matches!(self, RequestBody::Buffered(_))
    }

    /// The buffered bytes, if the body was small enough to keep.
    pub fn buffered(&self) -> Option<&Bytes> {
        match self {
            RequestBody::Buffered(b) => Some(b),
            RequestBody::Streaming(_) => None,
        }
    }

    /// A body for one attempt: a cheap clone when buffered; the stream itself otherwise.
    pub fn into_body(self) -> Body {
        match self {
            RequestBody::Buffered(bytes) => body::full(bytes),
            RequestBody::Streaming(s) => Body::new(s),
        }
    }
}

/// A body the budget had no room for: counted, and sent once. `read` is what was read
/// already, with the budget it holds.
fn streamed_for_lack_of_budget<B: ClientBody>(
    budget: &BufferBudget,
    (read, held): (Vec<Bytes>, Option<BufferPermit>),
    rest: B,
    seen: u64,
    limits: &BodyLimits,
) -> RequestBody {
    budget.count_exhausted();
    tracing::debug!("retry_buffer_total_bytes spent: request body sent once, not retryable");
    RequestBody::Streaming(StreamingBody::new(read, rest, seen, held, limits))
}

/// The body's bytes, holding `permit` until the last clone of them is dropped.
fn kept(bytes: Bytes, permit: BufferPermit) -> Bytes {
    struct Kept {
        bytes: Bytes,
        _permit: BufferPermit,
    }
    impl AsRef<[u8]> for Kept {
        fn as_ref(&self) -> &[u8] {
            &self.bytes
        }
    }
    if bytes.is_empty() {
        return bytes;
    }
    Bytes::from_owner(Kept {
        bytes,
        _permit: permit,
    })
}

/// The next data chunk of the client's body, `None` at its end; waits at most `idle`
/// (and sets `waited` when it does wait).
async fn next_chunk<B: ClientBody>(
    incoming: &mut B,
    idle: Duration,
    waited: &mut bool,
) -> Result<Option<Bytes>, ProxyError> {
    loop {
        let mut frame = std::pin::pin!(incoming.frame());
        // A small body is usually read already, with the head: taken at once, without
        // reading the clock for a deadline it cannot miss.
        let ready = std::future::poll_fn(|cx| Poll::Ready(frame.as_mut().poll(cx))).await;
        let frame = match ready {
            Poll::Ready(frame) => frame,
            Poll::Pending => {
                *waited = true;
                tokio::time::timeout(idle, frame).await.map_err(|_| {
                    ProxyError::BadRequestBody("client stopped sending the body".into())
                })?
            }
        };
        let Some(frame) = frame else {
            return Ok(None);
        };
        let frame = frame.map_err(|e| ProxyError::BadRequestBody(e.into().to_string()))?;
        if let Ok(data) = frame.into_data() {
            return Ok(Some(data));
        }
    }
}

/// The chunks of a body read so far: a body of one chunk (the usual small request)
/// needs no `Vec` to hold it.
#[derive(Default)]
struct Chunks {
    first: Option<Bytes>,
    more: Vec<Bytes>,
}

impl Chunks {
    fn push(&mut self, data: Bytes) {
        match self.first {
            None => self.first = Some(data),
            Some(_) => self.more.push(data),
        }
    }

    fn into_vec(self) -> Vec<Bytes> {
        self.first.into_iter().chain(self.more).collect()
    }

    /// All of them as one `Bytes`: the one chunk itself, else joined into `capacity`.
    fn concat(self, capacity: usize) -> Bytes {
        let Some(first) = self.first else {
            return Bytes::new();
        };
        if self.more.is_empty() {
            return first;
        }
        let mut out = BytesMut::with_capacity(capacity);
        out.extend_from_slice(&first);
        for c in self.more {
            out.extend_from_slice(&c);
        }
        out.freeze()
    }
}

/// Raised (as the body error) when a streamed body passes `max_body_bytes` mid-send.
#[derive(Debug, thiserror::Error)]
#[error("request body is larger than the limit of {limit} bytes")]
pub struct BodyTooLarge {
    pub limit: u64,
}

pin_project_lite::pin_project! {
    /// The chunks already read, then the rest of the client's body, counted against the
    /// limit. The chunks read hold their bytes of the budget until they have been sent.
    pub struct StreamingBody {
        prefix: VecDeque<Bytes>,
        held: Option<BufferPermit>,
        #[pin]
        rest: Body,
        seen: u64,
        limit: u64,
    }
}

impl StreamingBody {
    fn new<B: ClientBody>(
        read: Vec<Bytes>,
        rest: B,
        seen: u64,
        held: Option<BufferPermit>,
        limits: &BodyLimits,
    ) -> StreamingBody {
        StreamingBody {
            prefix: read.into(),
            held,
            rest: Body::new(rest.map_err(Into::into)),
            seen,
            limit: limits.max_body_bytes,
        }
    }
}

impl HttpBody for StreamingBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Some(chunk) = this.prefix.pop_front() {
            if this.prefix.is_empty() {
                this.held.take();
            }
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match this.rest.poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.seen += data.len() as u64;
                    if *this.seen > *this.limit {
                        let err = BodyTooLarge { limit: *this.limit };
                        return Poll::Ready(Some(Err(Box::new(err))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let queued: u64 = self.prefix.iter().map(|c| c.len() as u64).sum();
        body::hint_after(queued, self.rest.size_hint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::memory::{Part, ScriptedBody};

    #[test]
    fn one_chunk_is_the_body_itself_and_more_are_joined_in_order() {
        let one = Bytes::from_static(b"{\"model\":\"m\"}");
        let mut chunks = Chunks::default();
        chunks.push(one.clone());
        let body = chunks.concat(0);
        assert_eq!(body.as_ptr(), one.as_ptr(), "no copy of a one-chunk body");

        let mut chunks = Chunks::default();
        for part in ["{\"a\"", ":", "1}"] {
            chunks.push(Bytes::from_static(part.as_bytes()));
        }
        assert_eq!(chunks.into_vec().concat(), b"{\"a\":1}");
        let mut chunks = Chunks::default();
        for part in ["{\"a\"", ":", "1}"] {
            chunks.push(Bytes::from_static(part.as_bytes()));
        }
        assert_eq!(chunks.concat(7), Bytes::from_static(b"{\"a\":1}"));
        assert!(Chunks::default().concat(0).is_empty());
    }

    fn limits() -> BodyLimits {
        BodyLimits {
            retry_buffer_bytes: 1024,
            max_body_bytes: 4096,
            idle_timeout: Duration::from_secs(30),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_came_with_its_head_was_read_when_the_request_started() {
        let started = Instant::now();
        tokio::time::advance(Duration::from_secs(1)).await;
        let body = http_body_util::Full::new(Bytes::from_static(b"{}"));
        let budget = BufferBudget::new(1024);
        let (read, at) = RequestBody::read(body, Some(2), limits(), &budget, started)
            .await
            .expect("read");
        assert_eq!(read.buffered().map(|b| &b[..]), Some(&b"{}"[..]));
        assert_eq!(at, started, "no wait, no second clock read");
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_was_waited_for_was_read_when_it_ended() {
        let started = Instant::now();
        let late = Part::Data(Bytes::from_static(b"{}"));
        let body = ScriptedBody::new([(Duration::from_secs(2), late)]);
        let budget = BufferBudget::new(1024);
        let (read, at) = RequestBody::read(body, None, limits(), &budget, started)
            .await
            .expect("read");
        assert!(read.is_replayable());
        assert_eq!(at, started + Duration::from_secs(2));
    }
}
