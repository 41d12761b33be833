//! The queries behind the public reads (`/api/v1` and `/validators`), each built in one place
//! so that the store runs exactly what the explain test checks: every one is served by an index
//! (never a collection scan), with a capped limit and a cursor to the next page.

use bson::{Bson, DateTime, Document, doc};
use futures::TryStreamExt;
use serde::de::DeserializeOwned;

use super::activity::Totals;
use super::documents::names;
use super::payouts::{BatchState, IN_FLIGHT, state_bson};
use super::{Result, Store, StoreError};

/// The most items one public read returns.
pub const MAX_PAGE: i64 = 200;

/// Where `/api/v1/stats` reads its totals: one document, refreshed after every rewards and
/// payouts run (see [`Store::refresh_totals`]), so no public read sums a collection.
pub const TOTALS_ID: &str = "totals";

/// One `find` as a public read runs it.
#[derive(Debug, Clone)]
pub struct PublicFind {
    pub collection: &'static str,
    pub filter: Document,
    pub sort: Document,
    /// 0: no limit (a read by a unique key, or the legacy `/validators`).
    pub limit: i64,
    /// Distributions only: keep just the ledger lines of this address (run as an aggregation,
    /// so that a distribution's other lines never leave the server).
    pub lines_of: Option<String>,
}

/// The cursor of the page after one of `rows` read with `limit`: the key of its last row, when
/// the page is full (a page that is not full is the last).
pub fn next_cursor<T>(rows: usize, limit: i64, last: Option<T>) -> Option<T> {
    (rows as i64 >= limit).then_some(last).flatten()
}

fn capped(limit: i64) -> i64 {
    limit.clamp(1, MAX_PAGE)
}

/// Where a page of a newest-first list ended: its last row's time and that row's key, which
/// orders rows of the same millisecond (one payouts run writes several batches, one scheduler
/// tick starts several jobs). Its text, the lists' `before`, is `<milliseconds>.<key>`; a bare
/// `<milliseconds>` (the form before keys) still means "everything older than it".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Before<K> {
    pub at: DateTime,
    pub key: Option<K>,
}

/// A `before` that is not a cursor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a cursor (milliseconds since the epoch, then '.' and the key of the last row \
     seen: the `next` of the previous page)"
)]
pub struct CursorError(pub String);

impl<K> Before<K> {
    /// The cursor after a row created at `at` (none for a row without a time: nothing older
    /// can be found after it).
    pub fn row(at: Option<DateTime>, key: K) -> Option<Before<K>> {
        at.map(|at| Before { at, key: Some(key) })
    }
}

/// A row of a newest-first list ([`PublicPage`]): the cursor of the page after it, by the same
/// (time, key) its list is ordered by.
pub trait NewestFirst {
    type Key: std::fmt::Display;
    fn cursor(&self) -> Option<Before<Self::Key>>;
}

/// The `before` cursor of the page after `rows`, a page read with `limit`: after its last row,
/// when the page is full.
pub fn next_before<R: NewestFirst>(rows: &[R], limit: i64) -> Option<Before<R::Key>> {
    next_cursor(rows.len(), limit, rows.last().and_then(R::cursor))
}

impl<K: std::fmt::Display> std::fmt::Display for Before<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.at.timestamp_millis())?;
        match &self.key {
            Some(key) => write!(f, ".{key}"),
            None => Ok(()),
        }
    }
}

impl<K: std::str::FromStr> std::str::FromStr for Before<K> {
    type Err = CursorError;

    fn from_str(text: &str) -> std::result::Result<Self, CursorError> {
        let bad = || CursorError(text.to_owned());
        let (millis, key) = match text.split_once('.') {
            Some((_, "")) => return Err(bad()),
            Some((millis, key)) => (millis, Some(key.parse().map_err(|_| bad())?)),
            None => (text, None),
        };
        // Digits only: `+5` and ` 5` are not what any page handed out.
        if millis.is_empty() || !millis.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let at = millis.parse::<i64>().map_err(|_| bad())?;
        Ok(Before {
            at: DateTime::from_millis(at),
            key,
        })
    }
}

