//! The WebSocket message format (SPEC §4.1, §4.5), both ways: a frame parsed into a [`Request`]
//! with its signature parts, and a validator's [`Statement`] written as a legacy or a signed
//! frame. The node, `minerpool-validator` and the tests share this one codec, so what is signed
//! and what is verified cannot drift apart. Reply strings are the original iNode's, byte for
//! byte, plus those of signed messages.

use std::net::{IpAddr, Ipv4Addr};

use p256::ecdsa::SigningKey;
use serde_json::{Map, Value};

use crate::acceptance::{Refusal, reachable_by_pools};
use crate::address::check_format;
use crate::signed::{self, SignedFields};

pub const MAX_CONNECTIONS: &str = "ERROR: Max connection limit reached";
pub const INVALID_FORMAT: &str = "ERROR: Invalid message format";
pub const POOL_NOT_REGISTERED: &str = "ERROR: Pool not registered.";
pub const VALIDATOR_NOT_FOUND: &str = "ERROR: Validator not found";
pub const NOT_ENOUGH_PERCENTAGE: &str =
    "ERROR: Validator does not have enough percentage to be a validator.";
pub const PONG: &str = "SUCCESS: Pong";
pub const UNKNOWN_TYPE: &str = "ERROR: Unknown message type";
/// Replies the original did not have (it crashed or stored garbage instead).
pub const INVALID_ADDRESS: &str = "ERROR: Invalid wallet address";
pub const INVALID_IP: &str = "ERROR: Invalid ip";
pub const INVALID_PORT: &str = "ERROR: Invalid port";
pub const MESSAGE_TOO_LARGE: &str = "ERROR: Message too large";
pub const INTERNAL_ERROR: &str = "ERROR: Internal error";
/// Replies to signed messages (SPEC §4.5).
pub const INVALID_SIGNATURE: &str = "ERROR: Invalid signature";
pub const MESSAGE_EXPIRED: &str = "ERROR: Message expired";
pub const NONCE_USED: &str = "ERROR: Nonce already used";
pub const SIGNATURE_REQUIRED: &str = "ERROR: Signature required";

impl Refusal {
    /// The reply that says so.
    pub fn reply(self) -> &'static str {
        match self {
            Refusal::PoolNotRegistered => POOL_NOT_REGISTERED,
            Refusal::ValidatorNotFound => VALIDATOR_NOT_FOUND,
            Refusal::NotEnoughPercentage => NOT_ENOUGH_PERCENTAGE,
        }
    }
}

/// A parsed request.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Task {
        pool: String,
        validator: String,
        val_id: String,
    },
    Ping {
        validator: String,
        ip: IpAddr,
        port: u16,
    },
    /// A well-formed message of another type; still answered by the validator pre-check.
    Other { validator: Option<String> },
}

impl Request {
    /// The `type` field, as metrics name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Task { .. } => "TASK",
            Request::Ping { .. } => "PING",
            Request::Other { .. } => "other",
        }
    }

    /// The validator the message names, if any.
    pub fn validator(&self) -> Option<&str> {
        match self {
            Request::Task { validator, .. } | Request::Ping { validator, .. } => Some(validator),
            Request::Other { validator } => validator.as_deref(),
        }
    }

    /// The signed bytes of this request with these signature parts (SPEC §4.5); `None` for a
    /// type that is not signed.
    pub fn signed_bytes(&self, inode: &str, ts: i64, nonce: &str) -> Option<Vec<u8>> {
        let (validator, pool, val_id, ip, port) = match self {
            Request::Task {
                pool,
                validator,
                val_id,
            } => (
                validator,
                pool.as_str(),
                val_id.as_str(),
                String::new(),
                None,
            ),
            Request::Ping {
                validator,
                ip,
                port,
            } => (validator, "", "", ip.to_string(), Some(*port)),
            Request::Other { .. } => return None,
        };
        Some(
            SignedFields {
                inode,
                kind: self.kind(),
                validator,
                pool,
                val_id,
                ip: &ip,
                port,
                ts,
                nonce,
            }
            .bytes(),
        )
    }

    /// The legacy (unsigned) frame of a TASK or PING; `None` for another type.
    pub fn legacy_frame(&self) -> Option<Value> {
        match self {
            Request::Task {
                pool,
                validator,
                val_id,
            } => Some(serde_json::json!({
                "type": "TASK", "validator_wallet": validator, "pool_wallet": pool, "val_id": val_id,
            })),
            Request::Ping {
                validator,
                ip,
                port,
            } => Some(serde_json::json!({
                "type": "PING", "validator_wallet": validator, "ip": ip.to_string(), "port": port,
            })),
            Request::Other { .. } => None,
        }
    }

    /// The reply a message gets when it is accepted (or resent).
    pub fn success(&self) -> String {
        match self {
            Request::Task { val_id, .. } => format!("SUCCESS: {val_id}"),
            _ => PONG.to_owned(),
        }
    }
}

