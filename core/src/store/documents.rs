//! Typed documents of every collection (SPEC §2). Shared-state collections keep the original
//! iNode's names and fields; reads tolerate its loose types (see [`super::loose`]).

use bson::{DateTime, Document, oid::ObjectId};
use serde::{Deserialize, Serialize};

use super::loose;

/// Collection names, in one place.
pub mod names {
    pub const POOL_LIST: &str = "poolList";
    pub const MINER_POOL: &str = "minerPool";
    pub const VALIDATORS: &str = "validatorsList";
    pub const BLOCK_HEIGHT: &str = "blockHeight";
    pub const SCANNED_BLOCKS: &str = "scannedBlocks";
    pub const BLOCK_TRANSACTIONS: &str = "blockTransactions";
    pub const REWARD_DISTRIBUTIONS: &str = "rewardDistributions";
    pub const REWARD_LOG: &str = "rewardLog";
    pub const BALANCES: &str = "balances";
    pub const PAYOUT_BATCHES: &str = "payoutBatches";
    pub const TASK_RECEIPTS: &str = "taskReceipts";
    /// Nonces of accepted signed messages, each kept while its message could still arrive.
    pub const SIGNED_NONCES: &str = "signedNonces";
    pub const JOB_RUNS: &str = "jobRuns";
    pub const JOB_LOCKS: &str = "jobLocks";
    pub const TEMP_WITHDRAWALS: &str = "tempWithdrawals";
    pub const ADMIN_REPLAYS: &str = "adminReplays";
    pub const IMPORTS: &str = "imports";
    /// Totals for the public stats, refreshed by the jobs.
    pub const STATS: &str = "stats";
    /// Each pool's and validator's highest score per hour, one document per address and day.
    pub const SCORE_HISTORY: &str = "scoreHistory";
}

/// `poolList`: pools allowed to receive TASK credit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredPool {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    pub pool_address: String,
}

/// `minerPool`: a pool's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolScore {
    pub pool_address: String,
    #[serde(default, deserialize_with = "loose::int")]
    pub score: i64,
    #[serde(default, deserialize_with = "loose::datetime")]
    pub last_active_time: Option<DateTime>,
}

/// `validatorsList`: a validator's stake share, activity and contact address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validator {
    pub wallet_address: String,
    /// 1 when it reported work since the last decay, else 0.
    #[serde(default, deserialize_with = "loose::int")]
    pub score: i64,
    /// Share of the stake, in percent with 2 decimals.
    #[serde(default, deserialize_with = "loose::number")]
    pub percentage: f64,
    #[serde(rename = "totalStake", default, deserialize_with = "loose::number")]
    pub total_stake: f64,
    #[serde(default, deserialize_with = "loose::number")]
    pub vote: f64,
    #[serde(default, deserialize_with = "loose::ip")]
    pub ip: Option<String>,
    #[serde(default, deserialize_with = "loose::port")]
    pub port: Option<u16>,
    #[serde(default, deserialize_with = "loose::datetime")]
    pub ping: Option<DateTime>,
    #[serde(default, deserialize_with = "loose::datetime")]
    pub last_active_time: Option<DateTime>,
    #[serde(rename = "lastFetch", default, deserialize_with = "loose::datetime")]
    pub last_fetch: Option<DateTime>,
    #[serde(default, deserialize_with = "loose::number")]
    pub balance: f64,
    /// When its first valid signed message was accepted (SPEC §4.5); from then on its unsigned
    /// messages are refused, until an admin lifts that.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "loose::datetime"
    )]
    pub signed_since: Option<DateTime>,
}

/// `blockHeight`: the last block scanned by the rewards job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockHeight {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(deserialize_with = "loose::int")]
    pub block_height: i64,
}

/// The `_id` of the one `blockHeight` document.
pub const LAST_BLOCK_HEIGHT_ID: &str = "last_block_height";

