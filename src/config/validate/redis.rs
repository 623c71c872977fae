//! `[redis]`: the URL (scheme checked, password redacted wherever it is shown), the
//! password's variable, the command timeout and the key prefix.

use super::{EnvLookup, invalid, non_zero};
use crate::config::ConfigError;
use crate::config::raw::RawRedis;
use crate::config::typed::RedisSettings;

pub(super) fn redis(raw: &RawRedis, env: EnvLookup<'_>) -> Result<RedisSettings, ConfigError> {
    let shown = redact_url(&raw.url);
    match raw.url.split_once("://") {
        Some(("redis" | "rediss", rest)) if !rest.is_empty() => {}
        Some((scheme, _)) if scheme != "redis" && scheme != "rediss" => {
            return Err(invalid(
                "redis.url",
                format!("must start with redis:// or rediss://, got {scheme}://"),
            ));
        }
        _ => {
            return Err(invalid(
                "redis.url",
                "must be a redis:// or rediss:// URL, e.g. redis://127.0.0.1:6379/0",
            ));
        }
    }
    let password = raw
        .password_env
        .as_deref()
        .map(|var| password(var, env).map_err(|reason| invalid("redis.password_env", reason)))
        .transpose()?;
    non_zero("redis.timeout", raw.timeout)?;
    if raw.key_prefix.len() > 100 || raw.key_prefix.chars().any(char::is_control) {
        return Err(invalid(
            "redis.key_prefix",
            "must be at most 100 bytes, without control characters",
        ));
    }
    let settings = RedisSettings {
        url: raw.url.clone(),
        shown,
        password,
        timeout: raw.timeout,
        key_prefix: raw.key_prefix.clone(),
    };
    if settings.connection_info().is_err() {
        // The parser's message is not repeated: it may quote the URL, password and all.
        return Err(invalid(
            "redis.url",
            format!("{} is not a valid Redis URL", settings.shown),
        ));
    }
    Ok(settings)
}

fn password(var: &str, env: EnvLookup<'_>) -> Result<String, String> {
    if var.is_empty() {
        return Err("must name an environment variable".to_owned());
    }
    match env(var) {
        None => Err(format!("environment variable {var} is not set")),
        Some(value) if value.is_empty() => Err(format!("environment variable {var} is empty")),
        Some(value) => Ok(value),
    }
}

/// The URL with the password of its user info (`user:password@`) replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((user_info, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let user = match user_info.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        // A lone user info is the password for a `requirepass` server.
        None if !user_info.is_empty() => "***".to_owned(),
        None => String::new(),
    };
    format!("{scheme}://{user}@{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const UPSTREAM: &str = "[[upstream]]\nname = \"a\"\nbase_url = \"https://x\"\n";

    fn parse(redis: &str, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        Config::from_toml(&format!("[redis]\n{redis}\n{UPSTREAM}"), env)
    }

    fn key_of(redis: &str) -> String {
        let error = parse(redis, &|_| None).expect_err("refused");
        error.key().unwrap_or("(none)").to_owned()
    }

    #[test]
    fn redis_defaults_and_a_password_from_the_environment() {
        let env = |var: &str| (var == "REDIS_PASSWORD").then(|| "pw-from-env".to_owned());
        let config = parse(
            "url = \"rediss://cache:6380/2\"\npassword_env = \"REDIS_PASSWORD\"",
            &env,
        )
        .expect("valid");
        let redis = config.redis.expect("[redis]");
        assert_eq!(redis.timeout, std::time::Duration::from_millis(100));
        assert_eq!(redis.key_prefix, "backstop:");
        let info = redis.connection_info().expect("usable");
        assert_eq!(info.redis_settings().password(), Some("pw-from-env"));
        assert_eq!(info.redis_settings().db(), 2);
        assert!(!format!("{redis:?}").contains("pw-from-env"));
        assert!(
            Config::from_toml(UPSTREAM, &|_| None)
                .expect("valid")
                .redis
                .is_none()
        );
    }

    #[test]
    fn bad_redis_settings_name_their_key() {
        assert_eq!(key_of("url = \"http://cache:6379\""), "redis.url");
        assert_eq!(key_of("url = \"\""), "redis.url");
        assert_eq!(key_of("url = \"redis://\""), "redis.url");
        assert_eq!(
            key_of("url = \"redis://h\"\ntimeout = \"0s\""),
            "redis.timeout"
        );
        assert_eq!(
            key_of("url = \"redis://h\"\npassword_env = \"MISSING\""),
            "redis.password_env"
        );
        assert_eq!(
            key_of("url = \"redis://h\"\nkey_prefix = \"a\\nb\""),
            "redis.key_prefix"
        );
        assert_eq!(key_of("url = \"redis://h\"\nport = 1"), "redis.port");
    }

    #[test]
    fn an_error_about_the_url_never_repeats_its_password() {
        let error = parse("url = \"redis://:hunter2@[::1\"", &|_| None).expect_err("refused");
        assert_eq!(error.key(), Some("redis.url"));
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn check_config_prints_the_url_without_its_password() {
        let config = parse("url = \"redis://:hunter2@cache:6379\"", &|_| None).expect("valid");
        let printed = config.effective_toml();
        assert!(printed.contains("redis://:***@cache:6379"), "{printed}");
        assert!(!printed.contains("hunter2"));
    }

    #[test]
    fn no_queue_wait_is_valid() {
        let text = format!("{UPSTREAM}requests_per_minute = 60\nmax_queue_wait = \"0s\"\n");
        let config = Config::from_toml(&text, &|_| None).expect("0s is valid");
        assert!(config.upstreams[0].max_queue_wait.is_zero());
    }

    #[test]
    fn a_url_password_is_never_shown() {
        assert_eq!(
            redact_url("redis://:s3cret@redis:6379/0"),
            "redis://:***@redis:6379/0"
        );
        assert_eq!(
            redact_url("rediss://app:s3cret@cache.example:6380"),
            "rediss://app:***@cache.example:6380"
        );
        assert_eq!(
            redact_url("redis://127.0.0.1:6379/0"),
            "redis://127.0.0.1:6379/0"
        );
        assert_eq!(redact_url("redis://p@ss@host/1"), "redis://***@host/1");
    }
}
