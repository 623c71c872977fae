//! Configuration: TOML file → raw serde structs → validated, typed `Config`.
//!
//! Unknown keys and bad values are rejected with the key's path and the reason, before
//! any port is bound. The rest of backstop only ever sees `typed::Config`.

pub mod egress;
mod raw;
mod typed;
mod validate;

use std::path::{Path, PathBuf};

pub use egress::EgressProxy;
pub use typed::{
    ApiKey, CircuitBreaker, Config, FailureLogSettings, FallbackOn, JournalSettings,
    MetricsSettings, RateLimit, RedisSettings, ReplaySettings, ReplayStoreKind, RetrySettings,
    TlsSettings, Upstream, UpstreamKind, UpstreamUrl,
};
pub use validate::EnvLookup;

/// The config used when no file is named: 127.0.0.1:8080 → https://api.openai.com.
pub const EMBEDDED_DEFAULT: &str = include_str!("default.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config key `{key}`: {reason}")]
    Parse { key: String, reason: String },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    /// The dotted path of the offending key (`retry.max_delay`, `upstream[1].base_url`).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Parse { key, .. } | ConfigError::Invalid { key, .. } => Some(key),
        }
    }
}

/// Where the config came from, for logs and `check-config`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    EmbeddedDefault,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::EmbeddedDefault => f.write_str("embedded default"),
        }
    }
}

impl Source {
    /// `--config`/`BACKSTOP_CONFIG` if given, else the embedded default.
    pub fn from_option(path: Option<&Path>) -> Source {
        match path {
            Some(p) => Source::File(p.to_path_buf()),
            None => Source::EmbeddedDefault,
        }
    }

    /// Reads and validates the config, taking `api_key_env` values and the `*_PROXY`
    /// variables from the process env.
    pub fn load(&self) -> Result<Config, ConfigError> {
        let text = match self {
            Source::File(path) => {
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?
            }
            Source::EmbeddedDefault => EMBEDDED_DEFAULT.to_owned(),
        };
        Config::from_toml(&text, &|var| std::env::var(var).ok())
    }
}

impl Config {
    /// Parses and validates a TOML document; `env` resolves `api_key_env` names and the
    /// `*_PROXY` variables (tests pass their own, never the developer's).
    pub fn from_toml(text: &str, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| ConfigError::Parse {
            key: "(document)".to_owned(),
            reason: toml_reason(text, &e),
        })?;
        let raw: raw::RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Parse {
                key: if key == "." {
                    "(document)".to_owned()
                } else {
                    key
                },
                reason: toml_reason(text, e.inner()),
            }
        })?;
        validate::validate(raw, env)
    }

    /// The one upstream of a config that names only it (`u`, at `base_url`), for tests.
    #[cfg(test)]
    pub(crate) fn upstream_at(base_url: &str) -> Upstream {
        let text = format!("[[upstream]]\nname=\"u\"\nbase_url=\"{base_url}\"\n");
        Config::from_toml(&text, &|_| None)
            .expect("valid")
            .upstreams
            .remove(0)
    }

    /// The effective config as TOML, every default written out; keys are never printed
    /// (only the names of the environment variables that hold them).
    pub fn effective_toml(&self) -> String {
        toml::to_string_pretty(&self.raw)
            .unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

fn toml_reason(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().to_owned();
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("{message} (line {line})")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests;