/// `scannedBlocks`: a block the rewards job scanned, with the hash it had then, so a later pass
/// can tell it was orphaned (SPEC §5.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScannedBlock {
    #[serde(rename = "_id")]
    pub id: i64,
    pub hash: String,
    pub scanned_at: DateTime,
}

/// `blockTransactions`: a chain transaction already credited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreditedTransaction {
    pub hash: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "loose::optional_int"
    )]
    pub block_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credited_at: Option<DateTime>,
}

/// Who a ledger line pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LedgerKind {
    Fee,
    Pool,
    Validator,
    Unallocated,
}

/// Why a ledger line has its size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// The fee percentage of the whole.
    Fee { percent: i64 },
    /// The pool's score when the distribution was made.
    Score { score: i64 },
    /// The validator's stake percentage, in hundredths.
    Percentage { hundredths: i64 },
    /// Whatever no one else could receive.
    Remainder,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerLine {
    pub address: String,
    pub kind: LedgerKind,
    /// Smallest units.
    pub units: i64,
    pub basis: Basis,
}

/// `rewardDistributions`: what one rewards run received and whom it credited.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewardDistribution {
    /// Block range `first-last`.
    #[serde(rename = "_id")]
    pub id: String,
    pub first_block: i64,
    pub last_block: i64,
    /// Smallest units received in the range.
    pub received: i64,
    pub hashes: Vec<String>,
    pub lines: Vec<LedgerLine>,
    pub created_at: DateTime,
    /// What each block of the range paid, at the chain's time of that block, summing to
    /// `received` (blocks that paid nothing left out), so the charts show income when the chain
    /// carried it rather than when it was credited. Empty on distributions recorded before it
    /// existed or without the chain's block times: those are charted at `created_at`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub received_by_block: Vec<BlockIncome>,
}

/// Units one block paid the iNode, at the block's time on the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockIncome {
    pub block: i64,
    pub time: DateTime,
    /// Smallest units.
    pub units: i64,
}

/// `balances`: what an address is owed and has been paid, in smallest units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Balance {
    pub address: String,
    #[serde(default)]
    pub pending: i64,
    #[serde(default)]
    pub paid: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime>,
}

/// `taskReceipts`: a TASK accepted in the last 24 h, so a retried TASK adds no score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskReceipt {
    pub validator_wallet: String,
    pub val_id: String,
    pub accepted_at: DateTime,
}

/// How a job run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    Running,
    Succeeded,
    Failed,
    /// The run could not do its work for a reason it names (`reason`): the fee not covered while
    /// payouts are due, a wallet that cannot cover them, a start height above the chain's tip.
    /// Not a failure (it will pass once the reason is gone), not a success either.
    Blocked,
}

/// `jobRuns`: one run of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRun {
    #[serde(rename = "_id")]
    pub id: String,
    pub job: String,
    pub started_at: DateTime,
    #[serde(default)]
    pub ended_at: Option<DateTime>,
    pub outcome: JobOutcome,
    #[serde(default)]
    pub summary: Document,
    #[serde(default)]
    pub error: Option<String>,
    /// Why a blocked run could not do its work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Seconds the run waited out the chain's rate limits (HTTP 429), whatever their number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited_seconds: Option<f64>,
}

/// `jobLocks`: who runs a job now, until when (by the server's clock), and the generation that
/// fences every money move of the holder. The document is never deleted, so generations only grow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobLock {
    #[serde(rename = "_id")]
    pub job: String,
    pub holder: String,
    pub expires_at: DateTime,
    #[serde(default)]
    pub generation: i64,
}

impl super::reads::NewestFirst for RewardDistribution {
    type Key = i64;
    fn cursor(&self) -> Option<super::reads::Before<i64>> {
        super::reads::Before::row(Some(self.created_at), self.last_block)
    }
}

impl super::reads::NewestFirst for JobRun {
    type Key = String;
    fn cursor(&self) -> Option<super::reads::Before<String>> {
        super::reads::Before::row(Some(self.started_at), self.id.clone())
    }
}
