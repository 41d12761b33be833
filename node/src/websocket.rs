//! The WebSocket protocol (SPEC §4.1, §4.5): one JSON text frame per connection, one text reply,
//! then the server closes. Reply strings are the original iNode's, byte for byte, plus those of
//! signed messages.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bson::DateTime;
use futures::{SinkExt, StreamExt};
use minerpool_core::address::check_format;
use minerpool_core::config::Protocol;
use minerpool_core::scoring::{
    MIN_VALIDATOR_HUNDREDTHS, percentage_hundredths, pool_score_increment,
};
use minerpool_core::signed::{self, SignedFields};
use minerpool_core::store::intake::TaskRecorded;
use minerpool_core::store::intake::plan::{Activity, Effect, Nonce, Proof, Recorded};
use serde_json::{Map, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::NodeState;
use crate::connections::{CLOSE_FRAME_TIMEOUT, Lifecycle, accept_until_stopped};

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

/// How long past its window a nonce is kept: the node's, the other replicas' and the database's
/// clocks may differ, and a nonce forgotten while its message is still in some node's window
/// could be accepted twice.
pub const NONCE_MARGIN_SECONDS: i64 = 60;

/// Closing reasons of connections still open at the shutdown timeout.
pub const SHUTTING_DOWN: &str = "server shutting down";
pub const SHUTTING_DOWN_UNANSWERED: &str = "server shutting down before the reply: the message may have been recorded; resending it is safe";

/// Accepts connections until the lifecycle's stop, then takes the queued ones (see
/// [`crate::connections`]). Returns how many were taken after the stop.
pub async fn serve(listener: TcpListener, state: Arc<NodeState>, lifecycle: Lifecycle) -> usize {
    let gate = crate::gate::Gate::new(
        state.limits.max_connections,
        state.limits.max_connections_per_client,
    );
    let stop = lifecycle.stop.clone();
    let clients = crate::proxy_header::ClientAddresses::new(
        "websocket",
        state.limits.proxy_protocol,
        state.limits.idle_timeout,
        state.metrics.refused_proxy_headers.clone(),
    );
    let take = {
        let (state, lifecycle) = (state.clone(), lifecycle.clone());
        move |stream: TcpStream, address: SocketAddr| {
            admit(&gate, &state, &lifecycle, stream, address)
        }
    };
    let take = Arc::new(take);
    accept_until_stopped(listener, "websocket", stop, |stream, peer| {
        let take = take.clone();
        clients.hand_over(&lifecycle, stream, peer, move |stream, client| {
            take(stream, client)
        });
    })
    .await
}

/// Admits a connection under the limits, or refuses it.
fn admit(
    gate: &Arc<crate::gate::Gate>,
    state: &Arc<NodeState>,
    lifecycle: &Lifecycle,
    stream: TcpStream,
    address: SocketAddr,
) {
    let state = state.clone();
    match gate.admit(address.ip()) {
        crate::gate::Admission::Admitted(pass) => {
            let connection_lifecycle = lifecycle.clone();
            lifecycle.spawn(async move {
                state.metrics.open_connections.inc();
                connection(stream, address, &state, &connection_lifecycle).await;
                state.metrics.open_connections.dec();
                drop(pass);
            });
        }
        crate::gate::Admission::Refused(slot) => {
            state.metrics.refused_connections.inc();
            // Explained while few are being refused; past that, closed at once.
            if let Some(slot) = slot {
                let cut = lifecycle.cut.clone();
                lifecycle.spawn(async move {
                    tokio::select! {
                        _ = refuse(stream, &state) => {}
                        _ = cut.cancelled() => {}
                    }
                    drop(slot);
                });
            }
        }
    }
}

fn websocket_config(state: &NodeState) -> WebSocketConfig {
    // Small buffers: one frame of at most 4 KiB comes in, one short reply goes out.
    WebSocketConfig::default()
        .max_message_size(Some(state.limits.max_frame_bytes))
        .max_frame_size(Some(state.limits.max_frame_bytes))
        .read_buffer_size(2 * state.limits.max_frame_bytes)
        .write_buffer_size(0)
}

/// Over the limit: complete the handshake only to say why, then close.
async fn refuse(stream: TcpStream, state: &NodeState) {
    let handshake = tokio::time::timeout(
        state.limits.idle_timeout,
        tokio_tungstenite::accept_async_with_config(stream, Some(websocket_config(state))),
    )
    .await;
    if let Ok(Ok(mut ws)) = handshake {
        close_with(&mut ws, CloseCode::Again, MAX_CONNECTIONS).await;
    }
}

async fn connection(
    stream: TcpStream,
    client: SocketAddr,
    state: &NodeState,
    lifecycle: &Lifecycle,
) {
    let idle = state.limits.idle_timeout;
    let cut = &lifecycle.cut;
    let handshake = tokio::select! {
        handshake = tokio::time::timeout(
            idle,
            tokio_tungstenite::accept_async_with_config(stream, Some(websocket_config(state))),
        ) => handshake,
        _ = cut.cancelled() => {
            lifecycle.count_cut("websocket", "handshake", client);
            return;
        }
    };
    let Ok(Ok(mut ws)) = handshake else {
        return;
    };
    let frame = tokio::select! {
        frame = tokio::time::timeout(idle, ws.next()) => frame,
        _ = cut.cancelled() => {
            lifecycle.count_cut("websocket", "waiting for the message", client);
            close_with(&mut ws, CloseCode::Away, SHUTTING_DOWN).await;
            return;
        }
    };
    let reply = match frame {
        // Silent for too long, or gone.
        Err(_) | Ok(None) => {
            let _ = ws.close(None).await;
            return;
        }
        Ok(Some(Ok(Message::Text(text)))) => {
            tokio::select! {
                reply = answer(text.as_str(), state) => reply,
                _ = cut.cancelled() => {
                    lifecycle.count_cut("websocket", "answering", client);
                    close_with(&mut ws, CloseCode::Away, SHUTTING_DOWN_UNANSWERED).await;
                    return;
                }
            }
        }
        Ok(Some(Ok(Message::Binary(_)))) => {
            state.metrics.message("invalid", "none", "invalid-format");
            INVALID_FORMAT.to_owned()
        }
        Ok(Some(Ok(Message::Close(_)))) => return,
        Ok(Some(Ok(_))) => {
            state.metrics.message("invalid", "none", "invalid-format");
            INVALID_FORMAT.to_owned()
        }
        Ok(Some(Err(tokio_tungstenite::tungstenite::Error::Capacity(_)))) => {
            state.metrics.message("invalid", "none", "too-large");
            close_with(&mut ws, CloseCode::Size, MESSAGE_TOO_LARGE).await;
            return;
        }
        Ok(Some(Err(_))) => return,
    };
    let sent = tokio::time::timeout(idle, async {
        if ws.send(Message::text(reply)).await.is_ok() {
            let _ = ws.close(None).await;
        }
    });
    tokio::select! {
        _ = sent => {}
        _ = cut.cancelled() => lifecycle.count_cut("websocket", "sending the reply", client),
    }
}

/// Closes with a code and a reason, waiting at most [`CLOSE_FRAME_TIMEOUT`] for the frame to go.
async fn close_with<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
    code: CloseCode,
    reason: &str,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = tokio::time::timeout(CLOSE_FRAME_TIMEOUT, ws.close(Some(frame))).await;
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
    fn kind(&self) -> &'static str {
        match self {
            Request::Task { .. } => "TASK",
            Request::Ping { .. } => "PING",
            Request::Other { .. } => "other",
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
        Some(parts) => {
            verify_signature(&frame.request, parts, inode, window_seconds, now).map(|_| true)
        }
    }
}

