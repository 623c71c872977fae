//! SPEC §5: bad config is refused before any port is bound, naming the key and the
//! reason, with a non-zero exit; `check-config` prints the effective config.

mod common;

use common::process::run;

fn write(text: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("backstop.toml");
    std::fs::write(&path, text).expect("write");
    let path = path.to_string_lossy().into_owned();
    (dir, path)
}

const UPSTREAM: &str = "[[upstream]]\nname = \"openai\"\nbase_url = \"https://api.openai.com\"\n";

async fn refused(text: &str, key: &str) {
    let (_dir, path) = write(text);
    for command in ["serve", "check-config"] {
        let (code, _out, err) = run(&[command, "--config", &path]).await;
        assert_eq!(
            code, 2,
            "{command} should exit 2 for:\n{text}\nstderr: {err}"
        );
        assert!(
            err.contains(&format!("`{key}`")),
            "{command}: stderr should name `{key}`: {err}"
        );
    }
}

#[tokio::test]
async fn unknown_key_is_refused_by_name() {
    refused(&format!("lissen = \"127.0.0.1:1\"\n{UPSTREAM}"), "lissen").await;
}

#[tokio::test]
async fn unknown_nested_key_is_refused_by_path() {
    refused(
        &format!("[retry]\nmax_retires = 3\n{UPSTREAM}"),
        "retry.max_retires",
    )
    .await;
}

#[tokio::test]
async fn bad_duration_is_refused() {
    refused(
        &format!("shutdown_grace = \"soon\"\n{UPSTREAM}"),
        "shutdown_grace",
    )
    .await;
}

#[tokio::test]
async fn bad_address_is_refused() {
    refused(&format!("listen = \"localhost\"\n{UPSTREAM}"), "listen").await;
}

#[tokio::test]
async fn wrong_type_is_refused() {
    refused(
        &format!("max_body_bytes = \"big\"\n{UPSTREAM}"),
        "max_body_bytes",
    )
    .await;
}

#[tokio::test]
async fn inconsistent_values_are_refused() {
    refused(
        &format!("[retry]\nbase_delay = \"9s\"\nmax_delay = \"1s\"\n{UPSTREAM}"),
        "retry.base_delay",
    )
    .await;
}

#[tokio::test]
async fn bad_upstream_url_is_refused() {
    refused(
        "[[upstream]]\nname = \"x\"\nbase_url = \"api.openai.com\"\n",
        "upstream[0].base_url",
    )
    .await;
}

#[tokio::test]
async fn missing_api_key_variable_is_refused() {
    refused(
        &format!("{UPSTREAM}api_key_env = \"BACKSTOP_TEST_SURELY_UNSET\"\n"),
        "upstream[0].api_key_env",
    )
    .await;
}

#[tokio::test]
async fn missing_extra_ca_file_is_refused() {
    refused(
        &format!("[tls]\nextra_ca_files = [\"/nonexistent/ca.pem\"]\n{UPSTREAM}"),
        "tls.extra_ca_files[0]",
    )
    .await;
}

#[tokio::test]
async fn toml_syntax_error_is_refused_with_a_line() {
    let (_dir, path) = write("listen = \"127.0.0.1:1\n");
    let (code, _out, err) = run(&["check-config", "--config", &path]).await;
    assert_eq!(code, 2);
    assert!(err.contains("line 1"), "{err}");
}

