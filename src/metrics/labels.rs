//! Label values as types. Every label of every family comes from one of these, so a call
//! site cannot pass a wrong number of labels or an unbounded value (a raw path, a model
//! name a client made up, an upstream that is not configured).

use std::sync::Arc;

use http::StatusCode;

use crate::config::{Config, UpstreamKind};
use crate::names::NameMap;
use crate::retry::Outcome;

use super::series::{ModelSeries, UpstreamSeries};

/// SPEC §4's fixed `endpoint` set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    Images,
    Audio,
    Moderations,
    Models,
    Other,
}

impl Endpoint {
    pub const COUNT: usize = 9;

    /// From `events::endpoint_kind`'s label (anything unknown is `Other`).
    pub fn from_kind(kind: &str) -> Endpoint {
        match kind {
            "chat_completions" => Endpoint::ChatCompletions,
            "completions" => Endpoint::Completions,
            "embeddings" => Endpoint::Embeddings,
            "responses" => Endpoint::Responses,
            "images" => Endpoint::Images,
            "audio" => Endpoint::Audio,
            "moderations" => Endpoint::Moderations,
            "models" => Endpoint::Models,
            _ => Endpoint::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Responses => "responses",
            Endpoint::Images => "images",
            Endpoint::Audio => "audio",
            Endpoint::Moderations => "moderations",
            Endpoint::Models => "models",
            Endpoint::Other => "other",
        }
    }
}

/// `backstop_upstream_attempts_total{outcome}`: three values, so the family stays small;
/// the detailed reason is on `backstop_retries_total` and in the failure log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A response passed back as it was (1xx–3xx).
    Success,
    /// Failed in a way another attempt may fix (connect error, reset, 429, 5xx…).
    RetryableFailure,
    /// Failed in a way another attempt would repeat (400, quota, certificate…).
    FatalFailure,
}

impl AttemptOutcome {
    pub const ALL: [AttemptOutcome; 3] = [
        AttemptOutcome::Success,
        AttemptOutcome::RetryableFailure,
        AttemptOutcome::FatalFailure,
    ];

    pub fn of(outcome: &Outcome) -> AttemptOutcome {
        match outcome {
            Outcome::Success => AttemptOutcome::Success,
            Outcome::Retry { .. } => AttemptOutcome::RetryableFailure,
            Outcome::Fatal { .. } => AttemptOutcome::FatalFailure,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Success => "success",
            AttemptOutcome::RetryableFailure => "retryable_failure",
            AttemptOutcome::FatalFailure => "fatal_failure",
        }
    }
}

/// OTel `gen_ai.provider.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    OpenAi,
    AzureOpenAi,
}

impl Provider {
    pub const COUNT: usize = 2;

    pub fn of(kind: UpstreamKind) -> Provider {
        match kind {
            UpstreamKind::OpenAi => Provider::OpenAi,
            UpstreamKind::Azure => Provider::AzureOpenAi,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::OpenAi => "openai",
            Provider::AzureOpenAi => "azure.ai.openai",
        }
    }
}

/// OTel `gen_ai.operation.name`, for the endpoints that are model calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Chat completions and the Responses API.
    Chat,
    TextCompletion,
    Embeddings,
}

impl Operation {
    pub const COUNT: usize = 3;

    /// `None` for endpoints that are not model calls (models, files, …).
    pub fn of(endpoint: Endpoint) -> Option<Operation> {
        match endpoint {
            Endpoint::ChatCompletions | Endpoint::Responses => Some(Operation::Chat),
            Endpoint::Completions => Some(Operation::TextCompletion),
            Endpoint::Embeddings => Some(Operation::Embeddings),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::TextCompletion => "text_completion",
            Operation::Embeddings => "embeddings",
        }
    }
}

/// OTel `gen_ai.token.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Input,
    Output,
}

impl TokenType {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenType::Input => "input",
            TokenType::Output => "output",
        }
    }
}

/// OTel `error.type` on `gen_ai_client_operation_*`: empty when the operation succeeded
/// (Prometheus treats an empty label as absent, as OTel leaves `error.type` unset).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationError {
    None,
    /// The HTTP status the client got (always a valid 3-digit code).
    Status(StatusCode),
    /// The body broke off after commit: `stream_interrupted`, `stream_idle_timeout`.
    Interrupted(&'static str),
}

