//! `minerpool-job spends`: the operator's view of the wallet's spends and the resolution of a
//! foreign one (SPEC §5.3 point 5). Listing reads; adopting and acknowledging each write in one
//! transaction of the store, which refuses what may not be done and says why.

use minerpool_core::money::coins_text;
use minerpool_core::store::Store;
use minerpool_core::store::spends::{ResolutionKind, SpendFilter, WalletSpend};
use serde_json::{Value, json};

use crate::JobError;

/// How an operator resolves a foreign spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolve {
    Adopt,
    Acknowledge,
}

/// A spend as the command prints it: amounts in coins.
pub fn spend_json(spend: &WalletSpend) -> Value {
    let recipients = |list: &[minerpool_core::store::payouts::Recipient]| {
        list.iter()
            .map(|r| json!({ "address": r.address, "amount": coins_text(r.units) }))
            .collect::<Vec<_>>()
    };
    json!({
        "txHash": spend.hash,
        "origin": spend.origin,
        "batch": spend.batch,
        "where": spend.whereabouts().to_string(),
        "block": spend.block,
        "outputs": recipients(&spend.outputs),
        "paid": coins_text(spend.units()),
        "change": coins_text(spend.change),
        "unreadable": spend.unreadable,
        "unresolved": spend.is_unresolved(),
        "resolution": spend.resolution.as_ref().map(|r| json!({
            "kind": match r.kind {
                ResolutionKind::Adopted => "adopted",
                ResolutionKind::Acknowledged => "acknowledged",
            },
            "reason": r.reason,
            "at": r.at.try_to_rfc3339_string().unwrap_or_default(),
            "batch": r.batch,
            "adopted": recipients(&r.adopted),
            "notAdopted": recipients(&r.not_adopted),
        })),
    })
}

/// The recorded spends, newest first: all of them, or only the foreign ones.
pub async fn list(store: &Store, all: bool, limit: i64) -> Result<Value, JobError> {
    let filter = if all {
        SpendFilter::All
    } else {
        SpendFilter::Foreign
    };
    let spends = store.list_wallet_spends(filter, limit).await?;
    let read = store.spends_read().await?;
    Ok(json!({
        "spends": spends.iter().map(spend_json).collect::<Vec<_>>(),
        "unresolved": spends.iter().filter(|s| s.is_unresolved()).count(),
        "readTo": read.map(|r| r.block_height),
    }))
}

/// Adopts or acknowledges the foreign spend `hash`, with `reason`.
pub async fn resolve(
    store: &Store,
    how: Resolve,
    hash: &str,
    reason: &str,
) -> Result<Value, JobError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(JobError::Invalid(
            "--reason must say why (it is recorded with the decision)".into(),
        ));
    }
    let spend = match how {
        Resolve::Adopt => store.adopt_spend(hash, reason).await?,
        Resolve::Acknowledge => store.acknowledge_spend(hash, reason).await?,
    };
    Ok(spend_json(&spend))
}
