//! `rewards` (SPEC §5.1): scan the next settled blocks, credit the iNode's new income, share it
//! out.
//!
//! One `get_blocks_details` call per pass, from the last scanned block on, both checks that block
//! is still on chain and shows how far the chain reaches (the highest id answered is at most the
//! tip), so only blocks `rewards.confirmations` deep are credited without asking for the tip
//! separately (that endpoint is rate-limited to 10 calls a minute).

use std::collections::HashSet;

use minerpool_core::money::Amount;
use minerpool_core::rewards::{
    Percentages, distribute, income_by_block, income_of, plan_scan, scan_request,
};
use minerpool_core::spends::{Wallet, spends_in_blocks};
use minerpool_core::store::Store;
use minerpool_core::store::ledger::rewards::RewardsRecord;
use serde_json::json;

use minerpool_core::store::runs::Fence;

use crate::{Context, JobError, Pass};

pub async fn run(context: &Context, fence: &Fence) -> Result<Pass, JobError> {
    let config = &context.config;
    let store = &context.store;
    let last_scanned = store.last_scanned().await?;
    let previous_height = last_scanned.as_ref().map(|last| last.height as i64);
    let (offset, limit) = scan_request(
        last_scanned.as_ref(),
        config.rewards.start_height,
        config.rewards.blocks_per_run,
        config.rewards.confirmations,
    );
    let answer = context.chain.blocks_details(offset, limit).await?;
    if let Some(highest) = answer.last() {
        store.record_chain_height(highest.block.id as i64).await?;
    }
    let plan = plan_scan(
        last_scanned.as_ref(),
        offset,
        &answer,
        config.rewards.blocks_per_run,
        config.rewards.confirmations,
    )?;
    let blocks = &answer[plan.credit.clone()];
    // Every spend of the wallet in the blocks read, settled or not (money that left is gone
    // whether or not its block is final), recorded with the pass.
    let spends = spends_in_blocks(&answer, &Wallet::new(&config.chain.inode_wallet));
    let (Some(first), Some(last)) = (blocks.first(), blocks.last()) else {
        if let Some(spends) = &spends {
            store.record_block_spends(spends).await?;
        }
        return Ok(nothing_to_credit(
            previous_height,
            offset,
            answer.last().map(|b| b.block.id),
            config.rewards.confirmations,
        ));
    };
    let (first_block, last_block) = (first.block.id as i64, last.block.id as i64);

    // Income of this range, each transaction once even when the chain repeats it.
    let wallet = &config.chain.inode_wallet;
    let mut seen = HashSet::new();
    let mut incoming: Vec<(String, i64, Amount)> = Vec::new();
    for block in blocks {
        for tx in &block.transactions {
            if !seen.insert(tx.hash.clone()) {
                continue;
            }
            let income = income_of(tx, wallet).map_err(JobError::Invalid)?;
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
    // What each block paid at its chain time, for the charts; none when a block's time is not
    // known (the distribution is then charted when it is credited).
    let times: std::collections::BTreeMap<i64, bson::DateTime> = blocks
        .iter()
        .filter_map(|b| Some((b.block.id as i64, b.block.time()?)))
        .collect();
    let by_block = income_by_block(
        incoming.iter().map(|(_, block, amount)| (*block, *amount)),
        |block| times.get(&block).copied(),
    )
    .unwrap_or_default();
    let spends_found = spends.as_ref().map_or(0, |s| s.found.len());
    store
        .record_rewards_with(
            fence,
            &RewardsRecord {
                previous_height,
                first_block,
                last_block,
                blocks: plan
                    .adopt
                    .iter()
                    .map(|(id, hash)| (*id, hash))
                    .chain(blocks.iter().map(|b| (b.block.id, &b.block.hash)))
                    .map(|(id, hash)| (id as i64, hash.clone()))
                    .collect(),
                received: received.units(),
                transactions: incoming.iter().map(|(h, b, _)| (h.clone(), *b)).collect(),
                lines,
            },
            &by_block,
            spends.map(Store::block_spends_writer),
        )
        .await?;
    let pruned = match store.prune_scanned_blocks(last_block).await {
        Ok(pruned) => pruned,
        Err(error) => {
            tracing::warn!(%error, "old scannedBlocks not pruned; the next pass prunes them");
            0
        }
    };
    let mut summary = json!({
        "from": first_block,
        "to": last_block,
        "blocks": blocks.len(),
        "highestSeen": answer.last().map(|b| b.block.id),
        "transactionsCredited": incoming.len(),
        "transactionsAlreadyCredited": already.len(),
        "received": received.to_string(),
        "ledgerLines": credited_addresses,
        "walletSpendsSeen": spends_found,
    });
    if pruned > 0 {
        summary["scannedBlocksPruned"] = json!(pruned);
    }
    Ok(Pass::done(summary))
}

/// A pass that credits nothing says which heights it looked at: the last scanned block, the
/// chain's tip as answered (the answer reaches the tip whenever nothing is settled), and the
/// block it waits for. With nothing scanned yet and no block at or above `offset` (the start
/// height), the chain is below the start height: blocked, since no pass can credit anything
/// until that changes.
fn nothing_to_credit(
    last_scanned: Option<i64>,
    offset: u64,
    chain_tip: Option<u64>,
    confirmations: u32,
) -> Pass {
    let next = last_scanned.map_or(offset, |height| height as u64 + 1);
    let mut details = json!({
        "blocks": 0,
        "lastScannedHeight": last_scanned,
        "chainTip": chain_tip,
        "nextBlock": next,
        "confirmations": confirmations,
    });
    match chain_tip {
        Some(tip) => {
            details["note"] = json!(format!(
                "block {next} is credited once the chain reaches block {} (it is at {tip})",
                next + u64::from(confirmations)
            ));
            Pass::done(details)
        }
        None => Pass::blocked(
            details,
            format!(
                "rewards.startHeight {offset} is above the chain's tip: get_blocks_details has no block at or above it; nothing is credited until the chain reaches it (or startHeight is lowered)"
            ),
        ),
    }
}
