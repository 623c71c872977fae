//! One upstream's share of the fleet's state: its keys, its limits as the admission
//! script takes them, and what it publishes.
//!
//! The circuit: each replica still counts failures itself (its local breaker); when
//! that opens, it publishes the opening (`circuit:open` with PX = `open_for`, and
//! `circuit:half_open`), so every replica fails fast. When `circuit:open` expires, the
//! first admission anywhere takes `circuit:probe` (SET NX PX `open_for`); the rest fail
//! fast until the probe reports: a success deletes the three keys (closed for all), a
//! failure publishes the opening again. A probe that never reports expires and another
//! replica probes. The probe's result is the next outcome this replica records, which
//! is the probe's own unless an earlier request of this replica ends just then.
//!
//! Pacing: a pause the upstream asks for (a 429's delay, tokens nearly spent) is
//! published as `pause` with PX = the pause; admissions everywhere wait it out.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use super::admission::{Keys, Shape, Verdict};
use super::{Store, Unavailable};
use crate::config::Upstream;
use crate::limits::circuit::CircuitState;
use crate::limits::rate;
use crate::retry::Outcome;

/// How long the half-open mark outlives the opening: a fleet that never probes (no
/// traffic) forgets it, and starts closed.
const HALF_OPEN_FOR: Duration = Duration::from_secs(3600);

pub struct UpstreamShare {
    store: Arc<Store>,
    keys: Keys,
    requests: Option<Shape>,
    tokens: Option<Shape>,
    /// `open_for`, when the upstream has a breaker.
    open_for: Option<Duration>,
    /// This replica holds the probe: its next outcome opens or closes for the fleet.
    holds_probe: AtomicBool,
    /// The circuit as the last admission found it (for the gauge and `/stats`).
    seen: AtomicU8,
}

impl UpstreamShare {
    /// `None` when the upstream has nothing to share (no limits, no breaker): it never
    /// calls Redis.
    pub fn new(store: &Arc<Store>, upstream: &Upstream) -> Option<UpstreamShare> {
        let limit = upstream.rate_limit.as_ref();
        let requests = limit.and_then(|l| {
            let rpm = l.requests_per_minute?;
            Some(Shape::per_minute(rpm.get(), rate::request_burst(l)?.get()))
        });
        let tokens = limit.and_then(|l| {
            let tpm = l.tokens_per_minute?;
            Some(Shape::per_minute(tpm.get(), rate::token_burst(tpm).get()))
        });
        let open_for = upstream.circuit_breaker.as_ref().map(|b| b.open_for);
        if requests.is_none() && tokens.is_none() && open_for.is_none() {
            return None;
        }
        Some(UpstreamShare {
            store: store.clone(),
            keys: Keys::new(&store.key_prefix, &upstream.name),
            requests,
            tokens,
            open_for,
            holds_probe: AtomicBool::new(false),
            seen: AtomicU8::new(0),
        })
    }

    pub fn is_up(&self) -> bool {
        self.store.is_up()
    }

