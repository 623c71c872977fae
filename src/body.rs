//! The one body type backstop hands to hyper, in both directions.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body backstop produces, and every request body it sends upstream:
/// any body, boxed. Like `http_body_util::combinators::BoxBody`, but it can also be
/// built in its box (`in_place`), so a large body (the watched response body, ~450
/// bytes) is not copied into it.
pub struct Body(Pin<Box<dyn HttpBody<Data = Bytes, Error = BoxError> + Send + Sync>>);

impl Body {
    pub fn new<B>(body: B) -> Body
    where
        B: HttpBody<Data = Bytes, Error = BoxError> + Send + Sync + 'static,
    {
        Body(Box::pin(body))
    }

    /// `make()`'s body, built where it will live (`in_place::boxed`).
    #[inline(always)]
    pub fn in_place<B>(make: impl FnOnce() -> B) -> Body
    where
        B: HttpBody<Data = Bytes, Error = BoxError> + Send + Sync + 'static,
    {
        Body(crate::in_place::boxed(make))
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

impl Default for Body {
    fn default() -> Body {
        empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Body").finish_non_exhaustive()
    }
}

/// A request body as a client sends it: hyper's `Incoming` from the server, or any
/// other body (service tests send `Full` bodies without a socket).
pub trait ClientBody:
    http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Sync + Unpin + 'static
{
}

impl<B> ClientBody for B where
    B: http_body::Body<Data = Bytes, Error: Into<BoxError>> + Send + Sync + Unpin + 'static
{
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Body::new(Full::new(bytes.into()).map_err(|never| match never {}))
}

pub fn empty() -> Body {
    Body::new(Empty::new().map_err(|never| match never {}))
}

/// The size of `prefix` bytes already read, followed by a body hinting `rest`.
pub fn hint_after(prefix: u64, rest: http_body::SizeHint) -> http_body::SizeHint {
    let mut hint = http_body::SizeHint::new();
    hint.set_lower(prefix + rest.lower());
    if let Some(upper) = rest.upper() {
        hint.set_upper(prefix + upper);
    }
    hint
}
