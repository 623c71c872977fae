//! The fault-injecting OpenAI-compatible mock upstream.
pub mod cli;