/// The signature parts a message carries: `None` when it has none of `ts`, `nonce`, `sig`.
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureParts {
    pub ts: Option<Value>,
    pub nonce: Option<Value>,
    pub sig: Option<Value>,
}

/// A parsed frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub request: Request,
    pub signature: Option<SignatureParts>,
}

/// Parses a frame, or returns the reply for a malformed one. Addresses are checked for the uPow
/// form here, before any database work.
pub fn parse(text: &str) -> Result<Request, &'static str> {
    parse_message(text).map(|m| m.request)
}

/// Parses a frame with its signature parts.
pub fn parse_message(text: &str) -> Result<Frame, &'static str> {
    let Ok(Value::Object(message)) = serde_json::from_str::<Value>(text) else {
        return Err(INVALID_FORMAT);
    };
    let request = parse_request(&message)?;
    let part = |name: &str| message.get(name).cloned();
    let signature = ["ts", "nonce", "sig"]
        .iter()
        .any(|name| message.contains_key(*name))
        .then(|| SignatureParts {
            ts: part("ts"),
            nonce: part("nonce"),
            sig: part("sig"),
        });
    Ok(Frame { request, signature })
}

fn parse_request(message: &Map<String, Value>) -> Result<Request, &'static str> {
    let field = |name: &str| -> Result<Option<String>, &'static str> {
        match message.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(INVALID_FORMAT),
        }
    };
    let address = |name: &str| -> Result<Option<String>, &'static str> {
        let value = field(name)?;
        if let Some(address) = &value {
            check_format(address).map_err(|_| INVALID_ADDRESS)?;
        }
        Ok(value)
    };
    let kind = field("type")?;
    let validator = address("validator_wallet")?;
    let pool = address("pool_wallet")?;
    match kind.as_deref() {
        Some("TASK") => {
            let (Some(pool), Some(validator), Some(val_id)) = (pool, validator, field("val_id")?)
            else {
                return Err(INVALID_FORMAT);
            };
            if val_id.is_empty() || val_id.len() > 256 {
                return Err(INVALID_FORMAT);
            }
            Ok(Request::Task {
                pool,
                validator,
                val_id,
            })
        }
        Some("PING") => {
            let Some(validator) = validator else {
                return Err(INVALID_FORMAT);
            };
            let ip = field("ip")?
                .and_then(|ip| ip.trim().parse::<IpAddr>().ok())
                .filter(reachable_by_pools)
                .ok_or(INVALID_IP)?;
            let port = match message.get("port") {
                Some(Value::Number(n)) => n.as_u64(),
                Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
                _ => None,
            }
            .and_then(|p| u16::try_from(p).ok())
            .filter(|&p| p != 0)
            .ok_or(INVALID_PORT)?;
            Ok(Request::Ping {
                validator,
                ip,
                port,
            })
        }
        _ => Ok(Request::Other { validator }),
    }
}

/// A signed message whose parts verified: what its write needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub nonce: String,
    /// [`signed::digest_hex`] of its signed bytes: a resend is told from a reused nonce by it.
    pub digest: String,
    pub ts: i64,
}

