//! In-flight markers of one process: which scopes a request is working on, and the
//! channel its waiters listen on. The local store's `claim`.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::watch;

use super::kept::Kept;
use super::scope::ScopeKey;
use super::store::{Claim, InFlight, Running};
use crate::request_fingerprint::Sha256Hex;

/// `None` while running; `Some(result)` once it ended.
type Ended = Option<Option<Arc<Kept>>>;

#[derive(Default)]
pub struct Marks {
    held: Mutex<HashMap<ScopeKey, Mark>>,
    next: std::sync::atomic::AtomicU64,
}

struct Mark {
    id: u64,
    body: Sha256Hex,
    ended: watch::Sender<Ended>,
}

impl Marks {
    pub fn claim(self: &Arc<Self>, scope: ScopeKey, body: Sha256Hex) -> Claim {
        let mut held = self.held.lock();
        if let Some(mark) = held.get(&scope) {
            let mut ended = mark.ended.subscribe();
            return Claim::Running(Running {
                body: mark.body,
                result: Box::pin(async move {
                    match ended.wait_for(Option::is_some).await {
                        Ok(result) => result.clone().flatten(),
                        Err(_) => None,
                    }
                }),
            });
        }
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (ended, _) = watch::channel(None);
        held.insert(scope, Mark { id, body, ended });
        let marks = self.clone();
        Claim::First(InFlight::new(move |result| marks.end(scope, id, result)))
    }

    fn end(&self, scope: ScopeKey, id: u64, result: Option<Arc<Kept>>) {
        let mut held = self.held.lock();
        if held.get(&scope).is_some_and(|m| m.id == id)
            && let Some(mark) = held.remove(&scope)
        {
            mark.ended.send_replace(Some(result));
        }
    }

    /// Scopes held now (tests, diagnostics).
    pub fn len(&self) -> usize {
        self.held.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::kept::sample;

    fn body() -> Sha256Hex {
        Sha256Hex([3; 32])
    }

    #[tokio::test]
    async fn a_waiter_gets_the_first_ones_result_and_the_scope_is_free_again() {
        let marks = Arc::new(Marks::default());
        let scope = ScopeKey([1; 32]);
        let Claim::First(first) = marks.claim(scope, body()) else {
            panic!("nobody held it");
        };
        let Claim::Running(running) = marks.claim(scope, body()) else {
            panic!("held");
        };
        assert_eq!(running.body, body());
        let kept = Arc::new(sample("r1", b"{}", u64::MAX));
        first.finish(Some(kept.clone()));
        assert_eq!(running.result.await, Some(kept));
        assert!(marks.is_empty());
        assert!(matches!(marks.claim(scope, body()), Claim::First(_)));
    }

    #[tokio::test]
    async fn a_first_one_dropped_unfinished_releases_its_waiters_with_nothing() {
        let marks = Arc::new(Marks::default());
        let scope = ScopeKey([2; 32]);
        let first = marks.claim(scope, body());
        let Claim::Running(running) = marks.claim(scope, body()) else {
            panic!("held");
        };
        drop(first);
        assert_eq!(running.result.await, None);
        assert!(marks.is_empty());
    }
}
