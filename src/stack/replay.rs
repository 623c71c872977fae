//! Step 2's replay (SPEC §6), between the read and the hops: a request that may be
//! answered from an earlier one's kept response is, at once; one whose twin is in
//! flight waits for it; any other eligible request is proxied with a `Ticket` that
//! keeps its response (`keep`) when it ends with a 2xx.
//!
//! Eligible: a buffered body, and an `Idempotency-Key` (scoped by credential, method,
//! path and key) or, with `sdk_retries`, any request (scoped by credential, method,
//! path and body hash) — of which only an SDK retry (`x-stainless-retry-count` ≥ 1) is
//! ever answered from another. Off (`[replay]` absent) this step is never reached.

use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderValue;
use http::{HeaderMap, HeaderName, Response, StatusCode};
use tokio::time::Instant;

use super::call::Call;
use crate::body::{Body, full};
use crate::error::ProxyError;
use crate::events::Observer;
use crate::proxy::headers::{ATTEMPTS, REQUEST_ID};
use crate::replay::{
    Claim, Credential, InFlight, Kept, Replay, ReplayReason, ReplayStore, ScopeKey,
};
use crate::request_fingerprint::{IDEMPOTENCY_KEY, MAX_IDEMPOTENCY_KEY, Sha256Hex, request_sha256};

pub const REPLAYED: HeaderName = HeaderName::from_static("x-backstop-replayed");
pub const REPLAY_OF: HeaderName = HeaderName::from_static("x-backstop-replay-of");

/// Waits on a twin in flight that ended without a 2xx, before proxying anyway.
const MAX_JOINS: usize = 3;

/// What the step decided.
pub(super) enum Lookup {
    /// Not eligible: proxy as usual.
    Off,
    /// Answer with this earlier response.
    Replay(Arc<Kept>, ReplayReason),
    /// Proxy, and keep the response as the ticket says.
    Proxy(Ticket),
}

/// How to keep an eligible request's response.
pub(super) struct Ticket {
    pub scope: ScopeKey,
    pub reason: ReplayReason,
    pub request_body: Sha256Hex,
    /// The scope held while in flight; `None` when another holds it.
    pub in_flight: Option<InFlight>,
    pub store: Arc<dyn ReplayStore>,
    /// How long the response is kept (`ttl`, or `window` for SDK retries).
    pub keep_for: Duration,
    pub max_bytes: u64,
    /// The request is finished if its client leaves (`finish_abandoned`).
    pub finish: bool,
}

/// The request's `Idempotency-Key`: `None` when absent or empty; a 400 when too long
/// or not text.
fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ProxyError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ProxyError::InvalidIdempotencyKey)?;
    if key.chars().count() > MAX_IDEMPOTENCY_KEY {
        return Err(ProxyError::InvalidIdempotencyKey);
    }
    Ok((!key.is_empty()).then_some(key))
}

/// Where a request's response may be found, and how it is kept.
struct Scoped {
    scope: ScopeKey,
    reason: ReplayReason,
    /// Whether it may be answered from another request (a key, or an SDK retry).
    may_join: bool,
    keep_for: Duration,
}

/// The step: replay, join, or proxy with a ticket. A wait for an identical request in
/// flight lasts while the client does (its leaving cancels it), up to `wait_until` (the
/// configured deadline: the client's own read timeout is what the first one outlives).
pub(super) async fn lookup(
    replay: &Replay,
    call: &Call,
    observer: &dyn Observer,
    upstream: &str,
    wait_until: Instant,
) -> Result<Lookup, ProxyError> {
    let key = idempotency_key(&call.parts.headers)?;
    let Some(body) = call.body.buffered() else {
        return Ok(Lookup::Off);
    };
    let (method, path) = (&call.parts.method, call.parts.uri.path());
    let request_body = call
        .meta
        .fingerprint
        .as_ref()
        .and_then(|f| f.sha256)
        .unwrap_or_else(|| request_sha256(method, path, body));
    let Some(scoped) = scope(replay, call, key, request_body) else {
        return Ok(Lookup::Off);
    };
    let store = &replay.store;
    if scoped.may_join
        && let Some(kept) = store.get(scoped.scope).await
    {
        return answer(kept, request_body, scoped.reason);
    }
    let waiting = Waiting {
        observer,
        upstream,
        until: wait_until,
    };
    let in_flight = match claim(store, &scoped, request_body, &waiting).await? {
        Claimed::Runs(in_flight) => in_flight,
        Claimed::Answered(kept) => return answer(kept, request_body, scoped.reason),
    };
    let settings = &replay.settings;
    Ok(Lookup::Proxy(Ticket {
        scope: scoped.scope,
        reason: scoped.reason,
        request_body,
        in_flight,
        store: store.clone(),
        keep_for: scoped.keep_for,
        max_bytes: settings.max_response_bytes,
        finish: settings.finish_abandoned
            && (scoped.reason == ReplayReason::IdempotencyKey || !call.meta.stream()),
    }))
}

