//! `backstop check-config`: validate, then print the effective config.

use std::process::ExitCode;

use super::EXIT_CONFIG;
use crate::config::Source;

pub fn run(source: &Source) -> ExitCode {
    match source.load() {
        Ok(config) => {
            println!("# backstop effective config (from {source}): valid");
            print!("{}", config.effective_toml());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("backstop: invalid config ({source}): {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}
