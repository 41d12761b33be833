//! The WebSocket server (SPEC §4.1, §4.5): one JSON text frame per connection, one text reply,
//! then the server closes. [`transport`] holds the connections, [`protocol`] the answer to a
//! frame; the message format itself is [`minerpool_core::message`], re-exported here.

pub mod protocol;
pub mod transport;

pub use minerpool_core::message::*;
