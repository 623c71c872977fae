//! Replay helpers: a backstop with `[replay]` in front of the mock.

use std::path::Path;

use super::{FAST, Harness};

pub const ALICE: &str = "Bearer sk-alice";

/// A `[replay]` table with its store in `dir`, plus `more` keys.
pub fn replay_toml(dir: &Path, more: &str) -> String {
    format!("[replay]\ndir = {:?}\n{more}\n", dir.display().to_string())
}

/// A backstop with replay (store in its own temp dir) in front of the mock.
pub async fn replaying(more: &str, extra: &str) -> (Harness, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    // `extra` follows `[retry]`: its keys are retry keys.
    let h = Harness::start_with(&format!(
        "{FAST}\n{extra}\n{}",
        replay_toml(dir.path(), more)
    ))
    .await;
    (h, dir)
}
