//! The rewards job's database side: what is already credited, who shares, the one transaction
//! that records a distribution (SPEC §5.1 step 5), and pruning the scanned blocks no reorg check
//! needs.

use std::collections::HashSet;

use bson::{DateTime, Document, doc};
use futures::TryStreamExt;
use mongodb::ClientSession;

use crate::faults::{crash_point, pause_point};
use crate::rewards::{LastScanned, PoolWeight, ValidatorWeight, credits_by_address};
use crate::scoring::percentage_hundredths;
use crate::store::db::{Result, Store, StoreError, is_duplicate_key, update_many_by_key};
use crate::store::ledger::{
    BlockHeight, BlockIncome, CreditedTransaction, LAST_BLOCK_HEIGHT_ID, LedgerLine,
    RewardDistribution, ScannedBlock,
};
use crate::store::names;
use crate::store::runs::Fence;

/// What one rewards pass credits, recorded all at once.
#[derive(Debug, Clone)]
pub struct RewardsRecord {
    /// The height stored when the pass started (`None`: never scanned); the record is refused if
    /// another run moved it since.
    pub previous_height: Option<i64>,
    pub first_block: i64,
    pub last_block: i64,
    /// (id, hash) of every block scanned by this pass, and of the previous height when its hash
    /// was not stored yet (adopted from the chain).
    pub blocks: Vec<(i64, String)>,
    pub received: i64,
    /// (hash, block id) of every transaction credited.
    pub transactions: Vec<(String, i64)>,
    pub lines: Vec<LedgerLine>,
}

/// More writes for a rewards record's transaction, made by a later subject of the store.
pub type AlsoInTransaction = std::sync::Arc<
    dyn for<'s> Fn(&'s Store, &'s mut ClientSession) -> futures::future::BoxFuture<'s, Result<()>>
        + Send
        + Sync,
>;

/// Scanned blocks kept at and below the last scanned one. A pass checks only the last one's hash
/// (block hashes chain, so any deeper reorganisation changes it too); the older ones are for an
/// operator finding the fork height (README, "When the chain reorganises"). 10,000 is about a
/// week of uPow's one-minute blocks, about 1 MB; a fork deeper than that is found from
/// `rewardDistributions` and `blockTransactions`, which are kept.
pub const SCANNED_BLOCKS_KEPT: i64 = 10_000;

/// Someone else recorded first; nothing of this record was written.
pub const CONCURRENT_RUN: &str = "the block height moved while this run was scanning: another rewards run recorded first, \
     nothing was written";

/// Per-block income must lie in the record's range and sum to its `received` exactly (none at
/// all is fine: charted at the crediting time).
fn check_blocks(record: &RewardsRecord, blocks: &[BlockIncome]) -> Result<()> {
    if blocks.is_empty() {
        return Ok(());
    }
    let sum = blocks
        .iter()
        .try_fold(0_i64, |sum, b| sum.checked_add(b.units));
    let in_range = blocks
        .iter()
        .all(|b| (record.first_block..=record.last_block).contains(&b.block));
    if sum == Some(record.received) && in_range {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "the per-block income of blocks {}-{} sums to {sum:?} units or lies outside them, not {} units received",
            record.first_block, record.last_block, record.received
        )))
    }
}

impl Store {
    /// Deletes the scanned blocks older than the newest [`SCANNED_BLOCKS_KEPT`] up to `height`
    /// (the height just recorded); returns how many went. Outside the record's transaction, so
    /// that the first pass over a store that kept every block does not carry a huge delete;
    /// idempotent, so a failed prune is done by the next pass.
    pub async fn prune_scanned_blocks(&self, height: i64) -> Result<u64> {
        let below = height.saturating_sub(SCANNED_BLOCKS_KEPT - 1);
        let deleted = self
            .collection::<ScannedBlock>(names::SCANNED_BLOCKS)
            .delete_many(doc! { "_id": { "$lt": below } })
            .await
            .map_err(StoreError::mongo("prune scannedBlocks"))?;
        Ok(deleted.deleted_count)
    }

    /// The last block scanned, if any.
    pub async fn last_scanned_height(&self) -> Result<Option<i64>> {
        Ok(self
            .block_height()
            .find_one(doc! { "_id": LAST_BLOCK_HEIGHT_ID })
            .await
            .map_err(StoreError::mongo("read blockHeight"))?
            .map(|h| h.block_height))
    }

