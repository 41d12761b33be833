//! What the node reads and writes: the checks before a TASK or PING is written (its writes are in
//! [`super::groups`]), the pool registry, the admin
//! ciphertexts already used (each replay marker committed with the effect it guards), and the
//! reads behind the HTTP API (§4.2).

use std::collections::BTreeMap;

use bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use futures::future::BoxFuture;
use mongodb::ClientSession;

use super::documents::{Balance, JobRun, LedgerLine, RewardDistribution, Validator, names};
use super::reads::{Before, NewestFirst, PublicFind, PublicPage};
use super::{Result, Store, StoreError, is_duplicate_key, loose};

/// The validator and pool a message names, read in one round trip.
#[derive(Debug, Clone, PartialEq)]
pub struct Parties {
    /// The validator's document exists.
    pub validator_found: bool,
    /// Its `percentage`, when it has a numeric one.
    pub validator_percentage: Option<f64>,
    /// It has sent a valid signed message (SPEC §4.5), as far as this read knows: the write
    /// checks again in its transaction.
    pub validator_signs: bool,
    pub pool_registered: bool,
}

/// What happened to a TASK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskRecorded {
    /// Scored now.
    Accepted,
    /// This (validator, val_id) was accepted in the last 24 h; nothing added.
    Replayed,
}

/// Outcome of registering a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolRegistration {
    Added { id: String },
    AlreadyExists,
}

/// What an admin request asks of the pool registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolListChange {
    Add,
    Remove,
}

/// What an admin request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminOutcome {
    /// This ciphertext was carried out before; nothing was done.
    Replayed,
    Registered(PoolRegistration),
    /// `false`: the pool was not registered.
    Unregistered(bool),
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

/// A pool as the API shows it: registered, scored, or both.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolOverview {
    pub pool_address: String,
    pub registered: bool,
    /// Id of the registry entry.
    pub registry_id: Option<String>,
    pub score: i64,
    pub last_active_time: Option<DateTime>,
}

/// One recipient line of a payout batch, seen from the recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct PayoutLine {
    pub batch_id: String,
    pub state: String,
    pub units: i64,
    pub tx_hash: Option<String>,
    pub created_at: Option<DateTime>,
}

/// One ledger line crediting an address, with the distribution it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct CreditLine {
    /// The distribution's block range `first-last`.
    pub distribution: String,
    /// The distribution's last block: its key in the paging order.
    pub last_block: i64,
    pub line: LedgerLine,
    pub created_at: DateTime,
}

impl CreditLine {
    /// The `before` cursor of the page after `credits`, a page of [`Store::credits_of`] read
    /// with `limit`: a page holds `limit` distributions (each with one or more lines), so the
    /// page is full when it holds that many.
    pub fn next_page(credits: &[CreditLine], limit: i64) -> Option<Before<i64>> {
        let mut distributions: Vec<&str> =
            credits.iter().map(|c| c.distribution.as_str()).collect();
        distributions.dedup();
        super::reads::next_cursor(
            distributions.len(),
            limit,
            credits.last().and_then(NewestFirst::cursor),
        )
    }
}

impl NewestFirst for CreditLine {
    type Key = i64;
    fn cursor(&self) -> Option<Before<i64>> {
        Before::row(Some(self.created_at), self.last_block)
    }
}

impl NewestFirst for PayoutLine {
    type Key = String;
    fn cursor(&self) -> Option<Before<String>> {
        Before::row(self.created_at, self.batch_id.clone())
    }
}

impl NewestFirst for BatchOverview {
    type Key = String;
    fn cursor(&self) -> Option<Before<String>> {
        Before::row(self.created_at, self.id.clone())
    }
}

/// A payout batch as the public list shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchOverview {
    pub id: String,
    pub kind: String,
    pub state: String,
    pub recipients: usize,
    /// Units paid to the recipients.
    pub total: i64,
    pub fee: i64,
    pub tx_hash: Option<String>,
    pub created_at: Option<DateTime>,
}

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

/// What a write guarded by a replay marker did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Guarded<T> {
    /// The marker and the effect were committed together.
    Done(T),
    /// The marker was already there: nothing was written.
    Replayed,
}

/// The message of the error a guarded body returns when its marker already exists; it aborts
/// the transaction, and [`Store::once`] turns it into [`Guarded::Replayed`].
const MARKER_TAKEN: &str = "this request was already carried out";

