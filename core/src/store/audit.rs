//! The books, recomputed from the database: what was received was credited, and what was
//! credited is pending, in flight or paid — per address and in total.

use std::collections::BTreeMap;

use bson::{Bson, Document, doc};
use futures::TryStreamExt;

use super::documents::names;
use super::imports::HeldEntry;
use super::payouts::IN_FLIGHT;
use super::{Result, Store, StoreError};

/// One place where the books do not agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discrepancy {
    /// An address, a distribution id, or `total`.
    pub subject: String,
    pub what: String,
    pub expected: i64,
    pub found: i64,
}

impl std::fmt::Display for Discrepancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} should be {} units, found {}",
            self.subject, self.what, self.expected, self.found
        )
    }
}

/// What the audit saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditReport {
    pub received: i64,
    pub credited: i64,
    pub pending: i64,
    pub in_flight: i64,
    pub paid: i64,
    pub addresses: usize,
    pub discrepancies: Vec<Discrepancy>,
    /// `tempWithdrawals` entries the import held aside: owed by the original, credited to no one.
    pub import_held: Vec<HeldEntry>,
}

fn as_i64(value: Option<&Bson>) -> i64 {
    match value {
        Some(Bson::Int64(v)) => *v,
        Some(Bson::Int32(v)) => i64::from(*v),
        _ => 0,
    }
}

impl Store {
    async fn grouped(
        &self,
        collection: &str,
        pipeline: Vec<Document>,
    ) -> Result<BTreeMap<String, i64>> {
        let rows: Vec<Document> = self
            .collection::<Document>(collection)
            .aggregate(pipeline)
            .await
            .map_err(StoreError::mongo(format!("audit {collection}")))?
            .try_collect()
            .await
            .map_err(StoreError::mongo(format!("audit {collection}")))?;
        Ok(rows
            .into_iter()
            .filter_map(|r| Some((r.get_str("_id").ok()?.to_owned(), as_i64(r.get("units")))))
            .collect())
    }

    /// Recomputes the books; every disagreement is listed.
    pub async fn audit(&self) -> Result<AuditReport> {
        let mut discrepancies = Vec::new();
        // Each distribution conserves what it received.
        let per_distribution: Vec<Document> = self
            .collection::<Document>(names::REWARD_DISTRIBUTIONS)
            .aggregate([
                doc! { "$unwind": { "path": "$lines", "preserveNullAndEmptyArrays": true } },
                doc! { "$group": {
                    "_id": "$_id",
                    "received": { "$first": "$received" },
                    "lines": { "$sum": "$lines.units" },
                } },
            ])
            .await
            .map_err(StoreError::mongo("audit distributions"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("audit distributions"))?;
        let mut received = 0;
        for d in &per_distribution {
            let (r, l) = (as_i64(d.get("received")), as_i64(d.get("lines")));
            received += r;
            if r != l {
                discrepancies.push(Discrepancy {
                    subject: format!(
                        "distribution {}",
                        d.get("_id").map(|i| i.to_string()).unwrap_or_default()
                    ),
                    what: "the sum of its ledger lines".into(),
                    expected: r,
                    found: l,
                });
            }
        }
        let mut credited = self
            .grouped(names::REWARD_DISTRIBUTIONS, vec![
                doc! { "$unwind": "$lines" },
                doc! { "$group": { "_id": "$lines.address", "units": { "$sum": "$lines.units" } } },
            ])
            .await?;
        // Payouts the original iNode left unpaid were credited by the import, not by rewards.
        let imported = self
            .grouped(names::IMPORTS, vec![
                doc! { "$unwind": "$lines" },
                doc! { "$group": { "_id": "$lines.address", "units": { "$sum": "$lines.units" } } },
            ])
            .await?;
        let imported_total: i64 = imported.values().sum();
        let import_held: Vec<HeldEntry> = self
            .imports()
            .find(doc! {})
            .await
            .map_err(StoreError::mongo("audit imports"))?
            .try_collect::<Vec<_>>()
            .await
            .map_err(StoreError::mongo("audit imports"))?
            .into_iter()
            .flat_map(|record| record.held)
            .collect();
        for (address, units) in imported {
            *credited.entry(address).or_insert(0) += units;
        }
        let states: Vec<Bson> = IN_FLIGHT
            .iter()
            .map(|s| bson::to_bson(s).expect("state"))
            .collect();
        let in_flight = self
            .grouped(names::PAYOUT_BATCHES, vec![
                doc! { "$match": { "state": { "$in": states } } },
                doc! { "$unwind": "$recipients" },
                doc! { "$group": { "_id": "$recipients.address", "units": { "$sum": "$recipients.units" } } },
            ])
            .await?;
        let pending = self
            .grouped(
                names::BALANCES,
                vec![doc! { "$group": { "_id": "$address", "units": { "$sum": "$pending" } } }],
            )
            .await?;
        let paid = self
            .grouped(
                names::BALANCES,
                vec![doc! { "$group": { "_id": "$address", "units": { "$sum": "$paid" } } }],
            )
            .await?;
        let mut addresses: Vec<&String> = credited
            .keys()
            .chain(pending.keys())
            .chain(in_flight.keys())
            .collect();
        addresses.sort();
        addresses.dedup();
        for address in &addresses {
            let get = |m: &BTreeMap<String, i64>| m.get(*address).copied().unwrap_or(0);
            let held = get(&pending) + get(&in_flight) + get(&paid);
            if held != get(&credited) || get(&pending) < 0 {
                discrepancies.push(Discrepancy {
                    subject: (*address).clone(),
                    what: "pending + in flight + paid".into(),
                    expected: get(&credited),
                    found: held,
                });
            }
        }
        let total = |m: &BTreeMap<String, i64>| m.values().sum::<i64>();
        let credited_total = total(&credited);
        if credited_total != received + imported_total {
            discrepancies.push(Discrepancy {
                subject: "total".into(),
                what: "credited (received + imported)".into(),
                expected: received + imported_total,
                found: credited_total,
            });
        }
        Ok(AuditReport {
            received,
            credited: credited_total,
            pending: total(&pending),
            in_flight: total(&in_flight),
            paid: total(&paid),
            addresses: addresses.len(),
            discrepancies,
            import_held,
        })
    }
}
