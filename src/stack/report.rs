//! What a hop tells the observers (failure log, metrics, logs): one `AttemptReport` per
//! attempt, or per refusal at admission, and what the attempt means for the upstream's
//! shared state (the circuit breaker counts it, pacing learns from it).

use std::sync::Arc;
use std::time::Duration;

use http::Method;

use super::attempt::AttemptResult;
use super::fallback::Next;
use crate::error::ProxyError;
use crate::events::{AttemptReport, Observer, RequestId, Verdict, endpoint};
use crate::request_meta::RequestMeta;
use crate::retry::driver::Attempted;
use crate::retry::{Decision, GiveUp, Outcome, Reason};
use crate::runtime::Hop;

/// Who a request is, for every report and its `RequestEvent`.
pub(super) struct Ident {
    pub id: RequestId,
    pub method: Method,
    /// The request path without its query.
    pub endpoint: Arc<str>,
    /// Its `endpoint` label.
    pub kind: &'static str,
}

impl Ident {
    /// A fresh request id (UUIDv7, encoded on the stack) for `request`.
    pub fn new<B>(request: &http::Request<B>) -> Ident {
        let (endpoint, kind) = endpoint(request.uri().path());
        Ident {
            id: RequestId::new_v7(),
            method: request.method().clone(),
            kind,
            endpoint,
        }
    }
}

/// Reports the attempts of one request on one hop.
pub(super) struct Reporter<'a> {
    pub observer: &'a dyn Observer,
    pub ident: &'a Ident,
    pub hop: &'a Hop,
    pub meta: &'a Arc<RequestMeta>,
    /// The hop that may take the request next (none when the body cannot be replayed).
    pub next: Option<Next<'a>>,
}

impl Reporter<'_> {
    fn report(&self, attempt: u32, outcome: Outcome, verdict: Verdict) -> AttemptReport {
        AttemptReport {
            request_id: self.ident.id.clone(),
            upstream: self.hop.name.clone(),
            method: self.ident.method.clone(),
            endpoint: self.ident.endpoint.clone(),
            endpoint_kind: self.ident.kind,
            attempt,
            outcome,
            status: None,
            verdict,
            give_up: None,
            fallback_to: (verdict == Verdict::Fallback)
                .then(|| self.next.map(|n| n.name.clone()))
                .flatten(),
            delay: None,
            server_delay: None,
            duration: Duration::ZERO,
            upstream_request_id: None,
            error_code: None,
            error_message: None,
            meta: self.meta.clone(),
        }
    }

    /// The hop refused the request before any attempt (circuit open, rate limit).
    pub fn refused(&self, attempt: u32, reason: Reason, verdict: Verdict, error: &ProxyError) {
        let mut report = self.report(attempt, Outcome::Fatal { reason }, verdict);
        report.error_code = Some(error.code().to_owned());
        report.error_message = Some(error.to_string());
        self.observer.attempt(&report);
    }

    /// The circuit's state, after admission counted a request against it.
    pub fn circuit(&self) {
        if self.hop.limits.breaker.is_some() {
            let state = self.hop.limits.circuit_state();
            self.observer.circuit(&self.hop.upstream.name, state);
        }
    }

    /// Whether the hop hands a request it gave up on to the next one.
    pub fn hands_over(&self, give_up: Option<GiveUp>, reason: Reason) -> bool {
        self.next.is_some_and(|next| next.takes(give_up, reason))
    }

    /// Attempt `attempt` (1-based over the whole request) and what the policy decided;
    /// a give-up the next hop takes is a hand-over.
    pub fn attempted(
        &self,
        attempt: u32,
        attempted: &Attempted<AttemptResult>,
        decision: &Decision,
    ) {
        self.learn(attempted.outcome);
        let (mut verdict, give_up, delay) = AttemptReport::verdict_of(decision);
        if verdict == Verdict::GiveUp && self.hands_over(give_up, attempted.outcome.reason()) {
            verdict = Verdict::Fallback;
        }
        let result = &attempted.value;
        let mut report = self.report(attempt, attempted.outcome, verdict);
        report.give_up = give_up;
        report.status = result.status;
        report.delay = delay;
        report.server_delay = attempted.server_delay;
        report.duration = result.duration;
        report.upstream_request_id = result.upstream_request_id.clone();
        report.error_code = result.error_code.clone();
        report.error_message = result.error_message.clone();
        self.observer.attempt(&report);
    }

    /// The breaker counts the attempt; pacing's view is passed on when it changed.
    fn learn(&self, outcome: Outcome) {
        let limits = &self.hop.limits;
        let name = &self.hop.upstream.name;
        if let Some(state) = limits.record(outcome) {
            self.observer.circuit(name, state);
        }
        if let Some(view) = limits.pacer.as_ref().and_then(|p| p.changed_view()) {
            self.observer.pacing(name, view);
        }
    }
}