/// A signed message whose parts verified: what its write needs.
struct Verified {
    nonce: String,
    digest: String,
    ts: i64,
}

/// The signature checks of SPEC §4.5, in their order (form and signature, then the window),
/// before any database work. `now` is unix seconds.
fn verify_signature(
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

/// Whether a pool could reach a validator at this address. Pool clients build
/// `ws://{ip}:{port}`, which an IPv6 address turns into an invalid URL; loopback, link-local,
/// unspecified, broadcast and multicast addresses lead a pool to itself or nowhere. Private
/// ranges stay: validators on private networks are real.
fn reachable_by_pools(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                // 0.0.0.0/8 means "this network": nothing a pool can connect to.
                || v4.octets()[0] == 0)
        }
        IpAddr::V6(_) => false,
    }
}

/// The reply to one frame.
pub async fn answer(text: &str, state: &NodeState) -> String {
    let message = match parse_message(text) {
        Ok(message) => message,
        Err(reply) => {
            state.metrics.message("invalid", "none", outcome_of(reply));
            return reply.to_owned();
        }
    };
    let kind = message.request.kind();
    let protocol = if message.signature.is_some() && state.config.node.protocol != Protocol::Legacy
    {
        "signed"
    } else {
        "unsigned"
    };
    let reply = match respond(message, state).await {
        Ok(reply) => reply,
        Err(e) => {
            tracing::error!(error = %e, "WebSocket request failed");
            INTERNAL_ERROR.to_owned()
        }
    };
    state.metrics.message(kind, protocol, outcome_of(&reply));
    reply
}

fn outcome_of(reply: &str) -> &'static str {
    match reply {
        r if r.starts_with("SUCCESS") => "success",
        INVALID_FORMAT => "invalid-format",
        INVALID_ADDRESS => "invalid-address",
        INVALID_IP | INVALID_PORT => "invalid-contact",
        POOL_NOT_REGISTERED => "pool-not-registered",
        VALIDATOR_NOT_FOUND => "validator-not-found",
        NOT_ENOUGH_PERCENTAGE => "not-enough-percentage",
        UNKNOWN_TYPE => "unknown-type",
        INVALID_SIGNATURE => "invalid-signature",
        MESSAGE_EXPIRED => "message-expired",
        NONCE_USED => "nonce-used",
        SIGNATURE_REQUIRED => "signature-required",
        _ => "error",
    }
}

