//! The upstream side of the request path: the pooled TLS client, outbound request
//! building (headers, key injection), request body buffering and the guarded
//! response body that streams back to the client.

pub mod client;
pub mod headers;
pub mod peek;
pub mod request_body;
pub mod response_body;
pub mod send;

pub use client::UpstreamClient;
pub use request_body::RequestBody;
