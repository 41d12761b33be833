//! Response shapes of the uPow node API (SPEC §5, upow/TRANSACTIONS.md §8). Amounts are read
//! exactly from their literal text.

use serde::{Deserialize, Serialize};

use crate::money::{Amount, chain_number};

/// One entry of `get_blocks_details`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockDetails {
    pub block: BlockHeader,
    pub transactions: Vec<ChainTransaction>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockHeader {
    pub id: u64,
    pub hash: String,
}

/// A transaction as the chain API shows it ("nice transaction").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainTransaction {
    pub hash: String,
    #[serde(default)]
    pub is_coinbase: bool,
    /// `REGULAR` or another kind (stake, vote, …); absent on coinbases and old transactions.
    #[serde(default)]
    pub transaction_type: Option<String>,
    #[serde(default)]
    pub inputs: Vec<TransactionInput>,
    #[serde(default)]
    pub outputs: Vec<TransactionOutput>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionInput {
    /// The owner of the spent output.
    #[serde(default)]
    pub address: Option<String>,
    #[serde(default)]
    pub tx_hash: Option<String>,
    #[serde(default)]
    pub index: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionOutput {
    pub address: String,
    #[serde(deserialize_with = "chain_number::deserialize")]
    pub amount: Amount,
    /// `REGULAR`, `STAKE`, …
    #[serde(rename = "type", default)]
    pub output_type: Option<String>,
}

/// One entry of `get_validators_info` (a bare JSON array).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidatorInfo {
    pub validator: String,
    #[serde(default)]
    pub vote: Vec<ValidatorVote>,
    #[serde(rename = "totalStake", deserialize_with = "chain_number::deserialize")]
    pub total_stake: Amount,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidatorVote {
    #[serde(default)]
    pub wallet: Option<String>,
    #[serde(deserialize_with = "chain_number::deserialize")]
    pub vote_count: Amount,
}
