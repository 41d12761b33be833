//! `rewards` (SPEC §5.1): scan the next blocks, credit the iNode's new income, share it out.

use std::collections::HashSet;

use minerpool_core::money::Amount;
use minerpool_core::rewards::{Percentages, distribute, income_of};
use minerpool_core::store::rewards::RewardsRecord;
use serde_json::{Value, json};

use crate::{Context, JobError};

pub async fn run(context: &Context) -> Result<Value, JobError> {
    let config = &context.config;
    let store = &context.store;
    let previous_height = store.last_scanned_height().await?;
    let from = match previous_height {
        Some(height) => u64::try_from(height + 1)
            .map_err(|_| JobError::Invalid(format!("stored block height {height} is negative")))?,
        None => config.rewards.start_height,
    };
    let blocks = context
        .chain
        .blocks_details(from, config.rewards.blocks_per_run)
        .await?;
    let (Some(first), Some(last)) = (blocks.first(), blocks.last()) else {
        return Ok(json!({ "from": from, "blocks": 0, "note": "no new blocks" }));
    };
    let (first_block, last_block) = (first.block.id as i64, last.block.id as i64);

    // Income of this range, each transaction once even when the chain repeats it.
    let wallet = &config.chain.inode_wallet;
    let mut seen = HashSet::new();
    let mut incoming: Vec<(String, i64, Amount)> = Vec::new();
    for block in &blocks {
        for tx in &block.transactions {
            if !seen.insert(tx.hash.clone()) {
                continue;
            }
            let income = income_of(tx, wallet).ok_or_else(|| {
                JobError::Invalid(format!(
                    "transaction {} pays an amount that overflows",
                    tx.hash
                ))
            })?;
            if income > Amount::ZERO {
                incoming.push((tx.hash.clone(), block.block.id as i64, income));
            }
        }
    }
    let hashes: Vec<String> = incoming.iter().map(|(h, _, _)| h.clone()).collect();
    let already = store.credited_among(&hashes).await?;
    incoming.retain(|(hash, _, _)| !already.contains(hash));
    let received = Amount::checked_sum(incoming.iter().map(|(_, _, a)| *a))
        .ok_or_else(|| JobError::Invalid("received amounts overflow".into()))?;

    let lines = if received > Amount::ZERO {
        let pools = store.pool_weights().await?;
        let validators = store.validator_weights().await?;
        let rewards = &config.rewards;
        distribute(
            received,
            Percentages {
                fee: rewards.fee_percent,
                pools: rewards.pools_percent,
                validators: rewards.validators_percent,
            },
            &config.chain.reward_address,
            &pools,
            &validators,
        )?
    } else {
        Vec::new()
    };
    let credited_addresses = lines.len();
    store
        .record_rewards(&RewardsRecord {
            previous_height,
            first_block,
            last_block,
            received: received.units(),
            transactions: incoming.iter().map(|(h, b, _)| (h.clone(), *b)).collect(),
            lines,
        })
        .await?;
    Ok(json!({
        "from": first_block,
        "to": last_block,
        "blocks": blocks.len(),
        "transactionsCredited": incoming.len(),
        "transactionsAlreadyCredited": already.len(),
        "received": received.to_string(),
        "ledgerLines": credited_addresses,
    }))
}
