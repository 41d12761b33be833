//! What a payer asks the chain (upow/TRANSACTIONS.md §8.1–8.3): its spendable outputs, pushing a
//! signed transaction, and whether a transaction is known.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::Value;

use super::client::{ChainClient, ChainError, redact};
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
    /// Pending transactions that spend or pay the address (listed only with
    /// `show_pending=true`).
    #[serde(default)]
    pub pending_transactions: Option<Vec<super::types::ChainTransaction>>,
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
    /// Accepted now.
    Accepted,
    /// "Transaction just added": the hash is in the node's list of its last accepted ones. The
    /// node answers so even after it dropped the transaction (NODE.md), so this proves nothing:
    /// ask [`ChainClient::transaction_status`] whether the node still holds it.
    JustAdded,
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

    /// `get_transaction`: not found, pending, or in a block. The answer is read strictly (see
    /// [`transaction_status_of`]): a payout's fate is decided on it.
    pub async fn transaction_status(&self, tx_hash: &str) -> Result<TransactionStatus, ChainError> {
        let url = format!("{}/get_transaction?tx_hash={tx_hash}", self.api_url());
        let body: Value = self.get_json(&url).await?;
        transaction_status_of(&body, tx_hash).map_err(|problem| match problem {
            AnswerProblem::Refused(error) => ChainError::Refused {
                url: redact(&url),
                error,
            },
            AnswerProblem::Malformed(message) => ChainError::Malformed {
                url: redact(&url),
                message,
            },
        })
    }
}

/// Why a `get_transaction` answer gives no status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerProblem {
    /// `ok: false` with another error than "Transaction not found".
    Refused(String),
    /// Not the node's shape; the message names the field.
    Malformed(String),
}

/// Reads a `get_transaction` answer for `tx_hash` (NODE.md): `ok: false` with "Transaction not
/// found" is not found; otherwise `result` must be the transaction asked for, with `block_no`
/// null (pending, `is_confirm` false) or a block number (in a block, `is_confirm` true, or absent
/// on a coinbase). Anything else is malformed, never guessed at.
pub fn transaction_status_of(
    body: &Value,
    tx_hash: &str,
) -> Result<TransactionStatus, AnswerProblem> {
    let bad = |message: String| Err(AnswerProblem::Malformed(message));
    let Some(ok) = body.get("ok").and_then(Value::as_bool) else {
        return bad(format!("no boolean \"ok\" in {}", shown(body)));
    };
    if !ok {
        return match body.get("error").and_then(Value::as_str) {
            Some("Transaction not found") => Ok(TransactionStatus::NotFound),
            Some(error) => Err(AnswerProblem::Refused(error.to_owned())),
            None => bad(format!(
                "\"ok\" is false without an \"error\" text: {}",
                shown(body)
            )),
        };
    }
    let Some(result) = body.get("result").filter(|r| r.is_object()) else {
        return bad(format!(
            "\"ok\" is true but \"result\" is not an object: {}",
            shown(body)
        ));
    };
    match result.get("hash").and_then(Value::as_str) {
        Some(hash) if hash == tx_hash => {}
        Some(hash) => {
            return bad(format!(
                "the answer is for transaction {hash}, not {tx_hash}"
            ));
        }
        None => return bad(format!("\"result\" has no \"hash\": {}", shown(result))),
    }
    let block = match result.get("block_no") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_u64() {
            Some(block) => Some(block),
            None => return bad(format!("\"block_no\" is not a block number: {value}")),
        },
    };
    let confirmed = match result.get("is_confirm") {
        None => None,
        Some(Value::Bool(confirmed)) => Some(*confirmed),
        Some(value) => return bad(format!("\"is_confirm\" is not true or false: {value}")),
    };
    match (block, confirmed) {
        (None, Some(false)) => Ok(TransactionStatus::Pending),
        (Some(block), Some(true) | None) => Ok(TransactionStatus::Confirmed { block }),
        (None, _) => bad(
            "\"block_no\" is null but the transaction is not pending (\"is_confirm\" is not false)"
                .into(),
        ),
        (Some(block), Some(false)) => bad(format!(
            "\"block_no\" is {block} but \"is_confirm\" is false"
        )),
    }
}

