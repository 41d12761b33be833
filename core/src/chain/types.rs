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

/// A transaction as the chain API shows it ("nice transaction"). An output that cannot be read
/// (no address, an amount that is not a decimal of at most 8 places) does not make the whole
/// answer unreadable: it is kept aside in `unreadable_outputs`, so one odd transaction cannot
/// stop the income of a block from being credited, and whoever reads the transaction decides
/// what an unreadable output means for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawTransaction")]
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
    /// The outputs that could not be read, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable_outputs: Vec<UnreadableOutput>,
}

/// An output of a chain transaction that could not be read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnreadableOutput {
    /// Its position among the transaction's outputs.
    pub index: usize,
    /// Its address, when that much could be read.
    pub address: Option<String>,
    /// What was wrong.
    pub error: String,
}

/// [`ChainTransaction`] as it arrives, its outputs still unread.
#[derive(Deserialize)]
struct RawTransaction {
    hash: String,
    #[serde(default)]
    is_coinbase: bool,
    #[serde(default)]
    transaction_type: Option<String>,
    #[serde(default)]
    inputs: Vec<TransactionInput>,
    /// Kept as their literal text: amounts are read exactly from it.
    #[serde(default)]
    outputs: Vec<Box<serde_json::value::RawValue>>,
}

/// As much of an output as names where it goes.
#[derive(Deserialize)]
struct OutputAddress {
    address: Option<String>,
}

impl From<RawTransaction> for ChainTransaction {
    fn from(raw: RawTransaction) -> ChainTransaction {
        let mut outputs = Vec::with_capacity(raw.outputs.len());
        let mut unreadable_outputs = Vec::new();
        for (index, text) in raw.outputs.iter().enumerate() {
            match serde_json::from_str::<TransactionOutput>(text.get()) {
                Ok(output) => outputs.push(output),
                Err(e) => unreadable_outputs.push(UnreadableOutput {
                    index,
                    address: serde_json::from_str::<OutputAddress>(text.get())
                        .ok()
                        .and_then(|o| o.address),
                    error: e.to_string(),
                }),
            }
        }
        ChainTransaction {
            hash: raw.hash,
            is_coinbase: raw.is_coinbase,
            transaction_type: raw.transaction_type,
            inputs: raw.inputs,
            outputs,
            unreadable_outputs,
        }
    }
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
    fn an_unreadable_output_is_kept_aside_and_the_rest_are_read_exactly() {
        let tx: ChainTransaction = serde_json::from_str(
            r#"{"hash": "h", "inputs": [{"address": "w", "tx_hash": "t", "index": 0}],
                "outputs": [
                    {"address": "a", "amount": 2.64, "type": "REGULAR"},
                    {"address": "b", "amount": "lots", "type": "REGULAR"},
                    {"amount": 1},
                    {"address": "c", "amount": 0.123456789}
                ]}"#,
        )
        .unwrap();
        assert_eq!(tx.outputs.len(), 1);
        assert_eq!(tx.outputs[0].amount.units(), 264_000_000);
        let unread: Vec<(usize, Option<&str>)> = tx
            .unreadable_outputs
            .iter()
            .map(|o| (o.index, o.address.as_deref()))
            .collect();
        assert_eq!(unread, vec![(1, Some("b")), (2, None), (3, Some("c"))]);
        assert!(
            tx.unreadable_outputs[2].error.contains("8"),
            "{:?}",
            tx.unreadable_outputs
        );
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
