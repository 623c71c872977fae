//! Errors backstop itself answers with, turned into responses in this one place.
//!
//! Every such response has the OpenAI error shape so SDKs parse it:
//! `{"error":{"message":"…","type":"backstop_error","code":"…","param":null}}`.

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use crate::body::{Body, full};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// No upstream's `path_prefix` matches the request path.
    #[error("no upstream is configured for path {path}")]
    NoRoute { path: String },
    /// The request body is larger than `max_body_bytes`.
    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    /// Reading the client's request body failed (client went away or sent garbage).
    #[error("could not read the request body: {0}")]
    BadRequestBody(String),
    /// The request could not be turned into an upstream request.
    #[error("could not build the upstream request: {0}")]
    BadRequest(String),
    /// Never connected to the upstream (DNS, refused, connect timeout, TLS handshake).
    #[error("could not connect to upstream {upstream}: {detail}")]
    Connect { upstream: String, detail: String },
    /// No response headers within `attempt_timeout` (or the first SSE event in time).
    #[error("upstream {upstream} did not answer within {after:?}")]
    Timeout {
        upstream: String,
        after: std::time::Duration,
    },
    /// The upstream's circuit breaker is open and no fallback could take the request.
    #[error("upstream {upstream} is failing; its circuit is open for {retry_after:?} more")]
    CircuitOpen {
        upstream: String,
        retry_after: std::time::Duration,
    },
    /// Over the upstream's client-side rate limit for longer than `max_queue_wait`.
    #[error("over the rate limit configured for upstream {upstream}; retry after {retry_after:?}")]
    RateLimited {
        upstream: String,
        retry_after: std::time::Duration,
    },
    /// The egress proxy refused to carry the request (407, refused `CONNECT`); `detail`
    /// names the proxy without its credentials.
    #[error("the egress proxy for upstream {upstream} refused: {detail}")]
    UpstreamProxy { upstream: String, detail: String },
    /// An `Idempotency-Key` longer than 255 characters (or not text).
    #[error("the Idempotency-Key header must be 1-255 visible characters")]
    InvalidIdempotencyKey,
    /// An `Idempotency-Key` used before with another request body (SPEC §6).
    #[error("this Idempotency-Key was used for a request with another body")]
    IdempotencyKeyReused,
    /// Connected, but the exchange broke before a response arrived.
    #[error("upstream {upstream} failed before responding: {detail}")]
    Upstream { upstream: String, detail: String },
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute { .. } => StatusCode::NOT_FOUND,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BadRequestBody(_)
            | ProxyError::BadRequest(_)
            | ProxyError::InvalidIdempotencyKey => StatusCode::BAD_REQUEST,
            ProxyError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ProxyError::Connect { .. }
            | ProxyError::Upstream { .. }
            | ProxyError::UpstreamProxy { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::CircuitOpen { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The `error.code` clients see; stable strings, also usable as labels.
    pub fn code(&self) -> &'static str {
        match self {
            ProxyError::NoRoute { .. } => "no_route",
            ProxyError::BodyTooLarge { .. } => "request_too_large",
            ProxyError::BadRequestBody(_) => "bad_request_body",
            ProxyError::BadRequest(_) => "bad_request",
            ProxyError::InvalidIdempotencyKey => "invalid_idempotency_key",
            ProxyError::IdempotencyKeyReused => "idempotency_key_reused",
            ProxyError::Connect { .. } => "upstream_connect_error",
            ProxyError::Timeout { .. } => "upstream_timeout",
            ProxyError::Upstream { .. } => "upstream_error",
            ProxyError::UpstreamProxy { .. } => "upstream_proxy_error",
            ProxyError::CircuitOpen { .. } => "circuit_open",
            ProxyError::RateLimited { .. } => "rate_limited_locally",
        }
    }

    /// SPEC §3's `error_type` for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            ProxyError::NoRoute { .. }
            | ProxyError::BodyTooLarge { .. }
            | ProxyError::BadRequestBody(_)
            | ProxyError::BadRequest(_)
            | ProxyError::InvalidIdempotencyKey
            | ProxyError::IdempotencyKeyReused => "client_error",
            ProxyError::Connect { .. } => "connect_error",
            ProxyError::Timeout { .. } => "timeout",
            ProxyError::Upstream { .. } => "reset",
            ProxyError::UpstreamProxy { .. } => "upstream_proxy_error",
            ProxyError::CircuitOpen { .. } => "circuit_open",
            ProxyError::RateLimited { .. } => "rate_limited",
        }
    }

    /// This error as a refusal before any attempt, for the request's event.
    pub fn refusal(&self) -> crate::events::Refusal {
        crate::events::Refusal {
            code: self.code(),
            error_type: self.error_type(),
        }
    }

    /// For refusals the client should retry later: how much later.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ProxyError::CircuitOpen { retry_after, .. }
            | ProxyError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let mut response = error_response(self.status(), self.code(), &self.to_string());
        if let Some(after) = self.retry_after() {
            // Whole seconds, rounded up: the form every client reads.
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        response
    }
}

/// The JSON text of an OpenAI-shaped error object (also used in SSE error events).
pub fn error_json(code: &str, message: &str) -> String {
    serde_json::json!({
        "error": {
            "message": message,
            "type": "backstop_error",
            "code": code,
            "param": null,
        }
    })
    .to_string()
}

/// A complete JSON error response with the OpenAI error shape.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let mut response = Response::new(full(error_json(code, message)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_has_the_openai_shape() {
        let v: serde_json::Value =
            serde_json::from_str(&error_json("upstream_timeout", "slow \"upstream\""))
                .expect("json");
        assert_eq!(v["error"]["type"], "backstop_error");
        assert_eq!(v["error"]["code"], "upstream_timeout");
        assert_eq!(v["error"]["message"], "slow \"upstream\"");
        assert!(v["error"]["param"].is_null());
    }

    #[test]
    fn transport_errors_map_to_502_and_504() {
        let connect = ProxyError::Connect {
            upstream: "a".into(),
            detail: "refused".into(),
        };
        let timeout = ProxyError::Timeout {
            upstream: "a".into(),
            after: std::time::Duration::from_secs(1),
        };
        assert_eq!(connect.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            ProxyError::BodyTooLarge { limit: 1 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
