//! Raw config → trusted config. Every check names the key path it is about.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::time::Duration;

use super::ConfigError;
use super::raw::{RawConfig, RawJournal, RawMetrics, RawRetry, RawRetryOverride};
use super::typed::{
    Config, FailureLogSettings, JournalSettings, MetricsSettings, RedisSettings, RetrySettings,
    TlsSettings, Upstream,
};

/// Reads an environment variable; injected so tests need not touch the process env.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub(super) fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

mod fallback;
mod redis;
mod replay;
mod sizes;
mod upstream;

use upstream::{check_upstream_set, upstream};

pub fn validate(mut raw: RawConfig, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
    if raw.listen == raw.admin_listen && raw.listen.port() != 0 {
        return Err(invalid(
            "admin_listen",
            format!("must differ from listen ({})", raw.listen),
        ));
    }
    let sizes = sizes::resolve(
        raw.max_body_bytes,
        raw.retry_buffer_bytes,
        raw.retry_buffer_total_bytes,
    )?;
    // What is in effect, written back so `check-config` prints it.
    raw.max_body_bytes = Some(sizes.max_body_bytes);
    raw.retry_buffer_bytes = Some(sizes.retry_buffer_bytes);
    raw.retry_buffer_total_bytes = Some(sizes.retry_buffer_total_bytes);
    let max_connections = connection_limits(&raw)?;
    let retry = retry_settings("retry", &raw.retry)?;
    let failure_log = failure_log(&raw)?;
    let journal = raw.journal.as_ref().map(journal).transpose()?;
    let has_redis = raw.redis.is_some();
    let replay = raw
        .replay
        .as_ref()
        .map(|r| replay::replay(r, has_redis))
        .transpose()?;
    let redis = redis_table(&mut raw, env)?;
    let tls = tls(&raw)?;
    let metrics = metrics(&raw.metrics)?;
    let upstreams = upstream_tables(&mut raw, env)?;

    Ok(Config {
        listen: raw.listen,
        admin_listen: raw.admin_listen,
        shutdown_grace: raw.shutdown_grace,
        max_body_bytes: sizes.max_body_bytes,
        retry_buffer_bytes: sizes.retry_buffer_bytes,
        retry_buffer_total_bytes: sizes.retry_buffer_total_bytes,
        client_header_timeout: raw.client_header_timeout,
        client_idle_timeout: raw.client_idle_timeout,
        max_connections,
        connect_timeout: raw.connect_timeout,
        pool_idle_timeout: raw.pool_idle_timeout,
        websocket_idle_timeout: raw.websocket_idle_timeout,
        retry,
        failure_log,
        journal,
        replay,
        redis,
        tls,
        metrics,
        upstreams,
        raw,
    })
}

/// Client-side timeouts and pool settings above zero; `max_connections` at least 1.
fn connection_limits(raw: &RawConfig) -> Result<NonZeroU32, ConfigError> {
    non_zero("shutdown_grace", raw.shutdown_grace)?;
    non_zero("client_header_timeout", raw.client_header_timeout)?;
    non_zero("client_idle_timeout", raw.client_idle_timeout)?;
    let max_connections = NonZeroU32::new(raw.max_connections)
        .ok_or_else(|| invalid("max_connections", "must be at least 1"))?;
    non_zero("connect_timeout", raw.connect_timeout)?;
    non_zero("pool_idle_timeout", raw.pool_idle_timeout)?;
    if let Some(idle) = raw.websocket_idle_timeout {
        non_zero("websocket_idle_timeout", idle)?;
    }
    Ok(max_connections)
}

fn failure_log(raw: &RawConfig) -> Result<FailureLogSettings, ConfigError> {
    let retention_days = NonZeroU32::new(raw.failure_log.retention_days)
        .ok_or_else(|| invalid("failure_log.retention_days", "must be at least 1"))?;
    if raw.failure_log.dir.as_os_str().is_empty() {
        return Err(invalid("failure_log.dir", "must not be empty"));
    }
    Ok(FailureLogSettings {
        dir: raw.failure_log.dir.clone(),
        retention_days,
    })
}

/// `[redis]`, its URL written back without its password (what `check-config` prints).
fn redis_table(
    raw: &mut RawConfig,
    env: EnvLookup<'_>,
) -> Result<Option<RedisSettings>, ConfigError> {
    let Some(r) = &mut raw.redis else {
        return Ok(None);
    };
    let settings = redis::redis(r, env)?;
    r.url.clone_from(&settings.shown);
    Ok(Some(settings))
}

fn tls(raw: &RawConfig) -> Result<TlsSettings, ConfigError> {
    for (i, file) in raw.tls.extra_ca_files.iter().enumerate() {
        if !file.is_file() {
            return Err(invalid(
                format!("tls.extra_ca_files[{i}]"),
                format!("{} is not a readable file", file.display()),
            ));
        }
    }
    Ok(TlsSettings {
        native_roots: raw.tls.native_roots,
        extra_ca_files: raw.tls.extra_ca_files.clone(),
    })
}

/// Every `[[upstream]]`, checked alone and as a set; what is in effect is written back
/// so `check-config` prints it: the path prefix filled in, a proxy's credentials `***`.
fn upstream_tables(raw: &mut RawConfig, env: EnvLookup<'_>) -> Result<Vec<Upstream>, ConfigError> {
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
    for (raw_up, up) in raw.upstreams.iter_mut().zip(&upstreams) {
        raw_up.path_prefix.clone_from(&up.path_prefix);
        if let (Some(setting), Some(proxy)) = (&mut raw_up.proxy, &up.proxy) {
            *setting = proxy.to_string();
        }
    }
    Ok(upstreams)
}

fn journal(raw: &RawJournal) -> Result<JournalSettings, ConfigError> {
    let retention_days = NonZeroU32::new(raw.retention_days)
        .ok_or_else(|| invalid("journal.retention_days", "must be at least 1"))?;
    if raw.dir.as_os_str().is_empty() {
        return Err(invalid("journal.dir", "must not be empty"));
    }
    Ok(JournalSettings {
        dir: raw.dir.clone(),
        retention_days,
        responses: raw.responses,
        max_response_bytes: raw.max_response_bytes,
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

pub(super) fn non_zero(key: &str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        return Err(invalid(key, "must be greater than 0"));
    }
    Ok(())
}

pub(super) fn retry_settings(prefix: &str, r: &RawRetry) -> Result<RetrySettings, ConfigError> {
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

pub(super) fn merged_retry(base: &RawRetry, o: &RawRetryOverride) -> RawRetry {
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
