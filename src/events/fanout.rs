//! Several observers as one: each event goes to every one of them, in order.

use std::sync::Arc;

use super::{AttemptReport, Observer, RequestEvent};
use crate::limits::CircuitState;
use crate::limits::pacing::PaceView;

/// Several observers in turn (failure log, metrics, …).
pub struct Observers(pub Vec<Arc<dyn Observer>>);

impl Observer for Observers {
    fn attempt(&self, event: &AttemptReport) {
        for o in &self.0 {
            o.attempt(event);
        }
    }

    fn request_started(&self, upstream: &str) {
        for o in &self.0 {
            o.request_started(upstream);
        }
    }

    fn request_abandoned(&self, upstream: &str) {
        for o in &self.0 {
            o.request_abandoned(upstream);
        }
    }

    fn circuit(&self, upstream: &str, state: CircuitState) {
        for o in &self.0 {
            o.circuit(upstream, state);
        }
    }

    fn pacing(&self, upstream: &str, view: PaceView) {
        for o in &self.0 {
            o.pacing(upstream, view);
        }
    }

    fn request(&self, event: &RequestEvent) {
        for o in &self.0 {
            o.request(event);
        }
    }

    fn websocket_session(&self, upstream: &str, open: bool) {
        for o in &self.0 {
            o.websocket_session(upstream, open);
        }
    }

    fn request_left(&self, event: &RequestEvent) {
        for o in &self.0 {
            o.request_left(event);
        }
    }

    fn replay_join(&self, upstream: &str) {
        for o in &self.0 {
            o.replay_join(upstream);
        }
    }
}
