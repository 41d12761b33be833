//! The books, recomputed from the database: what was received was credited, and what was
//! credited is pending, in flight, paid or spent as fees — per address and in total. Every read
//! comes from one snapshot (a read-only transaction with snapshot read concern), so a job that
//! commits while the audit reads cannot make the books look wrong.

use std::collections::{BTreeMap, HashMap};

use bson::{Bson, Document, doc};
use futures::TryStreamExt;
use mongodb::ClientSession;
use mongodb::options::ReadConcern;

use crate::spends::paid_differences;
use crate::store::db::{Result, Store, StoreError};
use crate::store::imports::HeldEntry;
use crate::store::names;
use crate::store::payouts::{BatchState, IN_FLIGHT, PayoutBatch, state_bson};
use crate::store::spends::{SPENDS_READ_ID, SpendsRead, WalletSpend};

/// Documents per batch of the audit's streamed reads: a batch is what the driver holds at once
/// (by default up to 16 MiB), so this keeps the audit's memory flat as the chain grows, at one
/// round trip per thousand documents.
const STREAM_BATCH: u32 = 1_000;

/// One place where the books do not agree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discrepancy {
    /// An address, a distribution id, or `total`.
    pub subject: String,
    pub what: String,
    pub measure: Measure,
    pub expected: i64,
    pub found: i64,
}

/// What `expected` and `found` count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// Smallest units, shown as coins with 8 decimals.
    Units,
    /// Documents or entries.
    Count,
}

impl std::fmt::Display for Discrepancy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |n: i64| match self.measure {
            Measure::Units => crate::money::coins_text(n),
            Measure::Count => n.to_string(),
        };
        write!(
            f,
            "{}: {} should be {}, found {}",
            self.subject,
            self.what,
            shown(self.expected),
            shown(self.found)
        )
    }
}

/// What the audit saw.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditReport {
    pub received: i64,
    pub credited: i64,
    pub pending: i64,
    /// Recipients' units in batches not yet confirmed or refunded.
    pub in_flight: i64,
    pub paid: i64,
    /// Fees of confirmed batches (spent on chain).
    pub fees_paid: i64,
    /// Fees of batches in flight.
    pub fees_in_flight: i64,
    pub addresses: usize,
    pub discrepancies: Vec<Discrepancy>,
    /// Balances whose address cannot be paid (not a point of the curve): held aside by payouts.
    pub held: Vec<(String, i64)>,
    /// Batches in flight, for the checks that ask the chain.
    pub open_batches: Vec<PayoutBatch>,
    /// Failed or abandoned batches that had a signed transaction: the chain must not hold it.
    pub refunded_with_transaction: Vec<PayoutBatch>,
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

/// Runs an aggregation inside the audit's snapshot.
async fn aggregate(
    store: &Store,
    session: &mut ClientSession,
    collection: &str,
    pipeline: Vec<Document>,
) -> Result<Vec<Document>> {
    store
        .collection::<Document>(collection)
        .aggregate(pipeline)
        .session(&mut *session)
        .await
        .map_err(StoreError::mongo(format!("audit {collection}")))?
        .stream(session)
        .try_collect()
        .await
        .map_err(StoreError::mongo(format!("audit {collection}")))
}

/// An aggregation whose rows are `{_id: address, units}`, as a map.
async fn grouped(
    store: &Store,
    session: &mut ClientSession,
    collection: &str,
    pipeline: Vec<Document>,
) -> Result<BTreeMap<String, i64>> {
    Ok(aggregate(store, session, collection, pipeline)
        .await?
        .into_iter()
        .filter_map(|r| Some((r.get_str("_id").ok()?.to_owned(), as_i64(r.get("units")))))
        .collect())
}