fn replayed() -> StoreError {
    StoreError::Conflict(MARKER_TAKEN.into())
}

/// Inserts a replay marker inside the transaction; an existing one means a replay.
async fn insert_marker(
    store: &Store,
    session: &mut ClientSession,
    collection: &str,
    marker: Document,
    context: &str,
) -> Result<()> {
    match store
        .collection::<Document>(collection)
        .insert_one(marker)
        .session(session)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_duplicate_key(&e) => Err(replayed()),
        Err(e) => Err(StoreError::mongo(context)(e)),
    }
}

impl Store {
    /// Runs `body` — which writes a replay marker (see [`insert_marker`]) and the effect it
    /// guards — as one transaction. A marker must never be committed without its effect: a
    /// failure after a lone marker would make the client's retry look like a replay and the
    /// effect would be lost. Concurrent identical requests cannot both take effect: the unique
    /// marker makes the later one conflict, retry, and find the marker.
    async fn once<T, F>(&self, body: F) -> Result<Guarded<T>>
    where
        F: for<'s> FnMut(&'s mut ClientSession) -> BoxFuture<'s, Result<T>>,
    {
        match self.with_short_transaction(body).await {
            Ok(value) => Ok(Guarded::Done(value)),
            Err(StoreError::Conflict(message)) if message == MARKER_TAKEN => Ok(Guarded::Replayed),
            Err(e) => Err(e),
        }
    }
}

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

    /// The validator's percentage and the pool's registration, in one aggregate; either may be
    /// left out.
    pub async fn parties(&self, validator: Option<&str>, pool: Option<&str>) -> Result<Parties> {
        let pool_stage = |pool: &str| {
            vec![
                doc! { "$match": { "pool_address": pool } },
                doc! { "$limit": 1 },
                doc! { "$project": { "_id": 0, "party": "pool" } },
            ]
        };
        let (collection, pipeline) = match (validator, pool) {
            (None, None) => {
                return Ok(Parties {
                    validator_found: false,
                    validator_percentage: None,
                    validator_signs: false,
                    pool_registered: false,
                });
            }
            (None, Some(pool)) => (names::POOL_LIST, pool_stage(pool)),
            (Some(validator), pool) => {
                let mut pipeline = vec![
                    doc! { "$match": { "wallet_address": validator } },
                    doc! { "$limit": 1 },
                    doc! { "$project": { "_id": 0, "percentage": 1, "signed_since": 1, "party": "validator" } },
                ];
                if let Some(pool) = pool {
                    pipeline.push(doc! { "$unionWith": {
                        "coll": names::POOL_LIST,
                        "pipeline": pool_stage(pool),
                    } });
                }
                (names::VALIDATORS, pipeline)
            }
        };
        let found: Vec<Document> = self
            .aggregate_all(collection, pipeline, "look up the validator and pool")
            .await?;
        let validator_doc = found.iter().find(|d| d.get_str("party") == Ok("validator"));
        Ok(Parties {
            validator_found: validator_doc.is_some(),
            validator_percentage: validator_doc.and_then(|d| numeric(d.get("percentage"))),
            validator_signs: validator_doc
                .is_some_and(|d| matches!(d.get("signed_since"), Some(Bson::DateTime(_)))),
            pool_registered: found.iter().any(|d| d.get_str("party") == Ok("pool")),
        })
    }

    /// Adds a pool to the registry.
    pub async fn register_pool(&self, address: &str) -> Result<PoolRegistration> {
        self.register_pool_in(None, address).await
    }

    /// An upsert rather than an insert, so that an existing pool is an outcome and not a write
    /// error (which would abort a surrounding transaction).
    async fn register_pool_in(
        &self,
        session: Option<&mut ClientSession>,
        address: &str,
    ) -> Result<PoolRegistration> {
        let id = ObjectId::new();
        let pools = self.collection::<Document>(names::POOL_LIST);
        let upsert = pools
            .update_one(
                doc! { "pool_address": address },
                doc! { "$setOnInsert": { "_id": id } },
            )
            .upsert(true);
        let result = match session {
            Some(session) => upsert.session(session).await,
            None => upsert.await,
        };
        match result {
            Ok(r) if r.upserted_id.is_some() => Ok(PoolRegistration::Added { id: id.to_hex() }),
            Ok(_) => Ok(PoolRegistration::AlreadyExists),
            // Outside a transaction, a concurrent registration can win the unique index.
            Err(e) if is_duplicate_key(&e) => Ok(PoolRegistration::AlreadyExists),
            Err(e) => Err(StoreError::mongo("register the pool")(e)),
        }
    }

    /// Removes a pool from the registry; `false` if it was not there. Its score stays (the
    /// original kept it too) and decays.
    pub async fn unregister_pool(&self, address: &str) -> Result<bool> {
        self.unregister_pool_in(None, address).await
    }

    async fn unregister_pool_in(
        &self,
        session: Option<&mut ClientSession>,
        address: &str,
    ) -> Result<bool> {
        let pools = self.pool_list();
        let delete = pools.delete_one(doc! { "pool_address": address });
        let deleted = match session {
            Some(session) => delete.session(session).await,
            None => delete.await,
        }
        .map_err(StoreError::mongo("remove the pool"))?;
        Ok(deleted.deleted_count == 1)
    }

    /// Registered or scored pools by address, at most `limit`, after `after` (two indexed
    /// queries, merged).
    pub async fn pool_overviews(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PoolOverview>> {
        let mut pools = self
            .pools_from(
                PublicFind::pools(names::POOL_LIST, after, limit),
                PublicFind::pools(names::MINER_POOL, after, limit),
            )
            .await?;
        pools.truncate(PublicFind::pools(names::POOL_LIST, after, limit).limit as usize);
        Ok(pools)
    }

    /// One pool, if it is registered or scored.
    pub async fn pool_overview(&self, address: &str) -> Result<Option<PoolOverview>> {
        Ok(self
            .pools_from(
                PublicFind::pool(names::POOL_LIST, address),
                PublicFind::pool(names::MINER_POOL, address),
            )
            .await?
            .into_iter()
            .next())
    }

    async fn pools_from(
        &self,
        registered: PublicFind,
        scored: PublicFind,
    ) -> Result<Vec<PoolOverview>> {
        let mut pools: BTreeMap<String, PoolOverview> = BTreeMap::new();
        for registered in self.find_public::<Document>(&registered).await? {
            if let Ok(address) = registered.get_str("pool_address") {
                let pool = pool_entry(&mut pools, address);
                pool.registered = true;
                pool.registry_id = registered.get_object_id("_id").ok().map(|id| id.to_hex());
            }
        }
        for scored in self.find_public::<Document>(&scored).await? {
            if let Ok(address) = scored.get_str("pool_address") {
                let pool = pool_entry(&mut pools, address);
                pool.score = stored_score(&scored);
                pool.last_active_time = loose_time(scored.get("last_active_time"));
            }
        }
        Ok(pools.into_values().collect())
    }

    /// Every validator by address (the legacy `/validators`), each read on its own so
    /// that one malformed document is reported (as `Err` with its address) without hiding the
    /// others.
    pub async fn validators_tolerant(&self) -> Result<Vec<(String, Result<Validator, String>)>> {
        self.validators_read(&PublicFind::legacy_validators()).await
    }

    /// Validators by address, at most `limit`, after `after`, read as tolerantly.
    pub async fn validators_page(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(String, Result<Validator, String>)>> {
        self.validators_read(&PublicFind::validators(after, limit))
            .await
    }

    async fn validators_read(
        &self,
        find: &PublicFind,
    ) -> Result<Vec<(String, Result<Validator, String>)>> {
        let documents: Vec<Document> = self.find_public(find).await?;
        Ok(documents
            .into_iter()
            .filter_map(|document| {
                let address = document.get_str("wallet_address").ok()?.to_owned();
                let validator = bson::from_document::<Validator>(document)
                    .map_err(|e| format!("validator {address}: {e}"));
                Some((address, validator))
            })
            .collect())
    }

    /// Carries out an admin request once per ciphertext (by its digest): the digest is recorded
    /// in one transaction with the change, so a failed change leaves the ciphertext usable for the
    /// admin's retry, and two identical requests at once change the registry once. A definite
    /// outcome ("already exists", "not found") uses the ciphertext up like a change does: a
    /// replay must never act later, when the registry may have changed.
    pub async fn apply_admin_request(
        &self,
        digest_hex: &str,
        change: PoolListChange,
        address: &str,
        now: DateTime,
    ) -> Result<AdminOutcome> {
        let store = self.clone();
        let (marker, address) = (
            doc! { "_id": digest_hex, "seen_at": now },
            address.to_owned(),
        );
        let guarded = self
            .once(move |session| {
                let (store, marker, address) = (store.clone(), marker.clone(), address.clone());
                Box::pin(async move {
                    let context = "record the admin request";
                    insert_marker(&store, session, names::ADMIN_REPLAYS, marker, context).await?;
                    Ok(match change {
                        PoolListChange::Add => AdminOutcome::Registered(
                            store.register_pool_in(Some(session), &address).await?,
                        ),
                        PoolListChange::Remove => AdminOutcome::Unregistered(
                            store.unregister_pool_in(Some(session), &address).await?,
                        ),
                    })
                })
            })
            .await?;
        Ok(match guarded {
            Guarded::Done(outcome) => outcome,
            Guarded::Replayed => AdminOutcome::Replayed,
        })
    }

    /// The balance of `address`, if it was ever credited.
    pub async fn balance_of(&self, address: &str) -> Result<Option<Balance>> {
        Ok(self
            .find_public::<Balance>(&PublicFind::balance(address))
            .await?
            .into_iter()
            .next())
    }

    /// The balances of `addresses` (a page of a list; at most [`super::reads::MAX_PAGE`] are
    /// read), by address; an address never credited is missing.
    pub async fn balances_of(&self, addresses: &[String]) -> Result<BTreeMap<String, Balance>> {
        Ok(self
            .find_public::<Balance>(&PublicFind::balances(addresses))
            .await?
            .into_iter()
            .map(|b| (b.address.clone(), b))
            .collect())
    }

    /// Payout batches paying `address`, newest first, at most `limit`. Batches are read
    /// tolerantly: `_id` (any type), `state`, `recipients: [{address, units}]`, `tx_hash`,
    /// `created_at`.
    pub async fn payouts_of(
        &self,
        address: &str,
        limit: i64,
        before: Option<&Before<String>>,
    ) -> Result<Vec<PayoutLine>> {
        let batches: Vec<Document> = self
            .find_page(&PublicPage::payouts_of(address, limit, before))
            .await?;
        Ok(batches
            .iter()
            .map(|batch| {
                let units = batch
                    .get_array("recipients")
                    .map(|recipients| {
                        recipients
                            .iter()
                            .filter_map(Bson::as_document)
                            .filter(|r| r.get_str("address") == Ok(address))
                            .filter_map(|r| units(r.get("units")))
                            .fold(0_i64, i64::saturating_add)
                    })
                    .unwrap_or(0);
                PayoutLine {
                    batch_id: id_text(batch.get("_id")),
                    state: batch.get_str("state").unwrap_or("unknown").to_owned(),
                    units,
                    tx_hash: batch.get_str("tx_hash").ok().map(str::to_owned),
                    created_at: loose_time(batch.get("created_at")),
                }
            })
            .collect())
    }

    /// The ledger lines crediting `address`, newest first, from at most `limit` distributions
    /// created before `before` (several lines when it is, say, both a pool and a validator).
    pub async fn credits_of(
        &self,
        address: &str,
        limit: i64,
        before: Option<&Before<i64>>,
    ) -> Result<Vec<CreditLine>> {
        let distributions: Vec<RewardDistribution> = self
            .find_page(&PublicPage::credits_of(address, limit, before))
            .await?;
        Ok(distributions
            .into_iter()
            .flat_map(|d| {
                let (id, created_at, last_block) = (d.id, d.created_at, d.last_block);
                d.lines.into_iter().map(move |line| CreditLine {
                    distribution: id.clone(),
                    last_block,
                    line,
                    created_at,
                })
            })
            .collect())
    }

    /// Every payout batch, newest first, at most `limit`, created before `before`, read as
    /// tolerantly as [`Store::payouts_of`].
    pub async fn recent_payout_batches(
        &self,
        limit: i64,
        before: Option<&Before<String>>,
    ) -> Result<Vec<BatchOverview>> {
        let batches: Vec<Document> = self
            .find_page(&PublicPage::payout_batches(limit, before))
            .await?;
        Ok(batches
            .iter()
            .map(|batch| BatchOverview {
                id: id_text(batch.get("_id")),
                kind: batch.get_str("kind").unwrap_or("payout").to_owned(),
                state: batch.get_str("state").unwrap_or("unknown").to_owned(),
                recipients: batch.get_array("recipients").map_or(0, |r| r.len()),
                total: units(batch.get("total")).unwrap_or(0),
                fee: units(batch.get("fee")).unwrap_or(0),
                tx_hash: batch.get_str("tx_hash").ok().map(str::to_owned),
                created_at: loose_time(batch.get("created_at")),
            })
            .collect())
    }

    /// One validator, read as tolerantly as the list (`Err`: its document is malformed).
    pub async fn validator_of(&self, address: &str) -> Result<Option<Result<Validator, String>>> {
        Ok(self
            .validators_read(&PublicFind::validator(address))
            .await?
            .into_iter()
            .next()
            .map(|(_, validator)| validator))
    }

    /// Reward distributions, newest first, at most `limit`, after `before` (for paging).
    pub async fn recent_distributions(
        &self,
        limit: i64,
        before: Option<&Before<i64>>,
    ) -> Result<Vec<RewardDistribution>> {
        self.find_page(&PublicPage::distributions(limit, before))
            .await
    }

    pub async fn distribution(&self, id: &str) -> Result<Option<RewardDistribution>> {
        self.reward_distributions()
            .find_one(doc! { "_id": id })
            .await
            .map_err(StoreError::mongo("read the reward distribution"))
    }

    /// Job runs, newest first, at most `limit`, of one job or all, after `before`.
    pub async fn recent_job_runs(
        &self,
        job: Option<&str>,
        limit: i64,
        before: Option<&Before<String>>,
    ) -> Result<Vec<JobRun>> {
        self.find_page(&PublicPage::job_runs(job, limit, before))
            .await
    }
}

fn pool_entry<'a>(
    pools: &'a mut BTreeMap<String, PoolOverview>,
    address: &str,
) -> &'a mut PoolOverview {
    pools
        .entry(address.to_owned())
        .or_insert_with(|| PoolOverview {
            pool_address: address.to_owned(),
            registered: false,
            registry_id: None,
            score: 0,
            last_active_time: None,
        })
}