/// The signature checks of SPEC §4.5, in their order (form and signature, then the window),
/// before any database work. `now` is unix seconds.
pub fn verify(
    request: &Request,
    parts: &SignatureParts,
    inode: &str,
    window_seconds: u32,
    now: i64,
) -> Result<Verified, &'static str> {
    let (Some(Value::Number(ts)), Some(Value::String(nonce)), Some(Value::String(sig))) =
        (&parts.ts, &parts.nonce, &parts.sig)
    else {
        return Err(INVALID_SIGNATURE);
    };
    let ts = ts.as_i64().ok_or(INVALID_SIGNATURE)?;
    signed::check_nonce(nonce).map_err(|_| INVALID_SIGNATURE)?;
    let validator = match request {
        Request::Task { validator, .. } | Request::Ping { validator, .. } => validator,
        Request::Other { .. } => return Err(INVALID_SIGNATURE),
    };
    let bytes = request
        .signed_bytes(inode, ts, nonce)
        .ok_or(INVALID_SIGNATURE)?;
    signed::verify(validator, &bytes, sig).map_err(|_| INVALID_SIGNATURE)?;
    if !signed::within_window(ts, now, window_seconds) {
        return Err(MESSAGE_EXPIRED);
    }
    Ok(Verified {
        nonce: nonce.clone(),
        digest: signed::digest_hex(&bytes),
        ts,
    })
}

/// Parses `text` and runs its signature checks, as the node does before any database work:
/// the verification cost alone, for benchmarks. `Ok(false)`: the message is unsigned.
pub fn check_signature(
    text: &str,
    inode: &str,
    window_seconds: u32,
    now: i64,
) -> Result<bool, &'static str> {
    let frame = parse_message(text)?;
    match &frame.signature {
        None => Ok(false),
        Some(parts) => verify(&frame.request, parts, inode, window_seconds, now).map(|_| true),
    }
}

/// What a validator says, before it is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Statement {
    /// A pool did work for this validator.
    Task { pool: String, val_id: String },
    /// The validator listens at this address.
    Ping { ip: Ipv4Addr, port: u16 },
}

impl Statement {
    /// The request this statement is, from `validator`.
    pub fn request(&self, validator: &str) -> Request {
        let validator = validator.to_owned();
        match self {
            Statement::Task { pool, val_id } => Request::Task {
                pool: pool.clone(),
                validator,
                val_id: val_id.clone(),
            },
            Statement::Ping { ip, port } => Request::Ping {
                validator,
                ip: IpAddr::V4(*ip),
                port: *port,
            },
        }
    }
}

/// The legacy (unsigned) TASK or PING from `validator`: what the node refuses with
/// [`SIGNATURE_REQUIRED`] when it wants signatures.
pub fn legacy_frame(validator: &str, statement: &Statement) -> Value {
    statement
        .request(validator)
        .legacy_frame()
        .unwrap_or_default()
}