/// The reply a message gets when it is accepted (or resent).
fn success(request: &Request) -> String {
    match request {
        Request::Task { val_id, .. } => format!("SUCCESS: {val_id}"),
        _ => PONG.to_owned(),
    }
}

/// The checks of SPEC §4.1 that need the registry: `Err` is the refusal.
fn registry_checks(
    parties: &minerpool_core::store::registry::Parties,
    names_pool: bool,
) -> Result<i64, &'static str> {
    if names_pool && !parties.pool_registered {
        return Err(POOL_NOT_REGISTERED);
    }
    let Some(percentage) = parties.validator_percentage else {
        return Err(VALIDATOR_NOT_FOUND);
    };
    let hundredths = percentage_hundredths(percentage);
    if hundredths < MIN_VALIDATOR_HUNDREDTHS {
        return Err(NOT_ENOUGH_PERCENTAGE);
    }
    Ok(hundredths)
}

async fn respond(
    message: Frame,
    state: &NodeState,
) -> Result<String, minerpool_core::store::StoreError> {
    let Frame { request, signature } = message;
    let (validator, pool) = match &request {
        Request::Task {
            validator, pool, ..
        } => (Some(validator.as_str()), Some(pool.as_str())),
        Request::Ping { validator, .. } => (Some(validator.as_str()), None),
        Request::Other { validator } => (validator.as_deref(), None),
    };
    let Some(validator) = validator else {
        return Ok(UNKNOWN_TYPE.to_owned());
    };
    if let Request::Other { .. } = request {
        let parties = state.intake.parties(Some(validator), None).await?;
        return Ok(registry_checks(&parties, false)
            .err()
            .unwrap_or(UNKNOWN_TYPE)
            .to_owned());
    }
    let node = &state.config.node;
    let now = DateTime::now();
    let proof = match (node.protocol, signature) {
        (Protocol::Legacy, _) => Proof::Legacy,
        (_, Some(parts)) => {
            let verified = match verify_signature(
                &request,
                &parts,
                &state.config.chain.inode_wallet,
                node.signed_window_seconds,
                now.timestamp_millis().div_euclid(1000),
            ) {
                Ok(verified) => verified,
                Err(reply) => return Ok(reply.to_owned()),
            };
            let keep_until = verified
                .ts
                .saturating_add(i64::from(node.signed_window_seconds) + NONCE_MARGIN_SECONDS);
            Proof::Signed {
                nonce: verified.nonce,
                digest: verified.digest,
                expires_at: DateTime::from_millis(keep_until.saturating_mul(1000)),
            }
        }
        (Protocol::Signed, None) => return Ok(SIGNATURE_REQUIRED.to_owned()),
        (Protocol::Both, None) => Proof::Unsigned,
    };
    let parties = state.intake.parties(Some(validator), pool).await?;
    // A downgrade is a signature check: refused before the registry's checks.
    if proof == Proof::Unsigned && parties.validator_signs {
        return Ok(SIGNATURE_REQUIRED.to_owned());
    }
    let hundredths = match registry_checks(&parties, pool.is_some()) {
        Ok(hundredths) => hundredths,
        Err(refusal) => return refused(&request, validator, &proof, refusal, state).await,
    };
    let effect = match &request {
        Request::Task { pool, val_id, .. } => Effect::Task {
            pool: pool.clone(),
            val_id: val_id.clone(),
            increment: pool_score_increment(hundredths),
        },
        Request::Ping { ip, port, .. } => Effect::Ping {
            ip: ip.to_string(),
            port: *port,
        },
        Request::Other { .. } => return Ok(UNKNOWN_TYPE.to_owned()),
    };
    let recorded = state
        .intake
        .record(Activity {
            validator: validator.to_owned(),
            validator_id: None,
            proof,
            at: now,
            effect,
        })
        .await?;
    Ok(match recorded {
        Recorded::Task(TaskRecorded::Replayed) => {
            tracing::info!(%validator, "TASK replayed; no score added");
            success(&request)
        }
        Recorded::Task(TaskRecorded::Accepted) | Recorded::Ping | Recorded::Repeated => {
            success(&request)
        }
        Recorded::NonceUsed => NONCE_USED.to_owned(),
        Recorded::SignatureRequired => SIGNATURE_REQUIRED.to_owned(),
    })
}

/// The reply to a message the registry checks refuse: a signed message's nonce is checked first
/// (SPEC §4.5), so a reused nonce is refused as such. Nothing is written.
async fn refused(
    request: &Request,
    validator: &str,
    proof: &Proof,
    refusal: &'static str,
    state: &NodeState,
) -> Result<String, minerpool_core::store::StoreError> {
    let Proof::Signed { nonce, digest, .. } = proof else {
        return Ok(refusal.to_owned());
    };
    Ok(
        match state.store.nonce_status(validator, nonce, digest).await? {
            Nonce::Fresh => refusal.to_owned(),
            Nonce::Resend => success(request),
            Nonce::Used => NONCE_USED.to_owned(),
        },
    )
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
}
