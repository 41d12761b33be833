//! `validators` (SPEC §5.2): the top validators by stake and their percentages. A validator
//! address from the chain that is not a P-256 point is skipped and named in the summary.

use minerpool_core::store::registry::stakes::{payable_validators, stake_shares};
use serde_json::{Value, json};

use crate::{Context, JobError};

pub async fn run(context: &Context) -> Result<Value, JobError> {
    let config = &context.config;
    let listed = context
        .chain
        .validators_info(&config.chain.inode_wallet)
        .await?;
    let fetched = listed.len();
    let (listed, skipped) = payable_validators(listed);
    for s in &skipped {
        tracing::warn!(address = %s.address, reason = %s.reason, "validator from the chain skipped");
    }
    let shares = stake_shares(listed, config.validators.limit as usize);
    let synced = context.store.sync_validators(&shares).await?;
    Ok(json!({
        "fetched": fetched,
        "listed": synced.listed,
        "dropped": synced.dropped,
        "skipped": skipped.len(),
        "skippedValidators": skipped
            .iter()
            .map(|s| json!({ "address": s.address, "reason": s.reason.to_string() }))
            .collect::<Vec<_>>(),
    }))
}
