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
    /// The block's time, epoch seconds (absent from some answers: then its income is charted
    /// at the time it was credited).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "block_time"
    )]
    pub timestamp: Option<i64>,
}

impl BlockHeader {
    /// The block's time, when the chain gave one that a date can hold.
    pub fn time(&self) -> Option<bson::DateTime> {
        let millis = self.timestamp?.checked_mul(1000)?;
        (0..=253_402_300_799_999)
            .contains(&millis)
            .then(|| bson::DateTime::from_millis(millis))
    }
}

/// A block's time only places its income on the charts, so an answer whose time is not a
/// number of seconds (a string, null, a negative count) is read as no time, not as a refused
/// block: its income is then charted when it is credited. A fraction of a second is dropped.
fn block_time<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite())
                .map(|f| f.floor() as i64)
        }),
        _ => None,
    }
    .filter(|seconds| *seconds >= 0))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn header(timestamp: &str) -> BlockHeader {
        serde_json::from_str(&format!(
            r#"{{"id": 7, "hash": "ab", "timestamp": {timestamp}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_block_time_is_read_when_it_is_a_count_of_seconds_and_none_otherwise() {
        let at = |seconds: i64| Some(bson::DateTime::from_millis(seconds * 1000));
        assert_eq!(header("1717245296").time(), at(1_717_245_296));
        assert_eq!(header("1717245296.75").time(), at(1_717_245_296));
        for unusable in [
            "\"1717245296\"",
            "null",
            "-5",
            "true",
            "{}",
            "1e300",
            "9223372036854775807",
        ] {
            assert_eq!(header(unusable).time(), None, "{unusable}");
        }
        let absent: BlockHeader = serde_json::from_str(r#"{"id": 7, "hash": "ab"}"#).unwrap();
        assert_eq!(absent.time(), None);
    }
}
