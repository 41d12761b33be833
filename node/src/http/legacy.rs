//! The original iNode's endpoints, byte-compatible: `GET /validators` and the RSA-encrypted
//! `POST /modify-pool-list/`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bson::DateTime;
use minerpool_core::address::{check_format, check_syntax};
use minerpool_core::store::activity::{AdminOutcome, PoolListChange, PoolRegistration};
use minerpool_core::store::documents::Validator;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::NodeState;

pub fn router() -> Router<Arc<NodeState>> {
    Router::new()
        .route("/validators", get(validators))
        .route("/modify-pool-list/", post(modify_pool_list))
}

/// A time as the original's clients parse it: naive UTC ISO-8601 with microseconds, or "0".
pub fn legacy_time(time: Option<DateTime>) -> Value {
    match time {
        Some(t) => Value::String(
            t.to_chrono()
                .naive_utc()
                .format("%Y-%m-%dT%H:%M:%S%.6f")
                .to_string(),
        ),
        None => Value::String("0".into()),
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

/// The body is RSA-OAEP (SHA-256, MGF1-SHA-256) ciphertext of `add:<address>` or
/// `remove:<address>`. A ciphertext is carried out once (OAEP is randomised, so a repeat is a
/// replay); one that failed with an error may be sent again.
async fn modify_pool_list(State(state): State<Arc<NodeState>>, body: Bytes) -> Response {
    let Some(key) = &state.admin_rsa_key else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if body.is_empty() || body.len() > 4096 {
        return bad_request("Invalid request body");
    }
    let Ok(plain) = key.decrypt(rsa::Oaep::new::<Sha256>(), &body) else {
        return bad_request("Decryption failed");
    };
    let Ok(plain) = String::from_utf8(plain) else {
        return bad_request("Invalid command");
    };
    let Some((action, address)) = plain.split_once(':') else {
        return bad_request("Invalid command");
    };
    let address = address.trim();
    // A pool added must be payable; one removed only needs the form (it may predate the rule).
    let (change, well_formed) = match action {
        "add" => (PoolListChange::Add, check_format(address)),
        "remove" => (PoolListChange::Remove, check_syntax(address)),
        _ => return bad_request("Invalid command"),
    };
    if well_formed.is_err() {
        return bad_request("Invalid command");
    }
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
