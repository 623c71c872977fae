//! `backstop requests`: reads the request journal (SPEC §6) and prints a table, the
//! records as JSON lines (`--json`), or a summary per upstream and per tag
//! (`--summary`); `backstop requests show ID` prints a stored response body.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::daily_files::{Selection, log_dir, period, print_notes, terminal_width};
use super::table::Layout;
use crate::failure_log::Micros;
use crate::failure_log::read::{Entry, read_daily};
use crate::journal::summary::Summary;
use crate::journal::{JournalRecord, REQUESTS};

/// Where the journal is when neither `--dir` nor a config says otherwise.
const DEFAULT_DIR: &str = "data/journal";

#[derive(clap::Args, Debug, Clone)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "The journal is written only with a [journal] table in the config; \
                  its dir is read from --config (journal.dir) unless --dir is given.\n\n\
                  Examples:\n  backstop requests --since 1h --outcome failed\n  \
                  backstop requests --date 2026-05-01 --summary\n  \
                  backstop requests --since 2d --tag quiz_generation --json | jq .usage\n  \
                  backstop requests show 019a2b3c4d5e6f708192a3b4c5d6e7f8"
)]
pub struct RequestsArgs {
    #[command(subcommand)]
    pub command: Option<RequestsCommand>,
    #[command(flatten)]
    pub select: Selection,
    /// Only requests with this outcome: ok, failed, refused, interrupted, client_gone.
    #[arg(long, value_name = "OUTCOME")]
    pub outcome: Option<String>,
    /// Print the matching records as JSON lines, as they were written.
    #[arg(long, conflicts_with = "summary")]
    pub json: bool,
    /// Per upstream and per tag over the whole period: calls, failed (any outcome but
    /// ok and replayed), failure rate, retries, p50/p95 duration, tokens.
    #[arg(long)]
    pub summary: bool,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum RequestsCommand {
    /// Print the response body a request's client got, byte for byte (kept only with
    /// `[journal] responses = true`). Exit 1, with the reason, when there is none.
    Show {
        /// The request id (x-backstop-request-id, or request_id in the journal).
        request_id: String,
        /// The journal directory. Default: journal.dir of --config, else data/journal.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

pub fn run(args: &RequestsArgs, config: Option<&Path>) -> ExitCode {
    let dir_flag = match &args.command {
        Some(RequestsCommand::Show { dir, .. }) => dir.as_deref(),
        None => args.select.dir.as_deref(),
    };
    let dir = match log_dir(dir_flag, config, "journal", DEFAULT_DIR) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("backstop requests: {e}");
            return ExitCode::from(super::EXIT_CONFIG);
        }
    };
    if !dir.is_dir() {
        eprintln!(
            "backstop requests: no journal at {}: the directory does not exist \
             (is [journal] in the config? see --dir and --config)",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    match &args.command {
        Some(RequestsCommand::Show { request_id, .. }) => show(&dir, request_id),
        None => list(args, &dir),
    }
}

fn list(args: &RequestsArgs, dir: &Path) -> ExitCode {
    let (days, since) = period(args.select.date, args.select.since);
    let read = match read_daily(dir, &days, |r: &JournalRecord| keeps(args, since, r)) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("backstop requests: cannot read {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    };
    print_notes(&read, &days, dir, "request journal");
    let text = if args.summary {
        Summary::of(read.entries.iter().map(|e| &e.record)).render()
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

fn keeps(args: &RequestsArgs, since: Option<Micros>, r: &JournalRecord) -> bool {
    let same =
        |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
    since.is_none_or(|t| r.timestamp.0 >= t)
        && same(&args.select.upstream, r.upstream.as_deref())
        && same(&args.select.tag, r.tag.as_deref())
        && same(&args.outcome, Some(&*r.outcome))
}

/// Looks through every journal file, newest first, for `request_id`.
fn show(dir: &Path, request_id: &str) -> ExitCode {
    let mut days = REQUESTS.list_days(dir);
    days.reverse();
    let mut found = None;
    for day in days {
        match read_daily(dir, &[day], |r: &JournalRecord| {
            r.request_id.as_deref() == Some(request_id)
        }) {
            Ok(mut read) if !read.entries.is_empty() => {
                found = read.entries.pop().map(|e| e.record);
                break;
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("backstop requests: cannot read {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let Some(record) = found else {
        eprintln!(
            "backstop requests show: no request {request_id} in {}",
            dir.display()
        );
        return ExitCode::FAILURE;
    };
    match record.response.as_ref().and_then(|r| r.bytes()) {
        Some(body) => {
            let _ = std::io::stdout().lock().write_all(&body);
            ExitCode::SUCCESS
        }
        None => {
            let why = if record.response_truncated {
                "its body was over journal.max_response_bytes and was not kept"
            } else {
                "no response body was kept (journal.responses was false when it was recorded)"
            };
            eprintln!("backstop requests show: request {request_id}: {why}");
            ExitCode::FAILURE
        }
    }
}

/// One row per request; the tag gets whatever width is left.
pub fn table(entries: &[Entry<JournalRecord>], width: usize) -> String {
    const HEADERS: [&str; 10] = [
        "time (UTC)",
        "request id",
        "upstream",
        "endpoint",
        "status",
        "attempts",
        "outcome",
        "ms",
        "model",
        "tag",
    ];
    let layout = Layout {
        headers: HEADERS,
        caps: &[19, 32, 16, 28, 6, 8, 11, 8, 24],
        right: &[4, 5, 7],
    };
    let rows: Vec<[String; 10]> = entries.iter().map(|e| row(&e.record)).collect();
    layout.render(&rows, width)
}

fn row(r: &JournalRecord) -> [String; 10] {
    let opt = |v: Option<&str>| v.unwrap_or("-").to_owned();
    let num = |v: Option<u64>| v.map_or_else(|| "-".into(), |v| v.to_string());
    let time = r.timestamp.0.rfc3339();
    [
        format!("{} {}", &time[..10], &time[11..19]),
        opt(r.request_id.as_deref()),
        opt(r.upstream.as_deref()),
        opt(r.endpoint.as_deref()),
        num(r.status.map(u64::from)),
        num(r.attempts.map(u64::from)),
        r.outcome.to_string(),
        num(r.duration_ms),
        opt(r.model.as_deref()),
        opt(r.tag.as_deref()),
    ]
}
