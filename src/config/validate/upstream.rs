//! The `[[upstream]]` tables: each one on its own, then the set (unique names and
//! prefixes, fallbacks that exist: `fallback`).

use std::collections::HashSet;
use std::num::NonZeroU32;

use http::HeaderValue;
use http::uri::{Scheme, Uri};

use super::{EnvLookup, fallback, invalid, merged_retry, non_zero, retry_settings};
use crate::config::raw::{RawCircuitBreaker, RawKind, RawRetry, RawUpstream};
use crate::config::typed::{
    ApiKey, CircuitBreaker, RateLimit, Upstream, UpstreamKind, UpstreamUrl,
};
use crate::config::{ConfigError, egress};

pub(super) fn upstream(
    i: usize,
    up: &RawUpstream,
    retry: &RawRetry,
    env: EnvLookup<'_>,
) -> Result<Upstream, ConfigError> {
    let key = |k: &str| format!("upstream[{i}].{k}");
    check_name(&up.name).map_err(|reason| invalid(key("name"), reason))?;
    let base_url = upstream_url(&up.base_url).map_err(|reason| invalid(key("base_url"), reason))?;
    fallback::check_fallback_only(i, up)?;
    let path_prefix = route(up).map_err(|reason| invalid(key("path_prefix"), reason))?;
    let kind = match up.kind {
        RawKind::Openai => UpstreamKind::OpenAi,
        RawKind::Azure => UpstreamKind::Azure,
    };
    let api_key = match &up.api_key_env {
        None => None,
        Some(var) => Some(api_key(var, env).map_err(|reason| invalid(key("api_key_env"), reason))?),
    };
    let rate_limit = rate_limit(up).map_err(|(k, reason)| invalid(key(k), reason))?;
    let merged = match &up.retry {
        Some(o) => merged_retry(retry, o),
        None => retry.clone(),
    };
    let retry = retry_settings(&key("retry"), &merged)?;
    let circuit_breaker = up
        .circuit_breaker
        .as_ref()
        .map(|cb| circuit_breaker(cb, &key))
        .transpose()?;
    // `max_queue_wait = "0s"` is valid: never wait, answer 429 at once.
    let proxy = egress::resolve(up.proxy.as_deref(), &base_url, env)
        .map_err(|reason| invalid(key("proxy"), reason))?
        .map(std::sync::Arc::new);
    Ok(Upstream {
        name: up.name.clone(),
        kind,
        base_url,
        path_prefix,
        api_key,
        fallbacks: up.fallbacks.clone(),
        fallback_on: fallback::fallback_on(i, up)?,
        fallback_only: up.fallback_only,
        rate_limit,
        max_queue_wait: up.max_queue_wait,
        pacing: up.pacing,
        default_max_tokens: up.default_max_tokens,
        models: fallback::models(i, up, kind)?,
        retry,
        circuit_breaker,
        proxy,
    })
}

/// 1-64 characters of letters, digits, '-', '_' or '.': it is a metric label and a
/// Redis key part.
fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} must be 1-64 characters of letters, digits, '-', '_' or '.'"
        ))
    }
}

fn circuit_breaker(
    cb: &RawCircuitBreaker,
    key: &dyn Fn(&str) -> String,
) -> Result<CircuitBreaker, ConfigError> {
    let consecutive_failures = NonZeroU32::new(cb.consecutive_failures).ok_or_else(|| {
        invalid(
            key("circuit_breaker.consecutive_failures"),
            "must be at least 1",
        )
    })?;
    non_zero(&key("circuit_breaker.open_for"), cb.open_for)?;
    Ok(CircuitBreaker {
        consecutive_failures,
        open_for: cb.open_for,
    })
}

/// The path prefix that routes to the upstream: `/` unless written; none for a
/// `fallback_only` upstream.
fn route(up: &RawUpstream) -> Result<Option<String>, String> {
    if up.fallback_only {
        return Ok(None);
    }
    let prefix = up.path_prefix.as_deref().unwrap_or("/");
    if !prefix.starts_with('/') {
        return Err(format!("must start with '/', got {prefix:?}"));
    }
    Ok(Some(prefix.to_owned()))
}

fn upstream_url(s: &str) -> Result<UpstreamUrl, String> {
    let uri: Uri = s
        .parse()
        .map_err(|e| format!("{s:?} is not a valid URL: {e}"))?;
    let scheme = match uri.scheme() {
        Some(sc) if *sc == Scheme::HTTP || *sc == Scheme::HTTPS => sc.clone(),
        _ => return Err(format!("{s:?} must start with http:// or https://")),
    };
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("{s:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{s:?} must not carry credentials; use api_key_env"));
    }
    if uri.query().is_some() {
        return Err(format!(
            "{s:?} must not have a query string; clients send their own"
        ));
    }
    let path = uri.path().trim_end_matches('/').to_owned();
    Ok(UpstreamUrl {
        scheme,
        authority,
        path,
    })
}

fn api_key(var: &str, env: EnvLookup<'_>) -> Result<ApiKey, String> {
    if var.is_empty() {
        return Err("must name an environment variable".to_owned());
    }
    let value = env(var).ok_or_else(|| format!("environment variable {var} is not set"))?;
    if value.trim().is_empty() {
        return Err(format!("environment variable {var} is empty"));
    }
    let mut header_value = HeaderValue::from_str(value.trim()).map_err(|_| {
        format!("environment variable {var} holds characters not allowed in a header")
    })?;
    header_value.set_sensitive(true);
    Ok(ApiKey {
        env: var.to_owned(),
        header_value,
    })
}

fn rate_limit(up: &RawUpstream) -> Result<Option<RateLimit>, (&'static str, String)> {
    let nz = |k: &'static str, v: Option<u32>| match v {
        None => Ok(None),
        Some(n) => NonZeroU32::new(n)
            .map(Some)
            .ok_or((k, "must be at least 1".to_owned())),
    };
    let requests_per_minute = nz("requests_per_minute", up.requests_per_minute)?;
    let requests_burst = nz("requests_burst", up.requests_burst)?;
    let tokens_per_minute = nz("tokens_per_minute", up.tokens_per_minute)?;
    if requests_burst.is_some() && requests_per_minute.is_none() {
        return Err((
            "requests_burst",
            "needs requests_per_minute to be set".to_owned(),
        ));
    }
    if requests_per_minute.is_none() && tokens_per_minute.is_none() {
        return Ok(None);
    }
    Ok(Some(RateLimit {
        requests_per_minute,
        requests_burst,
        tokens_per_minute,
    }))
}

pub(super) fn check_upstream_set(upstreams: &[Upstream]) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    let mut prefixes = HashSet::new();
    for (i, up) in upstreams.iter().enumerate() {
        if !names.insert(up.name.as_str()) {
            return Err(invalid(
                format!("upstream[{i}].name"),
                format!("{:?} is used by an earlier upstream", up.name),
            ));
        }
        if let Some(prefix) = &up.path_prefix
            && !prefixes.insert(prefix.as_str())
        {
            return Err(invalid(
                format!("upstream[{i}].path_prefix"),
                format!("{prefix:?} is used by an earlier upstream"),
            ));
        }
    }
    fallback::check_fallbacks(upstreams)
}
