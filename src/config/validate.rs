//! Raw config → trusted config. Every check names the key path it is about.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::time::Duration;

use http::HeaderValue;
use http::uri::{Scheme, Uri};

use super::ConfigError;
use super::raw::{RawConfig, RawKind, RawMetrics, RawRetry, RawRetryOverride, RawUpstream};
use super::typed::{
    ApiKey, CircuitBreaker, Config, FailureLogSettings, MetricsSettings, RateLimit, RetrySettings,
    TlsSettings, Upstream, UpstreamKind, UpstreamUrl,
};

/// Reads an environment variable; injected so tests need not touch the process env.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

pub fn validate(raw: RawConfig, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
    if raw.listen == raw.admin_listen && raw.listen.port() != 0 {
        return Err(invalid(
            "admin_listen",
            format!("must differ from listen ({})", raw.listen),
        ));
    }
    if raw.max_body_bytes == 0 {
        return Err(invalid("max_body_bytes", "must be greater than 0"));
    }
    if raw.retry_buffer_bytes > raw.max_body_bytes {
        return Err(invalid(
            "retry_buffer_bytes",
            format!(
                "must be at most max_body_bytes ({}), got {}",
                raw.max_body_bytes, raw.retry_buffer_bytes
            ),
        ));
    }
    non_zero("shutdown_grace", raw.shutdown_grace)?;
    non_zero("connect_timeout", raw.connect_timeout)?;
    non_zero("pool_idle_timeout", raw.pool_idle_timeout)?;
    let retry = retry_settings("retry", &raw.retry)?;

    let retention_days = NonZeroU32::new(raw.failure_log.retention_days)
        .ok_or_else(|| invalid("failure_log.retention_days", "must be at least 1"))?;
    if raw.failure_log.dir.as_os_str().is_empty() {
        return Err(invalid("failure_log.dir", "must not be empty"));
    }
    for (i, file) in raw.tls.extra_ca_files.iter().enumerate() {
        if !file.is_file() {
            return Err(invalid(
                format!("tls.extra_ca_files[{i}]"),
                format!("{} is not a readable file", file.display()),
            ));
        }
    }
    let metrics = metrics(&raw.metrics)?;

    if raw.upstreams.is_empty() {
        return Err(invalid(
            "upstream",
            "at least one [[upstream]] table is required",
        ));
    }
    let mut upstreams = Vec::with_capacity(raw.upstreams.len());
    for (i, up) in raw.upstreams.iter().enumerate() {
        upstreams.push(upstream(i, up, &raw.retry, env)?);
    }
    check_upstream_set(&upstreams)?;

    Ok(Config {
        listen: raw.listen,
        admin_listen: raw.admin_listen,
        shutdown_grace: raw.shutdown_grace,
        max_body_bytes: raw.max_body_bytes,
        retry_buffer_bytes: raw.retry_buffer_bytes,
        connect_timeout: raw.connect_timeout,
        pool_idle_timeout: raw.pool_idle_timeout,
        retry,
        failure_log: FailureLogSettings {
            dir: raw.failure_log.dir.clone(),
            retention_days,
        },
        tls: TlsSettings {
            native_roots: raw.tls.native_roots,
            extra_ca_files: raw.tls.extra_ca_files.clone(),
        },
        metrics,
        upstreams,
        raw,
    })
}

