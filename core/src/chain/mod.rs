//! Client of the uPow node HTTP API: timeouts on every call, bounded retries with backoff on
//! idempotent reads, waiting out the node's rate limits (HTTP 429), errors that name the URL and
//! status, and no secret in any message.

mod client;
mod payer;
mod types;

pub use client::*;
pub use payer::*;
pub use types::*;
