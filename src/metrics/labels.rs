//! Label values as types. Every label of every family comes from one of these, so a call
//! site cannot pass a wrong number of labels or an unbounded value (a raw path, a model
//! name a client made up, an upstream that is not configured).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use http::StatusCode;

use crate::config::{Config, UpstreamKind};
use crate::events::endpoint_kind;
use crate::retry::Outcome;

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

    pub fn from_path(path: &str) -> Endpoint {
        Endpoint::from_kind(endpoint_kind(path))
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

/// An `upstream` label: a configured upstream's name, or `none` (request not routed).
/// Only `Vocabulary::upstream` makes one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpstreamLabel(Arc<str>);

impl UpstreamLabel {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A `gen_ai_request_model` label: a model in `[metrics] models`, or `other`.
/// Only `Vocabulary::model` makes one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelLabel(Arc<str>);

impl ModelLabel {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The label values the config allows: upstream names (with their provider) and the
/// model allow-list. Rebuilt on every reload.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    upstreams: HashMap<Arc<str>, Provider>,
    models: HashSet<Arc<str>>,
    none: Arc<str>,
    other: Arc<str>,
}

impl Vocabulary {
    pub fn new(config: &Config) -> Vocabulary {
        Vocabulary {
            upstreams: config
                .upstreams
                .iter()
                .map(|u| (Arc::from(u.name.as_str()), Provider::of(u.kind)))
                .collect(),
            models: config
                .metrics
                .models
                .iter()
                .map(|m| Arc::from(m.as_str()))
                .collect(),
            none: Arc::from("none"),
            other: Arc::from("other"),
        }
    }

    /// The label for an upstream name: itself if configured, else `none`.
    pub fn upstream(&self, name: Option<&str>) -> UpstreamLabel {
        match name.and_then(|n| self.upstreams.get_key_value(n)) {
            Some((known, _)) => UpstreamLabel(known.clone()),
            None => UpstreamLabel(self.none.clone()),
        }
    }

    /// The provider of a configured upstream.
    pub fn provider(&self, upstream: &UpstreamLabel) -> Option<Provider> {
        self.upstreams.get(upstream.as_str()).copied()
    }

    /// The label for a requested model: itself if allow-listed, else `other`.
    pub fn model(&self, model: Option<&str>) -> ModelLabel {
        match model.and_then(|m| self.models.get(m)) {
            Some(known) => ModelLabel(known.clone()),
            None => ModelLabel(self.other.clone()),
        }
    }

    /// Every configured upstream with its provider, for pre-creating series.
    pub fn upstreams(&self) -> impl Iterator<Item = (UpstreamLabel, Provider)> + '_ {
        self.upstreams
            .iter()
            .map(|(name, p)| (UpstreamLabel(name.clone()), *p))
    }

    /// The allow-listed models plus `other`.
    pub fn models(&self) -> impl Iterator<Item = ModelLabel> + '_ {
        self.models
            .iter()
            .cloned()
            .chain(std::iter::once(self.other.clone()))
            .map(ModelLabel)
    }
}