async fn batches(
    store: &Store,
    session: &mut ClientSession,
    filter: Document,
) -> Result<Vec<PayoutBatch>> {
    store
        .payout_batches()
        .find(filter)
        .session(&mut *session)
        .await
        .map_err(StoreError::mongo("audit payout batches"))?
        .stream(session)
        .try_collect()
        .await
        .map_err(StoreError::mongo("audit payout batches"))
}

impl Store {
    /// Recomputes the books from one snapshot; every disagreement is listed.
    pub async fn audit(&self) -> Result<AuditReport> {
        let mut session = self
            .client
            .start_session()
            .await
            .map_err(StoreError::mongo("start the audit session"))?;
        session
            .start_transaction()
            .read_concern(ReadConcern::snapshot())
            .await
            .map_err(StoreError::mongo("start the audit snapshot"))?;
        let report = self.audit_in(&mut session).await;
        // Read-only: nothing to commit.
        let _ = session.abort_transaction().await;
        report
    }

    /// What the chain's blocks show the wallet paid, per recipient, against the ledger's `paid`
    /// (SPEC §5.3 point 5), and every foreign spend still unresolved. A confirmed batch is
    /// proven by its spend among those read, and counts what that spend paid its recipients;
    /// one proven below the first block read (a store older than the reading) counts as
    /// recorded; one proven above the last block read is left out of both sides until it is
    /// read.
    async fn audit_wallet_spends(
        &self,
        session: &mut ClientSession,
        ledger_paid: &BTreeMap<String, i64>,
        discrepancies: &mut Vec<Discrepancy>,
    ) -> Result<()> {
        let read: Option<SpendsRead> = self
            .collection::<SpendsRead>(names::BLOCK_HEIGHT)
            .find_one(doc! { "_id": SPENDS_READ_ID })
            .session(&mut *session)
            .await
            .map_err(StoreError::mongo(
                "audit how far the wallet's spends were read",
            ))?;
        let spends: Vec<WalletSpend> = self
            .wallet_spends()
            .find(doc! { "$or": [ { "block": { "$ne": null } }, { "origin": "foreign" } ] })
            .session(&mut *session)
            .await
            .map_err(StoreError::mongo("audit walletSpends"))?
            .stream(&mut *session)
            .try_collect()
            .await
            .map_err(StoreError::mongo("audit walletSpends"))?;
        for spend in spends.iter().filter(|s| s.is_unresolved()) {
            discrepancies.push(Discrepancy {
                subject: format!("spend {}", spend.hash),
                what: format!(
                    "a foreign spend of the wallet ({}), neither adopted nor acknowledged: units it paid away that the books hold no record of",
                    spend.whereabouts()
                ),
                measure: Measure::Units,
                expected: 0,
                found: spend.units(),
            });
        }
        let in_blocks: HashMap<&str, &WalletSpend> = spends
            .iter()
            .filter(|s| s.block.is_some())
            .map(|s| (s.hash.as_str(), s))
            .collect();
        let mut chain_paid: BTreeMap<String, i64> = BTreeMap::new();
        let mut ledger = ledger_paid.clone();
        for batch in batches(
            self,
            session,
            doc! { "state": state_bson(BatchState::Confirmed) },
        )
        .await?
        {
            let proof = batch.proof_block;
            let recorded_before_reading = match (&read, proof) {
                (None, _) | (_, None) => true,
                (Some(read), Some(block)) => block < read.from_height,
            };
            if recorded_before_reading {
                for r in &batch.recipients {
                    *chain_paid.entry(r.address.clone()).or_insert(0) += r.units;
                }
                continue;
            }
            let (read, block) = (read.as_ref().expect("checked"), proof.expect("checked"));
            if block > read.block_height {
                for r in &batch.recipients {
                    *ledger.entry(r.address.clone()).or_insert(0) -= r.units;
                }
                continue;
            }
            let spend = batch
                .tx_hash
                .as_deref()
                .and_then(|hash| in_blocks.get(hash));
            let Some(spend) = spend else {
                discrepancies.push(Discrepancy {
                    subject: format!("batch {}", batch.id),
                    what: format!(
                        "is confirmed in block {block}, but the wallet's spends read from the chain's blocks {} to {} hold no transaction {}; units it counts as paid",
                        read.from_height,
                        read.block_height,
                        batch.tx_hash.as_deref().unwrap_or("(none)")
                    ),
                    measure: Measure::Units,
                    expected: 0,
                    found: batch.total,
                });
                continue;
            };
            for r in &batch.recipients {
                let on_chain = spend
                    .outputs
                    .iter()
                    .filter(|o| o.address == r.address)
                    .map(|o| o.units)
                    .sum::<i64>();
                *chain_paid.entry(r.address.clone()).or_insert(0) += on_chain;
            }
        }
        ledger.retain(|_, units| *units != 0);
        for difference in paid_differences(&chain_paid, &ledger) {
            discrepancies.push(Discrepancy {
                subject: difference.address,
                what: "paid (what the chain's blocks show the wallet paid it)".into(),
                measure: Measure::Units,
                expected: difference.chain,
                found: difference.ledger,
            });
        }
        Ok(())
    }

