//! `validators` (SPEC §5.2): the top validators by stake and their percentages.

use minerpool_core::store::validators::stake_shares;
use serde_json::{Value, json};

use crate::{Context, JobError};

pub async fn run(context: &Context) -> Result<Value, JobError> {
    let config = &context.config;
    let listed = context
        .chain
        .validators_info(&config.chain.inode_wallet)
        .await?;
    let fetched = listed.len();
    let shares = stake_shares(listed, config.validators.limit as usize);
    let synced = context.store.sync_validators(&shares).await?;
    Ok(json!({
        "fetched": fetched,
        "listed": synced.listed,
        "dropped": synced.dropped,
    }))
}
