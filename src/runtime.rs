//! Everything a request needs that comes from the config: swapped as a whole on SIGHUP,
//! so a request sees one consistent config from start to end.

use std::sync::Arc;

use crate::config::{Config, ConfigError, RetrySettings, Upstream};
use crate::fleet::{Health, Store};
use crate::limits::UpstreamLimits;
use crate::names::NameMap;
use crate::proxy::{BufferBudget, UpstreamClient, client};
use crate::replay::Replay;
use crate::retry::RetryBudget;
use crate::routing::Router;
use crate::tasks::Tasks;

pub struct Runtime {
    pub config: Arc<Config>,
    /// Routes to the upstream's `Hop` (one of `hops`).
    router: Router<Arc<Hop>>,
    pub client: UpstreamClient,
    /// Memory for request bodies kept for replay, shared by every request; the same
    /// budget across reloads (bodies kept under the old config still count).
    pub buffer_budget: Arc<BufferBudget>,
    /// WebSocket sessions, drained within `shutdown_grace`; one set across reloads.
    pub sessions: Arc<Tasks>,
    /// Requests run apart from their client connection (replay's `finish_abandoned`),
    /// drained within `shutdown_grace`; one set across reloads.
    pub detached: Arc<Tasks>,
    /// `[replay]`: its settings and store; one store across reloads (`[replay]`
    /// changes take effect at restart).
    pub replay: Option<Arc<Replay>>,
    /// With `[redis]`: the fleet's store, one for the server's life (a reload keeps it).
    pub fleet: Option<Arc<Store>>,
    hops: NameMap<Arc<Hop>>,
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
    /// The fallbacks to hand a request to, in order; one that could only repeat an
    /// earlier (host, model) pair is left out.
    fallbacks: Vec<Fallback>,
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
        Runtime::build(config, previous, None)
    }

    /// The server's first runtime: with `[redis]`, it also starts the fleet's store
    /// (connecting in the background), which reports to `health`.
    pub fn first(config: Config, health: Arc<dyn Health>) -> Result<Runtime, ConfigError> {
        Runtime::build(config, None, Some(health))
    }

    fn build(
        config: Config,
        previous: Option<&Runtime>,
        health: Option<Arc<dyn Health>>,
    ) -> Result<Runtime, ConfigError> {
        // Connection tasks stay owned by one set across reloads (see `tasks`).
        let tasks = previous.map_or_else(Arc::default, |p| p.client.tasks().clone());
        let fleet = match (previous, &config.redis, health) {
            (Some(p), _, _) => p.fleet.clone(),
            (None, Some(redis), Some(health)) => Some(Store::start(redis, health, tasks.clone())),
            (None, _, _) => None,
        };
        let client = client::build(&config, tasks)?;
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
                let old = previous.and_then(|p| p.hop(&u.name));
                let hop = Hop::new(u, &config.upstreams, old, fleet.as_ref());
                (hop.name.clone(), Arc::new(hop))
            })
            .collect::<NameMap<_>>();
        let router = Router::new(&config.upstreams, |u| hops.get(u.name.as_str()).cloned());
        let replay = match previous {
            Some(p) => p.replay.clone(),
            None => config
                .replay
                .as_ref()
                .map(|s| Arc::new(Replay::open(s, fleet.as_ref()))),
        };
        Ok(Runtime {
            config: Arc::new(config),
            router,
            client,
            buffer_budget,
            sessions: previous.map_or_else(Arc::default, |p| p.sessions.clone()),
            detached: previous.map_or_else(Arc::default, |p| p.detached.clone()),
            replay,
            fleet,
            hops,
        })
    }

    /// The upstream whose `path_prefix` serves `path` (longest wins).
    pub fn route(&self, path: &str) -> Option<&Hop> {
        self.router.route(path).map(|hop| &**hop)
    }

    /// An upstream by name, with its shared state.
    pub fn hop(&self, name: &str) -> Option<&Hop> {
        self.hops.get(name).map(|hop| &**hop)
    }

    /// A request's chain: `primary`, then its own fallbacks in order (never followed
    /// further), never a (host, model) pair twice. `model` (the request's) is asked only
    /// when a fallback shares a host with an earlier hop, and at most once.
    pub fn chain<'r>(
        &'r self,
        primary: &'r Hop,
        model: impl FnOnce() -> Option<&'r str> + 'r,
    ) -> impl Iterator<Item = &'r Hop> + 'r {
        let mut model = LazyModel::Unread(Some(model));
        let rest = primary.fallbacks.iter().enumerate();
        let rest = rest.filter_map(move |(i, fallback)| {
            let hop = self.hop(&fallback.name)?;
            if fallback.shares_host {
                let model = model.get();
                let earlier = primary.fallbacks[..i].iter().map(|f| self.hop(&f.name));
                let mut earlier = std::iter::once(Some(primary)).chain(earlier).flatten();
                if earlier.any(|e| e.same_pair(hop, model)) {
                    tracing::debug!(fallback = %hop.name, "skipped: same host and model as an earlier hop");
                    return None;
                }
            }
            Some(hop)
        });
        std::iter::once(primary).chain(rest)
    }
}

/// A fallback as its primary names it.
struct Fallback {
    name: Arc<str>,
    /// An earlier hop of the chain has the same host: the request's model decides
    /// whether this one repeats a (host, model) pair.
    shares_host: bool,
}

/// The request's model, read on first use.
enum LazyModel<'r, F> {
    Unread(Option<F>),
    Read(Option<&'r str>),
}

