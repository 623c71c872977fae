//! Step 3b, per hop: the attempts. The retry policy (`retry::policy`, with the hop's
//! shared budget) decides after each one, `retry::driver` sleeps the delays, and every
//! attempt is reported before any delay. The hop ends with an answer for the client, or
//! hands the request on to the next hop.

use http::Response;
use tokio::time::Instant;

use super::attempt;
use super::call::{Call, client_path};
use super::report::Reporter;
use super::rewrite::HopRequest;
use super::served::Served;
use crate::body::Body;
use crate::error::ProxyError;
use crate::proxy::Transport;
use crate::retry::RetryPolicy;
use crate::retry::driver::drive;

/// How a hop ended.
pub(super) enum HopEnd {
    /// The response to give the client (an upstream's, or backstop's own error).
    Answer(Response<Body>),
    /// Handed over to the next hop; the error to answer with if none is left.
    FallBack(Option<ProxyError>),
}

/// Runs the hop's attempts. `hop_index` > 0 marks a fallback (the request may change
/// shape for it); the reporter knows the next hop, if any.
pub(super) async fn run<T: Transport>(
    call: &mut Call,
    transport: &T,
    reporter: &Reporter<'_>,
    served: &mut Served,
    hop_index: usize,
) -> HopEnd {
    let hop = reporter.hop;
    let upstream = &*hop.upstream;
    let HopRequest {
        path_and_query,
        body: rewritten,
        model,
    } = HopRequest::plan(upstream, call, hop_index > 0);
    let ctx = attempt::Context {
        transport,
        hop,
        method: &call.parts.method,
        uri: &call.parts.uri,
        deadline: call.deadline,
        meta: &call.meta,
        path_and_query: path_and_query
            .as_deref()
            .unwrap_or_else(|| client_path(&call.parts.uri)),
        rewritten_len: rewritten.as_ref().map(|b| b.len() as u64),
        forwarding: call.forwarding,
    };
    let mut policy = RetryPolicy::new(
        &upstream.retry,
        hop.budget.clone(),
        call.deadline,
        call.replayable,
    );
    let first = served.attempts;
    let bodies = &mut call.body;
    let (own_headers, kept_headers) = (&mut call.parts.headers, &mut call.kept_headers);
    let fresh = &mut call.fresh;
    let finished = drive(
        &mut policy,
        |n| {
            let body = bodies.next_for(rewritten.as_ref());
            ctx.run(n, body, kept_headers.next(own_headers), fresh.take())
        },
        |n, attempted, decision| reporter.attempted(first + n, attempted, decision),
    )
    .await;
    served.attempts += finished.attempts;
    served.give_up = finished.give_up;
    let reason = finished.outcome.reason();
    if reporter.hands_over(finished.give_up, reason) && Instant::now() < call.deadline {
        tracing::debug!(from = %upstream.name, %reason, "falling back");
        return HopEnd::FallBack(finished.value.response.err());
    }
    served.event_stream = Some(finished.value.event_stream);
    answer(finished.value.response, model)
}

/// The hop's answer: its last attempt's response, or backstop's own error; naming the
/// model the hop sent when its `models` map changed it.
fn answer(
    response: Result<Response<Body>, ProxyError>,
    model: Option<http::HeaderValue>,
) -> HopEnd {
    let mut response = response.unwrap_or_else(ProxyError::into_response);
    if let Some(model) = model {
        response.headers_mut().insert(MODEL, model);
    }
    HopEnd::Answer(response)
}

/// The model sent upstream, when the hop's `models` map changed it.
const MODEL: http::HeaderName = http::HeaderName::from_static("x-backstop-model");
