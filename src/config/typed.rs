//! The trusted config types the rest of backstop reads: durations, URLs and counts that
//! have already been checked. Built only by `config::validate`.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use http::HeaderValue;
use http::uri::{Authority, Scheme};

use super::egress::EgressProxy;
use super::raw::RawConfig;

#[derive(Debug, Clone)]
pub struct Config {
    /// Where apps connect (SPEC `listen`, default 127.0.0.1:8080).
    pub listen: SocketAddr,
    /// Where /healthz, /readyz, /metrics, /stats and /status are served (default 127.0.0.1:9090).
    pub admin_listen: SocketAddr,
    /// How long in-flight requests may run after SIGTERM (default 30 s).
    pub shutdown_grace: Duration,
    /// Request bodies above this many bytes get 413 (default 64 MiB).
    pub max_body_bytes: u64,
    /// Request bodies up to this many bytes are kept in memory for replay (default 16 MiB).
    pub retry_buffer_bytes: u64,
    /// All request bodies kept for replay at once share this many bytes; when they are
    /// spent a new body is streamed once instead (default 256 MiB). At least
    /// `retry_buffer_bytes`.
    pub retry_buffer_total_bytes: u64,
    /// A client connection that has not sent a whole request head within this is closed
    /// (default 30 s).
    pub client_header_timeout: Duration,
    /// An idle keep-alive client connection is closed after this (default 75 s).
    pub client_idle_timeout: Duration,
    /// Client connections open at once; more are closed unanswered (default 10 000).
    pub max_connections: NonZeroU32,
    /// Time allowed for TCP connect + TLS handshake to an upstream (default 10 s).
    pub connect_timeout: Duration,
    /// How long an idle pooled upstream connection is kept (default 90 s).
    pub pool_idle_timeout: Duration,
    /// A WebSocket session with no bytes either way for this long is closed (default:
    /// none, sessions may idle for ever).
    pub websocket_idle_timeout: Option<Duration>,
    /// `[retry]` as written, the defaults every upstream starts from.
    pub retry: RetrySettings,
    pub failure_log: FailureLogSettings,
    /// `[journal]`; `None` (the default) when the table is absent: no journal, and no
    /// per-request work for it.
    pub journal: Option<JournalSettings>,
    /// `[replay]`; `None` (the default) when the table is absent: no replay, and no
    /// per-request work for it.
    pub replay: Option<ReplaySettings>,
    /// `[redis]`; `None` (the default): every replica keeps its own limits, and no
    /// Redis call is made.
    pub redis: Option<RedisSettings>,
    pub tls: TlsSettings,
    pub metrics: MetricsSettings,
    /// At least one; names and path prefixes are unique.
    pub upstreams: Vec<Upstream>,
    /// The file as parsed with every default made explicit, for `check-config`.
    pub(super) raw: RawConfig,
}

/// Retry rules (SPEC §2). Every duration is non-zero; `base_delay` and
/// `throttle_base_delay` are at most `max_delay`.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySettings {
    /// Retries after the first attempt (default 2: three attempts).
    pub max_retries: u32,
    /// Backoff base for transient failures (default 250 ms).
    pub base_delay: Duration,
    /// Backoff base for throttling, 429/503 (default 1 s).
    pub throttle_base_delay: Duration,
    /// Cap on computed backoff, never on a server-chosen delay (default 8 s).
    pub max_delay: Duration,
    /// Longest server-chosen delay honoured (default 60 s).
    pub max_server_delay: Duration,
    /// Time to the response headers of one attempt (default 600 s).
    pub attempt_timeout: Duration,
    /// For SSE, time to the first event (default 120 s).
    pub first_event_timeout: Duration,
    /// Longest silence between body chunks (default 60 s).
    pub idle_timeout: Duration,
    /// One deadline over all attempts and backoffs (default 600 s).
    pub deadline: Duration,
    /// Retry a reset/timeout after the request was sent (default true).
    pub retry_ambiguous: bool,
    /// Retries may add this fraction of requests over 10 s (default 0.2; 0..=10, finite).
    pub budget_ratio: f64,
    /// Plus this many retries per second (default 10).
    pub budget_min_per_second: u32,
}

