//! The original iNode's endpoints, byte-compatible: `GET /validators` and the RSA-encrypted
//! `POST /modify-pool-list/`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bson::DateTime;
use minerpool_core::address::{check_format, check_syntax};
use minerpool_core::store::registry::Validator;
use minerpool_core::store::registry::{AdminOutcome, PoolListChange, PoolRegistration};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::state::NodeState;

pub fn router() -> Router<Arc<NodeState>> {
    Router::new()
        .route("/validators", get(validators))
        .route("/modify-pool-list/", post(modify_pool_list))
}

/// A time as the original's clients parse it: naive UTC ISO-8601 with microseconds, or "0".
pub fn legacy_time(time: Option<DateTime>) -> Value {
    Value::String(legacy_time_text(time))
}

/// [`legacy_time`]'s text.
pub fn legacy_time_text(time: Option<DateTime>) -> String {
    match time {
        Some(t) => t
            .to_chrono()
            .naive_utc()
            .format("%Y-%m-%dT%H:%M:%S%.6f")
            .to_string(),
        None => "0".into(),
    }
}

/// A validator document as the original served it, without `_id`, `lastFetch` and
/// `wallet_address`.
pub fn legacy_validator(v: &Validator) -> Value {
    json!({
        "score": v.score,
        "percentage": v.percentage,
        "totalStake": v.total_stake,
        "vote": v.vote,
        "ip": v.ip.clone().unwrap_or_else(|| "0".into()),
        "port": v.port.unwrap_or(0),
        "ping": legacy_time(v.ping),
        "last_active_time": legacy_time(v.last_active_time),
        "balance": v.balance,
    })
}

/// `{wallet: "<JSON-encoded validator>"}`; `{}` when there are none.
async fn validators(State(state): State<Arc<NodeState>>) -> Response {
    match state.store.validators_tolerant().await {
        Ok(validators) => {
            let body: Map<String, Value> = validators
                .into_iter()
                .filter_map(|(address, validator)| match validator {
                    Ok(v) => Some((address, Value::String(legacy_validator(&v).to_string()))),
                    Err(e) => {
                        tracing::warn!(%address, error = %e, "validator document left out of /validators");
                        None
                    }
                })
                .collect();
            axum::Json(Value::Object(body)).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "listing validators failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({ "error": "database unavailable" })),
            )
                .into_response()
        }
    }
}

fn status(status: &str, message: &str) -> Value {
    json!({ "status": status, "message": message })
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(status("error", message)),
    )
        .into_response()
}

/// The one answer to every refused body: which check failed is never told, so no answer (and,
/// with [`open_admin_request`], no timing) tells a ciphertext below the modulus from one above
/// it, or a bad padding from a bad command.
const REFUSED: &str = "Invalid command";

/// Decrypts and parses an admin request, doing the same work for every body of the key's
/// length: a ciphertext at or above the modulus is reduced and decrypted like any other (and
/// refused afterwards), and the private-key operation is blinded. `None` for every refusal.
pub fn open_admin_request(
    key: &rsa::RsaPrivateKey,
    body: &[u8],
) -> Option<(PoolListChange, String)> {
    use rsa::traits::PublicKeyParts;
    let size = key.size();
    if body.len() != size {
        // The length is public (it is the key's); nothing about the key's value is.
        return None;
    }
    let n = key.n();
    let c = rsa::BigUint::from_bytes_be(body);
    let in_range = c < *n;
    let reduced = (c % n).to_bytes_be();
    let mut padded = vec![0u8; size];
    padded[size - reduced.len()..].copy_from_slice(&reduced);
    let decrypted =
        key.decrypt_blinded(&mut rand::rngs::OsRng, rsa::Oaep::new::<Sha256>(), &padded);
    let plain = String::from_utf8(decrypted.ok()?).ok()?;
    if !in_range {
        return None;
    }
    let (action, address) = plain.split_once(':')?;
    let address = address.trim();
    // A pool added must be payable; one removed only needs the form (it may predate the rule).
    let (change, well_formed) = match action {
        "add" => (PoolListChange::Add, check_format(address)),
        "remove" => (PoolListChange::Remove, check_syntax(address)),
        _ => return None,
    };
    well_formed.ok()?;
    Some((change, address.to_owned()))
}

/// The body is RSA-OAEP (SHA-256, MGF1-SHA-256) ciphertext of `add:<address>` or
/// `remove:<address>`. A ciphertext is carried out once (OAEP is randomised, so a repeat is a
/// replay); one that failed with an error may be sent again.
async fn modify_pool_list(
    State(state): State<Arc<NodeState>>,
    ConnectInfo(crate::gate::ClientAddr(peer)): ConnectInfo<crate::gate::ClientAddr>,
    body: Bytes,
) -> Response {
    if state.admin_rsa_key.is_none() {
        return StatusCode::NOT_FOUND.into_response();
    }
    if !state.admin_rate_limit.admit(peer.ip()) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(status("error", "Too many requests")),
        )
            .into_response();
    }
    // The private-key operation takes milliseconds: off the async workers.
    let opened = {
        let state = state.clone();
        let body = body.clone();
        tokio::task::spawn_blocking(move || {
            open_admin_request(state.admin_rsa_key.as_ref().expect("checked"), &body)
        })
        .await
    };
    let Ok(Some((change, address))) = opened else {
        return bad_request(REFUSED);
    };
    let address = address.as_str();
    let outcome = state
        .store
        .apply_admin_request(&hex_digest(&body), change, address, DateTime::now())
        .await;
    let reply = match outcome {
        Ok(AdminOutcome::Replayed) => return bad_request("Replayed request"),
        Ok(AdminOutcome::Registered(PoolRegistration::Added { id })) => json!({
            "status": "success", "message": "Pool added successfully", "pool_id": id,
        }),
        Ok(AdminOutcome::Registered(PoolRegistration::AlreadyExists)) => {
            status("error", "Pool address already exists")
        }
        Ok(AdminOutcome::Unregistered(true)) => status("success", "Pool removed successfully"),
        Ok(AdminOutcome::Unregistered(false)) => status("error", "Pool address not found"),
        Err(e) => {
            tracing::error!(error = %e, "changing the pool list failed");
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
    };
    axum::Json(reply).into_response()
}

fn hex_digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
