//! What the demo prints: each request's story, the summary, and a few metrics.

use std::fmt::Write as _;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use std::collections::HashMap;

use crate::events::AttemptReport;

use super::traffic::Outcome;

fn story(events: &[&AttemptReport]) -> String {
    let mut out = String::new();
    for e in events {
        let what = e
            .status
            .map_or_else(|| e.outcome.reason().as_str().to_owned(), |s| s.to_string());
        out.push_str(&what);
        if let Some(delay) = e.delay {
            let _ = write!(out, " → wait {} ms → ", delay.as_millis());
        }
    }
    out
}

pub(super) fn report(
    outcomes: &[Outcome],
    events: &[AttemptReport],
    upstream_attempts: usize,
) -> String {
    let mut by_request: HashMap<&str, Vec<&AttemptReport>> = HashMap::new();
    for e in events {
        by_request.entry(&e.request_id).or_default().push(e);
    }
    let mut out = String::new();
    let retried = table(&mut out, outcomes, &by_request);
    summary(&mut out, outcomes, upstream_attempts, retried);
    out
}

/// One line per request: what the client got and the attempts behind it. Returns how
/// many requests were retried.
fn table(
    out: &mut String,
    outcomes: &[Outcome],
    by_request: &HashMap<&str, Vec<&AttemptReport>>,
) -> usize {
    let _ = writeln!(
        out,
        "  {:>3}  {:<6}  {:>6}  {:>8}  {:>8}  attempts as backstop saw them",
        "#", "kind", "status", "attempts", "time"
    );
    let mut retried = 0;
    for o in outcomes {
        let kind = if o.stream { "stream" } else { "json" };
        let attempts = by_request
            .get(o.request_id.as_str())
            .map(Vec::as_slice)
            .unwrap_or_default();
        retried += usize::from(attempts.len() > 1);
        let _ = writeln!(
            out,
            "  {:>3}  {:<6}  {:>6}  {:>8}  {:>5} ms  {}  ({})",
            o.n,
            kind,
            o.status,
            o.attempts,
            o.elapsed.as_millis(),
            story(attempts),
            o.note
        );
    }
    retried
}

fn summary(out: &mut String, outcomes: &[Outcome], upstream_attempts: usize, retried: usize) {
    let total = outcomes.len();
    let ok = outcomes.iter().filter(|o| o.status == 200).count();
    let failed = total - ok;
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "Summary: {total} requests, {ok} succeeded, {failed} failed ({:.0} % success).",
        100.0 * ok as f64 / total.max(1) as f64
    );
    let _ = writeln!(
        out,
        "  The upstream saw {upstream_attempts} attempts for {total} requests; {retried} requests were retried."
    );
    let _ = writeln!(
        out,
        "  Without backstop, those {retried} requests would have been errors in your app."
    );
    if failed > 0 {
        let _ = writeln!(
            out,
            "  Requests that still failed got the last upstream error as it was, plus x-should-retry: false\n  \
             so the SDK does not retry on top of backstop."
        );
    }
    let _ = writeln!(
        out,
        "\nTry it with your app: run `backstop` (it listens on 127.0.0.1:8080) and set"
    );
    let _ = writeln!(out, "  OPENAI_BASE_URL=http://127.0.0.1:8080/v1");
}

/// backstop's own `/metrics`, as Prometheus would scrape it (every response body has
/// been read by now, so every request has been counted).
pub(super) async fn scrape(admin: &str) -> Result<String, String> {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("{admin}/metrics")
        .parse()
        .map_err(|e| format!("{e}"))?;
    let response = client.get(uri).await.map_err(|e| e.to_string())?;
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&body.to_bytes()).into_owned())
}

/// Sums the samples of `name` by the value of label `by`, in label order.
fn sum_by(scrape: &str, name: &str, by: &str) -> Vec<(String, f64)> {
    let mut sums: Vec<(String, f64)> = Vec::new();
    for line in scrape.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Some((series_name, labels)) = series.split_once('{') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let needle = format!("{by}=\"");
        let label = labels
            .split_once(&needle)
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(v, _)| v.to_owned());
        if series_name != name || value == 0.0 {
            continue;
        }
        if let Some(label) = label {
            match sums.iter_mut().find(|(l, _)| *l == label) {
                Some((_, sum)) => *sum += value,
                None => sums.push((label, value)),
            }
        }
    }
    sums.sort_by(|a, b| a.0.cmp(&b.0));
    sums
}

pub(super) fn metrics_summary(scrape: &str, admin: &str) -> String {
    let line = |sums: Vec<(String, f64)>| {
        if sums.is_empty() {
            return "none".to_owned();
        }
        sums.iter()
            .map(|(label, v)| format!("{label} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = String::new();
    let _ = writeln!(out, "\nFrom backstop's own scrape ({admin}/metrics):");
    let rows = [
        ("backstop_requests_total", "status"),
        ("backstop_upstream_attempts_total", "outcome"),
        ("backstop_retries_total", "reason"),
        ("backstop_retries_suppressed_total", "reason"),
        ("gen_ai_client_token_usage_sum", "gen_ai_token_type"),
    ];
    for (family, by) in rows {
        let by_label = by.trim_start_matches("gen_ai_").replace('_', " ");
        let title = format!("{family} by {by_label}");
        let _ = writeln!(out, "  {title:<45}{}", line(sum_by(scrape, family, by)));
    }
    let _ = writeln!(
        out,
        "  A running backstop serves the same on its admin port: /metrics, /stats (JSON per\n  \
         upstream and tag) and /status (a page to keep open)."
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_summary_sums_series_by_label() {
        let scrape = "# TYPE backstop_retries_total counter\n\
            backstop_retries_total{reason=\"status_503\",upstream=\"a\"} 3\n\
            backstop_retries_total{reason=\"status_503\",upstream=\"b\"} 2\n\
            backstop_retries_total{reason=\"status_429\",upstream=\"a\"} 0\n";
        assert_eq!(
            sum_by(scrape, "backstop_retries_total", "reason"),
            [("status_503".to_owned(), 5.0)]
        );
    }
}
