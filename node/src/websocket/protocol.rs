//! What a frame means (SPEC §4.1, §4.5): the codec of [`minerpool_core::message`] parses it and
//! checks its signature, [`minerpool_core::acceptance`] says whether it may score, the intake
//! records it; the reply says what happened.

use bson::DateTime;
use minerpool_core::acceptance::{may_score, nonce_kept_until};
use minerpool_core::config::Protocol;
use minerpool_core::message::*;
use minerpool_core::scoring::pool_score_increment;
use minerpool_core::store::StoreError;
use minerpool_core::store::intake::TaskRecorded;
use minerpool_core::store::intake::plan::{Activity, Effect, Nonce, Proof, Recorded};

use crate::state::NodeState;

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

/// The answer to a parsed frame, in the order of SPEC §4.5 then §4.1: the signature checks,
/// then who may score, then the write. `Err` only when the database fails.
async fn respond(message: Frame, state: &NodeState) -> Result<String, StoreError> {
    let Frame { request, signature } = message;
    let Some(validator) = request.validator() else {
        return Ok(UNKNOWN_TYPE.to_owned());
    };
    let pool = match &request {
        Request::Task { pool, .. } => Some(pool.as_str()),
        _ => None,
    };
    if let Request::Other { .. } = request {
        let parties = state.intake.parties(Some(validator), None).await?;
        return Ok(may_score(None, parties.validator_percentage)
            .err()
            .map_or(UNKNOWN_TYPE, |refusal| refusal.reply())
            .to_owned());
    }
    let node = &state.config.node;
    let now = DateTime::now();
    let proof = match (node.protocol, signature) {
        (Protocol::Legacy, _) => Proof::Legacy,
        (_, Some(parts)) => {
            let verified = match verify(
                &request,
                &parts,
                &state.config.chain.inode_wallet,
                node.signed_window_seconds,
                now.timestamp_millis().div_euclid(1000),
            ) {
                Ok(verified) => verified,
                Err(reply) => return Ok(reply.to_owned()),
            };
            let keep_until = nonce_kept_until(verified.ts, node.signed_window_seconds);
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
    let pool_registered = pool.map(|_| parties.pool_registered);
    let hundredths = match may_score(pool_registered, parties.validator_percentage) {
        Ok(hundredths) => hundredths,
        Err(refusal) => return refused(&request, validator, &proof, refusal.reply(), state).await,
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
            request.success()
        }
        Recorded::Task(TaskRecorded::Accepted) | Recorded::Ping | Recorded::Repeated => {
            request.success()
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
) -> Result<String, StoreError> {
    let Proof::Signed { nonce, digest, .. } = proof else {
        return Ok(refusal.to_owned());
    };
    Ok(
        match state.store.nonce_status(validator, nonce, digest).await? {
            Nonce::Fresh => refusal.to_owned(),
            Nonce::Resend => request.success(),
            Nonce::Used => NONCE_USED.to_owned(),
        },
    )
}
