//! `payouts` (SPEC §5.3): pays pending balances of at least `minimumPayout` on chain, exactly
//! once. A run first settles what earlier runs left open (created, signed, submitted), then pays a
//! new batch when none is in flight (a pending transaction's change is not spendable yet).

use minerpool_core::chain::{PushOutcome, TransactionStatus};
use minerpool_core::config::Sender;
use minerpool_core::faults::crash_point;
use minerpool_core::payouts::{Coin, select_coins};
use minerpool_core::store::payouts::{BatchState, PayoutBatch};
use minerpool_core::upow::{
    Input, Output, Transaction, address_of, decode_address, parse_private_key,
};
use p256::ecdsa::SigningKey;
use serde_json::{Value, json};

use crate::{Context, JobError};

pub async fn run(context: &Context) -> Result<Value, JobError> {
    let imported = context.store.import_temp_withdrawals().await?;
    if imported.credited > 0 || !imported.held.is_empty() {
        tracing::info!(
            units = imported.credited,
            held = imported.held.len(),
            "imported the original iNode's unpaid tempWithdrawals"
        );
    }
    let mut summary = pay_due(context).await?;
    if let (false, Some(fields)) = (imported.held.is_empty(), summary.as_object_mut()) {
        // The entries the import could not credit (the audit keeps listing them).
        fields.insert("importHeld".into(), json!(imported.held));
    }
    Ok(summary)
}

async fn pay_due(context: &Context) -> Result<Value, JobError> {
    let payouts = &context.config.payouts;
    let minimum = payouts.minimum_payout.units();
    let max = payouts.max_outputs_per_tx as usize;
    if payouts.sender == Sender::DryRun {
        let batch = context.store.simulate_payout_batch(minimum, max).await?;
        return Ok(json!({
            "sender": "dry-run",
            "simulated": batch.map(|b| json!({ "batch": b.id, "recipients": b.recipients.len(), "total": b.total })),
        }));
    }
    let key = wallet_key(context)?;
    let mut settled = Vec::new();
    for batch in context.store.open_payout_batches().await? {
        settled.push(json!({ "batch": batch.id, "now": settle(context, &key, batch).await? }));
    }
    if !context.store.open_payout_batches().await?.is_empty() {
        return Ok(
            json!({ "sender": "upow", "settled": settled, "created": null,
            "note": "a batch is still in flight; a new one waits for it" }),
        );
    }
    let due = context.store.payable_balances(minimum, max).await?;
    if due.is_empty() {
        return Ok(json!({ "sender": "upow", "settled": settled, "created": null }));
    }
    // Everything that can be refused is checked before any money moves.
    for (address, _) in &due {
        decode_address(address)
            .map_err(|e| JobError::Invalid(format!("balance of {address} cannot be paid: {e}")))?;
    }
    let total: i64 = due.iter().map(|(_, u)| u).sum();
    plan_coins(context, total as u64).await?;
    let Some(batch) = context.store.create_payout_batch(minimum, max).await? else {
        return Ok(json!({ "sender": "upow", "settled": settled, "created": null }));
    };
    crash_point("payouts:after-create");
    let id = batch.id.clone();
    let now = pay(context, &key, batch).await?;
    Ok(json!({ "sender": "upow", "settled": settled, "created": { "batch": id, "now": now } }))
}

fn wallet_key(context: &Context) -> Result<SigningKey, JobError> {
    let text = context.wallet_key.as_deref().ok_or_else(|| {
        JobError::Invalid("MINERPOOL_WALLET_KEY is required when payouts.sender is upow".into())
    })?;
    let key = parse_private_key(text)
        .map_err(|e| JobError::Invalid(format!("MINERPOOL_WALLET_KEY: {e}")))?;
    let address = address_of(key.verifying_key());
    if address != context.config.chain.inode_wallet {
        return Err(JobError::Invalid(format!(
            "MINERPOOL_WALLET_KEY is the key of {address}, not of chain.inodeWallet {}",
            context.config.chain.inode_wallet
        )));
    }
    Ok(key)
}

