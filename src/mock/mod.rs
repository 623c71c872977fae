//! The fault-injecting OpenAI-compatible mock upstream.
