//! The upstream side of the request path: the TLS client and its connection pools, outbound request
//! building (headers, key injection), request body buffering and the guarded
//! response body that streams back to the client.

pub mod buffer_budget;
pub mod client;
pub mod connectors;
pub mod egress;
pub mod h2_pool;
pub mod h2_settings;
pub mod headers;
pub mod kept_headers;
pub mod peek;
pub mod pool;
pub mod request_body;
pub mod response_body;
pub mod send;
pub mod sse;
pub mod timed;
pub mod transport;
pub mod upstream_body;
pub mod websocket;
mod wire_form;

pub use buffer_budget::BufferBudget;
pub use client::UpstreamClient;
pub use request_body::RequestBody;
pub use transport::Transport;
pub use upstream_body::UpstreamBody;