#[derive(Debug, Clone)]
pub struct FailureLogSettings {
    /// Directory of the daily `failures-YYYY-MM-DD.jsonl` files (default data/failures).
    pub dir: PathBuf,
    /// Files older than this many days are deleted (default 30).
    pub retention_days: NonZeroU32,
}

/// The request journal (SPEC §6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalSettings {
    /// Directory of the daily `requests-YYYY-MM-DD.jsonl` files (default data/journal).
    pub dir: PathBuf,
    /// Files older than this many days are deleted (default 7).
    pub retention_days: NonZeroU32,
    /// Keep the response body each client got (default false).
    pub responses: bool,
    /// A response body over this many bytes is left out, marked truncated (default 8 MiB).
    pub max_response_bytes: u64,
}

/// Replay of answered requests (SPEC §6 `[replay]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySettings {
    /// How long a response to an `Idempotency-Key` request is kept (default 24 h).
    pub ttl: Duration,
    /// Match the OpenAI SDKs' own retries (`x-stainless-retry-count` ≥ 1) by body hash
    /// (default true).
    pub sdk_retries: bool,
    /// How far back an SDK retry is matched (default 10 min).
    pub window: Duration,
    /// Finish an eligible request whose client disconnected, and keep its response
    /// (default true).
    pub finish_abandoned: bool,
    /// A larger response is not kept (default 8 MiB).
    pub max_response_bytes: u64,
    pub store: ReplayStoreKind,
    /// Directory of the local store (default data/replay).
    pub dir: PathBuf,
    /// The local store's size on disk; the oldest entries go first (default 1 GiB).
    pub max_bytes: u64,
}

/// Where replay entries are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayStoreKind {
    /// On disk under `dir`, this replica only.
    Local,
    /// Shared by every replica through `[redis]` (SPEC §8), and on disk under `dir`
    /// too: the local copy answers first and is all there is while Redis is down.
    Redis,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSettings {
    /// Model names allowed as the `gen_ai_request_model` label (default none: every
    /// model is `other`). Unique, 1-128 printable characters, at most `MAX_MODELS`.
    pub models: Vec<String>,
}

impl MetricsSettings {
    /// The allow-list is a cardinality bound, so it is bounded too.
    pub const MAX_MODELS: usize = 100;
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsSettings {
    /// Also trust the OS roots, besides the bundled webpki roots (default true).
    pub native_roots: bool,
    /// Extra CA bundles (PEM), each checked to exist at load.
    pub extra_ca_files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    /// Injected key goes in `Authorization: Bearer`.
    OpenAi,
    /// Injected key goes in `api-key`.
    Azure,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub name: String,
    pub kind: UpstreamKind,
    pub base_url: UpstreamUrl,
    /// Requests whose path starts with this go here; the longest prefix wins. `None`
    /// for a `fallback_only` upstream, which takes no traffic of its own.
    pub path_prefix: Option<String>,
    /// The key to inject instead of the client's, read from `api_key_env` at load.
    pub api_key: Option<ApiKey>,
    /// Other upstream names to hand a request to, in order, when `fallback_on` says so
    /// (validated to exist; empty on a `fallback_only` upstream).
    pub fallbacks: Vec<String>,
    /// What hands a request of this upstream's chain to the next fallback (default:
    /// retryable failures only).
    pub fallback_on: FallbackOn,
    /// Used only as another upstream's fallback: no path route (default false).
    pub fallback_only: bool,
    pub rate_limit: Option<RateLimit>,
    /// Longest wait for a rate limit before 429 (default 10 s; 0: never wait).
    pub max_queue_wait: Duration,
    /// Slow admissions when the upstream reports its limits running out (default on).
    pub pacing: bool,
    /// Completion tokens assumed when a request sets no `max_tokens` (default 256).
    pub default_max_tokens: u32,
    /// `[upstream.models]` (alias `[upstream.deployment]`): the request's model → the
    /// model used on this upstream (the body's `model`, or the Azure deployment segment).
    /// Empty: requests go as they are, and their body is never parsed for it.
    pub models: std::collections::BTreeMap<String, String>,
    /// `[retry]` with this upstream's overrides applied.
    pub retry: RetrySettings,
    pub circuit_breaker: Option<CircuitBreaker>,
    /// The forward proxy this upstream is reached through (SPEC §9), from its `proxy`
    /// or the `*_PROXY` variables; `None`: direct.
    pub proxy: Option<std::sync::Arc<EgressProxy>>,
}

/// What hands a request to the next fallback (SPEC §7 `fallback_on`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FallbackOn {
    /// Retries, budget or deadline spent on retryable failures, an open circuit, or a
    /// server delay too long to wait.
    pub retryable: bool,
    /// A 400 `context_length_exceeded` (e.g. to a model with a larger window).
    pub context_length_exceeded: bool,
    /// A 400 `content_filter`.
    pub content_filter: bool,
    /// A 429 `insufficient_quota` (e.g. to another org's key).
    pub quota_exhausted: bool,
}

