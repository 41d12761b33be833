//! The money totals `/api/v1/stats` shows: one document, recomputed from the books by the jobs
//! after each rewards and payouts run, so that no public read sums a collection.

use bson::{Bson, DateTime, Document, doc};

use crate::money::stored_units;
use crate::store::db::{Result, Store, StoreError};
use crate::store::names;
use crate::store::paging::PublicFind;
use crate::store::payouts::{BatchState, IN_FLIGHT, state_bson};

/// Money totals over the whole database, in smallest units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    pub last_scanned_height: Option<i64>,
    /// The highest block the chain answered the rewards job's last request with: the chain
    /// reached at least this far (the job asks for a range, not for the tip).
    pub chain_height: Option<i64>,
    /// Received by the iNode wallet, over every distribution.
    pub received: i64,
    /// Credited to balances: pending, in flight, paid, or spent as payout fees.
    pub credited: i64,
    pub paid: i64,
    pub pending: i64,
    /// In payout batches not yet in a block (or refunded): recipients' units and fees.
    pub in_flight: i64,
    /// Fees of confirmed payout batches, taken by the chain.
    pub fees_spent: i64,
    pub distributions: u64,
    /// When the totals were last computed (after a rewards or payouts run).
    pub as_of: Option<DateTime>,
}

/// Where `/api/v1/stats` reads its totals: one document, refreshed after every rewards and
/// payouts run (see [`Store::refresh_totals`]), so no public read sums a collection.
pub const TOTALS_ID: &str = "totals";

impl Store {
    /// Recomputes the totals `/api/v1/stats` shows, from the books: received and the number of
    /// distributions over `rewardDistributions`, pending and paid over `balances`. Run by the
    /// rewards and payouts jobs after each run, never by a public read.
    pub async fn refresh_totals(&self) -> Result<()> {
        let received = self
            .sum_fields(
                names::REWARD_DISTRIBUTIONS,
                Document::new(),
                doc! { "received": { "$sum": "$received" }, "count": { "$sum": 1_i64 } },
            )
            .await?;
        let balances = self
            .sum_fields(
                names::BALANCES,
                Document::new(),
                doc! { "pending": { "$sum": "$pending" }, "paid": { "$sum": "$paid" } },
            )
            .await?;
        // One pass over the batches in flight or confirmed. In flight: out of pending and not
        // yet paid or refunded, the recipients' units and the fee. Confirmed: the fee left the
        // books, the chain took it.
        let in_flight_states: Vec<Bson> = IN_FLIGHT.iter().map(|s| state_bson(*s)).collect();
        let confirmed = state_bson(BatchState::Confirmed);
        let mut counted_states = in_flight_states.clone();
        counted_states.push(confirmed.clone());
        let batches = self
            .sum_fields(
                names::PAYOUT_BATCHES,
                doc! { "state": { "$in": counted_states } },
                doc! {
                    "in_flight": { "$sum": { "$cond": [
                        { "$in": ["$state", in_flight_states] },
                        { "$add": [
                            { "$ifNull": ["$total", 0_i64] }, { "$ifNull": ["$fee", 0_i64] },
                        ] },
                        0_i64,
                    ] } },
                    "fees_spent": { "$sum": { "$cond": [
                        { "$eq": ["$state", confirmed] },
                        { "$ifNull": ["$fee", 0_i64] },
                        0_i64,
                    ] } },
                },
            )
            .await?;
        let field = |d: &Option<Document>, name: &str| {
            d.as_ref()
                .and_then(|d| stored_units(d.get(name)))
                .unwrap_or(0)
        };
        let height = self.last_scanned_height().await?;
        // `$set`, not a replacement: the chain height the rewards job records stays.
        self.collection::<Document>(names::STATS)
            .update_one(
                doc! { "_id": TOTALS_ID },
                doc! { "$set": {
                    "last_scanned_height": height,
                    "received": field(&received, "received"),
                    "distributions": field(&received, "count"),
                    "pending": field(&balances, "pending"),
                    "paid": field(&balances, "paid"),
                    "in_flight": field(&batches, "in_flight"),
                    "fees_spent": field(&batches, "fees_spent"),
                    "as_of": DateTime::now(),
                } },
            )
            .upsert(true)
            .await
            .map_err(StoreError::mongo("write the totals"))?;
        Ok(())
    }

    /// Records the highest block the chain answered the rewards job with, for the overview's
    /// "behind the chain" and its metric.
    pub async fn record_chain_height(&self, height: i64) -> Result<()> {
        self.collection::<Document>(names::STATS)
            .update_one(
                doc! { "_id": TOTALS_ID },
                doc! { "$set": { "chain_height": height, "chain_seen_at": DateTime::now() } },
            )
            .upsert(true)
            .await
            .map_err(StoreError::mongo("record the chain height"))?;
        Ok(())
    }

    /// Totals for `/api/v1/stats`: one read by `_id`, all figures as of one moment (`as_of`).
    /// Zero until the first rewards or payouts run has written them.
    pub async fn totals(&self) -> Result<Totals> {
        let totals: Vec<Document> = self.find_public(&PublicFind::totals()).await?;
        let totals = totals.into_iter().next();
        let field = |name: &str| {
            totals
                .as_ref()
                .and_then(|d| stored_units(d.get(name)))
                .unwrap_or(0)
        };
        let (pending, paid) = (field("pending"), field("paid"));
        let (in_flight, fees_spent) = (field("in_flight"), field("fees_spent"));
        Ok(Totals {
            last_scanned_height: totals
                .as_ref()
                .and_then(|d| stored_units(d.get("last_scanned_height"))),
            chain_height: totals
                .as_ref()
                .and_then(|d| stored_units(d.get("chain_height"))),
            received: field("received"),
            credited: pending
                .saturating_add(in_flight)
                .saturating_add(paid)
                .saturating_add(fees_spent),
            in_flight,
            fees_spent,
            paid,
            pending,
            distributions: field("distributions").max(0) as u64,
            as_of: totals.as_ref().and_then(|d| match d.get("as_of") {
                Some(Bson::DateTime(t)) => Some(*t),
                _ => None,
            }),
        })
    }

    /// One `$group` over the documents of a collection that match `filter`; `None` when none
    /// does.
    async fn sum_fields(
        &self,
        collection: &str,
        filter: Document,
        sums: Document,
    ) -> Result<Option<Document>> {
        let mut group = doc! { "_id": Bson::Null };
        group.extend(sums);
        let pipeline = vec![doc! { "$match": filter }, doc! { "$group": group }];
        let mut found: Vec<Document> = self
            .aggregate_all(collection, pipeline, &format!("sum {collection}"))
            .await?;
        Ok(found.pop())
    }
}

impl PublicFind {
    pub fn totals() -> PublicFind {
        PublicFind {
            collection: names::STATS,
            filter: doc! { "_id": TOTALS_ID },
            sort: Document::new(),
            limit: 1,
            lines_of: None,
        }
    }
}
