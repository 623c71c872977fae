//! The delay a server asks for, in every form SPEC §2 names, in this order:
//! `retry-after-ms`, `x-ms-retry-after-ms`, `retry-after` (seconds, integer or float, or
//! an HTTP-date), and for a 429 without those, `x-ratelimit-reset-requests|tokens`
//! (Go-style `1s`, `6m0s`, `17ms`, or bare seconds) of the dimension whose
//! `x-ratelimit-remaining-*` is 0. A value that does not parse, or is negative, is
//! ignored and the next form is tried.

use std::time::{Duration, SystemTime};

use http::{HeaderMap, StatusCode};

/// Longer than any delay worth honouring; keeps `Duration` arithmetic far from overflow.
const CEILING: Duration = Duration::from_secs(365 * 24 * 3600);

pub fn server_delay(status: StatusCode, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let asked = get("retry-after-ms")
        .and_then(|v| seconds(v, 0.001))
        .or_else(|| get("x-ms-retry-after-ms").and_then(|v| seconds(v, 0.001)))
        .or_else(|| get("retry-after").and_then(|v| seconds(v, 1.0).or_else(|| http_date(v, now))));
    if asked.is_some() {
        return asked;
    }
    if status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let exhausted = |dimension: &str| {
        let remaining = get(&format!("x-ratelimit-remaining-{dimension}"))?;
        if remaining.parse::<f64>().ok()? > 0.0 {
            return None;
        }
        get(&format!("x-ratelimit-reset-{dimension}")).and_then(go_duration)
    };
    match (exhausted("requests"), exhausted("tokens")) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// A non-negative decimal number times `unit` seconds.
fn seconds(value: &str, unit: f64) -> Option<Duration> {
    let n: f64 = value.parse().ok()?;
    if !n.is_finite() || n < 0.0 {
        return None;
    }
    let secs = n * unit;
    if secs >= CEILING.as_secs_f64() {
        return Some(CEILING);
    }
    Duration::try_from_secs_f64(secs).ok()
}

/// An HTTP-date, as the time from `now` until then (zero if it has passed).
fn http_date(value: &str, now: SystemTime) -> Option<Duration> {
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(CEILING),
    )
}

/// Go's `time.Duration` text (`1s`, `6m0s`, `1h2m3.5s`, `17ms`, `250us`) or bare seconds.
pub fn go_duration(value: &str) -> Option<Duration> {
    if let Some(d) = seconds(value, 1.0) {
        return Some(d);
    }
    let mut rest = value;
    let mut total = 0.0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return None;
        }
        let n: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    seconds(&total.to_string(), 1.0)
}

/// `d` plus up to 20 % (`rand01` in [0, 1)), so clients told the same delay spread out.
pub fn with_jitter(d: Duration, rand01: f64) -> Duration {
    d + d.mul_f64(0.2 * rand01.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn delay(status: u16, headers: &[(&'static str, &str)]) -> Option<Duration> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, HeaderValue::from_str(v).expect("header"));
        }
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        server_delay(StatusCode::from_u16(status).expect("status"), &map, now)
    }

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn retry_after_ms_wins_over_everything() {
        assert_eq!(
            delay(429, &[("retry-after-ms", "1500"), ("retry-after", "9")]),
            Some(MS(1500))
        );
        assert_eq!(
            delay(429, &[("retry-after-ms", "12.5")]),
            Some(Duration::from_micros(12_500))
        );
    }

    #[test]
    fn azure_ms_header_comes_next() {
        assert_eq!(
            delay(429, &[("x-ms-retry-after-ms", "250"), ("retry-after", "9")]),
            Some(MS(250))
        );
    }

    #[test]
    fn retry_after_seconds_integer_and_float() {
        assert_eq!(delay(503, &[("retry-after", "2")]), Some(MS(2000)));
        assert_eq!(delay(503, &[("retry-after", "0.25")]), Some(MS(250)));
        assert_eq!(delay(503, &[("retry-after", " 3 ")]), Some(MS(3000)));
    }

    #[test]
    fn retry_after_http_date() {
        // now is 2023-11-14T22:13:20Z.
        assert_eq!(
            delay(429, &[("retry-after", "Tue, 14 Nov 2023 22:13:25 GMT")]),
            Some(MS(5000))
        );
    }

    #[test]
    fn past_http_date_means_now() {
        assert_eq!(
            delay(429, &[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn garbage_and_negative_values_are_ignored() {
        assert_eq!(delay(429, &[("retry-after", "soon")]), None);
        assert_eq!(delay(429, &[("retry-after", "-5")]), None);
        assert_eq!(delay(429, &[("retry-after-ms", "NaN")]), None);
        assert_eq!(
            delay(429, &[("retry-after-ms", "-1"), ("retry-after", "1")]),
            Some(MS(1000)),
            "falls through"
        );
        assert_eq!(delay(429, &[("retry-after", "inf")]), None);
    }

    #[test]
    fn huge_values_are_capped_not_overflowed() {
        assert_eq!(delay(429, &[("retry-after", "1e300")]), Some(CEILING));
        assert_eq!(
            delay(429, &[("retry-after", "99999999999999999999")]),
            Some(CEILING)
        );
    }

    #[test]
    fn ratelimit_reset_of_the_exhausted_dimension() {
        let requests = [
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1s"),
            ("x-ratelimit-remaining-tokens", "5000"),
            ("x-ratelimit-reset-tokens", "45s"),
        ];
        assert_eq!(delay(429, &requests), Some(MS(1000)));
        let tokens = [
            ("x-ratelimit-remaining-requests", "10"),
            ("x-ratelimit-reset-requests", "45s"),
            ("x-ratelimit-remaining-tokens", "0"),
            ("x-ratelimit-reset-tokens", "6m0s"),
        ];
        assert_eq!(delay(429, &tokens), Some(Duration::from_secs(360)));
    }

    #[test]
    fn ratelimit_reset_only_counts_for_429() {
        let headers = [
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "1s"),
        ];
        assert_eq!(delay(503, &headers), None);
        assert_eq!(delay(200, &headers), None);
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration("1s"), Some(MS(1000)));
        assert_eq!(go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(go_duration("17ms"), Some(MS(17)));
        assert_eq!(
            go_duration("1h2m3.5s"),
            Some(Duration::from_millis(3_723_500))
        );
        assert_eq!(go_duration("250us"), Some(Duration::from_micros(250)));
        assert_eq!(go_duration("20"), Some(Duration::from_secs(20)));
        assert_eq!(go_duration("0.5"), Some(MS(500)));
        for bad in ["", "s", "5x", "1s2", "-1s", "ms"] {
            assert_eq!(go_duration(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn jitter_adds_at_most_a_fifth() {
        let d = MS(1000);
        assert_eq!(with_jitter(d, 0.0), d);
        assert_eq!(with_jitter(d, 0.5), MS(1100));
        assert!(with_jitter(d, 0.999_999) <= MS(1200));
        assert_eq!(with_jitter(d, 7.0), MS(1200), "clamped");
    }
}
