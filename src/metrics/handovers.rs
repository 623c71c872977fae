//! How many requests an upstream handed over to a fallback, and to which one: the
//! `fallbacks` / `fallbacks_to` of `/stats` and the "Fallbacks" table of `/status`.
//! Keyed by configured upstream names only, so it is bounded by the config.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

#[derive(Debug, Default)]
pub(super) struct Handovers(BTreeMap<Arc<str>, u64>);

impl Handovers {
    /// One more request handed to `to` (a configured name).
    pub fn count(&mut self, to: Arc<str>) {
        *self.0.entry(to).or_default() += 1;
    }

    /// Forgets targets that are no longer configured (after a reload).
    pub fn retain(&mut self, configured: impl Fn(&str) -> bool) {
        self.0.retain(|to, _| configured(to));
    }

    pub fn view(&self) -> HandoverView {
        HandoverView {
            fallbacks: self.0.values().sum(),
            fallbacks_to: self.0.iter().map(|(to, n)| (to.to_string(), *n)).collect(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HandoverView {
    /// Requests this upstream handed over to a fallback ...
    pub fallbacks: u64,
    /// ... and to which one, by name.
    pub fallbacks_to: BTreeMap<String, u64>,
}

#[cfg(test)]
mod tests {
    use super::super::stats::Stats;

    #[test]
    fn fallbacks_are_counted_per_upstream_and_target_among_configured_names_only() {
        let stats = Stats::default();
        stats.set_upstreams(["a", "b", "c"]);
        stats.fallback("a", "b");
        stats.fallback("a", "b");
        stats.fallback("a", "c");
        stats.fallback("a", "not-configured");
        stats.fallback("unknown", "b");
        let snap = stats.snapshot();
        let a = &snap.upstreams[0].handovers;
        assert_eq!(a.fallbacks, 3);
        assert_eq!(a.fallbacks_to.get("b"), Some(&2));
        assert_eq!(a.fallbacks_to.get("c"), Some(&1));
        assert_eq!(a.fallbacks_to.len(), 2);
        assert_eq!(snap.upstreams[1].handovers.fallbacks, 0);

        stats.set_upstreams(["a", "b"]);
        let a = &stats.snapshot().upstreams[0].handovers;
        assert_eq!(
            (a.fallbacks, a.fallbacks_to.len()),
            (2, 1),
            "c is gone after a reload"
        );
    }
}
