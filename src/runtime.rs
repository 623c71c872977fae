//! Everything a request needs that comes from the config: swapped as a whole on SIGHUP,
//! so a request sees one consistent config from start to end.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Config, ConfigError, RetrySettings, Upstream};
use crate::limits::UpstreamLimits;
use crate::proxy::{UpstreamClient, client};
use crate::retry::RetryBudget;
use crate::routing::Router;

pub struct Runtime {
    pub config: Arc<Config>,
    pub router: Router,
    pub client: UpstreamClient,
    /// Per upstream name; kept across a reload when the budget settings are unchanged.
    budgets: HashMap<String, (BudgetKey, Arc<RetryBudget>)>,
    /// Per upstream name; kept across a reload when the limit settings are unchanged.
    limits: HashMap<String, (LimitsKey, Arc<UpstreamLimits>)>,
}

type LimitsKey = String;

fn limits_key(u: &Upstream) -> LimitsKey {
    format!(
        "{:?}|{}|{:?}|{}",
        u.rate_limit, u.pacing, u.circuit_breaker, u.default_max_tokens
    )
}

type BudgetKey = (u64, u32);

fn budget_key(s: &RetrySettings) -> BudgetKey {
    (s.budget_ratio.to_bits(), s.budget_min_per_second)
}

impl Runtime {
    /// Builds routing, budgets and the pooled upstream client; fails on unreadable CA
    /// files. `previous` donates its budgets, so a reload does not refill them.
    pub fn new(config: Config, previous: Option<&Runtime>) -> Result<Runtime, ConfigError> {
        let client = client::build(&config)?;
        let router = Router::new(&config.upstreams);
        let budgets = config
            .upstreams
            .iter()
            .map(|u| {
                let key = budget_key(&u.retry);
                let kept = previous
                    .and_then(|p| p.budgets.get(&u.name))
                    .filter(|(old_key, _)| *old_key == key)
                    .map(|(_, b)| b.clone());
                let budget = kept.unwrap_or_else(|| Arc::new(RetryBudget::new(&u.retry)));
                (u.name.clone(), (key, budget))
            })
            .collect();
        let limits = config
            .upstreams
            .iter()
            .map(|u| {
                let key = limits_key(u);
                let kept = previous
                    .and_then(|p| p.limits.get(&u.name))
                    .filter(|(old_key, _)| *old_key == key)
                    .map(|(_, l)| l.clone());
                let limits = kept.unwrap_or_else(|| Arc::new(UpstreamLimits::new(u)));
                (u.name.clone(), (key, limits))
            })
            .collect();
        Ok(Runtime {
            config: Arc::new(config),
            router,
            client,
            budgets,
            limits,
        })
    }

    /// The rate limits, pacing and circuit breaker of the upstream with this name.
    pub fn limits(&self, upstream: &str) -> Option<Arc<UpstreamLimits>> {
        self.limits.get(upstream).map(|(_, l)| l.clone())
    }

    /// The retry budget of the upstream with this name.
    pub fn budget(&self, upstream: &str) -> Option<Arc<RetryBudget>> {
        self.budgets.get(upstream).map(|(_, b)| b.clone())
    }
}
