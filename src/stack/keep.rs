//! Keeps an eligible request's 2xx response for replay as it goes out (SPEC §6): the
//! frames are collected (cheap `Bytes` clones) up to `max_response_bytes`; when the body
//! ends whole, whoever waits on the request gets it, and the store keeps it — always
//! for an `Idempotency-Key`, and for an SDK retry only when the client did not get it
//! (it left; a client that got its answer does not retry). A body that breaks off, is
//! cut short by the client or grows too large is not kept, and waiters are released.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{HeaderName, HeaderValue};
use http_body::{Body as HttpBody, Frame, SizeHint};

use super::detach::Detach;
use super::replay::Ticket;
use crate::body::{Body, BoxError};
use crate::events::RequestId;
use crate::replay::local::now_ms;
use crate::replay::{Kept, ReplayReason};

/// What is kept so far.
pub(super) struct Keeping {
    ticket: Ticket,
    request_id: RequestId,
    status: u16,
    headers: Vec<(HeaderName, HeaderValue)>,
    chunks: Vec<Bytes>,
    bytes: u64,
    detach: Option<Arc<Detach>>,
}

impl Keeping {
    pub fn new(
        ticket: Ticket,
        request_id: RequestId,
        status: u16,
        headers: Vec<(HeaderName, HeaderValue)>,
        detach: Option<Arc<Detach>>,
    ) -> Keeping {
        Keeping {
            ticket,
            request_id,
            status,
            headers,
            chunks: Vec::new(),
            bytes: 0,
            detach,
        }
    }

    /// False once the body is over the bound (then nothing is kept).
    fn push(&mut self, data: &Bytes) -> bool {
        self.bytes += data.len() as u64;
        if self.bytes > self.ticket.max_bytes {
            return false;
        }
        self.chunks.push(data.clone());
        true
    }

    /// The body ended whole.
    fn done(self) {
        let mut body = BytesMut::with_capacity(usize::try_from(self.bytes).unwrap_or(0));
        for chunk in &self.chunks {
            body.extend_from_slice(chunk);
        }
        let keep_for = u64::try_from(self.ticket.keep_for.as_millis()).unwrap_or(u64::MAX);
        let kept = Arc::new(Kept {
            request_id: self.request_id.as_str().into(),
            request_body: self.ticket.request_body,
            expires_at: now_ms().saturating_add(keep_for),
            status: self.status,
            headers: self.headers,
            body: body.freeze(),
        });
        let client_gone = self.detach.as_ref().is_some_and(|d| d.client_gone());
        if self.ticket.reason == ReplayReason::IdempotencyKey || client_gone {
            self.ticket.store.put(self.ticket.scope, kept.clone());
        }
        if let Some(in_flight) = self.ticket.in_flight {
            in_flight.finish(Some(kept));
        }
    }
}

pin_project_lite::pin_project! {
    pub(super) struct KeepBody {
        #[pin]
        inner: Body,
        keeping: Option<Keeping>,
    }
}

impl KeepBody {
    pub fn new(inner: Body, keeping: Keeping) -> KeepBody {
        let mut body = KeepBody {
            keeping: Some(keeping),
            inner,
        };
        if body.inner.is_end_stream()
            && let Some(keeping) = body.keeping.take()
        {
            keeping.done();
        }
        body
    }
}

impl HttpBody for KeepBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(keeping)) = (frame.data_ref(), this.keeping.as_mut())
                    && !keeping.push(data)
                {
                    *this.keeping = None;
                }
            }
            Poll::Ready(Some(Err(_))) => *this.keeping = None,
            _ => {}
        }
        let ended = matches!(polled, Poll::Ready(None))
            || (matches!(polled, Poll::Ready(Some(Ok(_))))
                && HttpBody::is_end_stream(&*this.inner));
        if ended && let Some(keeping) = this.keeping.take() {
            keeping.done();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
