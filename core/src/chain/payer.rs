//! What a payer asks the chain (upow/TRANSACTIONS.md §8.1–8.3): its spendable outputs, pushing a
//! signed transaction, and whether a transaction is known.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::Value;

use super::{ChainClient, ChainError, redact};
use crate::money::{Amount, chain_number};

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SpendableOutput {
    #[serde(deserialize_with = "chain_number::deserialize")]
    pub amount: Amount,
    pub tx_hash: String,
    pub index: u8,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct OutputRef {
    pub tx_hash: String,
    pub index: u8,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AddressInfo {
    #[serde(default)]
    pub spendable_outputs: Vec<SpendableOutput>,
    /// Outputs already spent by pending transactions (listed only with `show_pending=true`).
    #[serde(default)]
    pub pending_spent_outputs: Option<Vec<OutputRef>>,
}

/// An output by the transaction that made it and its index there.
pub type OutputKey = (String, u8);

impl AddressInfo {
    /// The confirmed unspent outputs (those a pending transaction spends included).
    pub fn unspent(&self) -> HashSet<OutputKey> {
        self.spendable_outputs
            .iter()
            .map(|o| (o.tx_hash.clone(), o.index))
            .collect()
    }

    /// The outputs pending transactions spend.
    pub fn pending_spent(&self) -> HashSet<OutputKey> {
        self.pending_spent_outputs
            .iter()
            .flatten()
            .map(|o| (o.tx_hash.clone(), o.index))
            .collect()
    }
}

/// How the chain answered a push.
///
/// There is no "rejected" outcome on purpose: the node answers a re-push of a transaction it
/// already holds or has mined exactly as it answers a bad one ("Transaction has not been added"),
/// a different node behind the same URL may not know it, and a timeout says nothing. So no answer
/// proves that a transaction did not reach the chain (TRANSACTIONS.md §8.1, §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// Accepted now, or accepted before ("Transaction just added" for our hash).
    Accepted,
    /// Anything else: the error, the status or the timeout, for the record. The transaction may
    /// still be on its way to a block.
    NotAccepted(String),
}

/// Where a transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    NotFound,
    Pending,
    Confirmed { block: u64 },
}

impl ChainClient {
    /// `get_address_info` with pending spends listed.
    pub async fn address_info(&self, address: &str) -> Result<AddressInfo, ChainError> {
        let url = format!(
            "{}/get_address_info?address={address}&show_pending=true",
            self.api_url()
        );
        self.get_enveloped(&url).await
    }

    /// `push_tx` by POST with a JSON body (no URL length limit), sent once.
    pub async fn push_transaction(&self, tx_hex: &str, tx_hash: &str) -> PushOutcome {
        let url = format!("{}/push_tx", self.api_url());
        let answer: Result<Value, ChainError> = self
            .post_json(&url, &serde_json::json!({ "tx_hex": tx_hex }))
            .await;
        match answer {
            Ok(body) => judge_push(&body, tx_hash),
            Err(e) => PushOutcome::NotAccepted(e.to_string()),
        }
    }

    /// `get_transaction`: not found, pending, or in a block.
    pub async fn transaction_status(&self, tx_hash: &str) -> Result<TransactionStatus, ChainError> {
        let url = format!("{}/get_transaction?tx_hash={tx_hash}", self.api_url());
        let body: Value = self.get_json(&url).await?;
        match (body.get("ok").and_then(Value::as_bool), body.get("result")) {
            (Some(true), Some(result)) => {
                let block = result.get("block_no").and_then(Value::as_u64);
                let confirmed = result.get("is_confirm").and_then(Value::as_bool) == Some(true);
                Ok(match (confirmed, block) {
                    (true, Some(block)) => TransactionStatus::Confirmed { block },
                    _ => TransactionStatus::Pending,
                })
            }
            (Some(false), _)
                if body.get("error").and_then(Value::as_str) == Some("Transaction not found") =>
            {
                Ok(TransactionStatus::NotFound)
            }
            _ => Err(ChainError::Malformed {
                url: redact(&url),
                message: format!("unexpected answer {body}"),
            }),
        }
    }
}

/// The node's push answers (TRANSACTIONS.md §8.1).
fn judge_push(body: &Value, tx_hash: &str) -> PushOutcome {
    if body.get("ok").and_then(Value::as_bool) == Some(true) {
        return match body.get("tx_hash").and_then(Value::as_str) {
            Some(hash) if hash != tx_hash => PushOutcome::NotAccepted(format!(
                "the chain accepted a transaction with hash {hash}, not {tx_hash}"
            )),
            _ => PushOutcome::Accepted,
        };
    }
    let error = body
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("no error text")
        .to_owned();
    match error.as_str() {
        // Our hash among the node's last accepted transactions.
        "Transaction just added" => PushOutcome::Accepted,
        _ => PushOutcome::NotAccepted(error),
    }
}
