//! Histogram buckets, chosen for LLM calls.

/// 10 ms … ~11 min, doubling: LLM calls range from a cached embedding to a long
/// reasoning completion (OTel's GenAI buckets, extended past its 82 s).
pub const LATENCY_BUCKETS: [f64; 17] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92, 163.84,
    327.68, 655.36,
];

/// Time to first chunk: OTel's GenAI buckets (1 ms … 10 s) plus 30 s, 60 s, 120 s.
pub const FIRST_CHUNK_BUCKETS: [f64; 19] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    30.0, 60.0, 120.0,
];

/// Tokens per call: OTel's GenAI buckets, 1 … 4 Mi, by fours.
pub const TOKEN_BUCKETS: [f64; 12] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
];

/// Backoff and local rate-limit waits: 5 ms … 60 s (`max_server_delay`'s default).
pub const WAIT_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