/// The JSON frame of a signed TASK or PING by the owner of `key`, for the iNode `inode`, at `ts`
/// (unix seconds) with `nonce`: the legacy message plus `ts`, `nonce` and `sig`.
pub fn signed_frame(
    key: &SigningKey,
    inode: &str,
    statement: &Statement,
    ts: i64,
    nonce: &str,
) -> Value {
    let validator = crate::upow::address_of(key.verifying_key());
    let request = statement.request(&validator);
    let bytes = request.signed_bytes(inode, ts, nonce).unwrap_or_default();
    let mut frame = request.legacy_frame().unwrap_or_default();
    frame["ts"] = ts.into();
    frame["nonce"] = nonce.into();
    frame["sig"] = signed::sign(key, &bytes).into();
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: &str = "E4AeWsv2tgHo4hYqHb4AYEsuvfzmWPkbMTkE2uwdjK2FV";
    const P: &str = "DcDbHR1iD3rcpD3jg3NGXKPjor5kkWurTSHXgS2SURSAz";

    #[test]
    fn parses_task_and_ping() {
        let task = parse(&format!(
            r#"{{"type":"TASK","pool_wallet":"{P}","validator_wallet":"{V}","val_id":"7"}}"#
        ))
        .unwrap();
        assert!(matches!(task, Request::Task { ref val_id, .. } if val_id == "7"));
        let ping = parse(&format!(
            r#"{{"type":"PING","validator_wallet":"{V}","ip":"10.0.0.1","port":"5502"}}"#
        ))
        .unwrap();
        assert!(matches!(ping, Request::Ping { port: 5502, .. }));
        let numeric_id = parse(&format!(
            r#"{{"type":"TASK","pool_wallet":"{P}","validator_wallet":"{V}","val_id":12}}"#
        ))
        .unwrap();
        assert!(matches!(numeric_id, Request::Task { ref val_id, .. } if val_id == "12"));
    }

    #[test]
    fn refuses_wallets_off_the_curve() {
        // Prefix 42 and x = 1: well-formed, but not the x of a P-256 point.
        let off = "DUiCyVdJHEpTzNA1X3siu2CS8kkbLzh4su1NYetFEQozw";
        for frame in [
            format!(
                r#"{{"type":"TASK","pool_wallet":"{off}","validator_wallet":"{V}","val_id":"1"}}"#
            ),
            format!(
                r#"{{"type":"TASK","pool_wallet":"{P}","validator_wallet":"{off}","val_id":"1"}}"#
            ),
            format!(
                r#"{{"type":"PING","validator_wallet":"{off}","ip":"10.0.0.1","port":"5502"}}"#
            ),
        ] {
            assert_eq!(parse(&frame), Err(INVALID_ADDRESS), "{frame}");
        }
    }

    #[test]
    fn refuses_malformed_frames() {
        for text in ["", "not json", "[1,2]", "\"TASK\"", "42", "{\"type\": [1]}"] {
            assert_eq!(parse(text), Err(INVALID_FORMAT), "{text:?}");
        }
        assert_eq!(
            parse(&format!(
                r#"{{"type":"TASK","validator_wallet":"{V}","val_id":"1"}}"#
            )),
            Err(INVALID_FORMAT)
        );
        assert_eq!(
            parse(r#"{"type":"TASK","pool_wallet":"nope","validator_wallet":"x","val_id":"1"}"#),
            Err(INVALID_ADDRESS)
        );
        for (ip, port) in [
            ("999.1.1.1", "5"),
            ("", "5"),
            ("127.0.0.1", "5"),
            ("127.8.8.8", "5"),
            ("0.0.0.0", "5"),
            ("0.1.2.3", "5"),
            ("169.254.169.254", "5"),
            ("224.0.0.1", "5"),
            ("239.255.255.250", "5"),
            ("255.255.255.255", "5"),
            ("::1", "5"),
            ("::", "5"),
            ("fe80::1", "5"),
            ("2001:db8::1", "5"),
            ("::ffff:10.0.0.1", "5"),
            ("10.0.0.1", "0"),
            ("10.0.0.1", "70000"),
            ("10.0.0.1", "x"),
            ("10.0.0.1", "-1"),
        ] {
            let reply = parse(&format!(
                r#"{{"type":"PING","validator_wallet":"{V}","ip":"{ip}","port":"{port}"}}"#
            ));
            assert!(
                matches!(reply, Err(INVALID_IP | INVALID_PORT)),
                "{ip} {port}: {reply:?}"
            );
        }
        // Private networks, shared address space and public addresses are where validators are.
        for ip in [
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.20",
            "100.64.0.1",
            "203.0.113.7",
            "8.8.8.8",
        ] {
            let reply = parse(&format!(
                r#"{{"type":"PING","validator_wallet":"{V}","ip":"{ip}","port":5502}}"#
            ));
            assert!(matches!(reply, Ok(Request::Ping { .. })), "{ip}: {reply:?}");
        }
    }

    #[test]
    fn a_signed_frame_parses_back_and_verifies() {
        let key = crate::upow::parse_private_key("abcdef").unwrap();
        let inode = "DfGQ4MBdMw7bjNn56A2d4pYi8M9yfV9iFA6mMLXLizEEp";
        for statement in [
            Statement::Task {
                pool: P.into(),
                val_id: "7".into(),
            },
            Statement::Ping {
                ip: Ipv4Addr::new(10, 0, 0, 1),
                port: 5502,
            },
        ] {
            let nonce = signed::new_nonce();
            let text = signed_frame(&key, inode, &statement, 1_700_000_000, &nonce).to_string();
            let frame = parse_message(&text).unwrap();
            let me = crate::upow::address_of(key.verifying_key());
            assert_eq!(frame.request, statement.request(&me));
            let parts = frame.signature.unwrap();
            let verified = verify(&frame.request, &parts, inode, 60, 1_700_000_030).unwrap();
            assert_eq!(verified.nonce, nonce);
            assert_eq!(
                verify(&frame.request, &parts, inode, 60, 1_700_000_061),
                Err(MESSAGE_EXPIRED)
            );
            assert_eq!(
                verify(&frame.request, &parts, P, 60, 1_700_000_000),
                Err(INVALID_SIGNATURE)
            );
            let legacy = legacy_frame(&me, &statement).to_string();
            assert_eq!(check_signature(&legacy, inode, 60, 0), Ok(false));
        }
    }
}
