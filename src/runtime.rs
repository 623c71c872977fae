//! Everything a request needs that comes from the config: swapped as a whole on SIGHUP,
//! so a request sees one consistent config from start to end.

use std::sync::Arc;

use crate::config::{Config, ConfigError, RetrySettings, Upstream};
use crate::limits::UpstreamLimits;
use crate::names::NameMap;
use crate::proxy::{BufferBudget, UpstreamClient, client};
use crate::retry::RetryBudget;
use crate::routing::Router;
use crate::tasks::Tasks;

pub struct Runtime {
    pub config: Arc<Config>,
    pub router: Router,
    pub client: UpstreamClient,
    /// Memory for request bodies kept for replay, shared by every request; the same
    /// budget across reloads (bodies kept under the old config still count).
    pub buffer_budget: Arc<BufferBudget>,
    /// WebSocket sessions, drained within `shutdown_grace`; one set across reloads.
    pub sessions: Arc<Tasks>,
    hops: NameMap<Hop>,
}

/// One upstream as the request path uses it: its settings, and the state every request
/// to it shares (retry budget, rate limits, pacing, circuit breaker). A request's chain
/// is made of these, fallbacks included, so a fallback always uses the same shared
/// state as the upstream's own traffic.
pub struct Hop {
    pub upstream: Arc<Upstream>,
    /// The upstream's name, for events and labels without a copy per request.
    pub name: Arc<str>,
    /// The name as the `x-backstop-upstream` response header, made once.
    pub name_header: Option<http::HeaderValue>,
    /// Kept across a reload when the budget settings are unchanged.
    pub budget: Arc<RetryBudget>,
    /// Kept across a reload when the limit settings are unchanged.
    pub limits: Arc<UpstreamLimits>,
    /// The fallbacks to hand a request to, in order, never the primary's host twice.
    fallbacks: Vec<Arc<str>>,
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
    /// files. `previous` donates its budgets and limits, so a reload does not refill them.
    pub fn new(config: Config, previous: Option<&Runtime>) -> Result<Runtime, ConfigError> {
        // Connection tasks stay owned by one set across reloads (see `tasks`).
        let tasks = previous.map_or_else(Arc::default, |p| p.client.tasks().clone());
        let client = client::build(&config, tasks)?;
        let router = Router::new(&config.upstreams);
        let buffer_budget = match previous {
            Some(p) => {
                p.buffer_budget.set_limit(config.retry_buffer_total_bytes);
                p.buffer_budget.clone()
            }
            None => BufferBudget::new(config.retry_buffer_total_bytes),
        };
        let hops = config
            .upstreams
            .iter()
            .map(|u| {
                let hop = Hop::new(u, &config.upstreams, previous.and_then(|p| p.hop(&u.name)));
                (hop.name.clone(), hop)
            })
            .collect();
        Ok(Runtime {
            config: Arc::new(config),
            router,
            client,
            buffer_budget,
            sessions: previous.map_or_else(Arc::default, |p| p.sessions.clone()),
            hops,
        })
    }

    /// The upstream whose `path_prefix` serves `path` (longest wins).
    pub fn route(&self, path: &str) -> Option<&Hop> {
        self.router.route(path).and_then(|u| self.hop(&u.name))
    }

    /// An upstream by name, with its shared state.
    pub fn hop(&self, name: &str) -> Option<&Hop> {
        self.hops.get(name)
    }

    /// A request's chain: `primary`, then its own fallbacks in order (never followed
    /// further).
    pub fn chain<'r>(&'r self, primary: &'r Hop) -> impl Iterator<Item = &'r Hop> + 'r {
        std::iter::once(primary).chain(primary.fallbacks.iter().filter_map(|n| self.hop(n)))
    }
}

impl Hop {
    fn new(u: &Upstream, all: &[Upstream], old: Option<&Hop>) -> Hop {
        let budget_key = budget_key(&u.retry);
        let budget = old.filter(|o| o.budget_key == budget_key).map_or_else(
            || Arc::new(RetryBudget::new(&u.retry)),
            |o| o.budget.clone(),
        );
        let limits_key = limits_key(u);
        let limits = old
            .filter(|o| o.limits_key == limits_key)
            .map_or_else(|| Arc::new(UpstreamLimits::new(u)), |o| o.limits.clone());
        Hop {
            upstream: Arc::new(u.clone()),
            name: u.name.as_str().into(),
            name_header: http::HeaderValue::from_str(&u.name).ok(),
            budget,
            limits,
            fallbacks: fallbacks(u, all),
            budget_key,
            limits_key,
        }
    }

    /// Whether there is a fallback after this hop's place in its own chain.
    pub fn has_fallbacks(&self) -> bool {
        !self.fallbacks.is_empty()
    }
}

/// `u`'s fallbacks that exist, in order, never a host already in the chain.
fn fallbacks(u: &Upstream, all: &[Upstream]) -> Vec<Arc<str>> {
    let mut hosts = vec![&u.base_url.authority];
    let mut out = Vec::new();
    for name in &u.fallbacks {
        if let Some(next) = all.iter().find(|o| &o.name == name)
            && !hosts.contains(&&next.base_url.authority)
        {
            hosts.push(&next.base_url.authority);
            out.push(next.name.as_str().into());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_is_the_primary_then_its_fallbacks_never_the_same_host_twice() {
        let text = r#"
            [[upstream]]
            name = "us"
            base_url = "https://us.example"
            fallbacks = ["us-again", "eu", "asia"]
            [[upstream]]
            name = "us-again"
            base_url = "https://us.example"
            path_prefix = "/again/"
            [[upstream]]
            name = "eu"
            base_url = "https://eu.example"
            path_prefix = "/eu/"
            fallbacks = ["asia"]
            [[upstream]]
            name = "asia"
            base_url = "https://asia.example"
            path_prefix = "/asia/"
        "#;
        let config = Config::from_toml(text, &|_| None).expect("valid");
        let runtime = Runtime::new(config, None).expect("runtime");
        let primary = runtime.route("/v1/models").expect("routed");
        let names: Vec<&str> = runtime.chain(primary).map(|h| &*h.name).collect();
        assert_eq!(
            names,
            ["us", "eu", "asia"],
            "the chain is the primary's own list"
        );
        let eu = runtime.hop("eu").expect("eu");
        let names: Vec<&str> = runtime.chain(eu).map(|h| &*h.name).collect();
        assert_eq!(names, ["eu", "asia"]);
    }

    #[test]
    fn a_fallback_shares_the_state_of_the_upstreams_own_traffic() {
        let text = r#"
            [[upstream]]
            name = "a"
            base_url = "https://a.example"
            fallbacks = ["b"]
            [[upstream]]
            name = "b"
            base_url = "https://b.example"
            path_prefix = "/b/"
        "#;
        let config = Config::from_toml(text, &|_| None).expect("valid");
        let runtime = Runtime::new(config, None).expect("runtime");
        let a = runtime.route("/v1/x").expect("a");
        let via_chain = runtime.chain(a).nth(1).expect("b in the chain");
        let direct = runtime.route("/b/x").expect("b");
        assert!(Arc::ptr_eq(&via_chain.budget, &direct.budget));
        assert!(Arc::ptr_eq(&via_chain.limits, &direct.limits));
    }
}
