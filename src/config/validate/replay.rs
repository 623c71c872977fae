//! `[replay]` (SPEC §6): durations above zero, a store backstop has, and sizes that
//! agree (a store smaller than one response could never keep it).

use super::{invalid, non_zero};
use crate::config::ConfigError;
use crate::config::raw::RawReplay;
use crate::config::typed::{ReplaySettings, ReplayStoreKind};

/// `has_redis`: the config has a `[redis]` table.
pub(super) fn replay(raw: &RawReplay, has_redis: bool) -> Result<ReplaySettings, ConfigError> {
    non_zero("replay.ttl", raw.ttl)?;
    non_zero("replay.window", raw.window)?;
    let store = match raw.store.as_str() {
        "local" => ReplayStoreKind::Local,
        "redis" if !has_redis => {
            return Err(invalid(
                "replay.store",
                "\"redis\" needs a [redis] table (SPEC §8); or use \"local\"",
            ));
        }
        "redis" => ReplayStoreKind::Redis,
        other => {
            return Err(invalid(
                "replay.store",
                format!("must be \"local\" or \"redis\", got {other:?}"),
            ));
        }
    };
    if raw.dir.as_os_str().is_empty() {
        return Err(invalid("replay.dir", "must not be empty"));
    }
    if raw.max_response_bytes == 0 {
        return Err(invalid("replay.max_response_bytes", "must be at least 1"));
    }
    if raw.max_bytes < raw.max_response_bytes {
        return Err(invalid(
            "replay.max_bytes",
            format!(
                "must be at least replay.max_response_bytes ({}), got {}",
                raw.max_response_bytes, raw.max_bytes
            ),
        ));
    }
    Ok(ReplaySettings {
        ttl: raw.ttl,
        sdk_retries: raw.sdk_retries,
        window: raw.window,
        finish_abandoned: raw.finish_abandoned,
        max_response_bytes: raw.max_response_bytes,
        store,
        dir: raw.dir.clone(),
        max_bytes: raw.max_bytes,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ReplayStoreKind};

    fn load(replay: &str) -> Result<Config, crate::config::ConfigError> {
        let text = format!(
            "[replay]\n{replay}\n[[upstream]]\nname = \"a\"\nbase_url = \"http://127.0.0.1:1\"\n"
        );
        Config::from_toml(&text, &|_| None)
    }

    #[test]
    fn an_empty_replay_table_takes_the_spec_defaults() {
        let config = load("").expect("valid");
        let r = config.replay.expect("on");
        assert_eq!(r.ttl, std::time::Duration::from_secs(86_400));
        assert!(r.sdk_retries && r.finish_abandoned);
        assert_eq!(r.window, std::time::Duration::from_secs(600));
        assert_eq!(r.store, ReplayStoreKind::Local);
        assert_eq!((r.max_response_bytes, r.max_bytes), (8 << 20, 1 << 30));
        assert!(
            load("")
                .expect("valid")
                .effective_toml()
                .contains("[replay]")
        );
    }

    #[test]
    fn the_redis_store_is_taken_with_a_redis_table() {
        let text = "[redis]\nurl = \"redis://127.0.0.1:6379/0\"\n[replay]\nstore = \"redis\"\n\
                    [[upstream]]\nname = \"a\"\nbase_url = \"http://127.0.0.1:1\"\n";
        let config = Config::from_toml(text, &|_| None).expect("valid");
        assert_eq!(config.replay.expect("on").store, ReplayStoreKind::Redis);
    }

    #[test]
    fn bad_replay_values_are_refused_naming_the_key() {
        for (text, key, says) in [
            ("ttl = \"0s\"", "replay.ttl", "greater than 0"),
            ("window = \"0s\"", "replay.window", "greater than 0"),
            ("store = \"redis\"", "replay.store", "needs a [redis] table"),
            ("store = \"s3\"", "replay.store", "\"local\" or \"redis\""),
            ("dir = \"\"", "replay.dir", "empty"),
            (
                "max_response_bytes = 0",
                "replay.max_response_bytes",
                "at least 1",
            ),
            (
                "max_bytes = 10\nmax_response_bytes = 11",
                "replay.max_bytes",
                "max_response_bytes",
            ),
            ("ttl = \"soon\"", "replay.ttl", ""),
            ("keep = true", "replay.keep", "unknown field"),
        ] {
            let error = load(text).expect_err(text);
            assert_eq!(error.key(), Some(key), "{text}: {error}");
            assert!(error.to_string().contains(says), "{text}: {error}");
        }
        assert!(load("").expect("valid").replay.is_some());
        let off = Config::from_toml(
            "[[upstream]]\nname = \"a\"\nbase_url = \"http://127.0.0.1:1\"\n",
            &|_| None,
        )
        .expect("valid");
        assert!(off.replay.is_none(), "off unless the table is present");
    }
}