    /// Every credited transaction hash belongs to exactly one distribution, and each
    /// distribution's hashes are in `blockTransactions`: both lists are read sorted by hash and
    /// walked side by side, so memory stays flat as the chain grows (the hashes of a list are
    /// never all held at once).
    async fn audit_credited_hashes(
        &self,
        session: &mut ClientSession,
        discrepancies: &mut Vec<Discrepancy>,
    ) -> Result<()> {
        let context = "audit the credited transaction hashes";
        let mut recorded = self
            .collection::<Document>(names::BLOCK_TRANSACTIONS)
            .find(doc! {})
            .projection(doc! { "_id": 0, "hash": 1 })
            .sort(doc! { "hash": 1 })
            .batch_size(STREAM_BATCH)
            .session(&mut *session)
            .await
            .map_err(StoreError::mongo(context))?;
        let mut credited = self
            .collection::<Document>(names::REWARD_DISTRIBUTIONS)
            .aggregate(vec![
                doc! { "$project": { "_id": 0, "hashes": 1 } },
                doc! { "$unwind": "$hashes" },
                doc! { "$sort": { "hashes": 1 } },
            ])
            .batch_size(STREAM_BATCH)
            .session(&mut *session)
            .await
            .map_err(StoreError::mongo(context))?;
        let missing = |hash: &str, what: &str, found: i64| Discrepancy {
            subject: format!("transaction {hash}"),
            what: what.into(),
            measure: Measure::Count,
            expected: 1,
            found,
        };
        let not_credited = "distributions crediting this blockTransactions entry";
        // The next recorded hash; a hash that is not text sorts apart from the credited ones
        // and is reported on its own.
        let mut next_recorded = async |session: &mut ClientSession,
                                       discrepancies: &mut Vec<Discrepancy>|
               -> Result<Option<String>> {
            while let Some(row) = recorded.next(session).await {
                let row = row.map_err(StoreError::mongo(context))?;
                match row.get("hash") {
                    Some(Bson::String(hash)) => return Ok(Some(hash.clone())),
                    other => discrepancies.push(missing(
                        &other.map(|h| h.to_string()).unwrap_or_default(),
                        not_credited,
                        0,
                    )),
                }
            }
            Ok(None)
        };
        let mut recorded_hash = next_recorded(session, discrepancies).await?;
        // One credited hash and how many distributions hold it, at a time.
        let mut run: Option<(String, i64)> = None;
        loop {
            let next = match credited.next(&mut *session).await {
                Some(row) => {
                    let row = row.map_err(StoreError::mongo(context))?;
                    Some(match row.get("hashes") {
                        Some(Bson::String(hash)) => hash.clone(),
                        other => other.map(|h| h.to_string()).unwrap_or_default(),
                    })
                }
                None => None,
            };
            if let (Some((hash, count)), Some(next)) = (run.as_mut(), next.as_ref())
                && hash == next
            {
                *count += 1;
                continue;
            }
            if let Some((hash, count)) = run.take() {
                while let Some(before) = recorded_hash.as_ref().filter(|r| **r < hash) {
                    discrepancies.push(missing(before, not_credited, 0));
                    recorded_hash = next_recorded(session, discrepancies).await?;
                }
                if recorded_hash.as_ref() == Some(&hash) {
                    recorded_hash = next_recorded(session, discrepancies).await?;
                } else {
                    discrepancies.push(missing(
                        &hash,
                        "blockTransactions entries for this credited transaction",
                        0,
                    ));
                }
                if count > 1 {
                    discrepancies.push(missing(&hash, "distributions crediting it", count));
                }
            }
            match next {
                Some(next) => run = Some((next, 1)),
                None => break,
            }
        }
        while let Some(hash) = recorded_hash {
            discrepancies.push(missing(&hash, not_credited, 0));
            recorded_hash = next_recorded(session, discrepancies).await?;
        }
        Ok(())
    }

