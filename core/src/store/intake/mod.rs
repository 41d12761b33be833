//! TASKs and PINGs: what a TASK's receipt is and how its writes reach the server. A group's plan
//! (`plan.rs`), its writer (`groups.rs`) and the checks before it (`front.rs`) build on these.

pub mod front;
pub mod groups;
pub mod plan;

use std::time::Duration;

use bson::{Bson, DateTime, doc};
use mongodb::Collection;
use serde::{Deserialize, Serialize};

use crate::store::db::{Result, Store, StoreError};
use crate::store::names;

/// What happened to a TASK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskRecorded {
    /// Scored now.
    Accepted,
    /// This (validator, val_id) was accepted in the last 24 h; nothing added.
    Replayed,
}

/// How a TASK's writes reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskWrites {
    /// One ordered multi-collection `bulkWrite` command (MongoDB 8.0+) and the commit: two
    /// round trips.
    ClientBulkWrite,
    /// Three commands in the same order and the commit, for servers before 8.0.
    Separate,
}

/// The MongoDB wire version of 8.0, which brought the multi-collection `bulkWrite` command.
const WIRE_VERSION_8_0: i32 = 25;

/// `taskReceipts`: a TASK accepted in the last 24 h, so a retried TASK adds no score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskReceipt {
    pub validator_wallet: String,
    pub val_id: String,
    pub accepted_at: DateTime,
}

/// How long a [`TaskReceipt`] keeps a retried TASK from scoring twice.
pub const TASK_RECEIPT_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The `_id` of a TASK's receipt: its key, so that the receipts of a whole group are found with
/// one `_id` lookup. A uPow address has no `/`, so the split is unambiguous.
pub fn receipt_id(validator: &str, val_id: &str) -> String {
    format!("{validator}/{val_id}")
}

/// (index, code) of the model an ordered multi-collection bulk write stopped at.
pub(super) fn failed_model(error: &mongodb::error::Error) -> Option<(usize, i32)> {
    use mongodb::error::ErrorKind;
    match error.kind.as_ref() {
        ErrorKind::BulkWrite(e) => e
            .write_errors
            .iter()
            .min_by_key(|(index, _)| **index)
            .map(|(index, w)| (*index, w.code)),
        _ => None,
    }
}

impl Store {
    pub fn task_receipts(&self) -> Collection<TaskReceipt> {
        self.collection(names::TASK_RECEIPTS)
    }

    /// Whether the server has the multi-collection `bulkWrite` command (MongoDB 8.0+).
    pub async fn has_client_bulk_write(&self) -> Result<bool> {
        let hello = self
            .db
            .run_command(doc! { "hello": 1 })
            .await
            .map_err(StoreError::mongo("hello"))?;
        let wire = match hello.get("maxWireVersion") {
            Some(Bson::Int32(v)) => i64::from(*v),
            Some(Bson::Int64(v)) => *v,
            _ => 0,
        };
        Ok(wire >= i64::from(WIRE_VERSION_8_0))
    }
}
