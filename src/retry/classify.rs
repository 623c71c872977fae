//! "Is this retryable?" as one pure function of what an attempt produced: a transport
//! failure, or a status with its headers and the first bytes of an error body.
//!
//! The `Reason` it names is the single vocabulary for logs, metrics and tests.

use http::{HeaderMap, StatusCode};

use super::reason::Reason;

/// What went wrong below HTTP, decided by error *type* (see `transport_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportFailure {
    /// Never connected: DNS, refused, connect timeout, TLS handshake. Safe to retry.
    Connect,
    /// The upstream's certificate was refused: a setup problem, never retried.
    Certificate,
    /// Connected, sent, then the connection broke before a response. Ambiguous.
    Reset,
    /// Sent, then no response headers in time. Ambiguous.
    Timeout,
}

/// Why a failure was retryable or not: feeds the delay choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retryable {
    /// 429 and 503: the upstream asks for less traffic; longer backoff base.
    Throttle,
    /// Never reached the upstream, or it failed plainly (5xx, 408, 409).
    Transient,
    /// The request may have been processed (reset or timeout after sending).
    Ambiguous,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response to pass back as it is (1xx–3xx).
    Success,
    /// Failed, and another attempt may succeed.
    Retry { reason: Reason, kind: Retryable },
    /// Failed, and another attempt would fail the same way (or must not be made).
    Fatal { reason: Reason },
}

impl Outcome {
    pub fn reason(&self) -> Reason {
        match self {
            Outcome::Success => Reason::Success,
            Outcome::Retry { reason, .. } | Outcome::Fatal { reason } => *reason,
        }
    }

    pub fn is_failure(&self) -> bool {
        !matches!(self, Outcome::Success)
    }
}

/// Classifies a transport failure.
pub fn classify_transport(failure: TransportFailure) -> Outcome {
    match failure {
        TransportFailure::Connect => Outcome::Retry {
            reason: Reason::ConnectError,
            kind: Retryable::Transient,
        },
        TransportFailure::Certificate => Outcome::Fatal {
            reason: Reason::TlsCertificate,
        },
        TransportFailure::Reset => Outcome::Retry {
            reason: Reason::Reset,
            kind: Retryable::Ambiguous,
        },
        TransportFailure::Timeout => Outcome::Retry {
            reason: Reason::Timeout,
            kind: Retryable::Ambiguous,
        },
    }
}

/// Classifies a response from its status, headers and (for errors) the first bytes of
/// its body. An upstream `x-should-retry: true|false` overrides the status rules.
pub fn classify_response(status: StatusCode, headers: &HeaderMap, body_prefix: &[u8]) -> Outcome {
    let code = status.as_u16();
    if code < 400 {
        return Outcome::Success;
    }
    let default = status_rule(code, body_prefix);
    match should_retry_header(headers) {
        Some(true) => match default {
            Outcome::Fatal { reason } => Outcome::Retry {
                reason,
                kind: Retryable::Transient,
            },
            other => other,
        },
        Some(false) => match default {
            Outcome::Retry { .. } => Outcome::Fatal {
                reason: Reason::XShouldRetryFalse,
            },
            other => other,
        },
        None => default,
    }
}

fn status_rule(code: u16, body: &[u8]) -> Outcome {
    let retry = |reason, kind| Outcome::Retry { reason, kind };
    match code {
        429 if error_is(body, "insufficient_quota") => Outcome::Fatal {
            reason: Reason::QuotaExhausted,
        },
        429 => retry(Reason::Status429, Retryable::Throttle),
        503 => retry(Reason::Status503, Retryable::Throttle),
        408 => retry(Reason::Status408, Retryable::Transient),
        409 => retry(Reason::Status409, Retryable::Transient),
        501 | 505 => Outcome::Fatal {
            reason: Reason::NotRetryableStatus,
        },
        500..=599 => retry(Reason::of_server_error(code), Retryable::Transient),
        _ if error_is(body, "content_filter") => Outcome::Fatal {
            reason: Reason::ContentFilter,
        },
        _ if error_is(body, "context_length_exceeded") => Outcome::Fatal {
            reason: Reason::ContextLengthExceeded,
        },
        _ => Outcome::Fatal {
            reason: Reason::NotRetryableStatus,
        },
    }
}

fn should_retry_header(headers: &HeaderMap) -> Option<bool> {
    let value = headers.get("x-should-retry")?.to_str().ok()?.trim();
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Whether the OpenAI-shaped error body names `what` as its `error.code` or `error.type`.
fn error_is(body: &[u8], what: &str) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return false;
    };
    let error = &value["error"];
    error["code"].as_str() == Some(what) || error["type"].as_str() == Some(what)
}

/// `error.code` and `error.message` of an OpenAI-shaped error body, if it is one.
pub fn error_fields(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (None, None);
    };
    let error = &value["error"];
    let text = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    (
        text(&error["code"]).or_else(|| text(&error["type"])),
        text(&error["message"]),
    )
}

/// Names a client error by walking its `source()` chain for known types; never by text.
pub fn transport_failure(
    error: &(dyn std::error::Error + 'static),
    is_connect: bool,
) -> TransportFailure {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut timed_out = false;
    while let Some(err) = current {
        if rustls_error_in(err).is_some_and(is_certificate_error) {
            return TransportFailure::Certificate;
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
        }
        if let Some(hyper_err) = err.downcast_ref::<hyper::Error>() {
            timed_out |= hyper_err.is_timeout();
        }
        current = err.source();
    }
    if is_connect {
        TransportFailure::Connect
    } else if timed_out {
        TransportFailure::Timeout
    } else {
        TransportFailure::Reset
    }
}

/// A `rustls::Error` at this level, or wrapped (perhaps more than once) inside
/// `io::Error`s, whose `source()` skips the wrapped error itself.
fn rustls_error_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = err;
    loop {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        let io = current.downcast_ref::<std::io::Error>()?;
        current = io.get_ref()?;
    }
}

fn is_certificate_error(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::InvalidCertRevocationList(_)
            | rustls::Error::UnsupportedNameType
    )
}

#[cfg(test)]
mod tests;