/// scheme://authority[/path] of an upstream; the request path is appended to `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Empty or starting with '/', never ending with '/'.
    pub path: String,
}

impl UpstreamUrl {
    /// `scheme://authority/`: where connections to this upstream go, whatever form a
    /// request to it is in by then (origin form once written for HTTP/1.1).
    pub fn origin(&self) -> http::Uri {
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        // Scheme and authority came from a parsed URL, and "/" is a valid path.
        http::Uri::from_parts(parts).unwrap_or_default()
    }
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)
    }
}

/// An API key taken from the environment. Its value never appears in Debug output.
#[derive(Clone)]
pub struct ApiKey {
    pub env: String,
    pub header_value: HeaderValue,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey(from ${}, redacted)", self.env)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub requests_per_minute: Option<NonZeroU32>,
    /// Defaults to ceil(requests_per_minute / 60).
    pub requests_burst: Option<NonZeroU32>,
    pub tokens_per_minute: Option<NonZeroU32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitBreaker {
    pub consecutive_failures: NonZeroU32,
    pub open_for: Duration,
}

/// `[redis]` (SPEC §8): the store a fleet of backstops shares its limits and circuit
/// state through. Neither the URL's password nor `password_env`'s value is ever
/// printed: `Debug` and `shown` redact them.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` (TLS), as written (it may hold a password).
    pub(super) url: String,
    /// The URL with any password replaced by `***`: for logs and `check-config`.
    pub shown: String,
    /// From the variable `password_env` names (default: none, or the URL's own).
    pub(super) password: Option<String>,
    /// Longest wait for one Redis command; slower counts as Redis down (default 100 ms).
    pub timeout: Duration,
    /// Every key starts with this, then the upstream's name (default `backstop:`).
    pub key_prefix: String,
}

impl RedisSettings {
    /// Where and how to connect, the password from `password_env` applied.
    pub fn connection_info(&self) -> redis::RedisResult<redis::ConnectionInfo> {
        use redis::IntoConnectionInfo;
        let info = self.url.as_str().into_connection_info()?;
        Ok(match &self.password {
            Some(password) => {
                let settings = info.redis_settings().clone().set_password(password);
                info.set_redis_settings(settings)
            }
            None => info,
        })
    }
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &self.shown)
            .field("password", &self.password.as_ref().map(|_| "redacted"))
            .field("timeout", &self.timeout)
            .field("key_prefix", &self.key_prefix)
            .finish()
    }
}