    /// One round trip: may a request of `token_cost` tokens go, and after how long?
    /// It may wait at most `max_wait`. `Unavailable`: decide locally.
    pub async fn admit(&self, token_cost: u64, max_wait: Duration) -> Result<Verdict, Unavailable> {
        let mut invocation = self.store.admission.prepare_invoke();
        let k = &self.keys;
        invocation
            .key(&k.circuit_open)
            .key(&k.circuit_half_open)
            .key(&k.circuit_probe)
            .key(&k.pause)
            .key(&k.requests)
            .key(&k.tokens);
        let open_for = self.open_for.unwrap_or_default();
        invocation
            .arg(u8::from(self.open_for.is_some()))
            .arg(
                u64::try_from(open_for.as_millis())
                    .unwrap_or(u64::MAX)
                    .max(1),
            )
            .arg(u64::try_from(max_wait.as_micros()).unwrap_or(u64::MAX));
        for (shape, cost) in [(self.requests, 1), (self.tokens, token_cost.max(1))] {
            match shape {
                Some(s) => invocation.arg(s.interval_us).arg(s.burst_us).arg(cost),
                None => invocation.arg(0).arg(0).arg(0),
            };
        }
        let reply: Vec<i64> = self
            .store
            .call(async |c| invocation.invoke_async(c).await)
            .await?;
        let Some(verdict) = Verdict::from_reply(&reply) else {
            tracing::warn!(
                ?reply,
                "unexpected answer from the admission script; deciding locally"
            );
            return Err(Unavailable);
        };
        let seen = match verdict {
            Verdict::Admitted { probe: true, .. } => {
                self.holds_probe.store(true, Ordering::Relaxed);
                CircuitState::HalfOpen
            }
            Verdict::Admitted { .. } | Verdict::RateLimited { .. } => CircuitState::Closed,
            Verdict::CircuitOpen { .. } => CircuitState::Open,
        };
        self.seen.store(seen.gauge() as u8, Ordering::Relaxed);
        Ok(verdict)
    }

    /// The circuit as the fleet has it, when Redis is up.
    pub fn circuit_state(&self) -> Option<CircuitState> {
        if self.open_for.is_none() || !self.is_up() {
            return None;
        }
        Some(match self.seen.load(Ordering::Relaxed) {
            0 => CircuitState::Closed,
            1 => CircuitState::HalfOpen,
            _ => CircuitState::Open,
        })
    }

    /// An attempt's outcome, with the local breaker's state before and after counting
    /// it: the probe's result, or this replica's breaker opening, goes to the fleet.
    pub fn learn(&self, outcome: Outcome, before: CircuitState, after: CircuitState) {
        let Some(open_for) = self.open_for else {
            return;
        };
        if self.holds_probe.swap(false, Ordering::Relaxed) {
            match outcome {
                Outcome::Retry { .. } => self.publish_open(open_for),
                Outcome::Success => self.publish_closed(),
                Outcome::Fatal { reason } if reason.is_upstream_answer() => self.publish_closed(),
                // Says nothing about the upstream: the probe's claim expires.
                Outcome::Fatal { .. } => {}
            }
        } else if after == CircuitState::Open && before != CircuitState::Open {
            self.publish_open(open_for);
        }
    }

    fn publish_open(&self, open_for: Duration) {
        let k = &self.keys;
        let ms = u64::try_from(open_for.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut writes = redis::pipe();
        writes
            .cmd("SET")
            .arg(&k.circuit_open)
            .arg(1)
            .arg("PX")
            .arg(ms)
            .ignore()
            .cmd("SET")
            .arg(&k.circuit_half_open)
            .arg(1)
            .arg("PX")
            .arg(HALF_OPEN_FOR.as_millis() as u64 + ms)
            .ignore()
            .cmd("DEL")
            .arg(&k.circuit_probe)
            .ignore();
        self.seen
            .store(CircuitState::Open.gauge() as u8, Ordering::Relaxed);
        self.store.publish(writes);
    }

    fn publish_closed(&self) {
        let k = &self.keys;
        let mut writes = redis::pipe();
        writes
            .cmd("DEL")
            .arg(&k.circuit_open)
            .arg(&k.circuit_half_open)
            .arg(&k.circuit_probe)
            .ignore();
        self.seen
            .store(CircuitState::Closed.gauge() as u8, Ordering::Relaxed);
        self.store.publish(writes);
    }

    /// The upstream asked for a pause of `pause`: every replica waits it out.
    pub fn publish_pause(&self, pause: Duration) {
        let ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return;
        }
        let mut writes = redis::pipe();
        writes
            .cmd("SET")
            .arg(&self.keys.pause)
            .arg(1)
            .arg("PX")
            .arg(ms)
            .ignore();
        self.store.publish(writes);
    }
}
