//! The validator's side of the node's WebSocket protocol (SPEC §4.1, §4.5): read the validator's
//! key, build a TASK or PING (signed with that key, or legacy), send it and return the node's
//! reply. The frames come from `minerpool_core::message`, the codec the node parses and verifies
//! with.

use std::path::Path;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use minerpool_core::{message, signed};
use p256::ecdsa::SigningKey;
use tokio_tungstenite::tungstenite::Message;

/// What a validator says: a TASK (a pool did work) or a PING (where the validator listens).
pub use minerpool_core::message::Statement;

/// Why a message got no reply from the node, or a key could not be read. A reply the node gave,
/// `ERROR: …` included, is not an error here.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{url}: {reason}")]
    Node { url: String, reason: String },
    /// Never carries the file's content: it may be most of a key.
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
}

impl ClientError {
    fn node(url: &str, reason: impl std::fmt::Display) -> ClientError {
        ClientError::Node {
            url: url.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// Sends `frame` as one text frame to the node at `node` (`ws://HOST:PORT`) and returns its one
/// text reply. `timeout` bounds the whole exchange, connecting included. A close whose reason is
/// an `ERROR: …` (the node's answer when it is over its connection limit) is that reply; any other
/// close without a reply is an error, and the message may or may not have been recorded (resending
/// it is safe: the node answers a retry without counting it twice).
pub async fn send(
    node: &str,
    frame: &serde_json::Value,
    timeout: Duration,
) -> Result<String, ClientError> {
    tokio::time::timeout(timeout, exchange(node, frame))
        .await
        .unwrap_or_else(|_| {
            Err(ClientError::node(
                node,
                format!("no reply within {} s", timeout.as_secs_f64()),
            ))
        })
}

async fn exchange(node: &str, frame: &serde_json::Value) -> Result<String, ClientError> {
    let (mut ws, _) = tokio_tungstenite::connect_async(node)
        .await
        .map_err(|e| ClientError::node(node, format!("cannot connect: {e}")))?;
    ws.send(Message::text(frame.to_string()))
        .await
        .map_err(|e| ClientError::node(node, format!("cannot send the message: {e}")))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => {
                // The reply is all the node sends; closing is a courtesy, not needed for it.
                let _ = ws.close(None).await;
                return Ok(text.to_string());
            }
            Some(Ok(Message::Close(Some(close)))) if close.reason.starts_with("ERROR") => {
                return Ok(close.reason.to_string());
            }
            Some(Ok(Message::Close(Some(close)))) if !close.reason.is_empty() => {
                return Err(ClientError::node(
                    node,
                    format!("closed without a reply: {}", close.reason),
                ));
            }
            Some(Ok(Message::Close(_))) | None => {
                return Err(ClientError::node(node, "closed without a reply"));
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                return Err(ClientError::node(node, format!("no reply: {e}")));
            }
        }
    }
}

/// Reads a validator's private key from `path`: the form the payouts wallet key takes, `[0x]hex`
/// of 1 to 64 digits, with whitespace (a trailing newline) around it allowed.
pub fn read_key_file(path: impl AsRef<Path>) -> Result<SigningKey, ClientError> {
    let path = path.as_ref();
    let error = |reason: String| ClientError::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| error(e.to_string()))?;
    let text = std::str::from_utf8(&bytes).map_err(|_| error("is not text".into()))?;
    // The parser's reasons describe the expected form, never the text it was given.
    minerpool_core::upow::parse_private_key(text).map_err(|e| match e {
        minerpool_core::upow::UpowError::Key(reason) => error(format!("the key {reason}")),
        other => error(other.to_string()),
    })
}

/// The validator's uPow address: the one its key encodes.
pub fn address(key: &SigningKey) -> String {
    minerpool_core::upow::address_of(key.verifying_key())
}

