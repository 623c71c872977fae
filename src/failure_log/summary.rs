//! `backstop failures --summary` (also printed at the end of `backstop demo`): counts
//! by upstream, error type and tag, and failures per UTC hour.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::read::Entry;
use super::record::FailureRecord;
use super::time::Micros;

/// Failed attempts (records) and failed requests (`final` records) of one group.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub records: u64,
    pub failed_requests: u64,
}

impl Counts {
    fn add(&mut self, r: &FailureRecord) {
        self.records += 1;
        self.failed_requests += u64::from(r.is_final);
    }
}

#[derive(Debug, Default)]
pub struct Summary {
    pub total: Counts,
    pub by_upstream: BTreeMap<String, Counts>,
    pub by_error_type: BTreeMap<String, Counts>,
    pub by_tag: BTreeMap<String, Counts>,
    /// Keyed by the start of the UTC hour.
    pub by_hour: BTreeMap<Micros, Counts>,
}

const NONE: &str = "(none)";

impl Summary {
    pub fn of<'a>(records: impl IntoIterator<Item = &'a FailureRecord>) -> Summary {
        let mut s = Summary::default();
        for r in records {
            s.total.add(r);
            let name = |v: &Option<String>| v.clone().unwrap_or_else(|| NONE.to_owned());
            s.by_upstream.entry(name(&r.upstream)).or_default().add(r);
            s.by_error_type
                .entry(r.error_type.clone())
                .or_default()
                .add(r);
            s.by_tag.entry(name(&r.tag)).or_default().add(r);
            s.by_hour
                .entry(r.timestamp.0.hour_start())
                .or_default()
                .add(r);
        }
        s
    }

    pub fn of_entries(entries: &[Entry]) -> Summary {
        Summary::of(entries.iter().map(|e| &e.record))
    }

    /// The text the CLI prints.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let t = self.total;
        let _ = writeln!(
            out,
            "failed attempts: {}; requests that failed in the end: {}",
            t.records, t.failed_requests
        );
        section(&mut out, "upstream", sorted(&self.by_upstream));
        section(&mut out, "error_type", sorted(&self.by_error_type));
        section(&mut out, "tag", sorted(&self.by_tag));
        let hours: Vec<(String, Counts)> = self
            .by_hour
            .iter()
            .map(|(hour, c)| {
                let text = hour.rfc3339();
                (format!("{} {}:00", &text[..10], &text[11..13]), *c)
            })
            .collect();
        section(&mut out, "hour (UTC)", hours);
        out
    }
}

/// Most records first, then by name.
fn sorted(map: &BTreeMap<String, Counts>) -> Vec<(String, Counts)> {
    let mut rows: Vec<_> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
    rows.sort_by(|a, b| b.1.records.cmp(&a.1.records).then_with(|| a.0.cmp(&b.0)));
    rows
}

fn section(out: &mut String, title: &str, rows: Vec<(String, Counts)>) {
    if rows.is_empty() {
        return;
    }
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .chain([title.len()])
        .max()
        .unwrap_or(0);
    let _ = writeln!(out, "\n{title:<width$}  attempts  requests");
    for (name, c) in rows {
        let _ = writeln!(
            out,
            "{name:<width$}  {:>8}  {:>8}",
            c.records, c.failed_requests
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure_log::record::Timestamp;

    fn record(
        upstream: &str,
        error_type: &str,
        tag: Option<&str>,
        fin: bool,
        at: i64,
    ) -> FailureRecord {
        FailureRecord {
            timestamp: Timestamp(Micros(at)),
            upstream: Some(upstream.into()),
            error_type: error_type.into(),
            tag: tag.map(Into::into),
            is_final: fin,
            ..FailureRecord::default()
        }
    }

    #[test]
    fn counts_attempts_and_failed_requests_per_group() {
        let hour = 3_600_000_000;
        let records = [
            record("openai", "server_error", Some("quiz"), false, 0),
            record("openai", "server_error", Some("quiz"), true, 10),
            record("azure", "timeout", None, true, hour + 5),
        ];
        let s = Summary::of(&records);
        assert_eq!(
            s.total,
            Counts {
                records: 3,
                failed_requests: 2
            }
        );
        assert_eq!(
            s.by_upstream["openai"],
            Counts {
                records: 2,
                failed_requests: 1
            }
        );
        assert_eq!(
            s.by_tag[NONE],
            Counts {
                records: 1,
                failed_requests: 1
            }
        );
        assert_eq!(s.by_hour.len(), 2);
        let text = s.render();
        assert!(
            text.starts_with("failed attempts: 3; requests that failed in the end: 2\n"),
            "{text}"
        );
        assert!(text.contains("\nupstream  attempts  requests\nopenai           2         1\nazure            1         1\n"), "{text}");
        assert!(
            text.contains("1970-01-01 01:00         1         1"),
            "{text}"
        );
    }
}