/// One page of a newest-first list: with a keyed cursor, first the rows of the cursor's own
/// millisecond after its key, then the older rows, each `find` served by the list's index on
/// (time, key). Two finds, not one `$or`, because not every MongoDB-compatible server plans an
/// `$or` over a compound index without scanning the collection.
#[derive(Debug, Clone)]
pub struct PublicPage {
    /// Each with the page's limit.
    pub finds: Vec<PublicFind>,
}

impl PublicPage {
    /// The page of `filter`'s rows ordered by (`time`, `key`), newest first, after `before`.
    fn newest_first<K: Clone + Into<Bson>>(
        collection: &'static str,
        filter: Document,
        (time, key): (&str, &str),
        limit: i64,
        before: Option<&Before<K>>,
        lines_of: Option<&str>,
    ) -> PublicPage {
        let limit = capped(limit);
        let find = |filter: Document| PublicFind {
            collection,
            filter,
            sort: doc! { time: -1, key: -1 },
            limit,
            lines_of: lines_of.map(str::to_owned),
        };
        let Some(before) = before else {
            return PublicPage {
                finds: vec![find(filter)],
            };
        };
        let mut finds = Vec::with_capacity(2);
        if let Some(last_key) = &before.key {
            let mut same_time = filter.clone();
            same_time.insert(time, before.at);
            same_time.insert(key, doc! { "$lt": last_key.clone().into() });
            finds.push(find(same_time));
        }
        let mut older = filter;
        older.insert(time, doc! { "$lt": before.at });
        finds.push(find(older));
        PublicPage { finds }
    }

    /// Reward distributions, newest first, after `before` (keyed by last block).
    pub fn distributions(limit: i64, before: Option<&Before<i64>>) -> PublicPage {
        PublicPage::newest_first(
            names::REWARD_DISTRIBUTIONS,
            Document::new(),
            ("created_at", "last_block"),
            limit,
            before,
            None,
        )
    }

    /// The distributions crediting `address`, newest first, after `before` (keyed by last
    /// block), each with only that address's lines.
    pub fn credits_of(address: &str, limit: i64, before: Option<&Before<i64>>) -> PublicPage {
        PublicPage::newest_first(
            names::REWARD_DISTRIBUTIONS,
            doc! { "lines.address": address },
            ("created_at", "last_block"),
            limit,
            before,
            Some(address),
        )
    }

    /// Every payout batch, newest first, after `before` (keyed by `_id`).
    pub fn payout_batches(limit: i64, before: Option<&Before<String>>) -> PublicPage {
        PublicPage::newest_first(
            names::PAYOUT_BATCHES,
            Document::new(),
            ("created_at", "_id"),
            limit,
            before,
            None,
        )
    }

    /// Job runs, newest first, of one job or all, after `before` (keyed by `_id`).
    pub fn job_runs(job: Option<&str>, limit: i64, before: Option<&Before<String>>) -> PublicPage {
        let filter = job.map_or_else(Document::new, |job| doc! { "job": job });
        PublicPage::newest_first(
            names::JOB_RUNS,
            filter,
            ("started_at", "_id"),
            limit,
            before,
            None,
        )
    }

    /// Payout batches paying `address`, newest first, after `before` (keyed by `_id`).
    pub fn payouts_of(address: &str, limit: i64, before: Option<&Before<String>>) -> PublicPage {
        PublicPage::newest_first(
            names::PAYOUT_BATCHES,
            doc! { "recipients.address": address },
            ("created_at", "_id"),
            limit,
            before,
            None,
        )
    }
}

impl PublicFind {
    /// One validator.
    pub fn validator(address: &str) -> PublicFind {
        PublicFind {
            collection: names::VALIDATORS,
            filter: doc! { "wallet_address": address },
            sort: Document::new(),
            limit: 1,
            lines_of: None,
        }
    }

    /// Pools of one registry collection (`poolList` or `minerPool`) by address, after `after`.
    pub fn pools(collection: &'static str, after: Option<&str>, limit: i64) -> PublicFind {
        PublicFind {
            collection,
            filter: after.map_or_else(
                || doc! { "pool_address": { "$gte": "" } },
                |a| doc! { "pool_address": { "$gt": a } },
            ),
            sort: doc! { "pool_address": 1 },
            limit: capped(limit),
            lines_of: None,
        }
    }