/// A signed TASK or PING from the owner of `key` for the iNode `inode`, stamped now with a fresh
/// nonce.
pub fn signed_frame(key: &SigningKey, inode: &str, statement: &Statement) -> serde_json::Value {
    message::signed_frame(
        key,
        inode,
        statement,
        signed::unix_now(),
        &signed::new_nonce(),
    )
}

/// The legacy (unsigned) TASK or PING from `validator`: what the node refuses with
/// `ERROR: Signature required` when it wants signatures.
pub use minerpool_core::message::legacy_frame;

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `content` back through [`read_key_file`] from a file of its own, then removes it.
    fn read_back(
        name: &str,
        content: impl AsRef<[u8]>,
    ) -> (String, Result<SigningKey, ClientError>) {
        let path = std::env::temp_dir().join(format!(
            "minerpool-validator-{}-{name}.key",
            std::process::id()
        ));
        std::fs::write(&path, content).unwrap();
        let read = read_key_file(&path);
        std::fs::remove_file(&path).unwrap();
        (path.display().to_string(), read)
    }

    #[test]
    fn a_key_file_takes_the_payouts_key_forms() {
        let expected = minerpool_core::upow::parse_private_key("1234").unwrap();
        for (name, content) in [
            ("plain", "1234"),
            ("newline", "1234\n"),
            ("prefixed", "0x1234\n"),
            ("upper", "  0X001234 \r\n"),
        ] {
            let key = read_back(name, content).1.unwrap();
            assert_eq!(key.to_bytes(), expected.to_bytes(), "{name}");
        }
    }

    #[test]
    fn a_bad_key_file_is_named_and_its_content_is_not_shown() {
        let content = "deadbeef".repeat(9);
        for (name, content) in [
            ("long", content.as_str()),
            ("text", "my key is deadbeefdeadbeef"),
        ] {
            let (path, read) = read_back(name, content);
            let message = read.unwrap_err().to_string();
            assert!(message.contains(&path), "{message}");
            assert!(!message.contains("deadbeef"), "{message}");
        }
        let message = read_back("binary", [0x31, 0xff, 0x0a])
            .1
            .unwrap_err()
            .to_string();
        assert!(message.ends_with("is not text"), "{message}");
    }

    #[test]
    fn a_signed_frame_verifies_and_a_legacy_frame_carries_no_signature() {
        let key = minerpool_core::upow::parse_private_key("abcdef").unwrap();
        let me = address(&key);
        let inode = "DfGQ4MBdMw7bjNn56A2d4pYi8M9yfV9iFA6mMLXLizEEp";
        let statement = Statement::Task {
            pool: "DcDbHR1iD3rcpD3jg3NGXKPjor5kkWurTSHXgS2SURSAz".into(),
            val_id: "7".into(),
        };
        let frame = signed_frame(&key, inode, &statement);
        let nonce = frame["nonce"].as_str().unwrap();
        let fields = signed::SignedFields {
            inode,
            kind: "TASK",
            validator: &me,
            pool: "DcDbHR1iD3rcpD3jg3NGXKPjor5kkWurTSHXgS2SURSAz",
            val_id: "7",
            ip: "",
            port: None,
            ts: frame["ts"].as_i64().unwrap(),
            nonce,
        };
        let sig = frame["sig"].as_str().unwrap();
        assert_eq!(signed::verify(&me, &fields.bytes(), sig), Ok(()));
        assert!(signed::within_window(fields.ts, signed::unix_now(), 5));

        let legacy = legacy_frame(&me, &statement);
        assert_eq!(
            legacy,
            serde_json::json!({
                "type": "TASK", "validator_wallet": me,
                "pool_wallet": "DcDbHR1iD3rcpD3jg3NGXKPjor5kkWurTSHXgS2SURSAz", "val_id": "7",
            })
        );
        let ping = Statement::Ping {
            ip: "10.0.0.1".parse().unwrap(),
            port: 5502,
        };
        assert_eq!(legacy_frame(&me, &ping)["port"], 5502);
    }
}
