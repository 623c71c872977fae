//! What `backstop failures` and `backstop requests` share: the period flags
//! (`--date` / `--since`), finding the directory (`--dir`, else the config's key, else
//! the default), notes about skipped lines, and table cells.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::failure_log::read::Read;
use crate::failure_log::{Day, Micros};

/// The period and filters both commands take (`--date` / `--since`, `--upstream`,
/// `--tag`) and where the files are (`--dir`).
#[derive(clap::Args, Debug, Clone)]
pub struct Selection {
    /// The UTC day to read (YYYY-MM-DD). Default: today (UTC).
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_day, conflicts_with = "since")]
    pub date: Option<Day>,
    /// Records from this long ago until now, e.g. 30m, 1h, 2d.
    #[arg(long, value_name = "AGE", value_parser = parse_since)]
    pub since: Option<Duration>,
    /// Only records of this upstream.
    #[arg(long, value_name = "NAME")]
    pub upstream: Option<String>,
    /// Only records with this tag (the client's x-backstop-tag).
    #[arg(long, value_name = "TAG")]
    pub tag: Option<String>,
    /// The directory. Default: its `dir` key in --config, else the default.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// Terminal width when `COLUMNS` is not set.
const DEFAULT_WIDTH: usize = 120;

pub fn parse_day(s: &str) -> Result<Day, String> {
    Day::parse(s).ok_or_else(|| format!("`{s}` is not a date like 2026-05-01"))
}

pub fn parse_since(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not an age like 30m, 1h or 2d ({e})"))
}

/// The days to read and the earliest instant kept: `--date`, else `--since`, else
/// today (UTC).
pub fn period(date: Option<Day>, since: Option<Duration>) -> (Vec<Day>, Option<Micros>) {
    let now = Micros::from_system(SystemTime::now());
    match (date, since) {
        (Some(day), _) => (vec![day], None),
        (None, Some(age)) => {
            let from = now.minus(age);
            ((from.day().0..=now.day().0).map(Day).collect(), Some(from))
        }
        (None, None) => (vec![now.day()], None),
    }
}

/// `--dir`, else `<table>.dir` of the config file, else `default`. Only that key is
/// read, so a config whose `api_key_env` is unset here still works.
pub fn log_dir(
    dir: Option<&Path>,
    config: Option<&Path>,
    table: &str,
    default: &str,
) -> Result<PathBuf, String> {
    if let Some(dir) = dir {
        return Ok(dir.to_path_buf());
    }
    let Some(config) = config else {
        return Ok(PathBuf::from(default));
    };
    let text = std::fs::read_to_string(config)
        .map_err(|e| format!("cannot read config {}: {e}", config.display()))?;
    let parsed: toml::Table = toml::from_str(&text)
        .map_err(|e| format!("config {} is not valid TOML: {e}", config.display()))?;
    match parsed.get(table).and_then(|f| f.get("dir")) {
        None => Ok(PathBuf::from(default)),
        Some(toml::Value::String(dir)) => Ok(PathBuf::from(dir)),
        Some(_) => Err(format!(
            "config {}: {table}.dir must be a string",
            config.display()
        )),
    }
}

/// "note: skipped …" for each file with torn or corrupt lines, and a note when no
/// file of the period exists.
pub fn print_notes<R>(read: &Read<R>, days: &[Day], dir: &Path, what: &str) {
    for (path, n) in &read.skipped {
        eprintln!(
            "note: skipped {n} unreadable line(s) (torn or corrupt) in {}",
            path.display()
        );
    }
    if read.files.is_empty() {
        let which = match days {
            [] => String::new(),
            [one] => one.to_string(),
            [first, .., last] => format!("{first} to {last}"),
        };
        eprintln!("no {what} file for {which} in {}", dir.display());
    }
}

pub fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|w| *w >= 40)
        .unwrap_or(DEFAULT_WIDTH)
}

/// `s` in at most `width` characters, ending in `…` when cut.
pub fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut cut: String = s.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_cuts_with_an_ellipsis() {
        assert_eq!(fit("abcdef", 6), "abcdef");
        assert_eq!(fit("abcdef", 4), "abc…");
    }

    #[test]
    fn bad_flags_have_clear_errors() {
        assert!(parse_day("2026-02-30").unwrap_err().contains("not a date"));
        assert!(parse_since("soon").unwrap_err().contains("not an age"));
        assert_eq!(parse_since("2d"), Ok(Duration::from_secs(2 * 86_400)));
    }
}