    /// One pool in one registry collection.
    pub fn pool(collection: &'static str, address: &str) -> PublicFind {
        PublicFind {
            collection,
            filter: doc! { "pool_address": address },
            sort: Document::new(),
            limit: 1,
            lines_of: None,
        }
    }

    /// Validators by address, after `after`.
    pub fn validators(after: Option<&str>, limit: i64) -> PublicFind {
        PublicFind {
            collection: names::VALIDATORS,
            filter: after.map_or_else(
                || doc! { "wallet_address": { "$gte": "" } },
                |a| doc! { "wallet_address": { "$gt": a } },
            ),
            sort: doc! { "wallet_address": 1 },
            limit: capped(limit),
            lines_of: None,
        }
    }

    /// Every validator, by address, for the legacy `/validators` (the original's contract: all
    /// of them; the validators job keeps at most `validators.limit` with a stake).
    pub fn legacy_validators() -> PublicFind {
        PublicFind {
            limit: 0,
            ..PublicFind::validators(None, 1)
        }
    }

    pub fn balance(address: &str) -> PublicFind {
        PublicFind {
            collection: names::BALANCES,
            filter: doc! { "address": address },
            sort: Document::new(),
            limit: 1,
            lines_of: None,
        }
    }

    /// The balances of some addresses (a page of a list), at most [`MAX_PAGE`].
    pub fn balances(addresses: &[String]) -> PublicFind {
        let addresses = &addresses[..addresses.len().min(MAX_PAGE as usize)];
        PublicFind {
            collection: names::BALANCES,
            filter: doc! { "address": { "$in": addresses } },
            sort: Document::new(),
            limit: 0,
            lines_of: None,
        }
    }

    pub fn totals() -> PublicFind {
        PublicFind {
            collection: names::STATS,
            filter: doc! { "_id": TOTALS_ID },
            sort: Document::new(),
            limit: 1,
            lines_of: None,
        }
    }

    /// Every public read, as run with these arguments: what the explain test checks (each
    /// `find` of a page on its own).
    pub fn every_public_read(address: &str, cursor_time: DateTime) -> Vec<(String, PublicFind)> {
        let numbered = Before {
            at: cursor_time,
            key: Some(20_000_i64),
        };
        let by_id = Before {
            at: cursor_time,
            key: Some("65a1b2c3d4e5f60718293a4b".to_owned()),
        };
        let (numbered_bare, by_id_bare) = (
            Before::<i64> {
                at: cursor_time,
                key: None,
            },
            Before::<String> {
                at: cursor_time,
                key: None,
            },
        );
        let pages = [
            ("distributions", PublicPage::distributions(20, None)),
            (
                "distributions, next page",
                PublicPage::distributions(20, Some(&numbered)),
            ),
            (
                "distributions, bare cursor",
                PublicPage::distributions(20, Some(&numbered_bare)),
            ),
            ("job runs", PublicPage::job_runs(None, 20, None)),
            (
                "job runs, next page",
                PublicPage::job_runs(None, 20, Some(&by_id)),
            ),
            (
                "job runs of one job",
                PublicPage::job_runs(Some("rewards"), 20, Some(&by_id)),
            ),
            (
                "payouts of an address",
                PublicPage::payouts_of(address, 20, None),
            ),
            (
                "payouts of an address, next page",
                PublicPage::payouts_of(address, 20, Some(&by_id)),
            ),
            (
                "credits of an address",
                PublicPage::credits_of(address, 20, None),
            ),
            (
                "credits of an address, next page",
                PublicPage::credits_of(address, 20, Some(&numbered)),
            ),
            ("payout batches", PublicPage::payout_batches(20, None)),
            (
                "payout batches, next page",
                PublicPage::payout_batches(20, Some(&by_id)),
            ),
            (
                "payout batches, bare cursor",
                PublicPage::payout_batches(20, Some(&by_id_bare)),
            ),
        ];
        let mut reads = Vec::new();
        for (what, page) in pages {
            let count = page.finds.len();
            for (n, find) in page.finds.into_iter().enumerate() {
                let part = match (count, n) {
                    (1, _) => String::new(),
                    (_, 0) => " (same millisecond)".to_owned(),
                    _ => " (older)".to_owned(),
                };
                reads.push((format!("{what}{part}"), find));
            }
        }
        reads.extend([
            ("validators".to_owned(), PublicFind::validators(None, 20)),
            (
                "validators, next page".to_owned(),
                PublicFind::validators(Some(address), 20),
            ),
            (
                "legacy /validators".to_owned(),
                PublicFind::legacy_validators(),
            ),
            ("one validator".to_owned(), PublicFind::validator(address)),
            ("a balance".to_owned(), PublicFind::balance(address)),
            (
                "balances of a page".to_owned(),
                PublicFind::balances(&[address.to_owned(), "address-001".to_owned()]),
            ),
            ("stats".to_owned(), PublicFind::totals()),
        ]);
        for collection in [names::POOL_LIST, names::MINER_POOL] {
            reads.push((
                format!("{collection} pools"),
                PublicFind::pools(collection, None, 20),
            ));
            reads.push((
                format!("{collection} pools, next page"),
                PublicFind::pools(collection, Some(address), 20),
            ));
            reads.push((
                format!("{collection} one pool"),
                PublicFind::pool(collection, address),
            ));
        }
        reads
    }