/// The `score` of a pool or validator as stored (any numeric type, or the original's text); 0
/// when it has none.
pub(super) fn stored_score(document: &Document) -> i64 {
    numeric(document.get("score")).map_or(0, |s| s as i64)
}

/// A number stored as any BSON numeric type or numeric text.
pub(super) fn numeric(value: Option<&Bson>) -> Option<f64> {
    match value? {
        Bson::Double(v) if v.is_finite() => Some(*v),
        Bson::Int32(v) => Some(f64::from(*v)),
        Bson::Int64(v) => Some(*v as f64),
        Bson::String(v) => v.trim().parse().ok().filter(|v: &f64| v.is_finite()),
        _ => None,
    }
}

/// An amount in smallest units, exactly: integers as stored, integer text, or a double only when
/// it holds an integer exactly (below 2^53); anything else is not an amount. Money never passes
/// through a float.
pub(super) fn units(value: Option<&Bson>) -> Option<i64> {
    const EXACT_IN_DOUBLE: f64 = 9_007_199_254_740_992.0; // 2^53
    match value? {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        Bson::Double(v) if v.fract() == 0.0 && v.abs() < EXACT_IN_DOUBLE => Some(*v as i64),
        Bson::String(v) => v.trim().parse().ok(),
        _ => None,
    }
}

