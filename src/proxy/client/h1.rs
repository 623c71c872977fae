//! Sending on an HTTP/1.1 connection of the pool: the request written for the wire and
//! handed over, and the answer taken back (the response, its connection lent back to
//! the pool when the body ends; or the request, unsent, when the connection was gone).

use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::{TrySendError, http1};

use super::SendError;
use crate::body::Body;
use crate::config::Upstream;
use crate::proxy::UpstreamBody;
use crate::proxy::pool::Pool;
use crate::proxy::wire_form::{refused_by_forward_proxy, to_wire_form};

pub(super) enum Unsent {
    /// The connection was gone before the request was written: try another.
    Again(Box<Request<Body>>),
    Failed(SendError),
}

/// Writes `request` for the wire (`to_wire_form`) for an HTTP/1.1 connection of `pool`.
/// The caller then hands it over itself (`SendRequest::try_send_request`) and awaits
/// the answer where it is (`answered_h1`): inside a future of its own, or returned in a
/// `Result`, the request and the (~250-byte) answer would be copied once more.
pub(super) fn wire_h1(
    pool: &Pool,
    request: &mut Request<Body>,
    upstream: &Upstream,
) -> Result<(), SendError> {
    to_wire_form(request, pool.host.as_ref(), upstream)
}

pub(super) type H1Answer = Result<Response<Incoming>, TrySendError<Request<Body>>>;

/// What an HTTP/1.1 connection answered: the response, lending `sender` back to `pool`
/// when its body ends, or the request it handed back unsent.
pub(super) fn answered_h1(
    answer: H1Answer,
    pool: &Arc<Pool>,
    sender: http1::SendRequest<Body>,
    upstream: &Upstream,
) -> Result<Response<UpstreamBody>, Unsent> {
    match answer {
        Ok(response) => {
            refused_by_forward_proxy(&response, upstream).map_err(Unsent::Failed)?;
            let lender = Some((pool.clone(), sender));
            Ok(response.map(|body| UpstreamBody::new(body, lender)))
        }
        Err(mut e) => match e.take_message() {
            Some(back) => Err(Unsent::Again(Box::new(back))),
            None => Err(Unsent::Failed(SendError::Request(e.into_error()))),
        },
    }
}
