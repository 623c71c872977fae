//! `backstop failures`: reads the failure log (SPEC §3) and prints a table, the
//! records as JSON lines (`--json`), or counts (`--summary`).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use super::daily_files::{Selection, log_dir, period, print_notes, terminal_width};
use super::table::Layout;
use crate::failure_log::read::{Entry, Filter, read_days};
use crate::failure_log::summary::Summary;

/// Where the log is when neither `--dir` nor a config says otherwise.
const DEFAULT_DIR: &str = "data/failures";

#[derive(clap::Args, Debug, Clone)]
pub struct FailuresArgs {
    #[command(flatten)]
    pub select: Selection,
    /// Only records of this error type (server_error, rate_limited, timeout, …).
    #[arg(long, value_name = "TYPE")]
    pub error_type: Option<String>,
    /// Print the matching records as JSON lines, as they were written.
    #[arg(long, conflicts_with = "summary")]
    pub json: bool,
    /// Print counts by upstream, error type and tag, and per hour.
    #[arg(long)]
    pub summary: bool,
}

pub fn run(args: &FailuresArgs, config: Option<&Path>) -> ExitCode {
    let dir = match log_dir(
        args.select.dir.as_deref(),
        config,
        "failure_log",
        DEFAULT_DIR,
    ) {
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
    let (days, since) = period(args.select.date, args.select.since);
    let filter = Filter {
        since,
        upstream: args.select.upstream.clone(),
        tag: args.select.tag.clone(),
        error_type: args.error_type.clone(),
    };
    let read = match read_days(&dir, &days, &filter) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("backstop failures: cannot read {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    print_notes(&read, &days, &dir, "failure log");
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
    let layout = Layout {
        headers: HEADERS,
        caps: &[19, 16, 32, 18, 6, 7, 8],
        right: &[4, 5],
    };
    let rows: Vec<[String; 8]> = entries.iter().map(row).collect();
    layout.render(&rows, width)
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
