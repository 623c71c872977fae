//! The one body type backstop hands to hyper, in both directions.

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body backstop produces, and every request body it sends upstream.
pub type Body = BoxBody<Bytes, BoxError>;

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
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
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
