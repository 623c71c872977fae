//! Daily files: `<dir>/<prefix>YYYY-MM-DD.jsonl`, one per UTC day, and retention. The
//! failure log (`failures-`) and the request journal (`requests-`) share this layout;
//! a `FileKind` names which files a writer or reader works on.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::time::{Day, Micros};

const SUFFIX: &str = ".jsonl";

/// Which daily files: their name prefix, and what to call them in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileKind {
    pub prefix: &'static str,
    /// "failure log", "request journal": for log lines.
    pub what: &'static str,
}

/// The failure log's files (SPEC §3).
pub const FAILURES: FileKind = FileKind {
    prefix: "failures-",
    what: "failure log",
};

/// A record kept in daily files: one JSON line, filed under the UTC day of its
/// timestamp.
pub trait DailyRecord: Serialize + DeserializeOwned + Send + Sync + 'static {
    const FILES: FileKind;
    fn timestamp(&self) -> Micros;

    /// Appends the record as one JSON line's text (no newline); `serde_json`'s
    /// unless a record type has a faster writer of the same bytes.
    fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        serde_json::to_writer(out, self)
    }
}

impl FileKind {
    pub fn file_name(self, day: Day) -> String {
        format!("{}{day}{SUFFIX}", self.prefix)
    }

    pub fn file_path(self, dir: &Path, day: Day) -> PathBuf {
        dir.join(self.file_name(day))
    }

    /// The day of one of these files' names; `None` for any other file.
    pub fn day_of(self, name: &str) -> Option<Day> {
        Day::parse(name.strip_prefix(self.prefix)?.strip_suffix(SUFFIX)?)
    }

    /// These files in `dir`, oldest first. A missing directory has none.
    pub fn list(self, dir: &Path) -> std::io::Result<Vec<(Day, PathBuf)>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry?;
            if let Some(day) = entry.file_name().to_str().and_then(|n| self.day_of(n)) {
                files.push((day, entry.path()));
            }
        }
        files.sort();
        Ok(files)
    }

    /// The days that have a file in `dir` (none when it cannot be read).
    pub fn list_days(self, dir: &Path) -> Vec<Day> {
        self.list(dir)
            .map(|files| files.into_iter().map(|(day, _)| day).collect())
            .unwrap_or_default()
    }

    /// Deletes the files of days more than `keep_days` before `today`; only files
    /// named like these are touched. Returns how many were deleted.
    pub fn remove_old(self, dir: &Path, today: Day, keep_days: u32) -> std::io::Result<usize> {
        let oldest_kept = Day(today.0 - i64::from(keep_days));
        let mut removed = 0;
        for (day, path) in self.list(dir)? {
            if day < oldest_kept {
                std::fs::remove_file(&path)?;
                tracing::info!(file = %path.display(), what = self.what, "retention: deleted");
                removed += 1;
            }
        }
        Ok(removed)
    }
}

pub fn file_name(day: Day) -> String {
    FAILURES.file_name(day)
}

pub fn file_path(dir: &Path, day: Day) -> PathBuf {
    FAILURES.file_path(dir, day)
}

/// The day of a failure-log file name; `None` for any other file.
pub fn day_of(name: &str) -> Option<Day> {
    FAILURES.day_of(name)
}

/// The days that have a failure-log file in `dir` (none when it cannot be read).
pub fn list_days(dir: &Path) -> Vec<Day> {
    FAILURES.list_days(dir)
}

/// Failure-log retention (see `FileKind::remove_old`).
pub fn remove_old(dir: &Path, today: Day, keep_days: u32) -> std::io::Result<usize> {
    FAILURES.remove_old(dir, today, keep_days)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_ignored() {
        let day = Day::from_civil(2026, 5, 1);
        assert_eq!(file_name(day), "failures-2026-05-01.jsonl");
        assert_eq!(day_of("failures-2026-05-01.jsonl"), Some(day));
        for other in [
            "failures-2026-05-01.jsonl.bak",
            "failures-2026-5-1.jsonl",
            "notes.txt",
            "xfailures-2026-05-01.jsonl",
            "requests-2026-05-01.jsonl",
        ] {
            assert_eq!(day_of(other), None, "{other}");
        }
    }
}
