//! backstop: a sidecar HTTP proxy that makes LLM API calls survive real-world failures.

pub mod config;
pub mod mock;