    /// The last block scanned with its stored hash, if any block was scanned.
    pub async fn last_scanned(&self) -> Result<Option<LastScanned>> {
        let Some(height) = self.last_scanned_height().await? else {
            return Ok(None);
        };
        let height_u64 = u64::try_from(height).map_err(|_| {
            StoreError::Invalid(format!("stored block height {height} is negative"))
        })?;
        let block = self
            .collection::<ScannedBlock>(names::SCANNED_BLOCKS)
            .find_one(doc! { "_id": height })
            .await
            .map_err(StoreError::mongo("read scannedBlocks"))?;
        Ok(Some(LastScanned {
            height: height_u64,
            hash: block.map(|b| b.hash),
        }))
    }

    /// Which of `hashes` were credited already (one query).
    pub async fn credited_among(&self, hashes: &[String]) -> Result<HashSet<String>> {
        if hashes.is_empty() {
            return Ok(HashSet::new());
        }
        let found: Vec<CreditedTransaction> = self
            .credited_transactions()
            .find(doc! { "hash": { "$in": hashes } })
            .projection(doc! { "hash": 1, "_id": 0 })
            .await
            .map_err(StoreError::mongo("read blockTransactions"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("read blockTransactions"))?;
        Ok(found.into_iter().map(|t| t.hash).collect())
    }

    /// Pools with their scores, as the pool part is shared.
    pub async fn pool_weights(&self) -> Result<Vec<PoolWeight>> {
        let pools: Vec<_> = self
            .pool_scores()
            .find(doc! { "score": { "$gt": 0 } })
            .sort(doc! { "pool_address": 1 })
            .await
            .map_err(StoreError::mongo("read minerPool"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("read minerPool"))?;
        Ok(pools
            .into_iter()
            .map(|p| PoolWeight {
                address: p.pool_address,
                score: p.score,
            })
            .collect())
    }

    /// Validators with their stake percentages and activity.
    pub async fn validator_weights(&self) -> Result<Vec<ValidatorWeight>> {
        let validators: Vec<_> = self
            .validators()
            .find(doc! {})
            .sort(doc! { "wallet_address": 1 })
            .await
            .map_err(StoreError::mongo("read validatorsList"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("read validatorsList"))?;
        Ok(validators
            .into_iter()
            .map(|v| ValidatorWeight {
                hundredths: percentage_hundredths(v.percentage),
                active: v.score == 1,
                address: v.wallet_address,
            })
            .collect())
    }

    /// Records a pass in one transaction: the scanned blocks' hashes, the credited transaction
    /// hashes, the distribution, the balance increments and the new height. A crash anywhere leaves all or nothing; a re-run finds the
    /// height moved and the hashes credited, so nothing is credited twice.
    ///
    /// The distribution carries no block times: the charts show it at its crediting time.
    pub async fn record_rewards(&self, fence: &Fence, record: &RewardsRecord) -> Result<()> {
        self.record_rewards_by_block(fence, record, &[]).await
    }

    /// [`Store::record_rewards`], with what each block paid at its chain time (from
    /// [`crate::rewards::income_by_block`]) kept on the distribution, so the charts show its
    /// income and earnings in the hours of its blocks. Refused, with nothing written, unless
    /// those blocks lie in the range and sum to `record.received` exactly.
    pub async fn record_rewards_by_block(
        &self,
        fence: &Fence,
        record: &RewardsRecord,
        blocks: &[BlockIncome],
    ) -> Result<()> {
        self.record_rewards_with(fence, record, blocks, None).await
    }

    /// [`Store::record_rewards_by_block`], with `also` written in the same transaction (what a
    /// later subject records of the same blocks, such as the wallet's spends), so the height
    /// never moves past blocks whose other records are missing.
    pub async fn record_rewards_with(
        &self,
        fence: &Fence,
        record: &RewardsRecord,
        blocks: &[BlockIncome],
        also: Option<AlsoInTransaction>,
    ) -> Result<()> {
        check_blocks(record, blocks)?;
        let (store, fence, record, blocks) =
            (self.clone(), fence.clone(), record.clone(), blocks.to_vec());
        self.with_transaction(move |session| {
            let (store, fence, record, blocks, also) = (
                store.clone(),
                fence.clone(),
                record.clone(),
                blocks.clone(),
                also.clone(),
            );
            Box::pin(async move {
                store.check_fence(session, &fence).await?;
                store.record_rewards_in(session, &record, blocks).await?;
                match also {
                    Some(also) => also(&store, session).await,
                    None => Ok(()),
                }
            })
        })
        .await?;
        crash_point("rewards:after-commit");
        Ok(())
    }

    async fn record_rewards_in(
        &self,
        session: &mut ClientSession,
        record: &RewardsRecord,
        received_by_block: Vec<BlockIncome>,
    ) -> Result<()> {
        let now = DateTime::now();
        self.advance_height(session, record.previous_height, record.last_block)
            .await?;
        crash_point("rewards:after-height");
        if !record.blocks.is_empty() {
            let blocks: Vec<ScannedBlock> = record
                .blocks
                .iter()
                .map(|(id, hash)| ScannedBlock {
                    id: *id,
                    hash: hash.clone(),
                    scanned_at: now,
                })
                .collect();
            self.collection::<ScannedBlock>(names::SCANNED_BLOCKS)
                .insert_many(blocks)
                .session(&mut *session)
                .await
                .map_err(|e| {
                    if is_duplicate_key(&e) {
                        StoreError::Invalid(format!(
                            "scannedBlocks already holds one of blocks {}-{}: blockHeight was moved back without deleting the scannedBlocks above it (README: \"When the chain reorganises\")",
                            record.first_block, record.last_block
                        ))
                    } else {
                        StoreError::mongo("record the scanned blocks")(e)
                    }
                })?;
        }
        if !record.transactions.is_empty() {
            let credited: Vec<CreditedTransaction> = record
                .transactions
                .iter()
                .map(|(hash, block)| CreditedTransaction {
                    hash: hash.clone(),
                    block_id: Some(*block),
                    credited_at: Some(now),
                })
                .collect();
            self.credited_transactions()
                .insert_many(credited)
                .session(&mut *session)
                .await
                .map_err(StoreError::mongo("record credited transactions"))?;
        }
        if record.received > 0 {
            let distribution = RewardDistribution {
                id: format!("{}-{}", record.first_block, record.last_block),
                first_block: record.first_block,
                last_block: record.last_block,
                received: record.received,
                hashes: record.transactions.iter().map(|(h, _)| h.clone()).collect(),
                lines: record.lines.clone(),
                created_at: now,
                received_by_block,
            };
            self.reward_distributions()
                .insert_one(distribution)
                .session(&mut *session)
                .await
                .map_err(StoreError::mongo("record the distribution"))?;
            crash_point("rewards:before-balances");
            let increments: Vec<(String, Document)> = credits_by_address(&record.lines)
                .into_iter()
                .map(|(address, units)| {
                    (
                        address.to_owned(),
                        doc! {
                            "$inc": { "pending": units, "paid": 0_i64 },
                            "$set": { "updated_at": now },
                        },
                    )
                })
                .collect();
            update_many_by_key(
                self,
                Some(&mut *session),
                names::BALANCES,
                "address",
                increments,
                true,
            )
            .await?;
        }
        crash_point("rewards:before-commit");
        pause_point("rewards:before-commit");
        Ok(())
    }

    /// Moves the height from `previous` to `height`, refusing if another run moved it first.
    async fn advance_height(
        &self,
        session: &mut ClientSession,
        previous: Option<i64>,
        height: i64,
    ) -> Result<()> {
        let heights = self.block_height();
        match previous {
            None => {
                heights
                    .insert_one(BlockHeight {
                        id: LAST_BLOCK_HEIGHT_ID.into(),
                        block_height: height,
                    })
                    .session(&mut *session)
                    .await
                    .map_err(|e| {
                        if is_duplicate_key(&e) {
                            StoreError::Conflict(CONCURRENT_RUN.into())
                        } else {
                            StoreError::mongo("record the block height")(e)
                        }
                    })?;
            }
            Some(previous) => {
                let moved = self
                    .collection::<Document>(names::BLOCK_HEIGHT)
                    .update_one(
                        doc! { "_id": LAST_BLOCK_HEIGHT_ID, "block_height": previous },
                        doc! { "$set": { "block_height": height } },
                    )
                    .session(&mut *session)
                    .await
                    .map_err(StoreError::mongo("record the block height"))?;
                if moved.matched_count != 1 {
                    return Err(StoreError::Conflict(CONCURRENT_RUN.into()));
                }
            }
        }
        Ok(())
    }
}