    /// The body of the `find` (or `aggregate`) command it runs (for `explain`).
    pub fn command(&self) -> Document {
        if self.lines_of.is_some() {
            return doc! {
                "aggregate": self.collection,
                "pipeline": self.pipeline(),
                "cursor": {},
            };
        }
        let mut command = doc! { "find": self.collection, "filter": self.filter.clone() };
        if !self.sort.is_empty() {
            command.insert("sort", self.sort.clone());
        }
        if self.limit > 0 {
            command.insert("limit", self.limit);
        }
        command
    }

    /// The aggregation of a read with [`PublicFind::lines_of`].
    fn pipeline(&self) -> Vec<Document> {
        let mut pipeline = vec![doc! { "$match": self.filter.clone() }];
        if !self.sort.is_empty() {
            pipeline.push(doc! { "$sort": self.sort.clone() });
        }
        if self.limit > 0 {
            pipeline.push(doc! { "$limit": self.limit });
        }
        if let Some(address) = &self.lines_of {
            pipeline.push(doc! { "$set": { "lines": { "$filter": {
                "input": "$lines",
                "as": "line",
                "cond": { "$eq": ["$$line.address", address] },
            } } } });
        }
        pipeline
    }
}

impl Store {
    /// Runs a public read.
    pub async fn find_public<T>(&self, find: &PublicFind) -> Result<Vec<T>>
    where
        T: DeserializeOwned + Send + Sync,
    {
        let context = format!("read {}", find.collection);
        let collection = self.collection::<T>(find.collection);
        if find.lines_of.is_some() {
            return self
                .aggregate_all(find.collection, find.pipeline(), &context)
                .await;
        }
        let mut action = collection.find(find.filter.clone()).sort(find.sort.clone());
        if find.limit > 0 {
            action = action.limit(find.limit);
        }
        action
            .await
            .map_err(StoreError::mongo(context.clone()))?
            .try_collect()
            .await
            .map_err(StoreError::mongo(context))
    }

    /// Runs one page of a newest-first list: its finds in order, each asked only for the rows
    /// the page still lacks.
    pub async fn find_page<T>(&self, page: &PublicPage) -> Result<Vec<T>>
    where
        T: DeserializeOwned + Send + Sync,
    {
        let mut rows = Vec::new();
        for find in &page.finds {
            let missing = find.limit - rows.len() as i64;
            if missing <= 0 {
                break;
            }
            let find = PublicFind {
                limit: missing,
                ..find.clone()
            };
            rows.extend(self.find_public::<T>(&find).await?);
        }
        Ok(rows)
    }

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
                .and_then(|d| super::activity::units(d.get(name)))
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
                .and_then(|d| super::activity::units(d.get(name)))
                .unwrap_or(0)
        };
        let (pending, paid) = (field("pending"), field("paid"));
        let (in_flight, fees_spent) = (field("in_flight"), field("fees_spent"));
        Ok(Totals {
            last_scanned_height: totals
                .as_ref()
                .and_then(|d| super::activity::units(d.get("last_scanned_height"))),
            chain_height: totals
                .as_ref()
                .and_then(|d| super::activity::units(d.get("chain_height"))),
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
