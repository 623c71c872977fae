//! The daily files: `<dir>/failures-YYYY-MM-DD.jsonl`, one per UTC day, and retention.

use std::path::{Path, PathBuf};

use super::time::Day;

const PREFIX: &str = "failures-";
const SUFFIX: &str = ".jsonl";

pub fn file_name(day: Day) -> String {
    format!("{PREFIX}{day}{SUFFIX}")
}

pub fn file_path(dir: &Path, day: Day) -> PathBuf {
    dir.join(file_name(day))
}

/// The day of a failure-log file name; `None` for any other file.
pub fn day_of(name: &str) -> Option<Day> {
    Day::parse(name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?)
}

/// The failure-log files in `dir`, oldest first. A missing directory has none.
pub fn list(dir: &Path) -> std::io::Result<Vec<(Day, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        if let Some(day) = entry.file_name().to_str().and_then(day_of) {
            files.push((day, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

/// The days that have a file in `dir` (none when it cannot be read).
pub fn list_days(dir: &Path) -> Vec<Day> {
    list(dir)
        .map(|files| files.into_iter().map(|(day, _)| day).collect())
        .unwrap_or_default()
}

/// Deletes the files of days more than `keep_days` before `today`; only files named
/// like the log's own are touched. Returns how many were deleted.
pub fn remove_old(dir: &Path, today: Day, keep_days: u32) -> std::io::Result<usize> {
    let oldest_kept = Day(today.0 - i64::from(keep_days));
    let mut removed = 0;
    for (day, path) in list(dir)? {
        if day < oldest_kept {
            std::fs::remove_file(&path)?;
            tracing::info!(file = %path.display(), "failure log retention: deleted");
            removed += 1;
        }
    }
    Ok(removed)
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
        ] {
            assert_eq!(day_of(other), None, "{other}");
        }
    }
}