/// The wallet's coins for `needed` units, excluding those pending transactions spend.
async fn plan_coins(context: &Context, needed: u64) -> Result<(Vec<Coin>, u64), JobError> {
    let fee = context.config.payouts.fee.units() as u64;
    let info = context
        .chain
        .address_info(&context.config.chain.inode_wallet)
        .await?;
    let coins: Vec<Coin> = info
        .spendable_outputs
        .iter()
        .map(|o| Coin {
            tx_hash: o.tx_hash.clone(),
            index: o.index,
            units: o.amount.units() as u64,
        })
        .collect();
    let pending: Vec<(String, u8)> = info
        .pending_spent_outputs
        .unwrap_or_default()
        .into_iter()
        .map(|o| (o.tx_hash, o.index))
        .collect();
    let selection = select_coins(&coins, &pending, needed + fee)
        .map_err(|e| JobError::Invalid(format!("cannot pay {needed} units: {e}")))?;
    Ok((selection.coins, selection.change))
}

/// Builds, signs, records and pushes a created batch.
async fn pay(
    context: &Context,
    key: &SigningKey,
    batch: PayoutBatch,
) -> Result<&'static str, JobError> {
    let (coins, change) = plan_coins(context, batch.total as u64).await?;
    let bad = |e: minerpool_core::upow::UpowError| JobError::Invalid(e.to_string());
    let inputs = coins
        .iter()
        .map(|c| {
            let bytes = hex::decode(&c.tx_hash)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    JobError::Invalid(format!("chain gave output hash {:?}", c.tx_hash))
                })?;
            Ok(Input {
                tx_hash: bytes,
                index: c.index,
            })
        })
        .collect::<Result<Vec<_>, JobError>>()?;
    let mut outputs = Vec::new();
    for r in &batch.recipients {
        outputs.push(Output {
            address: decode_address(&r.address).map_err(bad)?.to_vec(),
            units: r.units as u64,
        });
    }
    if change > 0 {
        let own = decode_address(&context.config.chain.inode_wallet).map_err(bad)?;
        outputs.push(Output {
            address: own.to_vec(),
            units: change,
        });
    }
    let mut tx = Transaction::new(inputs, outputs, None).map_err(bad)?;
    let signers = vec![key; tx.inputs.len()];
    tx.sign(&signers).map_err(bad)?;
    let (hex, hash) = (tx.to_hex(), tx.hash());
    context
        .store
        .record_signed_batch(&batch.id, &hex, &hash)
        .await?;
    crash_point("payouts:after-sign");
    push(
        context,
        &PayoutBatch {
            tx_hex: Some(hex),
            tx_hash: Some(hash),
            state: BatchState::Signed,
            ..batch
        },
    )
    .await
}

/// Pushes a signed batch's stored bytes and records the answer.
async fn push(context: &Context, batch: &PayoutBatch) -> Result<&'static str, JobError> {
    let (Some(hex), Some(hash)) = (&batch.tx_hex, &batch.tx_hash) else {
        return Err(JobError::Invalid(format!(
            "batch {} is signed but has no transaction",
            batch.id
        )));
    };
    let outcome = context.chain.push_transaction(hex, hash).await;
    crash_point("payouts:after-push");
    match outcome {
        PushOutcome::Accepted => {
            context.store.record_submitted_batch(&batch.id).await?;
            crash_point("payouts:after-record");
            Ok("submitted")
        }
        PushOutcome::Rejected(error) => {
            context.store.fail_and_refund_batch(batch, &error).await?;
            Ok("failed")
        }
        PushOutcome::Unknown(error) => {
            tracing::warn!(batch = %batch.id, %error, "push outcome unknown; the next run asks the chain");
            Ok("signed")
        }
    }
}

/// Moves an open batch on by what the chain says.
async fn settle(
    context: &Context,
    key: &SigningKey,
    batch: PayoutBatch,
) -> Result<&'static str, JobError> {
    if batch.state == BatchState::Created {
        return pay(context, key, batch).await;
    }
    let Some(hash) = &batch.tx_hash else {
        return Err(JobError::Invalid(format!(
            "batch {} has no transaction hash",
            batch.id
        )));
    };
    match context.chain.transaction_status(hash).await? {
        TransactionStatus::Confirmed { .. } => {
            context.store.confirm_batch(&batch).await?;
            Ok("confirmed")
        }
        TransactionStatus::Pending => {
            if batch.state == BatchState::Signed {
                context.store.record_submitted_batch(&batch.id).await?;
            }
            Ok("submitted")
        }
        // Never reached the chain, or dropped: the same bytes again, never a new transaction.
        TransactionStatus::NotFound => push(context, &batch).await,
    }
}
