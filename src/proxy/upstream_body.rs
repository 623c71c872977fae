//! A response body from an upstream: a pooled connection's body, which gives its
//! HTTP/1.1 connection back to the pool when read to its end, or any other body (an
//! in-memory upstream in service tests).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;

use super::h2_pool::StreamLease;
use super::pool::Pool;
use crate::body::{Body, BoxError};

pin_project_lite::pin_project! {
    pub struct UpstreamBody {
        #[pin]
        inner: Inner,
        lender: Option<(Arc<Pool>, http1::SendRequest<Body>)>,
        // An HTTP/2 stream, counted against its connection until the body ends.
        stream: Option<StreamLease>,
    }
}

pin_project_lite::pin_project! {
    #[project = InnerProj]
    enum Inner {
        Connection { #[pin] body: Incoming },
        Other { #[pin] body: Body },
    }
}

impl UpstreamBody {
    /// A body read from a connection; `lender` takes an HTTP/1.1 connection back.
    pub fn new(inner: Incoming, lender: Option<(Arc<Pool>, http1::SendRequest<Body>)>) -> Self {
        let mut body = UpstreamBody {
            inner: Inner::Connection { body: inner },
            lender,
            stream: None,
        };
        if body.is_end_stream() {
            body.give_back();
        }
        body
    }

    /// A body on an HTTP/2 stream, counted against its connection until it ends.
    pub fn on_stream(inner: Incoming, stream: StreamLease) -> Self {
        let stream = (!inner.is_end_stream()).then_some(stream);
        UpstreamBody {
            inner: Inner::Connection { body: inner },
            lender: None,
            stream,
        }
    }

    /// Any other body, e.g. from an in-memory upstream.
    pub fn from_body(body: Body) -> Self {
        UpstreamBody {
            inner: Inner::Other { body },
            lender: None,
            stream: None,
        }
    }

    fn give_back(&mut self) {
        if let Some((pool, sender)) = self.lender.take() {
            pool.give_back(sender);
        }
    }
}

impl HttpBody for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let (polled, end_stream) = match this.inner.project() {
            InnerProj::Connection { mut body } => {
                let polled = body.as_mut().poll_frame(cx).map_err(BoxError::from);
                (polled, body.is_end_stream())
            }
            InnerProj::Other { mut body } => {
                let polled = body.as_mut().poll_frame(cx);
                (polled, body.is_end_stream())
            }
        };
        let ended = match &polled {
            Poll::Ready(None) => true,
            Poll::Ready(Some(Ok(_))) => end_stream,
            // A broken body: the connection is not fit to carry another request.
            Poll::Ready(Some(Err(_))) => {
                this.lender.take();
                this.stream.take();
                false
            }
            Poll::Pending => false,
        };
        if ended {
            this.stream.take();
            if let Some((pool, sender)) = this.lender.take() {
                pool.give_back(sender);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Connection { body } => body.is_end_stream(),
            Inner::Other { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Connection { body } => body.size_hint(),
            Inner::Other { body } => body.size_hint(),
        }
    }
}
