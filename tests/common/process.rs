//! Running the real `backstop` binary: for exit codes, signals and the Python SDK.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

pub const BIN: &str = env!("CARGO_BIN_EXE_backstop");

pub struct Proxy {
    pub child: Child,
    pub proxy_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// Every stderr log line (JSON), as it arrives, after `backstop listening`.
    pub logs: mpsc::UnboundedReceiver<serde_json::Value>,
    /// The log lines before `backstop listening` (start-up warnings).
    pub startup_logs: Vec<serde_json::Value>,
}

/// Starts `backstop serve --config FILE` with JSON logs and waits until it listens.
pub async fn spawn_serve(config_file: &Path) -> Proxy {
    spawn_serve_logging(config_file, "info").await
}

/// `spawn_serve` with the given `BACKSTOP_LOG` filter (e.g. `debug`).
pub async fn spawn_serve_logging(config_file: &Path, level: &str) -> Proxy {
    spawn_serve_with_proxy_env(config_file, level, &[]).await
}

/// The egress proxy variables backstop reads; a test's backstop never inherits them.
pub const PROXY_VARS: [&str; 8] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// `spawn_serve_logging` with exactly these proxy variables set (and no other).
pub async fn spawn_serve_with_proxy_env(
    config_file: &Path,
    level: &str,
    vars: &[(&str, &str)],
) -> Proxy {
    let mut command = Command::new(BIN);
    for name in PROXY_VARS {
        command.env_remove(name);
    }
    let proxy_env = vars.iter().map(|(k, v)| (*k, *v));
    let mut child = command
        .args(["--log-format", "json", "serve", "--config"])
        .arg(config_file)
        .env("BACKSTOP_LOG", level)
        .envs(proxy_env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn backstop");
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let value = serde_json::from_str(&line).unwrap_or(serde_json::Value::String(line));
            if tx.send(value).is_err() {
                break;
            }
        }
    });
    let (listening, startup_logs) =
        wait_for_log_keeping(&mut rx, "backstop listening", Duration::from_secs(20)).await;
    let addr = |key: &str| -> SocketAddr {
        listening[key]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {listening}"))
    };
    Proxy {
        proxy_addr: addr("proxy_addr"),
        admin_addr: addr("admin_addr"),
        child,
        logs: rx,
        startup_logs,
    }
}

/// Waits for a log line whose message contains `needle`; panics with what was seen.
pub async fn wait_for_log(
    logs: &mut mpsc::UnboundedReceiver<serde_json::Value>,
    needle: &str,
    limit: Duration,
) -> serde_json::Value {
    wait_for_log_keeping(logs, needle, limit).await.0
}

/// `wait_for_log`, also returning the lines seen before the one found.
pub async fn wait_for_log_keeping(
    logs: &mut mpsc::UnboundedReceiver<serde_json::Value>,
    needle: &str,
    limit: Duration,
) -> (serde_json::Value, Vec<serde_json::Value>) {
    let mut seen = Vec::new();
    let found = tokio::time::timeout(limit, async {
        while let Some(line) = logs.recv().await {
            let message = line["message"].as_str().unwrap_or_default().to_owned();
            if message.contains(needle) || line.as_str().is_some_and(|s| s.contains(needle)) {
                return Some(line);
            }
            seen.push(line);
        }
        None
    })
    .await;
    match found {
        Ok(Some(line)) => (line, seen),
        _ => panic!("no log line containing {needle:?}; saw: {seen:#?}"),
    }
}

pub fn signal(child: &Child, name: &str) {
    let pid = child.id().expect("child still running");
    let status = std::process::Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} failed");
}

/// Runs `backstop ARGS` to completion; returns (exit code, stdout, stderr).
pub async fn run(args: &[&str]) -> (i32, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        Command::new(BIN)
            .args(args)
            .env_remove("BACKSTOP_CONFIG")
            .output(),
    )
    .await
    .expect("backstop finished in time")
    .expect("backstop ran");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
