//! The config file exactly as written: serde structs with SPEC defaults filled in.
//!
//! Nothing outside `config` reads these; `validate` turns them into the trusted types in
//! `config::typed`. They are also what `backstop check-config` prints back (with every
//! default made explicit), so they serialise as well as deserialise.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// `None` when the file does not set it: `validate` fills in the default, adjusted to
    /// the other sizes the user did set, so `check-config` prints what is in effect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_body_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_buffer_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_buffer_total_bytes: Option<u64>,
    #[serde(with = "humantime_serde")]
    pub client_header_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub client_idle_timeout: Duration,
    pub max_connections: u32,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    #[serde(
        with = "humantime_serde",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub websocket_idle_timeout: Option<Duration>,
    pub retry: RawRetry,
    pub failure_log: RawFailureLog,
    /// `[journal]`: off unless the table is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<RawJournal>,
    /// `[replay]`: off unless the table is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<RawReplay>,
    /// `[redis]`: shared state across replicas, off unless the table is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RawRedis>,
    pub tls: RawTls,
    pub metrics: RawMetrics,
    #[serde(rename = "upstream")]
    pub upstreams: Vec<RawUpstream>,
}

impl Default for RawConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            shutdown_grace: Duration::from_secs(30),
            max_body_bytes: None,
            retry_buffer_bytes: None,
            retry_buffer_total_bytes: None,
            client_header_timeout: Duration::from_secs(30),
            client_idle_timeout: Duration::from_secs(75),
            max_connections: 10_000,
            connect_timeout: Duration::from_secs(10),
            pool_idle_timeout: Duration::from_secs(90),
            websocket_idle_timeout: None,
            retry: RawRetry::default(),
            failure_log: RawFailureLog::default(),
            journal: None,
            replay: None,
            redis: None,
            tls: RawTls::default(),
            metrics: RawMetrics::default(),
            upstreams: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRetry {
    pub max_retries: u32,
    #[serde(with = "humantime_serde")]
    pub base_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub throttle_base_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub max_server_delay: Duration,
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub first_event_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub deadline: Duration,
    pub retry_ambiguous: bool,
    pub budget_ratio: f64,
    pub budget_min_per_second: u32,
}

impl Default for RawRetry {
    fn default() -> Self {
        Self {
            max_retries: 2,
            base_delay: Duration::from_millis(250),
            throttle_base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            max_server_delay: Duration::from_secs(60),
            attempt_timeout: Duration::from_secs(600),
            first_event_timeout: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(60),
            deadline: Duration::from_secs(600),
            retry_ambiguous: true,
            budget_ratio: 0.2,
            budget_min_per_second: 10,
        }
    }
}

/// Per-upstream overrides of `[retry]`: every key optional, absent means "inherit".
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRetryOverride {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub base_delay: Option<Duration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub throttle_base_delay: Option<Duration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<Duration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub max_server_delay: Option<Duration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub attempt_timeout: Option<Duration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub first_event_timeout: Option<Duration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_ambiguous: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_min_per_second: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFailureLog {
    pub dir: PathBuf,
    pub retention_days: u32,
}

impl Default for RawFailureLog {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data/failures"),
            retention_days: 30,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawJournal {
    pub dir: PathBuf,
    pub retention_days: u32,
    pub responses: bool,
    pub max_response_bytes: u64,
}

impl Default for RawJournal {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("data/journal"),
            retention_days: 7,
            responses: false,
            max_response_bytes: 8 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawReplay {
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    pub sdk_retries: bool,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    pub finish_abandoned: bool,
    pub max_response_bytes: u64,
    /// `local` or `redis`.
    pub store: String,
    pub dir: PathBuf,
    pub max_bytes: u64,
}

impl Default for RawReplay {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(24 * 3600),
            sdk_retries: true,
            window: Duration::from_secs(600),
            finish_abandoned: true,
            max_response_bytes: 8 * 1024 * 1024,
            store: "local".to_owned(),
            dir: PathBuf::from("data/replay"),
            max_bytes: 1024 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRedis {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub key_prefix: String,
}

impl Default for RawRedis {
    fn default() -> Self {
        Self {
            url: String::new(),
            password_env: None,
            timeout: Duration::from_millis(100),
            key_prefix: "backstop:".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTls {
    /// Trust the operating system's roots as well as the bundled Mozilla (webpki) roots.
    pub native_roots: bool,
    /// Extra PEM files of CA certificates to trust, e.g. a private gateway's CA.
    pub extra_ca_files: Vec<PathBuf>,
}

impl Default for RawTls {
    fn default() -> Self {
        Self {
            native_roots: true,
            extra_ca_files: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    /// Models that get their own `gen_ai_request_model` label; any other is `other`.
    pub models: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub name: String,
    #[serde(default)]
    pub kind: RawKind,
    pub base_url: String,
    /// `None` when not written: `validate` fills in `/` for a routed upstream (so
    /// `check-config` prints it) and leaves it out for a `fallback_only` one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    #[serde(default = "default_fallback_on")]
    pub fallback_on: Vec<RawFallbackOn>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub fallback_only: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_burst: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u32>,
    #[serde(with = "humantime_serde", default = "default_max_queue_wait")]
    pub max_queue_wait: Duration,
    #[serde(default = "default_true")]
    pub pacing: bool,
    #[serde(default = "default_max_tokens")]
    pub default_max_tokens: u32,
    /// Request model → model (or Azure deployment) used on this upstream.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, String>,
    /// Another name for `models` (its name before models and providers could differ).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub deployment: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RawRetryOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<RawCircuitBreaker>,
    /// A forward proxy URL or `"none"`; unset: the `*_PROXY` variables. Replaced by
    /// its redacted form once validated, so `check-config` never prints a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
}

fn default_fallback_on() -> Vec<RawFallbackOn> {
    vec![RawFallbackOn::Retryable]
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What hands a request to the next fallback (SPEC §7 `fallback_on`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RawFallbackOn {
    Retryable,
    ContextLengthExceeded,
    ContentFilter,
    QuotaExhausted,
}

fn default_true() -> bool {
    true
}

fn default_max_tokens() -> u32 {
    256
}

fn default_max_queue_wait() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RawKind {
    #[default]
    Openai,
    Azure,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCircuitBreaker {
    pub consecutive_failures: u32,
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
}