#[tokio::test]
async fn missing_config_file_is_refused() {
    let (code, _out, err) = run(&["check-config", "--config", "/nonexistent/backstop.toml"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("/nonexistent/backstop.toml"), "{err}");
}

#[tokio::test]
async fn check_config_prints_the_effective_config_with_defaults() {
    let (_dir, path) = write(UPSTREAM);
    let (code, out, err) = run(&["check-config", "--config", &path]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("max_retries = 2"), "{out}");
    assert!(out.contains("idle_timeout = \"1m\""), "{out}");
    assert!(
        out.contains("base_url = \"https://api.openai.com\""),
        "{out}"
    );
}

#[tokio::test]
async fn check_config_without_a_file_uses_the_embedded_default() {
    let (code, out, _err) = run(&["check-config"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("embedded default"), "{out}");
    assert!(out.contains("listen = \"127.0.0.1:8080\""), "{out}");
}

#[tokio::test]
async fn documented_example_validates() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/backstop.toml");
    let out = tokio::process::Command::new(common::process::BIN)
        .args(["check-config", "--config", example])
        .env("AZURE_OPENAI_API_KEY", "test")
        .output()
        .await
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn help_explains_the_commands() {
    let (code, out, _) = run(&["--help"]).await;
    assert_eq!(code, 0);
    for word in [
        "serve",
        "check-config",
        "mock-upstream",
        "demo",
        "OPENAI_BASE_URL",
    ] {
        assert!(out.contains(word), "--help should mention {word}: {out}");
    }
}

#[tokio::test]
async fn demo_runs_and_prints_a_summary() {
    let (code, out, err) = run(&["demo", "--requests", "6", "--fail-rate", "0.5"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Summary: 6 requests"), "{out}");
    assert!(out.contains("The upstream saw"), "{out}");
    assert!(out.contains("OPENAI_BASE_URL"), "{out}");
}

#[tokio::test]
async fn demo_shows_an_sdk_retry_served_by_replay() {
    let (code, out, err) = run(&["demo", "--requests", "3", "--fail-rate", "0"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("x-backstop-replayed: true"), "{out}");
    assert!(
        out.contains("upstream calls: 1 (the SDK's retry was served by replay"),
        "{out}"
    );
}

#[tokio::test]
async fn demo_rejects_a_bad_fail_rate() {
    let (code, _out, err) = run(&["demo", "--fail-rate", "2"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("fail_rate"), "{err}");
}

const EPHEMERAL: &str = "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\n";

/// Runs `backstop serve` with stderr going to a file (not a terminal) until it logs that
/// it listens; returns what it wrote there. `TERM` is set, as on a developer's machine.
async fn serve_until_listening(text: &str) -> String {
    let (dir, path) = write(text);
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = tokio::process::Command::new(common::process::BIN)
        .args(["serve", "--config", &path])
        .env_remove("BACKSTOP_CONFIG")
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color")
        .env("BACKSTOP_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn backstop");
    let listening = common::eventually(std::time::Duration::from_secs(20), || {
        std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("backstop listening"))
    })
    .await;
    let _ = child.kill().await;
    let written = std::fs::read_to_string(&log_path).expect("read log");
    assert!(listening, "backstop did not start; it wrote:\n{written}");
    written
}

#[tokio::test]
async fn max_body_bytes_alone_starts_and_lowers_the_retry_buffer() {
    let text = format!("{EPHEMERAL}max_body_bytes = 65536\n{UPSTREAM}");
    serve_until_listening(&text).await;
    let (_dir, path) = write(&text);
    let (code, out, err) = run(&["check-config", "--config", &path]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("retry_buffer_bytes = 65536"), "{out}");
    assert!(
        out.contains("retry_buffer_total_bytes = 268435456"),
        "{out}"
    );
}

#[tokio::test]
async fn sizes_set_in_conflict_are_refused_naming_both_keys() {
    let text = format!("max_body_bytes = 65536\nretry_buffer_bytes = 131072\n{UPSTREAM}");
    refused(&text, "retry_buffer_bytes").await;
    let (_dir, path) = write(&text);
    let (_code, _out, err) = run(&["serve", "--config", &path]).await;
    assert!(err.contains("`max_body_bytes`"), "{err}");
}

#[tokio::test]
async fn logs_to_a_file_carry_no_colour_codes_even_with_term_set() {
    let written = serve_until_listening(&format!("{EPHEMERAL}{UPSTREAM}")).await;
    assert!(
        !written.contains('\u{1b}'),
        "escape codes in the log file: {written:?}"
    );
}