impl<'r, F: FnOnce() -> Option<&'r str>> LazyModel<'r, F> {
    fn get(&mut self) -> Option<&'r str> {
        if let LazyModel::Unread(read) = self {
            *self = LazyModel::Read(read.take().and_then(|f| f()));
        }
        match self {
            LazyModel::Read(model) => *model,
            LazyModel::Unread(_) => None,
        }
    }
}

impl Hop {
    fn new(u: &Upstream, all: &[Upstream], old: Option<&Hop>, fleet: Option<&Arc<Store>>) -> Hop {
        let budget_key = budget_key(&u.retry);
        let budget = old.filter(|o| o.budget_key == budget_key).map_or_else(
            || Arc::new(RetryBudget::new(&u.retry)),
            |o| o.budget.clone(),
        );
        let limits_key = limits_key(u);
        let limits = old.filter(|o| o.limits_key == limits_key).map_or_else(
            || Arc::new(UpstreamLimits::new(u, fleet)),
            |o| o.limits.clone(),
        );
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

    /// The model this upstream is sent for a request of `model` (its `models` map).
    pub fn model_for<'m>(&'m self, model: Option<&'m str>) -> Option<&'m str> {
        model.map(|m| self.upstream.models.get(m).map_or(m, String::as_str))
    }

    /// Same host (and account), and the same model sent for a request of `model`.
    fn same_pair(&self, other: &Hop, model: Option<&str>) -> bool {
        same_account(&self.upstream, &other.upstream)
            && self.model_for(model) == other.model_for(model)
    }
}

/// The same host, called with the same key. A host with another key (`api_key_env`) is
/// another account, with its own quota: another org's key is a fallback worth trying,
/// so the (host, model) rule counts it as another host.
fn same_account(a: &Upstream, b: &Upstream) -> bool {
    a.base_url.authority == b.base_url.authority
        && a.api_key.as_ref().map(|k| &k.env) == b.api_key.as_ref().map(|k| &k.env)
}

/// `u`'s fallbacks that exist, in order. One on a host (and account) already in the
/// chain stays only if its model map differs from that hop's (else it could only
/// repeat a pair).
fn fallbacks(u: &Upstream, all: &[Upstream]) -> Vec<Fallback> {
    let mut chain = vec![u];
    let mut out = Vec::new();
    for name in &u.fallbacks {
        let Some(next) = all.iter().find(|o| &o.name == name) else {
            continue;
        };
        let same_host = chain.iter().filter(|c| same_account(c, next));
        let mut same_host = same_host.peekable();
        let shares_host = same_host.peek().is_some();
        if shares_host && same_host.any(|c| c.models == next.models) {
            continue;
        }
        chain.push(next);
        out.push(Fallback {
            name: next.name.as_str().into(),
            shares_host,
        });
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
        let names: Vec<&str> = runtime.chain(primary, || None).map(|h| &*h.name).collect();
        assert_eq!(
            names,
            ["us", "eu", "asia"],
            "the chain is the primary's own list"
        );
        let eu = runtime.hop("eu").expect("eu");
        let names: Vec<&str> = runtime.chain(eu, || None).map(|h| &*h.name).collect();
        assert_eq!(names, ["eu", "asia"]);
    }

    #[test]
    fn a_chain_may_reuse_a_host_with_another_model_never_a_host_and_model_twice() {
        let text = r#"
            [[upstream]]
            name = "4o"
            base_url = "https://api.example"
            fallbacks = ["mini", "mini-again", "same-org", "other-org"]
            [[upstream]]
            name = "mini"
            base_url = "https://api.example"
            fallback_only = true
            [upstream.models]
            "gpt-4o" = "gpt-4o-mini"
            [[upstream]]
            name = "mini-again"
            base_url = "https://api.example"
            fallback_only = true
            [upstream.models]
            "gpt-4o" = "gpt-4o-mini"
            "o1" = "o1-mini"
            [[upstream]]
            name = "same-org"
            base_url = "https://api.example"
            fallback_only = true
            [[upstream]]
            name = "other-org"
            base_url = "https://api.example"
            fallback_only = true
            api_key_env = "ORG2_KEY"
        "#;
        let config = Config::from_toml(text, &|_| Some("sk-org2".into())).expect("valid");
        let runtime = Runtime::new(config, None).expect("runtime");
        let primary = runtime.route("/v1/chat/completions").expect("routed");
        let chain = |model: Option<&'static str>| -> Vec<String> {
            let names = runtime.chain(primary, move || model);
            names.map(|h| h.name.to_string()).collect()
        };
        assert_eq!(
            chain(Some("gpt-4o")),
            ["4o", "mini", "other-org"],
            "gpt-4o-mini twice and gpt-4o twice with one key on one host are repeats"
        );
        assert_eq!(chain(Some("o1")), ["4o", "mini-again", "other-org"]);
        assert_eq!(chain(Some("other")), ["4o", "other-org"]);
        let asked = std::cell::Cell::new(0);
        let lone = runtime.hop("mini").expect("mini");
        assert_eq!(
            runtime
                .chain(lone, || {
                    asked.set(asked.get() + 1);
                    None
                })
                .count(),
            1
        );
        assert_eq!(asked.get(), 0, "no shared host, no body read");
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
        let via_chain = runtime.chain(a, || None).nth(1).expect("b in the chain");
        let direct = runtime.route("/b/x").expect("b");
        assert!(Arc::ptr_eq(&via_chain.budget, &direct.budget));
        assert!(Arc::ptr_eq(&via_chain.limits, &direct.limits));
    }
}