/// A JSON value for an error message, cut to 200 characters.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
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
        // Our hash among the node's last accepted transactions, held or not.
        "Transaction just added" => PushOutcome::JustAdded,
        _ => PushOutcome::NotAccepted(error),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const HASH: &str = "aa";

    fn status(body: Value) -> Result<TransactionStatus, AnswerProblem> {
        transaction_status_of(&body, HASH)
    }

    #[test]
    fn the_node_answers_are_read() {
        assert_eq!(
            status(json!({ "ok": false, "error": "Transaction not found" })),
            Ok(TransactionStatus::NotFound)
        );
        assert_eq!(
            status(
                json!({ "ok": true, "result": { "hash": HASH, "block_no": null, "block_hash": null, "is_confirm": false } })
            ),
            Ok(TransactionStatus::Pending)
        );
        assert_eq!(
            status(
                json!({ "ok": true, "result": { "hash": HASH, "block_no": 12, "is_confirm": true } })
            ),
            Ok(TransactionStatus::Confirmed { block: 12 })
        );
        // A coinbase has no is_confirm key.
        assert_eq!(
            status(
                json!({ "ok": true, "result": { "hash": HASH, "block_no": 12, "is_coinbase": true } })
            ),
            Ok(TransactionStatus::Confirmed { block: 12 })
        );
        assert_eq!(
            status(json!({ "ok": false, "error": "Node is already syncing" })),
            Err(AnswerProblem::Refused("Node is already syncing".into()))
        );
    }

    #[test]
    fn anything_else_is_malformed_naming_the_field() {
        let malformed = |body: Value| match status(body) {
            Err(AnswerProblem::Malformed(message)) => message,
            other => panic!("{other:?}"),
        };
        assert!(malformed(json!({ "result": {} })).contains(r#"no boolean "ok""#));
        assert!(malformed(json!({ "ok": false })).contains(r#"without an "error""#));
        assert!(malformed(json!({ "ok": true })).contains(r#""result" is not an object"#));
        assert!(
            malformed(json!({ "ok": true, "result": { "block_no": 1 } })).contains(r#"no "hash""#)
        );
        assert_eq!(
            malformed(
                json!({ "ok": true, "result": { "hash": "bb", "block_no": 1, "is_confirm": true } })
            ),
            "the answer is for transaction bb, not aa"
        );
        assert_eq!(
            malformed(
                json!({ "ok": true, "result": { "hash": HASH, "block_no": -1, "is_confirm": true } })
            ),
            r#""block_no" is not a block number: -1"#
        );
        assert_eq!(
            malformed(
                json!({ "ok": true, "result": { "hash": HASH, "block_no": 3, "is_confirm": "yes" } })
            ),
            r#""is_confirm" is not true or false: "yes""#
        );
        assert_eq!(
            malformed(
                json!({ "ok": true, "result": { "hash": HASH, "block_no": 3, "is_confirm": false } })
            ),
            r#""block_no" is 3 but "is_confirm" is false"#
        );
        assert!(
            malformed(json!({ "ok": true, "result": { "hash": HASH, "block_no": null, "is_confirm": true } }))
                .contains("not pending")
        );
    }

    #[test]
    fn just_added_is_not_an_acceptance() {
        assert_eq!(
            judge_push(
                &json!({ "ok": false, "error": "Transaction just added" }),
                HASH
            ),
            PushOutcome::JustAdded
        );
        assert_eq!(
            judge_push(
                &json!({ "ok": true, "result": "Transaction has been accepted", "tx_hash": HASH }),
                HASH
            ),
            PushOutcome::Accepted
        );
    }
}