impl OperationError {
    pub fn label(self) -> std::borrow::Cow<'static, str> {
        match self {
            OperationError::None => "".into(),
            OperationError::Status(s) => s.as_str().to_owned().into(),
            OperationError::Interrupted(why) => why.into(),
        }
    }
}

/// The circuit breaker's state, as `limits` keeps it (`gauge()`: 0 closed, 1 half-open, 2 open).
pub use crate::limits::CircuitState;

/// An `upstream` label: a configured upstream's name, or `none` (request not routed),
/// with its provider and the series resolved for it. Only `Vocabulary` makes one.
#[derive(Clone)]
pub struct UpstreamLabel {
    name: Arc<str>,
    provider: Option<Provider>,
    pub(super) series: Arc<UpstreamSeries>,
}

impl UpstreamLabel {
    fn new(name: &str, provider: Option<Provider>) -> UpstreamLabel {
        UpstreamLabel {
            name: Arc::from(name),
            provider,
            series: Arc::default(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The provider of a configured upstream; `None` for `none`.
    pub fn provider(&self) -> Option<Provider> {
        self.provider
    }
}

impl PartialEq for UpstreamLabel {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for UpstreamLabel {}

impl std::fmt::Debug for UpstreamLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("UpstreamLabel").field(&self.name).finish()
    }
}

/// A `gen_ai_request_model` label: a model in `[metrics] models`, or `other`, with the
/// series resolved for it. Only `Vocabulary` makes one.
#[derive(Clone)]
pub struct ModelLabel {
    name: Arc<str>,
    pub(super) series: Arc<ModelSeries>,
}

impl ModelLabel {
    fn new(name: &str) -> ModelLabel {
        ModelLabel {
            name: Arc::from(name),
            series: Arc::default(),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl PartialEq for ModelLabel {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for ModelLabel {}

impl std::fmt::Debug for ModelLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ModelLabel").field(&self.name).finish()
    }
}

/// The label values the config allows: upstream names (with their provider) and the
/// model allow-list. Rebuilt on every reload.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    upstreams: NameMap<UpstreamLabel>,
    models: NameMap<ModelLabel>,
    none: UpstreamLabel,
    other: ModelLabel,
}

impl Vocabulary {
    pub fn new(config: &Config) -> Vocabulary {
        let upstreams = config.upstreams.iter().map(|u| {
            let label = UpstreamLabel::new(&u.name, Some(Provider::of(u.kind)));
            (label.name.clone(), label)
        });
        let models = config.metrics.models.iter().map(|m| {
            let label = ModelLabel::new(m);
            (label.name.clone(), label)
        });
        Vocabulary {
            upstreams: upstreams.collect(),
            models: models.collect(),
            none: UpstreamLabel::new("none", None),
            other: ModelLabel::new("other"),
        }
    }

    /// The label for an upstream name: itself if configured, else `none`.
    /// Borrowed, not cloned: this runs several times per request.
    pub fn upstream(&self, name: Option<&str>) -> &UpstreamLabel {
        name.and_then(|n| self.upstreams.get(n))
            .unwrap_or(&self.none)
    }

    /// The label for a requested model: itself if allow-listed, else `other`.
    pub fn model(&self, model: Option<&str>) -> ModelLabel {
        model
            .and_then(|m| self.models.get(m))
            .unwrap_or(&self.other)
            .clone()
    }

    /// The model label of a request; its body is read for the model only when there
    /// is an allow-list to look it up in.
    pub fn model_of(&self, meta: &crate::request_meta::RequestMeta) -> ModelLabel {
        if self.models.is_empty() {
            return self.other.clone();
        }
        self.model(meta.model())
    }

    /// Every configured upstream with its provider, for pre-creating series.
    pub fn upstreams(&self) -> impl Iterator<Item = (UpstreamLabel, Provider)> + '_ {
        self.upstreams
            .values()
            .filter_map(|label| Some((label.clone(), label.provider?)))
    }

    /// The allow-listed models plus `other`.
    pub fn models(&self) -> impl Iterator<Item = ModelLabel> + '_ {
        self.models
            .values()
            .cloned()
            .chain(std::iter::once(self.other.clone()))
    }
}
