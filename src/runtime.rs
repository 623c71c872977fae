//! Everything a request needs that comes from the config: swapped as a whole on SIGHUP,
//! so a request sees one consistent config from start to end.

use std::sync::Arc;

use crate::config::{Config, ConfigError, RetrySettings, Upstream};
use crate::limits::UpstreamLimits;
use crate::names::NameMap;
use crate::proxy::{BufferBudget, UpstreamClient, client};
use crate::retry::RetryBudget;
use crate::routing::Router;

pub struct Runtime {
    pub config: Arc<Config>,
    pub router: Router,
    pub client: UpstreamClient,
    /// Memory for request bodies kept for replay, shared by every request; the same
    /// budget across reloads (bodies kept under the old config still count).
    pub buffer_budget: Arc<BufferBudget>,
    upstreams: NameMap<Shared>,
}

/// What requests to one upstream share, found with one lookup by name.
pub struct Shared {
    /// The upstream's name, for events and labels without a copy per request.
    pub name: Arc<str>,
    /// Kept across a reload when the budget settings are unchanged.
    pub budget: Arc<RetryBudget>,
    /// Kept across a reload when the limit settings are unchanged.
    pub limits: Arc<UpstreamLimits>,
    budget_key: BudgetKey,
    limits_key: LimitsKey,
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
        let buffer_budget = match previous {
            Some(p) => {
                p.buffer_budget.set_limit(config.retry_buffer_total_bytes);
                p.buffer_budget.clone()
            }
            None => BufferBudget::new(config.retry_buffer_total_bytes),
        };
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| {
                let name: Arc<str> = u.name.as_str().into();
                let old = previous.and_then(|p| p.upstreams.get(&name));
                let budget_key = budget_key(&u.retry);
                let budget = old.filter(|o| o.budget_key == budget_key).map_or_else(
                    || Arc::new(RetryBudget::new(&u.retry)),
                    |o| o.budget.clone(),
                );
                let limits_key = limits_key(u);
                let limits = old
                    .filter(|o| o.limits_key == limits_key)
                    .map_or_else(|| Arc::new(UpstreamLimits::new(u)), |o| o.limits.clone());
                let shared = Shared {
                    name: name.clone(),
                    budget,
                    limits,
                    budget_key,
                    limits_key,
                };
                (name, shared)
            })
            .collect();
        Ok(Runtime {
            config: Arc::new(config),
            router,
            client,
            buffer_budget,
            upstreams,
        })
    }

    /// The name, retry budget, rate limits, pacing and circuit breaker of an upstream.
    pub fn upstream(&self, name: &str) -> Option<&Shared> {
        self.upstreams.get(name)
    }
}
