//! The fallback keys of an `[[upstream]]` (SPEC §7): `[upstream.models]` (alias
//! `[upstream.deployment]`), `fallback_on`, `fallback_only`, and the rules that only
//! the set of upstreams can check (who falls back to whom).

use std::collections::{BTreeMap, HashSet};

use super::invalid;
use crate::config::ConfigError;
use crate::config::raw::{RawFallbackOn, RawUpstream};
use crate::config::typed::{FallbackOn, Upstream, UpstreamKind};

/// `[upstream.models]`, or `[upstream.deployment]` under its other name (not both).
pub(super) fn models(
    i: usize,
    up: &RawUpstream,
    kind: UpstreamKind,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let (name, map) = match (up.models.is_empty(), up.deployment.is_empty()) {
        (false, false) => {
            return Err(invalid(
                format!("upstream[{i}].deployment"),
                "is another name for `models`: use one of the two",
            ));
        }
        (true, false) => ("deployment", &up.deployment),
        _ => ("models", &up.models),
    };
    for (from, to) in map {
        let reason = match kind {
            // An Azure deployment name goes into the request path.
            UpstreamKind::Azure if !is_deployment_name(to) => {
                format!("{to:?} is not a valid deployment name (letters, digits, '-', '_', '.')")
            }
            UpstreamKind::OpenAi if !is_model_name(to) => {
                format!("{to:?} is not a valid model name (1-256 visible ASCII characters)")
            }
            _ => continue,
        };
        return Err(invalid(format!("upstream[{i}].{name}.{from}"), reason));
    }
    Ok(map.clone())
}

fn is_deployment_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn is_model_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic())
}

/// `fallback_on` as a set; at least one entry.
pub(super) fn fallback_on(i: usize, up: &RawUpstream) -> Result<FallbackOn, ConfigError> {
    if up.fallback_on.is_empty() {
        return Err(invalid(
            format!("upstream[{i}].fallback_on"),
            "must name at least one of retryable, context_length_exceeded, content_filter, \
             quota_exhausted",
        ));
    }
    let mut on = FallbackOn::default();
    for trigger in &up.fallback_on {
        match trigger {
            RawFallbackOn::Retryable => on.retryable = true,
            RawFallbackOn::ContextLengthExceeded => on.context_length_exceeded = true,
            RawFallbackOn::ContentFilter => on.content_filter = true,
            RawFallbackOn::QuotaExhausted => on.quota_exhausted = true,
        }
    }
    Ok(on)
}

/// A `fallback_only` upstream takes no traffic of its own, and its own `fallbacks`
/// could never be used: a chain is its primary's list, never followed further.
pub(super) fn check_fallback_only(i: usize, up: &RawUpstream) -> Result<(), ConfigError> {
    if !up.fallback_only {
        return Ok(());
    }
    if up.path_prefix.is_some() {
        return Err(invalid(
            format!("upstream[{i}].path_prefix"),
            "a fallback_only upstream takes no traffic of its own: remove path_prefix",
        ));
    }
    if !up.fallbacks.is_empty() {
        return Err(invalid(
            format!("upstream[{i}].fallbacks"),
            "a fallback_only upstream's fallbacks are never used (a chain is its primary's \
             own list, never followed further): name them on the primary instead",
        ));
    }
    Ok(())
}

/// Every fallback names another upstream that exists; every `fallback_only` upstream
/// is someone's fallback. (Two routed upstreams may name each other.)
pub(super) fn check_fallbacks(upstreams: &[Upstream]) -> Result<(), ConfigError> {
    let names: HashSet<&str> = upstreams.iter().map(|u| u.name.as_str()).collect();
    let mut named: HashSet<&str> = HashSet::new();
    for (i, up) in upstreams.iter().enumerate() {
        for (j, fb) in up.fallbacks.iter().enumerate() {
            let key = format!("upstream[{i}].fallbacks[{j}]");
            if fb == &up.name {
                return Err(invalid(key, "an upstream cannot be its own fallback"));
            }
            if !names.contains(fb.as_str()) {
                return Err(invalid(key, format!("no upstream is named {fb:?}")));
            }
            named.insert(fb);
        }
    }
    for (i, up) in upstreams.iter().enumerate() {
        if up.fallback_only && !named.contains(up.name.as_str()) {
            return Err(invalid(
                format!("upstream[{i}].fallback_only"),
                format!(
                    "no upstream names {:?} in its fallbacks, so it would never be used",
                    up.name
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "fallback_tests.rs"]
mod tests;
