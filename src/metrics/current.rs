//! The label vocabulary of the moment (a reload replaces it), read on every request by
//! each worker thread through its own cache of it: a check that the cached one is still
//! current (one relaxed load) instead of `ArcSwap::load`'s debt bookkeeping, ~100
//! instructions three times a request. The cache writes nothing shared, so threads do
//! not contend for it either.

use std::cell::RefCell;
use std::sync::Arc;

use arc_swap::ArcSwap;
use arc_swap::cache::Cache;

use super::labels::Vocabulary;

type Cached = Cache<Arc<ArcSwap<Vocabulary>>, Arc<Vocabulary>>;

thread_local! {
    /// This thread's cache of the last vocabulary it read (one `Recorder` per process;
    /// another one's replaces it).
    static CACHED: RefCell<Option<Cached>> = const { RefCell::new(None) };
}

/// The vocabulary, shared by the recorder and every thread's cache.
pub(super) struct Current(Arc<ArcSwap<Vocabulary>>);

impl Current {
    pub fn new(vocabulary: Vocabulary) -> Current {
        Current(Arc::new(ArcSwap::from_pointee(vocabulary)))
    }

    pub fn store(&self, vocabulary: Vocabulary) {
        self.0.store(Arc::new(vocabulary));
    }

    /// `f` with the vocabulary of the moment, read through this thread's cache.
    pub fn with<R>(&self, f: impl Fn(&Vocabulary) -> R) -> R {
        let cached = CACHED.try_with(|cell| {
            // Re-entered (`f` reading it again) or torn down: the shared one, below.
            let mut slot = cell.try_borrow_mut().ok()?;
            let cache = match &mut *slot {
                Some(cache) if std::ptr::eq(cache.arc_swap(), &*self.0) => cache,
                other => other.insert(Cache::new(self.0.clone())),
            };
            Some(f(cache.load()))
        });
        cached.ok().flatten().unwrap_or_else(|| f(&self.0.load()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn vocabulary(names: &[&str]) -> Vocabulary {
        let mut text = String::new();
        for name in names {
            text.push_str(&format!(
                "[[upstream]]\nname=\"{name}\"\nbase_url=\"http://127.0.0.1:9\"\npath_prefix=\"/{name}/\"\n"
            ));
        }
        Vocabulary::new(&Config::from_toml(&text, &|_| None).expect("config"))
    }

    fn knows(current: &Current, name: &str) -> bool {
        current.with(|v| v.upstream(Some(name)).as_str() == name)
    }

    #[test]
    fn a_stored_vocabulary_is_what_the_next_read_sees() {
        let current = Current::new(vocabulary(&["a"]));
        assert!(knows(&current, "a") && !knows(&current, "b"));
        current.store(vocabulary(&["b"]));
        assert!(
            knows(&current, "b") && !knows(&current, "a"),
            "not the cached one"
        );
    }

    #[test]
    fn two_recorders_on_one_thread_each_read_their_own() {
        let (one, two) = (
            Current::new(vocabulary(&["a"])),
            Current::new(vocabulary(&["b"])),
        );
        for _ in 0..2 {
            assert!(knows(&one, "a") && !knows(&one, "b"));
            assert!(knows(&two, "b") && !knows(&two, "a"));
        }
    }

    #[test]
    fn a_read_inside_a_read_gets_the_shared_one() {
        let current = Current::new(vocabulary(&["a"]));
        assert!(
            current.with(|outer| outer.upstream(Some("a")).as_str() == "a" && knows(&current, "a"))
        );
    }
}