/// The request's scope: by its key, else (with `sdk_retries`) by its body hash.
fn scope(replay: &Replay, call: &Call, key: Option<&str>, body: Sha256Hex) -> Option<Scoped> {
    let settings = &replay.settings;
    let (method, path) = (&call.parts.method, call.parts.uri.path());
    let credential = Credential::of(&call.parts.headers);
    match key {
        Some(key) => Some(Scoped {
            scope: ScopeKey::idempotency(credential, method, path, key),
            reason: ReplayReason::IdempotencyKey,
            may_join: true,
            keep_for: settings.ttl,
        }),
        None if settings.sdk_retries => Some(Scoped {
            scope: ScopeKey::sdk_retry(credential, method, path, body),
            reason: ReplayReason::SdkRetry,
            may_join: call.meta.client_retry_count.is_some_and(|n| n >= 1),
            keep_for: settings.window,
        }),
        None => None,
    }
}

/// What `claim` came to.
enum Claimed {
    /// This request goes upstream, holding the scope (`Some`) or not (another does).
    Runs(Option<InFlight>),
    /// The identical request it waited for answered with a 2xx.
    Answered(Arc<Kept>),
}

/// Who hears of a wait, and how long it may last.
struct Waiting<'a> {
    observer: &'a dyn Observer,
    upstream: &'a str,
    until: Instant,
}

/// Holds the scope while this request runs, or waits for the one that holds it: its
/// response, or, when that ended without a 2xx, this request goes upstream (holding
/// the scope if it is free by then). A wait past the deadline is a timeout: the first
/// one is still running, so another upstream call could only bill twice.
async fn claim(
    store: &Arc<dyn ReplayStore>,
    scoped: &Scoped,
    body: Sha256Hex,
    waiting: &Waiting<'_>,
) -> Result<Claimed, ProxyError> {
    for _ in 0..MAX_JOINS {
        let running = match store.claim(scoped.scope, body).await {
            Claim::First(held) => return Ok(Claimed::Runs(Some(held))),
            // Another first call with the same body (not a retry): both run.
            Claim::Running(_) if !scoped.may_join => break,
            Claim::Running(running) => running,
        };
        if running.body != body {
            return Err(ProxyError::IdempotencyKeyReused);
        }
        waiting.observer.replay_join(waiting.upstream);
        tracing::debug!(
            reason = scoped.reason.as_str(),
            "waiting for the same request in flight"
        );
        let started = Instant::now();
        match tokio::time::timeout_at(waiting.until, running.result).await {
            Ok(Some(kept)) => return Ok(Claimed::Answered(kept)),
            // It ended without a 2xx: this one is proxied afresh.
            Ok(None) => continue,
            Err(_) => {
                return Err(ProxyError::Timeout {
                    upstream: waiting.upstream.to_owned(),
                    after: started.elapsed(),
                });
            }
        }
    }
    Ok(Claimed::Runs(None))
}

fn answer(kept: Arc<Kept>, body: Sha256Hex, reason: ReplayReason) -> Result<Lookup, ProxyError> {
    if kept.request_body != body {
        return Err(ProxyError::IdempotencyKeyReused);
    }
    Ok(Lookup::Replay(kept, reason))
}

/// The kept response, sent again: same status, headers and body, marked as a replay.
pub(super) fn response(kept: &Kept) -> Response<Body> {
    let mut response = Response::new(full(kept.body.clone()));
    *response.status_mut() = StatusCode::from_u16(kept.status).unwrap_or(StatusCode::OK);
    *response.headers_mut() = kept.header_map();
    let headers = response.headers_mut();
    headers.insert(REPLAYED, HeaderValue::from_static("true"));
    if let Ok(of) = HeaderValue::from_str(&kept.request_id) {
        headers.insert(REPLAY_OF, of);
    }
    response
}

/// The headers worth keeping: all the upstream sent (hop-by-hop ones are gone
/// already), less backstop's per-request ones.
pub(super) fn keepable(headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter(|(name, _)| {
            let name = name.as_str();
            !name.starts_with("x-backstop-")
                && name != "x-should-retry"
                && *name != REQUEST_ID
                && *name != ATTEMPTS
        })
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_over_255_characters_or_not_text_is_refused() {
        let mut h = HeaderMap::new();
        assert!(matches!(idempotency_key(&h), Ok(None)));
        h.insert(IDEMPOTENCY_KEY, HeaderValue::from_static(""));
        assert!(matches!(idempotency_key(&h), Ok(None)), "empty is no key");
        let longest = "k".repeat(255);
        h.insert(
            IDEMPOTENCY_KEY,
            HeaderValue::from_str(&longest).expect("ascii"),
        );
        assert!(matches!(idempotency_key(&h), Ok(Some(k)) if k == longest));
        h.insert(
            IDEMPOTENCY_KEY,
            HeaderValue::from_str(&"k".repeat(256)).expect("ascii"),
        );
        assert!(matches!(
            idempotency_key(&h),
            Err(ProxyError::InvalidIdempotencyKey)
        ));
        h.insert(
            IDEMPOTENCY_KEY,
            HeaderValue::from_bytes(b"\xff").expect("opaque"),
        );
        assert!(matches!(
            idempotency_key(&h),
            Err(ProxyError::InvalidIdempotencyKey)
        ));
    }

    #[test]
    fn per_request_headers_are_not_kept() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("x-request-id", HeaderValue::from_static("up-1"));
        h.insert("x-backstop-request-id", HeaderValue::from_static("r1"));
        h.insert("x-backstop-attempts", HeaderValue::from_static("1"));
        h.insert("x-backstop-upstream", HeaderValue::from_static("mock"));
        let kept: Vec<_> = keepable(&h)
            .into_iter()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(kept, ["content-type", "x-request-id"]);
    }
}
