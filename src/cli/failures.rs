//! `backstop failures`: reads the failure log (SPEC §3) and prints a table, the
//! records as JSON lines (`--json`), or counts (`--summary`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use crate::failure_log::read::{Entry, Filter, read_days};
use crate::failure_log::summary::Summary;
use crate::failure_log::{Day, Micros};

/// Where the log is when neither `--dir` nor a config says otherwise.
const DEFAULT_DIR: &str = "data/failures";
/// Terminal width when `COLUMNS` is not set.
const DEFAULT_WIDTH: usize = 120;

#[derive(clap::Args, Debug, Clone)]
pub struct FailuresArgs {
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
    /// Only records of this error type (server_error, rate_limited, timeout, …).
    #[arg(long, value_name = "TYPE")]
    pub error_type: Option<String>,
    /// Print the matching records as JSON lines, as they were written.
    #[arg(long, conflicts_with = "summary")]
    pub json: bool,
    /// Print counts by upstream, error type and tag, and per hour.
    #[arg(long)]
    pub summary: bool,
    /// The log directory. Default: failure_log.dir of --config, else data/failures.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

fn parse_day(s: &str) -> Result<Day, String> {
    Day::parse(s).ok_or_else(|| format!("`{s}` is not a date like 2026-05-01"))
}

fn parse_since(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not an age like 30m, 1h or 2d ({e})"))
}

pub fn run(args: &FailuresArgs, config: Option<&Path>) -> ExitCode {
    let dir = match log_dir(args.dir.as_deref(), config) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("backstop failures: {e}");
            return ExitCode::from(super::EXIT_CONFIG);
        }
    };
    if !dir.is_dir() {
        eprintln!(
            "backstop failures: no failure log at {}: the directory does not exist \
             (nothing has failed yet, or failure_log.dir points elsewhere; see --dir)",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    let now = Micros::from_system(SystemTime::now());
    let (days, since) = match (args.date, args.since) {
        (Some(day), _) => (vec![day], None),
        (None, Some(age)) => {
            let from = now.minus(age);
            ((from.day().0..=now.day().0).map(Day).collect(), Some(from))
        }
        (None, None) => (vec![now.day()], None),
    };
    let filter = Filter {
        since,
        upstream: args.upstream.clone(),
        tag: args.tag.clone(),
        error_type: args.error_type.clone(),
    };
    let read = match read_days(&dir, &days, &filter) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("backstop failures: cannot read {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    for (path, n) in &read.skipped {
        eprintln!(
            "note: skipped {n} unreadable line(s) (torn or corrupt) in {}",
            path.display()
        );
    }
    if read.files.is_empty() {
        let which = match days.as_slice() {
            [one] => one.to_string(),
            many => format!("{} to {}", many[0], many[many.len() - 1]),
        };
        eprintln!("no failure log file for {which} in {}", dir.display());
    }
    let text = if args.summary {
        Summary::of_entries(&read.entries).render()
    } else if args.json {
        read.entries
            .iter()
            .map(|e| format!("{}\n", e.line))
            .collect()
    } else {
        table(&read.entries, terminal_width())
    };
    // A closed pipe (`| head`) is not an error worth a message.
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    ExitCode::SUCCESS
}

/// `--dir`, else `failure_log.dir` of the config file, else the default. Only that
/// key is read, so a config whose `api_key_env` is unset here still works.
fn log_dir(dir: Option<&Path>, config: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(dir) = dir {
        return Ok(dir.to_path_buf());
    }
    let Some(config) = config else {
        return Ok(PathBuf::from(DEFAULT_DIR));
    };
    let text = std::fs::read_to_string(config)
        .map_err(|e| format!("cannot read config {}: {e}", config.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| format!("config {} is not valid TOML: {e}", config.display()))?;
    match table.get("failure_log").and_then(|f| f.get("dir")) {
        None => Ok(PathBuf::from(DEFAULT_DIR)),
        Some(toml::Value::String(dir)) => Ok(PathBuf::from(dir)),
        Some(_) => Err(format!(
            "config {}: failure_log.dir must be a string",
            config.display()
        )),
    }
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse().ok())
        .filter(|w| *w >= 40)
        .unwrap_or(DEFAULT_WIDTH)
}

/// One row per record; the message gets whatever width is left.
pub fn table(entries: &[Entry], width: usize) -> String {
    const HEADERS: [&str; 8] = [
        "time (UTC)",
        "upstream",
        "endpoint",
        "error type",
        "status",
        "attempt",
        "decision",
        "message",
    ];
    const CAPS: [usize; 7] = [19, 16, 32, 18, 6, 7, 8];
    let rows: Vec<[String; 8]> = entries.iter().map(row).collect();
    let mut widths = [0usize; 7];
    for (i, w) in widths.iter_mut().enumerate() {
        let longest = rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
        *w = longest.max(HEADERS[i].len()).min(CAPS[i]);
    }
    let used: usize = widths.iter().map(|w| w + 2).sum();
    let message_width = width.saturating_sub(used).max(10);
    let mut out = String::new();
    let mut line = |cells: &[String; 8]| {
        let mut text = String::new();
        for (i, w) in widths.iter().enumerate() {
            let cell = fit(&cells[i], *w);
            if (4..=5).contains(&i) {
                text.push_str(&format!("{cell:>w$}  "));
            } else {
                text.push_str(&format!("{cell:<w$}  "));
            }
        }
        text.push_str(&fit(&cells[7], message_width));
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&HEADERS.map(str::to_owned));
    for r in &rows {
        line(r);
    }
    out
}

fn row(e: &Entry) -> [String; 8] {
    let r = &e.record;
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let time = r.timestamp.0.rfc3339();
    let message = r
        .error_message
        .clone()
        .or_else(|| r.error_code.clone())
        .or_else(|| r.reason.clone())
        .unwrap_or_default()
        .replace(['\n', '\r', '\t'], " ");
    let decision = match (&r.decision, r.is_final) {
        (Some(d), _) => d.clone(),
        (None, true) => "give_up".into(),
        (None, false) => "-".into(),
    };
    [
        format!("{} {}", &time[..10], &time[11..19]),
        opt(&r.upstream),
        opt(&r.endpoint),
        r.error_type.clone(),
        r.status.map_or_else(|| "-".into(), |s| s.to_string()),
        r.attempt.map_or_else(|| "-".into(), |a| a.to_string()),
        decision,
        message,
    ]
}

/// `s` in at most `width` characters, ending in `…` when cut.
fn fit(s: &str, width: usize) -> String {
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
