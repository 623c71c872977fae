use http::{HeaderMap, HeaderValue, StatusCode};

use super::*;
use crate::retry::Reason;

fn status(code: u16) -> Outcome {
    status_with(code, &[], b"")
}

fn status_with(code: u16, headers: &[(&'static str, &'static str)], body: &[u8]) -> Outcome {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.insert(*k, HeaderValue::from_static(v));
    }
    classify_response(StatusCode::from_u16(code).expect("status"), &map, body)
}

fn reason(o: Outcome) -> &'static str {
    o.reason().as_str()
}

#[test]
fn success_statuses_are_passed_back() {
    for code in [100, 200, 201, 204, 301, 304, 399] {
        assert_eq!(status(code), Outcome::Success, "{code}");
    }
}

#[test]
fn throttling_statuses_retry_with_the_throttle_base() {
    assert_eq!(
        status(429),
        Outcome::Retry {
            reason: Reason::Status429,
            kind: Retryable::Throttle
        }
    );
    assert_eq!(
        status(503),
        Outcome::Retry {
            reason: Reason::Status503,
            kind: Retryable::Throttle
        }
    );
}

#[test]
fn transient_statuses_retry() {
    for (code, why) in [
        (408, "status_408"),
        (409, "status_409"),
        (500, "status_500"),
        (502, "status_502"),
        (504, "status_504"),
    ] {
        assert!(
            matches!(status(code), Outcome::Retry { reason, kind: Retryable::Transient } if reason.as_str() == why),
            "{code}"
        );
    }
}

#[test]
fn every_other_5xx_retries_except_501_and_505() {
    for code in 500..=599u16 {
        let outcome = status(code);
        if code == 501 || code == 505 {
            assert_eq!(
                outcome,
                Outcome::Fatal {
                    reason: Reason::NotRetryableStatus
                },
                "{code}"
            );
        } else {
            assert!(
                matches!(outcome, Outcome::Retry { .. }),
                "{code} should retry"
            );
        }
    }
}

#[test]
fn other_4xx_never_retry() {
    for code in (400..=499u16).filter(|c| ![408, 409, 429].contains(c)) {
        assert!(
            matches!(status(code), Outcome::Fatal { .. }),
            "{code} must not retry"
        );
    }
    for code in [400, 401, 403, 404, 413, 422] {
        assert_eq!(reason(status(code)), "not_retryable_status");
    }
}

#[test]
fn quota_429_never_retries_by_code_or_type() {
    let by_code = br#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
    let by_type = br#"{"error":{"message":"quota","type":"insufficient_quota","code":null}}"#;
    assert_eq!(
        status_with(429, &[], by_code),
        Outcome::Fatal {
            reason: Reason::QuotaExhausted
        }
    );
    assert_eq!(
        status_with(429, &[], by_type),
        Outcome::Fatal {
            reason: Reason::QuotaExhausted
        }
    );
}

#[test]
fn rate_limit_429_body_still_retries() {
    let body = br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
    assert_eq!(reason(status_with(429, &[], body)), "status_429");
}

#[test]
fn content_filter_and_context_length_400s_are_named_and_never_retried() {
    let filter = br#"{"error":{"message":"filtered","type":null,"param":"prompt","code":"content_filter","status":400}}"#;
    let context = br#"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#;
    assert_eq!(
        status_with(400, &[], filter),
        Outcome::Fatal {
            reason: Reason::ContentFilter
        }
    );
    assert_eq!(
        status_with(400, &[], context),
        Outcome::Fatal {
            reason: Reason::ContextLengthExceeded
        }
    );
}

#[test]
fn garbage_and_truncated_bodies_fall_back_to_the_status_rule() {
    assert_eq!(
        reason(status_with(429, &[], b"<html>rate limited</html>")),
        "status_429"
    );
    assert_eq!(
        reason(status_with(
            429,
            &[],
            br#"{"error":{"code":"insufficient_qu"#
        )),
        "status_429"
    );
    assert_eq!(reason(status_with(400, &[], b"")), "not_retryable_status");
}

#[test]
fn x_should_retry_overrides_the_status_rules() {
    assert_eq!(
        status_with(503, &[("x-should-retry", "false")], b""),
        Outcome::Fatal {
            reason: Reason::XShouldRetryFalse
        }
    );
    assert_eq!(
        status_with(400, &[("x-should-retry", "true")], b""),
        Outcome::Retry {
            reason: Reason::NotRetryableStatus,
            kind: Retryable::Transient
        }
    );
    assert_eq!(
        reason(status_with(429, &[("x-should-retry", "TRUE")], b"")),
        "status_429"
    );
    assert_eq!(
        reason(status_with(503, &[("x-should-retry", "maybe")], b"")),
        "status_503"
    );
    assert_eq!(
        status_with(200, &[("x-should-retry", "true")], b""),
        Outcome::Success
    );
}

#[test]
fn transport_failures_are_classified() {
    assert_eq!(
        classify_transport(TransportFailure::Connect),
        Outcome::Retry {
            reason: Reason::ConnectError,
            kind: Retryable::Transient
        }
    );
    assert_eq!(
        classify_transport(TransportFailure::Reset),
        Outcome::Retry {
            reason: Reason::Reset,
            kind: Retryable::Ambiguous
        }
    );
    assert_eq!(
        classify_transport(TransportFailure::Timeout),
        Outcome::Retry {
            reason: Reason::Timeout,
            kind: Retryable::Ambiguous
        }
    );
    assert_eq!(
        classify_transport(TransportFailure::Certificate),
        Outcome::Fatal {
            reason: Reason::TlsCertificate
        }
    );
}

#[derive(Debug)]
struct Wrapper(Box<dyn std::error::Error + Send + Sync>);
impl std::fmt::Display for Wrapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("wrapper")
    }
}
impl std::error::Error for Wrapper {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

#[test]
fn certificate_errors_are_found_inside_io_errors() {
    let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
    let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
    let chain = Wrapper(Box::new(io));
    assert_eq!(
        transport_failure(&chain, true),
        TransportFailure::Certificate
    );
}

#[test]
fn certificate_errors_are_found_inside_nested_io_errors() {
    let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
    let inner = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
    let outer = std::io::Error::other(inner);
    assert_eq!(
        transport_failure(&Wrapper(Box::new(outer)), true),
        TransportFailure::Certificate
    );
}

#[test]
fn other_tls_failures_during_connect_are_connect_errors() {
    let tls = rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure);
    let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
    assert_eq!(
        transport_failure(&Wrapper(Box::new(io)), true),
        TransportFailure::Connect
    );
}

#[test]
fn timeouts_and_resets_are_told_apart_by_kind() {
    let timeout = std::io::Error::new(std::io::ErrorKind::TimedOut, "t");
    let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "r");
    assert_eq!(
        transport_failure(&Wrapper(Box::new(timeout)), false),
        TransportFailure::Timeout
    );
    assert_eq!(
        transport_failure(&Wrapper(Box::new(reset)), false),
        TransportFailure::Reset
    );
}

#[test]
fn error_fields_reads_code_and_message() {
    let body = br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#;
    assert_eq!(
        error_fields(body),
        (
            Some("rate_limit_exceeded".into()),
            Some("Rate limit reached".into())
        )
    );
    assert_eq!(error_fields(b"nope"), (None, None));
}
