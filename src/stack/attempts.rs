//! Step 3b, per hop: the attempts. The retry policy (`retry::policy`, with the hop's
//! shared budget) decides after each one, `retry::driver` sleeps the delays, and every
//! attempt is reported before any delay. The hop ends with an answer for the client, or
//! hands the request on to the next hop.

use http::Response;
use tokio::time::Instant;

use super::attempt;
use super::call::{Call, client_path};
use super::fallback::{falls_back, rewritten_path};
use super::report::Reporter;
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

/// Runs the hop's attempts. `hop_index` > 0 marks a fallback (its path may be
/// rewritten); `has_next` says whether a fallback follows.
pub(super) async fn run<T: Transport>(
    call: &mut Call,
    transport: &T,
    reporter: &Reporter<'_>,
    served: &mut Served,
    (hop_index, has_next): (usize, bool),
) -> HopEnd {
    let hop = reporter.hop;
    let upstream = &*hop.upstream;
    let client_path = client_path(&call.parts);
    let rewritten = (hop_index > 0)
        .then(|| rewritten_path(upstream, client_path, call.meta.model.as_deref()))
        .flatten();
    let path_and_query = rewritten.as_deref().unwrap_or(client_path);
    let ctx = attempt::Context {
        transport,
        hop,
        parts: &call.parts,
        deadline: call.deadline,
        fate: &served.fate,
        path_and_query,
    };
    let mut policy = RetryPolicy::new(
        upstream.retry.clone(),
        hop.budget.clone(),
        call.deadline,
        call.replayable,
    );
    let first = served.attempts;
    let hands_over = |give_up, reason| has_next && falls_back(give_up, reason);
    let bodies = &mut call.body;
    let finished = drive(
        &mut policy,
        |n| ctx.run(n, bodies.next()),
        |n, attempted, decision| reporter.attempted(first + n, attempted, decision, hands_over),
    )
    .await;
    served.attempts += finished.attempts;
    served.give_up = finished.give_up;
    if hands_over(finished.give_up, finished.outcome.reason()) && Instant::now() < call.deadline {
        tracing::debug!(from = %upstream.name, "falling back");
        return HopEnd::FallBack(finished.value.response.err());
    }
    HopEnd::Answer(
        finished
            .value
            .response
            .unwrap_or_else(ProxyError::into_response),
    )
}
