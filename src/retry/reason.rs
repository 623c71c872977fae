//! Why an attempt ended as it did: one typed vocabulary for the whole request path.
//!
//! `as_str()` is the label that metrics, failure records, logs and tests carry (SPEC §2,
//! §3); everything downstream asks the enum (`error_type`, `is_upstream_answer`, …)
//! instead of comparing strings.

/// The reason an attempt was judged as it was (or a request refused before one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A response to pass back as it is (1xx–3xx, a complete SSE start).
    Success,
    // Transport, below HTTP.
    ConnectError,
    TlsCertificate,
    Reset,
    Timeout,
    // Statuses that are retried.
    Status429,
    Status503,
    Status408,
    Status409,
    Status500,
    Status502,
    Status504,
    Status5xx,
    // Statuses that never are.
    NotRetryableStatus,
    ContentFilter,
    ContextLengthExceeded,
    QuotaExhausted,
    XShouldRetryFalse,
    // SSE, before the first event.
    StreamErrorEvent,
    FirstEventTimeout,
    StreamDied,
    // backstop's own refusals and setup failures.
    CircuitOpen,
    RateLimitedLocally,
    BodyNotReplayable,
    BadRequest,
    RequestTooLarge,
    /// The egress proxy refused (407, or a `CONNECT` it would not open): a setup
    /// error, never retried.
    UpstreamProxyError,
}

impl Reason {
    /// The label: byte-for-byte what metrics, logs and records have always carried.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Success => "success",
            Reason::ConnectError => "connect_error",
            Reason::TlsCertificate => "tls_certificate",
            Reason::Reset => "reset",
            Reason::Timeout => "timeout",
            Reason::Status429 => "status_429",
            Reason::Status503 => "status_503",
            Reason::Status408 => "status_408",
            Reason::Status409 => "status_409",
            Reason::Status500 => "status_500",
            Reason::Status502 => "status_502",
            Reason::Status504 => "status_504",
            Reason::Status5xx => "status_5xx",
            Reason::NotRetryableStatus => "not_retryable_status",
            Reason::ContentFilter => "content_filter",
            Reason::ContextLengthExceeded => "context_length_exceeded",
            Reason::QuotaExhausted => "quota_exhausted",
            Reason::XShouldRetryFalse => "x_should_retry_false",
            Reason::StreamErrorEvent => "stream_error_event",
            Reason::FirstEventTimeout => "first_event_timeout",
            Reason::StreamDied => "stream_died",
            Reason::CircuitOpen => "circuit_open",
            Reason::RateLimitedLocally => "rate_limited_locally",
            Reason::BodyNotReplayable => "body_not_replayable",
            Reason::BadRequest => "bad_request",
            Reason::RequestTooLarge => "request_too_large",
            Reason::UpstreamProxyError => "upstream_proxy_error",
        }
    }

    /// `status_500`, `status_502`, `status_504`, else `status_5xx` (labels stay bounded).
    pub fn of_server_error(code: u16) -> Reason {
        match code {
            500 => Reason::Status500,
            502 => Reason::Status502,
            504 => Reason::Status504,
            _ => Reason::Status5xx,
        }
    }

    /// The upstream answered with an HTTP response (whatever it said): for the circuit
    /// breaker, an upstream that answers is up.
    pub fn is_upstream_answer(self) -> bool {
        matches!(
            self,
            Reason::Success
                | Reason::Status429
                | Reason::Status503
                | Reason::Status408
                | Reason::Status409
                | Reason::Status500
                | Reason::Status502
                | Reason::Status504
                | Reason::Status5xx
                | Reason::NotRetryableStatus
                | Reason::ContentFilter
                | Reason::ContextLengthExceeded
                | Reason::QuotaExhausted
                | Reason::XShouldRetryFalse
        )
    }

    /// backstop refused the request itself, without touching the upstream.
    pub fn is_local_refusal(self) -> bool {
        matches!(self, Reason::CircuitOpen | Reason::RateLimitedLocally)
    }

    /// SPEC §3's `error_type` of a failure record, from the reason and the status.
    pub fn error_type(self, status: Option<u16>) -> &'static str {
        match self {
            Reason::ConnectError | Reason::TlsCertificate => "connect_error",
            Reason::Timeout | Reason::FirstEventTimeout => "timeout",
            Reason::Reset | Reason::StreamDied => "reset",
            Reason::Status429 => "rate_limited",
            Reason::QuotaExhausted => "quota_exhausted",
            Reason::StreamErrorEvent => "server_error",
            Reason::CircuitOpen => "circuit_open",
            Reason::RateLimitedLocally => "rate_limited",
            Reason::UpstreamProxyError => "upstream_proxy_error",
            _ => match status {
                Some(429) => "rate_limited",
                Some(500..=599) => "server_error",
                Some(400..=499) => "client_error",
                _ => "other",
            },
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Reason;

    #[test]
    fn reasons_map_to_spec_error_types() {
        let cases = [
            (Reason::ConnectError, None, "connect_error"),
            (Reason::TlsCertificate, None, "connect_error"),
            (Reason::Timeout, None, "timeout"),
            (Reason::FirstEventTimeout, Some(200), "timeout"),
            (Reason::Reset, None, "reset"),
            (Reason::StreamDied, Some(200), "reset"),
            (Reason::Status429, Some(429), "rate_limited"),
            (Reason::QuotaExhausted, Some(429), "quota_exhausted"),
            (Reason::Status503, Some(503), "server_error"),
            (Reason::Status5xx, Some(520), "server_error"),
            (Reason::ContentFilter, Some(400), "client_error"),
            (Reason::NotRetryableStatus, Some(404), "client_error"),
            (Reason::Status408, Some(408), "client_error"),
            (Reason::CircuitOpen, None, "circuit_open"),
            (Reason::RateLimitedLocally, None, "rate_limited"),
            (Reason::UpstreamProxyError, None, "upstream_proxy_error"),
        ];
        for (reason, status, want) in cases {
            assert_eq!(reason.error_type(status), want, "{reason}");
        }
    }

    #[test]
    fn server_error_labels_stay_bounded() {
        assert_eq!(Reason::of_server_error(500).as_str(), "status_500");
        assert_eq!(Reason::of_server_error(502).as_str(), "status_502");
        assert_eq!(Reason::of_server_error(504).as_str(), "status_504");
        assert_eq!(Reason::of_server_error(599).as_str(), "status_5xx");
    }

    #[test]
    fn only_answers_from_the_upstream_count_as_it_being_up() {
        assert!(Reason::Status503.is_upstream_answer());
        assert!(Reason::QuotaExhausted.is_upstream_answer());
        assert!(!Reason::ConnectError.is_upstream_answer());
        assert!(!Reason::TlsCertificate.is_upstream_answer());
        assert!(!Reason::CircuitOpen.is_upstream_answer());
    }
}