/// A time stored as a datetime or as text the original wrote.
fn loose_time(value: Option<&Bson>) -> Option<DateTime> {
    match value? {
        Bson::DateTime(dt) => Some(*dt),
        Bson::String(text) => loose::parse_time_text(text),
        _ => None,
    }
}

fn id_text(value: Option<&Bson>) -> String {
    match value {
        Some(Bson::ObjectId(id)) => id.to_hex(),
        Some(Bson::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_read_exactly_or_not_at_all() {
        // 2^53 + 1 units survive as an integer; through a double they would not.
        let big = 9_007_199_254_740_993_i64;
        assert_eq!(units(Some(&Bson::Int64(big))), Some(big));
        assert_eq!(units(Some(&Bson::String(big.to_string()))), Some(big));
        assert_eq!(units(Some(&Bson::Int32(-7))), Some(-7));
        assert_eq!(units(Some(&Bson::Double(12.0))), Some(12));
        assert_eq!(units(Some(&Bson::Double(12.5))), None);
        assert_eq!(units(Some(&Bson::Double(9_007_199_254_740_992.0))), None);
        assert_eq!(units(Some(&Bson::Double(f64::NAN))), None);
        assert_eq!(units(Some(&Bson::String("1.5".into()))), None);
        assert_eq!(units(None), None);
    }
}
