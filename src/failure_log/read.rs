//! Reading daily files back (for `backstop failures`, `backstop requests` and the
//! demo): whole lines that parse are records; a torn last line or a corrupt line is
//! skipped and counted, never fatal; fields this version does not know are ignored.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use super::files::DailyRecord;
use super::record::FailureRecord;
use super::time::{Day, Micros};

/// A record and its line as written (printed as it was by `--json`, so fields of a
/// newer version survive).
#[derive(Debug, Clone)]
pub struct Entry<R = FailureRecord> {
    pub record: R,
    pub line: String,
}

/// Which records to keep.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only records at or after this instant.
    pub since: Option<Micros>,
    pub upstream: Option<String>,
    pub tag: Option<String>,
    pub error_type: Option<String>,
}

impl Filter {
    pub fn keeps(&self, r: &FailureRecord) -> bool {
        let same = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have == Some(w))
        };
        self.since.is_none_or(|t| r.timestamp.0 >= t)
            && same(&self.upstream, r.upstream.as_deref())
            && same(&self.tag, r.tag.as_deref())
            && same(&self.error_type, Some(r.error_type.as_str()))
    }
}

/// What was read from a set of files.
#[derive(Debug)]
pub struct Read<R = FailureRecord> {
    pub entries: Vec<Entry<R>>,
    /// Files read, in order.
    pub files: Vec<PathBuf>,
    /// Lines that were not a readable record (torn or corrupt), per file.
    pub skipped: Vec<(PathBuf, usize)>,
}

impl<R> Default for Read<R> {
    fn default() -> Read<R> {
        Read {
            entries: Vec::new(),
            files: Vec::new(),
            skipped: Vec::new(),
        }
    }
}

impl<R> Read<R> {
    pub fn skipped_total(&self) -> usize {
        self.skipped.iter().map(|(_, n)| n).sum()
    }
}

/// Reads the failure-log files of `days` (those that exist) in `dir`, keeping what
/// `filter` keeps.
pub fn read_days(dir: &Path, days: &[Day], filter: &Filter) -> std::io::Result<Read> {
    read_daily(dir, days, |r| filter.keeps(r))
}

/// Reads the files of `days` (those that exist) in `dir`, keeping what `keep` keeps,
/// oldest record first.
pub fn read_daily<R: DailyRecord>(
    dir: &Path,
    days: &[Day],
    keep: impl Fn(&R) -> bool,
) -> std::io::Result<Read<R>> {
    let mut read = Read::default();
    for day in days {
        let path = R::FILES.file_path(dir, *day);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let skipped = read_lines(std::io::BufReader::new(file), &keep, &mut read.entries)?;
        if skipped > 0 {
            read.skipped.push((path.clone(), skipped));
        }
        read.files.push(path);
    }
    read.entries.sort_by_key(|e| e.record.timestamp());
    Ok(read)
}

/// Parses lines into `out`; returns how many were skipped as unreadable.
pub fn read_lines<R: DailyRecord>(
    mut input: impl BufRead,
    keep: impl Fn(&R) -> bool,
    out: &mut Vec<Entry<R>>,
) -> std::io::Result<usize> {
    let mut skipped = 0;
    let mut raw = Vec::new();
    loop {
        raw.clear();
        if input.read_until(b'\n', &mut raw)? == 0 {
            return Ok(skipped);
        }
        let Ok(line) = std::str::from_utf8(&raw) else {
            skipped += 1;
            continue;
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str::<R>(line) {
            Ok(record) if keep(&record) => out.push(Entry {
                record,
                line: line.to_owned(),
            }),
            Ok(_) => {}
            Err(_) => skipped += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_torn_and_corrupt_lines_and_keeps_the_rest() {
        let text = concat!(
            "{\"timestamp\":\"2026-05-01T10:00:00.000000Z\",\"final\":false,\"error_type\":\"reset\"}\n",
            "garbage\n",
            "\n",
            "{\"timestamp\":\"2026-05-01T10:00:01.000000Z\",\"error_type\":\"timeout\",\"new_field\":1}\n",
            "{\"timestamp\":\"2026-05-01T10:00:02.0000"
        );
        let mut out = Vec::new();
        let all = Filter::default();
        let skipped = read_lines(text.as_bytes(), |r| all.keeps(r), &mut out).expect("reads");
        assert_eq!(skipped, 2);
        let types: Vec<_> = out.iter().map(|e| e.record.error_type.as_str()).collect();
        assert_eq!(types, ["reset", "timeout"]);
    }

    #[test]
    fn filters_by_upstream_tag_type_and_time() {
        let record = FailureRecord {
            upstream: Some("openai".into()),
            tag: Some("quiz".into()),
            error_type: "server_error".into(),
            ..FailureRecord::default()
        };
        let f = |upstream: Option<&str>, tag: Option<&str>, error_type: Option<&str>| Filter {
            since: None,
            upstream: upstream.map(Into::into),
            tag: tag.map(Into::into),
            error_type: error_type.map(Into::into),
        };
        assert!(f(None, None, None).keeps(&record));
        assert!(f(Some("openai"), Some("quiz"), Some("server_error")).keeps(&record));
        assert!(!f(Some("azure"), None, None).keeps(&record));
        assert!(!f(None, Some("other"), None).keeps(&record));
        assert!(!f(None, None, Some("timeout")).keeps(&record));
        let later = Filter {
            since: Some(Micros(1)),
            ..Filter::default()
        };
        assert!(!later.keeps(&record));
    }
}
