//! The one-time import of payouts the original iNode left unpaid in `tempWithdrawals`. The
//! original queues one document per amount owed, `{id: uuid4 string, wallet_address,
//! new_balance: float, timestamp, type}`, so each wallet's entries are summed, read as the
//! original would have paid them, and added to pending in one transaction with a marker, so a
//! second run imports nothing. An entry that cannot be paid (bad address or amount) is held
//! aside in the marker instead of stopping everyone else's import.

use std::collections::BTreeMap;

use bson::{Bson, DateTime, Document, doc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use crate::money::{Amount, MAX_SUPPLY, StoredCoinsError, stored_coins};
use crate::store::db::{Result, Store, StoreError, update_many_by_key};
use crate::store::names;
use crate::store::runs::Fence;

/// The marker of a done import, with what it credited (the audit counts it as credited) and what
/// it held aside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportRecord {
    #[serde(rename = "_id")]
    pub id: String,
    pub imported_at: DateTime,
    pub lines: Vec<ImportedLine>,
    #[serde(default)]
    pub held: Vec<HeldEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedLine {
    pub address: String,
    pub units: i64,
}

/// A `tempWithdrawals` entry the import did not credit, and why; nothing of it reached a balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldEntry {
    /// The entry's `id` (the original's uuid4), or its `_id` when it has none.
    pub id: String,
    /// `wallet_address` as stored (its BSON text when not a string; empty when missing).
    pub address: String,
    /// `new_balance` as stored: a float's shortest round-trip text, other values' BSON text
    /// (strings quoted), `missing` when absent.
    pub raw: String,
    pub reason: String,
}

/// What one import run did: nothing at all once the marker exists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TempWithdrawalsImport {
    /// Units added to pending, the sum of `lines`.
    pub credited: i64,
    pub lines: Vec<ImportedLine>,
    pub held: Vec<HeldEntry>,
}

/// The `_id` of the `tempWithdrawals` import marker.
pub const TEMP_WITHDRAWALS_IMPORT: &str = "tempWithdrawals";

/// The amount one entry owes: `new_balance`, read by [`stored_coins`]. Zero, negative,
/// non-finite and above-supply values are refused. The original never wrote `amount`, so it is
/// not read.
fn owed(entry: &Document) -> std::result::Result<Amount, String> {
    let amount = stored_coins(entry.get("new_balance")).map_err(|e| match e {
        StoredCoinsError::Invalid(e) => format!("new_balance: {e}"),
        other => format!("new_balance {other}"),
    })?;
    if amount == Amount::ZERO {
        return Err("new_balance is zero (to 8 decimals): nothing is owed".into());
    }
    if amount > MAX_SUPPLY {
        return Err(format!(
            "new_balance {amount} is more than the whole supply ({MAX_SUPPLY})"
        ));
    }
    Ok(amount)
}

/// The payable address of one entry.
fn payee(entry: &Document) -> std::result::Result<&str, String> {
    let address = match entry.get("wallet_address") {
        Some(Bson::String(address)) => address,
        None | Some(Bson::Null) => return Err("wallet_address is missing".into()),
        Some(other) => return Err(format!("wallet_address is {other}, not a string")),
    };
    crate::address::check_format(address).map_err(|e| format!("wallet_address: {e}"))?;
    Ok(address)
}

fn text_of(value: Option<&Bson>) -> String {
    match value {
        Some(Bson::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// Sums the payable entries per wallet and holds the rest aside; pure, so every rule is tested
/// without a database.
pub fn assess_temp_withdrawals(entries: &[Document]) -> (Vec<ImportedLine>, Vec<HeldEntry>) {
    let mut owed_by: BTreeMap<&str, i64> = BTreeMap::new();
    let mut total: i64 = 0;
    let mut held = Vec::new();
    for entry in entries {
        let assessed = payee(entry).and_then(|address| {
            let units = owed(entry)?.units();
            // Per wallet sums stay below the total, so one check covers both.
            total = total
                .checked_add(units)
                .ok_or("the import's total would overflow")?;
            *owed_by.entry(address).or_insert(0) += units;
            Ok(())
        });
        if let Err(reason) = assessed {
            let id = match entry.get("id") {
                Some(Bson::String(id)) => id.clone(),
                _ => text_of(entry.get("_id")),
            };
            let raw = match entry.get("new_balance") {
                // Every digit of the float as stored (Display would print 2.0 as "2").
                Some(Bson::Double(v)) => format!("{v:?}"),
                Some(value) => value.to_string(),
                None => "missing".into(),
            };
            held.push(HeldEntry {
                id,
                address: text_of(entry.get("wallet_address")),
                raw,
                reason,
            });
        }
    }
    let lines = owed_by
        .into_iter()
        .map(|(address, units)| ImportedLine {
            address: address.to_owned(),
            units,
        })
        .collect();
    (lines, held)
}

impl Store {
    pub fn imports(&self) -> mongodb::Collection<ImportRecord> {
        self.collection(names::IMPORTS)
    }

    /// Imports `tempWithdrawals` into pending balances once: the payable entries are credited
    /// and the rest held aside in the marker, all in one transaction. Returns what this run did
    /// (nothing when the marker already exists).
    pub async fn import_temp_withdrawals(&self, fence: &Fence) -> Result<TempWithdrawalsImport> {
        if self
            .imports()
            .find_one(doc! { "_id": TEMP_WITHDRAWALS_IMPORT })
            .await
            .map_err(StoreError::mongo("read the import marker"))?
            .is_some()
        {
            return Ok(TempWithdrawalsImport::default());
        }
        let entries: Vec<Document> = self
            .collection::<Document>(names::TEMP_WITHDRAWALS)
            .find(doc! {})
            .await
            .map_err(StoreError::mongo("read tempWithdrawals"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("read tempWithdrawals"))?;
        let (lines, held) = assess_temp_withdrawals(&entries);
        for h in &held {
            tracing::warn!(id = %h.id, reason = %h.reason, "tempWithdrawals entry held aside");
        }
        let record = ImportRecord {
            id: TEMP_WITHDRAWALS_IMPORT.into(),
            imported_at: DateTime::now(),
            lines,
            held,
        };
        let credited: i64 = record.lines.iter().map(|l| l.units).sum();
        let done = TempWithdrawalsImport {
            credited,
            lines: record.lines.clone(),
            held: record.held.clone(),
        };
        let store = self.clone();
        let fence = fence.clone();
        self.with_transaction(move |session| {
            let store = store.clone();
            let record = record.clone();
            let fence = fence.clone();
            Box::pin(async move {
                store.check_fence(session, &fence).await?;
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
        Ok(done)
    }
}
