//! `backstop requests --summary`: per upstream and per tag over the whole period —
//! calls, failed (any outcome but `ok` and `replayed`), failure rate, retries (attempts beyond the
//! first), p50/p95 duration and tokens.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::record::JournalRecord;

/// The key used for records without an upstream or tag.
pub const NONE: &str = "(none)";

/// The numbers of one group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Group {
    pub calls: u64,
    pub failed: u64,
    pub retries: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    durations_ms: Vec<u64>,
}

impl Group {
    fn add(&mut self, r: &JournalRecord) {
        self.calls += 1;
        self.failed += u64::from(r.is_failure());
        self.retries += u64::from(r.attempts.unwrap_or(0).saturating_sub(1));
        if let Some(u) = r.usage {
            self.input_tokens += u.input_tokens;
            self.output_tokens += u.output_tokens;
        }
        if let Some(ms) = r.duration_ms {
            self.durations_ms.push(ms);
        }
    }

    /// Failed calls over all calls, 0 when there are none.
    pub fn failure_rate(&self) -> f64 {
        if self.calls == 0 {
            return 0.0;
        }
        self.failed as f64 / self.calls as f64
    }

    /// The `q` quantile (nearest rank) of the durations, in ms.
    pub fn duration_quantile(&self, q: f64) -> Option<u64> {
        let mut sorted = self.durations_ms.clone();
        sorted.sort_unstable();
        let rank = (q * sorted.len() as f64).ceil() as usize;
        sorted.get(rank.saturating_sub(1)).copied()
    }
}

#[derive(Debug, Default)]
pub struct Summary {
    pub total: Group,
    pub by_upstream: BTreeMap<String, Group>,
    pub by_tag: BTreeMap<String, Group>,
}

impl Summary {
    pub fn of<'a>(records: impl IntoIterator<Item = &'a JournalRecord>) -> Summary {
        let mut s = Summary::default();
        for r in records {
            s.total.add(r);
            let upstream = r.upstream.as_deref().unwrap_or(NONE);
            s.by_upstream.entry(upstream.to_owned()).or_default().add(r);
            let tag = r.tag.as_deref().unwrap_or(NONE);
            s.by_tag.entry(tag.to_owned()).or_default().add(r);
        }
        s
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let t = &self.total;
        let _ = writeln!(
            out,
            "requests: {}; failed: {} ({:.1}%); retries: {}; tokens: {} in, {} out",
            t.calls,
            t.failed,
            100.0 * t.failure_rate(),
            t.retries,
            t.input_tokens,
            t.output_tokens
        );
        section(&mut out, "upstream", &self.by_upstream);
        section(&mut out, "tag", &self.by_tag);
        out
    }
}

/// Most calls first, then by name.
fn section(out: &mut String, title: &str, groups: &BTreeMap<String, Group>) {
    if groups.is_empty() {
        return;
    }
    let mut rows: Vec<_> = groups.iter().collect();
    rows.sort_by(|a, b| b.1.calls.cmp(&a.1.calls).then_with(|| a.0.cmp(b.0)));
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .chain([title.len()])
        .max()
        .unwrap_or(0);
    let _ = writeln!(
        out,
        "\n{title:<width$}  {:>7}  {:>7}  {:>7}  {:>7}  {:>8}  {:>8}  {:>10}  {:>10}",
        "calls", "failed", "rate", "retries", "p50 ms", "p95 ms", "tokens in", "tokens out"
    );
    let ms = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    for (name, g) in rows {
        let _ = writeln!(
            out,
            "{name:<width$}  {:>7}  {:>7}  {:>6.1}%  {:>7}  {:>8}  {:>8}  {:>10}  {:>10}",
            g.calls,
            g.failed,
            100.0 * g.failure_rate(),
            g.retries,
            ms(g.duration_quantile(0.5)),
            ms(g.duration_quantile(0.95)),
            g.input_tokens,
            g.output_tokens
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::UsageRecord;

    fn record(
        upstream: &str,
        tag: Option<&str>,
        outcome: &str,
        attempts: u32,
        ms: u64,
    ) -> JournalRecord {
        JournalRecord {
            upstream: Some(upstream.into()),
            tag: tag.map(Into::into),
            outcome: outcome.to_owned().into(),
            attempts: Some(attempts),
            duration_ms: Some(ms),
            usage: (outcome == "ok").then_some(UsageRecord {
                input_tokens: 10,
                output_tokens: 5,
            }),
            ..JournalRecord::default()
        }
    }

    #[test]
    fn counts_calls_failures_retries_tokens_and_quantiles_per_group() {
        let mut records: Vec<_> = (1..=19)
            .map(|ms| record("openai", Some("quiz"), "ok", 1, ms))
            .collect();
        records.push(record("openai", Some("quiz"), "failed", 3, 100));
        records.push(record("azure", None, "refused", 0, 1));
        let s = Summary::of(&records);
        let quiz = &s.by_tag["quiz"];
        assert_eq!((quiz.calls, quiz.failed, quiz.retries), (20, 1, 2));
        assert_eq!((quiz.input_tokens, quiz.output_tokens), (190, 95));
        assert!((quiz.failure_rate() - 0.05).abs() < 1e-9);
        assert_eq!(quiz.duration_quantile(0.5), Some(10));
        assert_eq!(quiz.duration_quantile(0.95), Some(19));
        assert_eq!(s.by_upstream["azure"].failed, 1);
        assert_eq!(s.by_tag[NONE].calls, 1);
        let text = s.render();
        assert!(
            text.starts_with(
                "requests: 21; failed: 2 (9.5%); retries: 2; tokens: 190 in, 95 out\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("\nopenai         20        1     5.0%        2        10        19"),
            "{text}"
        );
    }

    #[test]
    fn a_replayed_call_is_answered_not_failed() {
        let records = [
            record("openai", None, "client_gone", 1, 900),
            record("openai", None, "replayed", 0, 1),
        ];
        let s = Summary::of(&records);
        let openai = &s.by_upstream["openai"];
        assert_eq!(
            (openai.calls, openai.failed),
            (2, 1),
            "only the abandoned call"
        );
    }
}
