//! The one-time import of payouts the original iNode left unpaid in `tempWithdrawals`: each
//! wallet's entries are summed (the original kept only the last one per wallet and dropped the
//! rest), parsed exactly, and added to pending in one transaction with a marker, so a second run
//! imports nothing.

use std::collections::BTreeMap;

use bson::{Bson, DateTime, Document, doc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::documents::names;
use super::{Result, Store, StoreError, update_many_by_key};
use crate::money::Amount;

/// The marker of a done import, with what it credited (the audit counts it as credited).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportRecord {
    #[serde(rename = "_id")]
    pub id: String,
    pub imported_at: DateTime,
    pub lines: Vec<ImportedLine>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportedLine {
    pub address: String,
    pub units: i64,
}

/// The `_id` of the `tempWithdrawals` import marker.
pub const TEMP_WITHDRAWALS_IMPORT: &str = "tempWithdrawals";

fn amount_of(doc: &Document) -> std::result::Result<Amount, String> {
    match doc.get("amount") {
        Some(Bson::String(s)) => Amount::parse(s).map_err(|e| e.to_string()),
        Some(Bson::Int32(v)) => Amount::parse(&v.to_string()).map_err(|e| e.to_string()),
        Some(Bson::Int64(v)) => Amount::parse(&v.to_string()).map_err(|e| e.to_string()),
        // A Python float: its shortest text is what the original meant.
        Some(Bson::Double(v)) => Amount::parse(&v.to_string()).map_err(|e| e.to_string()),
        Some(Bson::Decimal128(v)) => Amount::parse(&v.to_string()).map_err(|e| e.to_string()),
        other => Err(format!("amount is {other:?}")),
    }
}

impl Store {
    pub fn imports(&self) -> mongodb::Collection<ImportRecord> {
        self.collection(names::IMPORTS)
    }

    /// Imports `tempWithdrawals` into pending balances once. Returns the units imported (0 when
    /// already done or nothing was left); a malformed entry is an error naming it, and nothing is
    /// imported.
    pub async fn import_temp_withdrawals(&self) -> Result<i64> {
        if self
            .imports()
            .find_one(doc! { "_id": TEMP_WITHDRAWALS_IMPORT })
            .await
            .map_err(StoreError::mongo("read the import marker"))?
            .is_some()
        {
            return Ok(0);
        }
        let entries: Vec<Document> = self
            .collection::<Document>(names::TEMP_WITHDRAWALS)
            .find(doc! {})
            .await
            .map_err(StoreError::mongo("read tempWithdrawals"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("read tempWithdrawals"))?;
        let mut owed: BTreeMap<String, i64> = BTreeMap::new();
        for entry in &entries {
            let id = entry.get("_id").map(|i| i.to_string()).unwrap_or_default();
            let address = entry.get_str("wallet_address").map_err(|_| {
                StoreError::Invalid(format!("tempWithdrawals {id}: no wallet_address"))
            })?;
            crate::address::check_format(address).map_err(|e| {
                StoreError::Invalid(format!(
                    "tempWithdrawals {id}: wallet_address {address:?}: {e}"
                ))
            })?;
            let amount = amount_of(entry)
                .map_err(|e| StoreError::Invalid(format!("tempWithdrawals {id}: {e}")))?;
            let sum = owed.entry(address.to_owned()).or_insert(0);
            *sum = sum.checked_add(amount.units()).ok_or_else(|| {
                StoreError::Invalid(format!("tempWithdrawals: {address} overflows"))
            })?;
        }
        let record = ImportRecord {
            id: TEMP_WITHDRAWALS_IMPORT.into(),
            imported_at: DateTime::now(),
            lines: owed
                .iter()
                .filter(|(_, units)| **units > 0)
                .map(|(address, units)| ImportedLine {
                    address: address.clone(),
                    units: *units,
                })
                .collect(),
        };
        let total: i64 = record.lines.iter().map(|l| l.units).sum();
        let store = self.clone();
        self.with_transaction(move |session| {
            let store = store.clone();
            let record = record.clone();
            Box::pin(async move {
                // The marker first: a concurrent import fails here on the unique `_id`.
                store
                    .imports()
                    .insert_one(&record)
                    .session(&mut *session)
                    .await
                    .map_err(StoreError::mongo("record the import"))?;
                let now = DateTime::now();
                let credits = record
                    .lines
                    .iter()
                    .map(|l| {
                        (
                            l.address.clone(),
                            doc! {
                                "$inc": { "pending": l.units, "paid": 0_i64 },
                                "$set": { "updated_at": now },
                            },
                        )
                    })
                    .collect();
                update_many_by_key(
                    &store,
                    Some(&mut *session),
                    names::BALANCES,
                    "address",
                    credits,
                    true,
                )
                .await
            })
        })
        .await?;
        Ok(total)
    }
}
