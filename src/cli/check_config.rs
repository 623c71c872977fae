//! `backstop check-config`: validate, then print the effective config.

use std::io::Write;
use std::process::ExitCode;

use super::EXIT_CONFIG;
use crate::config::Source;

pub fn run(source: &Source) -> ExitCode {
    match source.load() {
        Ok(config) => {
            // A closed pipe (`| head`) is not an error worth a panic.
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "# backstop effective config (from {source}): valid");
            let _ = write!(out, "{}", config.effective_toml());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("backstop: invalid config ({source}): {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
