//! `backstop failures` on a fixture directory: table, JSON lines, summary, filters,
//! torn lines and clear errors. Runs the real binary.

mod common;

use std::path::{Path, PathBuf};

use common::process::BIN;
use tokio::process::Command;

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/failure_log")
}

async fn failures(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .arg("failures")
        .args(args)
        .env("COLUMNS", "130")
        .env_remove("BACKSTOP_CONFIG")
        .output()
        .await
        .expect("run backstop failures");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn dir_args() -> Vec<String> {
    vec![
        "--dir".into(),
        fixture_dir().display().to_string(),
        "--date".into(),
        "2026-05-01".into(),
    ]
}

async fn on_fixture(extra: &[&str]) -> (i32, String, String) {
    let mut args = dir_args();
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    failures(&args).await
}

#[tokio::test]
async fn prints_a_table_cut_to_the_terminal_width() {
    let (code, out, err) = on_fixture(&[]).await;
    assert_eq!(code, 0, "{err}");
    let expected = "\
time (UTC)           upstream  endpoint                          error type    status  attempt  decision  message
2026-05-01 09:15:02  openai    /v1/chat/completions              rate_limited     429        1  retry     Rate limit reached for …
2026-05-01 09:15:03  openai    /v1/chat/completions              server_error     503        2  give_up   The server is overloade…
2026-05-01 10:02:00  azure     /openai/deployments/gpt/chat/co…  timeout            -        1  give_up   deadline_exceeded
2026-05-01 10:30:00  openai    /v1/embeddings                    reset              -        1  retry     connection reset
";
    assert_eq!(out, expected, "\n{out}");
    assert!(out.lines().all(|l| l.chars().count() <= 130));
    assert!(
        err.contains("skipped 2 unreadable line(s) (torn or corrupt)"),
        "{err}"
    );
}

#[tokio::test]
async fn json_prints_matching_records_as_written() {
    let (code, out, _err) =
        on_fixture(&["--json", "--upstream", "openai", "--tag", "quiz_generation"]).await;
    assert_eq!(code, 0);
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["server_delay_ms"], 1000);
    assert_eq!(lines[1]["final"], true);

    let (_, out, _) = on_fixture(&["--json", "--error-type", "timeout"]).await;
    assert!(
        out.contains("\"a_future_field\":{\"x\":1}"),
        "unknown fields survive: {out}"
    );
    assert_eq!(out.lines().count(), 1);
}

#[tokio::test]
async fn summary_counts_by_upstream_error_type_tag_and_hour() {
    let (code, out, _err) = on_fixture(&["--summary"]).await;
    assert_eq!(code, 0);
    let expected = "\
failed attempts: 4; requests that failed in the end: 2

upstream  attempts  requests
openai           3         1
azure            1         1

error_type    attempts  requests
rate_limited         1         0
reset                1         0
server_error         1         1
timeout              1         1

tag              attempts  requests
quiz_generation         2         1
(none)                  1         1
search                  1         0

hour (UTC)        attempts  requests
2026-05-01 09:00         2         1
2026-05-01 10:00         2         1
";
    assert_eq!(out, expected, "\n{out}");
}

#[tokio::test]
async fn reads_the_directory_named_in_the_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("backstop.toml");
    std::fs::write(
        &config,
        format!(
            "[failure_log]\ndir = {:?}\n",
            fixture_dir().display().to_string()
        ),
    )
    .expect("write");
    let config = config.display().to_string();
    let (code, out, err) =
        failures(&["--config", &config, "--date", "2026-05-01", "--summary"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("failed attempts: 4;"), "{out}");
}

#[tokio::test]
async fn a_day_without_a_file_says_so() {
    let dir = fixture_dir().display().to_string();
    let (code, out, err) = failures(&["--dir", &dir, "--date", "2026-04-30"]).await;
    assert_eq!(code, 0);
    assert!(err.contains("no failure log file for 2026-04-30"), "{err}");
    assert_eq!(out.lines().count(), 1, "just the header: {out}");
}

#[tokio::test]
async fn bad_flags_and_a_missing_directory_are_clear_errors() {
    let (code, _, err) = failures(&["--date", "2026-02-30"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("not a date like 2026-05-01"), "{err}");

    let (code, _, err) = failures(&["--since", "soon"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("not an age like 30m"), "{err}");

    let (code, _, err) = failures(&["--date", "2026-05-01", "--since", "1h"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("cannot be used with"), "{err}");

    let (code, _, err) = failures(&["--dir", "/nonexistent/backstop-failures"]).await;
    assert_eq!(code, 1);
    assert!(err.contains("the directory does not exist"), "{err}");
}