    async fn audit_in(&self, session: &mut ClientSession) -> Result<AuditReport> {
        let mut discrepancies = Vec::new();
        // Each distribution conserves what it received: read one at a time, so memory stays
        // flat however many there are.
        let mut received = 0;
        let mut per_distribution = self
            .collection::<Document>(names::REWARD_DISTRIBUTIONS)
            .aggregate(vec![
                doc! { "$unwind": { "path": "$lines", "preserveNullAndEmptyArrays": true } },
                doc! { "$group": {
                    "_id": "$_id",
                    "received": { "$first": "$received" },
                    "lines": { "$sum": "$lines.units" },
                } },
            ])
            .batch_size(STREAM_BATCH)
            .session(&mut *session)
            .await
            .map_err(StoreError::mongo("audit rewardDistributions"))?;
        while let Some(d) = per_distribution.next(&mut *session).await {
            let d = d.map_err(StoreError::mongo("audit rewardDistributions"))?;
            let (r, l) = (as_i64(d.get("received")), as_i64(d.get("lines")));
            received += r;
            if r != l {
                discrepancies.push(Discrepancy {
                    subject: format!(
                        "distribution {}",
                        d.get("_id").map(|i| i.to_string()).unwrap_or_default()
                    ),
                    what: "the sum of its ledger lines".into(),
                    measure: Measure::Units,
                    expected: r,
                    found: l,
                });
            }
        }
        self.audit_credited_hashes(session, &mut discrepancies)
            .await?;
        let mut credited = grouped(
            self,
            session,
            names::REWARD_DISTRIBUTIONS,
            vec![
                doc! { "$unwind": "$lines" },
                doc! { "$group": { "_id": "$lines.address", "units": { "$sum": "$lines.units" } } },
            ],
        )
        .await?;
        // Payouts the original iNode left unpaid were credited by the import, not by rewards.
        let imported = grouped(
            self,
            session,
            names::IMPORTS,
            vec![
                doc! { "$unwind": "$lines" },
                doc! { "$group": { "_id": "$lines.address", "units": { "$sum": "$lines.units" } } },
            ],
        )
        .await?;
        let imported_total: i64 = imported.values().sum();
        let import_held: Vec<HeldEntry> = self
            .imports()
            .find(doc! {})
            .session(&mut *session)
            .await
            .map_err(StoreError::mongo("audit imports"))?
            .stream(&mut *session)
            .try_collect::<Vec<_>>()
            .await
            .map_err(StoreError::mongo("audit imports"))?
            .into_iter()
            .flat_map(|record| record.held)
            .collect();
        for (address, units) in imported {
            *credited.entry(address).or_insert(0) += units;
        }
        let states: Vec<Bson> = IN_FLIGHT.iter().map(|s| state_bson(*s)).collect();
        let in_flight = grouped(self, session, names::PAYOUT_BATCHES, vec![
            doc! { "$match": { "state": { "$in": &states } } },
            doc! { "$unwind": "$recipients" },
            doc! { "$group": { "_id": "$recipients.address", "units": { "$sum": "$recipients.units" } } },
        ])
        .await?;
        // Fees are charged to their payer when a batch is created and spent when it confirms.
        let fee_states: Vec<Bson> = IN_FLIGHT
            .iter()
            .chain([BatchState::Confirmed].iter())
            .map(|s| state_bson(*s))
            .collect();
        let fees = grouped(
            self,
            session,
            names::PAYOUT_BATCHES,
            vec![
                doc! { "$match": { "state": { "$in": fee_states }, "fee": { "$gt": 0 } } },
                doc! { "$group": { "_id": "$fee_payer", "units": { "$sum": "$fee" } } },
            ],
        )
        .await?;
        let fees_paid = aggregate(
            self,
            session,
            names::PAYOUT_BATCHES,
            vec![
                doc! { "$match": { "state": state_bson(BatchState::Confirmed) } },
                doc! { "$group": { "_id": null, "units": { "$sum": "$fee" } } },
            ],
        )
        .await?
        .first()
        .map_or(0, |r| as_i64(r.get("units")));
        let balances = aggregate(
            self,
            session,
            names::BALANCES,
            vec![doc! { "$project": { "_id": "$address", "pending": 1, "paid": 1 } }],
        )
        .await?;
        let column = |field: &str| -> BTreeMap<String, i64> {
            balances
                .iter()
                .filter_map(|b| Some((b.get_str("_id").ok()?.to_owned(), as_i64(b.get(field)))))
                .collect()
        };
        let (pending, paid) = (column("pending"), column("paid"));
        let held: Vec<(String, i64)> = pending
            .iter()
            .filter(|(address, units)| **units > 0 && crate::upow::decode_address(address).is_err())
            .map(|(address, units)| (address.clone(), *units))
            .collect();
        let mut addresses: Vec<&String> = credited
            .keys()
            .chain(pending.keys())
            .chain(in_flight.keys())
            .chain(fees.keys())
            .collect();
        addresses.sort();
        addresses.dedup();
        for address in &addresses {
            let get = |m: &BTreeMap<String, i64>| m.get(*address).copied().unwrap_or(0);
            let accounted = get(&pending) + get(&in_flight) + get(&paid) + get(&fees);
            if accounted != get(&credited) || get(&pending) < 0 {
                discrepancies.push(Discrepancy {
                    subject: (*address).clone(),
                    what: "pending + in flight + paid + fees".into(),
                    measure: Measure::Units,
                    expected: get(&credited),
                    found: accounted,
                });
            }
        }
        let open_batches = batches(self, session, doc! { "state": { "$in": &states } }).await?;
        let refunded_with_transaction = batches(
            self,
            session,
            doc! {
                "state": { "$in": [state_bson(BatchState::Failed), state_bson(BatchState::Abandoned)] },
                "tx_hash": { "$type": "string" },
            },
        )
        .await?;
        let total = |m: &BTreeMap<String, i64>| m.values().sum::<i64>();
        let credited_total = total(&credited);
        if credited_total != received + imported_total {
            discrepancies.push(Discrepancy {
                subject: "total".into(),
                what: "credited (received + imported)".into(),
                measure: Measure::Units,
                expected: received + imported_total,
                found: credited_total,
            });
        }
        self.audit_wallet_spends(session, &paid, &mut discrepancies)
            .await?;
        let fees_in_flight = open_batches.iter().map(|b| b.fee).sum();
        Ok(AuditReport {
            received,
            credited: credited_total,
            pending: total(&pending),
            in_flight: total(&in_flight),
            paid: total(&paid),
            fees_paid,
            fees_in_flight,
            addresses: addresses.len(),
            discrepancies,
            held,
            open_batches,
            refunded_with_transaction,
            import_held,
        })
    }
}
