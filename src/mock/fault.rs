//! What the mock does to one request instead of (or on the way to) a normal answer.
//!
//! Each variant reproduces a failure that OpenAI or Azure OpenAI produce in practice, at
//! the byte level: a reset is a real TCP RST, a torn body is a real short body.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The behaviour of the mock for one request. Queue them with
/// [`MockUpstream::push`](super::MockUpstream::push); each request takes the next one.
#[derive(Clone, Debug)]
pub enum Fault {
    /// The normal answer for the path (see the module docs).
    Ok,
    /// Anything at all. `content-type` (JSON), `content-length` and `x-request-id` are
    /// added unless `headers` already has them.
    Respond {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// 429 with an OpenAI `rate_limit_exceeded` error and the given delay header(s).
    RateLimited(RetryAfter),
    /// 429 whose `error.code` and `error.type` are `insufficient_quota` (not retryable).
    QuotaExhausted,
    /// 400 with Azure's `error.code` `content_filter` (not retryable).
    ContentFilter,
    /// This 5xx status with an OpenAI `server_error` body.
    ServerError(u16),
    /// Read the whole request, then RST the connection without sending a byte.
    ResetBeforeHeaders,
    /// Status and headers (with the full `content-length`) and about half of the
    /// normal body, then RST.
    ResetMidBody,
    /// This status with an OpenAI `server_error` body sent chunked (no length to
    /// check it by), about half of that body, then RST: an error response that breaks
    /// while being read.
    ErrorBodyCut(u16),
    /// Wait this long before the response headers, then answer normally.
    Stall(Duration),
    /// Wait this long, then do as the inner fault says (a slow error, say).
    Delayed(Duration, Box<Fault>),
    /// Answer with an SSE stream per the script, whatever the request asked for.
    Stream(StreamScript),
}

/// The delay header(s) sent with [`Fault::RateLimited`].
#[derive(Clone, Debug)]
pub enum RetryAfter {
    /// No delay header at all.
    None,
    /// `retry-after-ms: N` (OpenAI).
    Ms(u64),
    /// `x-ms-retry-after-ms: N` (Azure).
    AzureMs(u64),
    /// `retry-after: S`, e.g. `"2"` or `"1.5"`, sent verbatim.
    Seconds(String),
    /// `retry-after` as an IMF-fixdate.
    HttpDate(SystemTime),
    /// `x-ratelimit-remaining-requests: 0` and `x-ratelimit-reset-requests: S` (Go-style
    /// `1s`, `6m0s`, `17ms`, sent verbatim); the tokens dimension is not exhausted
    /// (remaining nonzero) and resets in [`OTHER_DIMENSION_RESET`].
    ResetRequests(String),
    /// The same for the tokens dimension; the requests dimension is not exhausted.
    ResetTokens(String),
}

/// `x-ratelimit-reset-*` of the dimension that is *not* exhausted. Deliberately far from
/// any value a test would script, so a client that reads the wrong dimension shows it.
pub const OTHER_DIMENSION_RESET: &str = "45s";

impl RetryAfter {
    /// The response headers that carry this delay.
    pub fn headers(&self) -> Vec<(String, String)> {
        let one = |name: &str, value: String| vec![(name.to_string(), value)];
        match self {
            RetryAfter::None => Vec::new(),
            RetryAfter::Ms(ms) => one("retry-after-ms", ms.to_string()),
            RetryAfter::AzureMs(ms) => one("x-ms-retry-after-ms", ms.to_string()),
            RetryAfter::Seconds(s) => one("retry-after", s.clone()),
            RetryAfter::HttpDate(at) => one("retry-after", http_date(*at)),
            RetryAfter::ResetRequests(reset) => {
                ratelimit_headers(reset, OTHER_DIMENSION_RESET, true)
            }
            RetryAfter::ResetTokens(reset) => {
                ratelimit_headers(OTHER_DIMENSION_RESET, reset, false)
            }
        }
    }
}

/// Formats an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7). Written
/// here because `humantime` only formats RFC 3339 and `httpdate` is not a dependency.
pub fn http_date(at: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// OpenAI's `x-ratelimit-*` set, with one dimension exhausted.
fn ratelimit_headers(
    reset_requests: &str,
    reset_tokens: &str,
    requests_exhausted: bool,
) -> Vec<(String, String)> {
    let (remaining_requests, remaining_tokens) = if requests_exhausted {
        ("0", "149000")
    } else {
        ("499", "0")
    };
    [
        ("x-ratelimit-limit-requests", "500"),
        ("x-ratelimit-limit-tokens", "150000"),
        ("x-ratelimit-remaining-requests", remaining_requests),
        ("x-ratelimit-remaining-tokens", remaining_tokens),
        ("x-ratelimit-reset-requests", reset_requests),
        ("x-ratelimit-reset-tokens", reset_tokens),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect()
}

/// How an SSE answer unfolds.
#[derive(Clone, Debug)]
pub struct StreamScript {
    /// Content events (`chat.completion.chunk`) to send.
    pub chunks: usize,
    /// Pause between events.
    pub gap: Duration,
    /// How the stream ends.
    pub end: StreamEnd,
    /// Pause between the 200 headers and the first event.
    pub first_event_delay: Duration,
    /// How every line of the stream ends (the SSE standard allows three ways).
    pub line_ending: LineEnding,
}

/// The line ending of a scripted SSE stream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LineEnding {
    /// `\n`, as OpenAI sends.
    #[default]
    Lf,
    /// A lone `\r`.
    Cr,
    /// `\r\n`.
    Crlf,
    /// `\r`, `\r\n`, `\n` in turn, line after line (never a CR right before a lone LF,
    /// which would read as one CRLF).
    Mixed,
}

impl LineEnding {
    /// Rewrites the `\n` line ends of `text`; `count` carries the turn of `Mixed`
    /// from one event to the next.
    pub fn apply(self, text: &str, count: &mut usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() + text.len() / 8);
        for (i, piece) in text.split('\n').enumerate() {
            if i > 0 {
                let end: &[u8] = match self {
                    LineEnding::Lf => b"\n",
                    LineEnding::Cr => b"\r",
                    LineEnding::Crlf => b"\r\n",
                    LineEnding::Mixed => [&b"\r"[..], b"\r\n", b"\n"][*count % 3],
                };
                *count += 1;
                out.extend_from_slice(end);
            }
            out.extend_from_slice(piece.as_bytes());
        }
        out
    }
}

impl Default for StreamScript {
    /// Five chunks 10 ms apart, the first at once, ending normally.
    fn default() -> Self {
        StreamScript {
            chunks: 5,
            gap: Duration::from_millis(10),
            end: StreamEnd::Done,
            first_event_delay: Duration::ZERO,
            line_ending: LineEnding::Lf,
        }
    }
}

/// The end of a scripted SSE stream.
#[derive(Clone, Debug)]
pub enum StreamEnd {
    /// All chunks, then a usage chunk if the request had `stream_options.include_usage`,
    /// then `data: [DONE]`.
    Done,
    /// RST after K content events (K = 0: right after the 200 headers).
    DieAfter(usize),
    /// Silence after K events, until the client hangs up or the mock shuts down.
    StallAfter(usize),
    /// 200 headers, then one `data: {"error":{...}}` event, then a clean end.
    ErrorEventFirst,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_endings_rewrite_every_line_end() {
        let mut n = 0;
        assert_eq!(LineEnding::Cr.apply("data: 1\n\n", &mut n), b"data: 1\r\r");
        let mut n = 0;
        let mixed = LineEnding::Mixed.apply("a\n\nb\n\n", &mut n);
        assert_eq!(mixed, b"a\r\r\nb\n\r");
    }

    #[test]
    fn http_date_is_imf_fixdate() {
        let at = |secs| UNIX_EPOCH + Duration::from_secs(secs);
        assert_eq!(http_date(at(0)), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(at(784_111_777)), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(http_date(at(951_782_400)), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(
            http_date(at(1_767_225_599)),
            "Wed, 31 Dec 2025 23:59:59 GMT"
        );
    }
}