fn metrics(raw: &RawMetrics) -> Result<MetricsSettings, ConfigError> {
    if raw.models.len() > MetricsSettings::MAX_MODELS {
        return Err(invalid(
            "metrics.models",
            format!(
                "at most {} models (each is a label value), got {}",
                MetricsSettings::MAX_MODELS,
                raw.models.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    for (i, model) in raw.models.iter().enumerate() {
        let key = format!("metrics.models[{i}]");
        if model.is_empty() || model.chars().count() > 128 || model.chars().any(char::is_control) {
            return Err(invalid(
                key,
                format!("{model:?} must be 1-128 printable characters"),
            ));
        }
        if !seen.insert(model.as_str()) {
            return Err(invalid(key, format!("{model:?} is listed twice")));
        }
    }
    Ok(MetricsSettings {
        models: raw.models.clone(),
    })
}

fn non_zero(key: &str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        return Err(invalid(key, "must be greater than 0"));
    }
    Ok(())
}

fn retry_settings(prefix: &str, r: &RawRetry) -> Result<RetrySettings, ConfigError> {
    let key = |k: &str| format!("{prefix}.{k}");
    for (name, value) in [
        ("base_delay", r.base_delay),
        ("throttle_base_delay", r.throttle_base_delay),
        ("max_delay", r.max_delay),
        ("attempt_timeout", r.attempt_timeout),
        ("first_event_timeout", r.first_event_timeout),
        ("idle_timeout", r.idle_timeout),
        ("deadline", r.deadline),
    ] {
        non_zero(&key(name), value)?;
    }
    for (name, base) in [
        ("base_delay", r.base_delay),
        ("throttle_base_delay", r.throttle_base_delay),
    ] {
        if base > r.max_delay {
            return Err(invalid(
                key(name),
                format!(
                    "must be at most max_delay ({}), got {}",
                    humantime::format_duration(r.max_delay),
                    humantime::format_duration(base)
                ),
            ));
        }
    }
    if r.max_retries > 20 {
        return Err(invalid(
            key("max_retries"),
            format!("must be at most 20, got {}", r.max_retries),
        ));
    }
    // tower's TpsBudget takes a percentage in 0..=1000, i.e. a ratio in 0..=10.
    if !r.budget_ratio.is_finite() || !(0.0..=10.0).contains(&r.budget_ratio) {
        return Err(invalid(
            key("budget_ratio"),
            format!("must be a number from 0 to 10, got {}", r.budget_ratio),
        ));
    }
    Ok(RetrySettings {
        max_retries: r.max_retries,
        base_delay: r.base_delay,
        throttle_base_delay: r.throttle_base_delay,
        max_delay: r.max_delay,
        max_server_delay: r.max_server_delay,
        attempt_timeout: r.attempt_timeout,
        first_event_timeout: r.first_event_timeout,
        idle_timeout: r.idle_timeout,
        deadline: r.deadline,
        retry_ambiguous: r.retry_ambiguous,
        budget_ratio: r.budget_ratio,
        budget_min_per_second: r.budget_min_per_second,
    })
}

fn merged_retry(base: &RawRetry, o: &RawRetryOverride) -> RawRetry {
    RawRetry {
        max_retries: o.max_retries.unwrap_or(base.max_retries),
        base_delay: o.base_delay.unwrap_or(base.base_delay),
        throttle_base_delay: o.throttle_base_delay.unwrap_or(base.throttle_base_delay),
        max_delay: o.max_delay.unwrap_or(base.max_delay),
        max_server_delay: o.max_server_delay.unwrap_or(base.max_server_delay),
        attempt_timeout: o.attempt_timeout.unwrap_or(base.attempt_timeout),
        first_event_timeout: o.first_event_timeout.unwrap_or(base.first_event_timeout),
        idle_timeout: o.idle_timeout.unwrap_or(base.idle_timeout),
        deadline: o.deadline.unwrap_or(base.deadline),
        retry_ambiguous: o.retry_ambiguous.unwrap_or(base.retry_ambiguous),
        budget_ratio: o.budget_ratio.unwrap_or(base.budget_ratio),
        budget_min_per_second: o
            .budget_min_per_second
            .unwrap_or(base.budget_min_per_second),
    }
}

fn upstream(
    i: usize,
    up: &RawUpstream,
    retry: &RawRetry,
    env: EnvLookup<'_>,
) -> Result<Upstream, ConfigError> {
    let key = |k: &str| format!("upstream[{i}].{k}");
    let name_ok = !up.name.is_empty()
        && up.name.len() <= 64
        && up
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !name_ok {
        return Err(invalid(
            key("name"),
            format!(
                "{:?} must be 1-64 characters of letters, digits, '-', '_' or '.'",
                up.name
            ),
        ));
    }
    let base_url = upstream_url(&up.base_url).map_err(|reason| invalid(key("base_url"), reason))?;
    if !up.path_prefix.starts_with('/') {
        return Err(invalid(
            key("path_prefix"),
            format!("must start with '/', got {:?}", up.path_prefix),
        ));
    }
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
    let circuit_breaker = match &up.circuit_breaker {
        None => None,
        Some(cb) => {
            let consecutive_failures =
                NonZeroU32::new(cb.consecutive_failures).ok_or_else(|| {
                    invalid(
                        key("circuit_breaker.consecutive_failures"),
                        "must be at least 1",
                    )
                })?;
            non_zero(&key("circuit_breaker.open_for"), cb.open_for)?;
            Some(CircuitBreaker {
                consecutive_failures,
                open_for: cb.open_for,
            })
        }
    };
    non_zero(&key("max_queue_wait"), up.max_queue_wait)?;
    for (model, deployment) in &up.deployment {
        let ok = !deployment.is_empty()
            && deployment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !ok {
            return Err(invalid(
                format!("upstream[{i}].deployment.{model}"),
                format!(
                    "{deployment:?} is not a valid deployment name (letters, digits, '-', '_', '.')"
                ),
            ));
        }
    }
    Ok(Upstream {
        name: up.name.clone(),
        kind,
        base_url,
        path_prefix: up.path_prefix.clone(),
        api_key,
        fallbacks: up.fallbacks.clone(),
        rate_limit,
        max_queue_wait: up.max_queue_wait,
        pacing: up.pacing,
        default_max_tokens: up.default_max_tokens,
        deployment: up.deployment.clone(),
        retry,
        circuit_breaker,
    })
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

fn check_upstream_set(upstreams: &[Upstream]) -> Result<(), ConfigError> {
    let mut names = HashSet::new();
    let mut prefixes = HashSet::new();
    for (i, up) in upstreams.iter().enumerate() {
        if !names.insert(up.name.as_str()) {
            return Err(invalid(
                format!("upstream[{i}].name"),
                format!("{:?} is used by an earlier upstream", up.name),
            ));
        }
        if !prefixes.insert(up.path_prefix.as_str()) {
            return Err(invalid(
                format!("upstream[{i}].path_prefix"),
                format!("{:?} is used by an earlier upstream", up.path_prefix),
            ));
        }
    }
    for (i, up) in upstreams.iter().enumerate() {
        for (j, fb) in up.fallbacks.iter().enumerate() {
            let key = format!("upstream[{i}].fallbacks[{j}]");
            if fb == &up.name {
                return Err(invalid(key, "an upstream cannot be its own fallback"));
            }
            if !names.contains(fb.as_str()) {
                return Err(invalid(key, format!("no upstream is named {fb:?}")));
            }
        }
    }
    Ok(())
}
