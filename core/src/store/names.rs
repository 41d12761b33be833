//! Collection names, in one place.

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
/// Every transaction the chain shows spending the iNode wallet.
pub const WALLET_SPENDS: &str = "walletSpends";
