//! What the node reads and writes: TASK and PING effects (SPEC §4.1) as atomic server-side
//! updates, the TASK receipts that make client retries safe, the pool registry, the admin
//! ciphertexts already used, and the reads behind the HTTP API (§4.2).

use std::collections::BTreeMap;

use bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use futures::TryStreamExt;
use mongodb::Namespace;
use mongodb::options::{InsertOneModel, UpdateOneModel, WriteModel};

use super::documents::{Balance, JobRun, RewardDistribution, Validator, names};
use super::{Result, Store, StoreError, is_duplicate_key, loose};
use crate::scoring::pool_score_after_task_expr;

/// The validator and pool a message names, read in one round trip.
#[derive(Debug, Clone, PartialEq)]
pub struct Parties {
    /// The validator's document exists.
    pub validator_found: bool,
    /// Its `percentage`, when it has a numeric one.
    pub validator_percentage: Option<f64>,
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

/// How a TASK's writes reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskWrites {
    /// One ordered multi-collection `bulkWrite` command (MongoDB 8.0+): one round trip.
    ClientBulkWrite,
    /// Three commands in the same order, for servers before 8.0.
    Separate,
}

/// The MongoDB wire version of 8.0, which brought the multi-collection `bulkWrite` command.
const WIRE_VERSION_8_0: i32 = 25;

/// Records TASKs with the fewest round trips the server allows; cheap to clone.
#[derive(Debug, Clone)]
pub struct TaskRecorder {
    store: Store,
    writes: TaskWrites,
}

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

/// Money totals over the whole database, in smallest units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    pub last_scanned_height: Option<i64>,
    /// Received by the iNode wallet, over every distribution.
    pub received: i64,
    /// Credited to balances (pending + paid).
    pub credited: i64,
    pub paid: i64,
    pub pending: i64,
    pub distributions: u64,
}

impl TaskRecorder {
    /// Asks the server once whether it has the multi-collection `bulkWrite`.
    pub async fn new(store: Store) -> Result<TaskRecorder> {
        let writes = if store.has_client_bulk_write().await? {
            TaskWrites::ClientBulkWrite
        } else {
            TaskWrites::Separate
        };
        Ok(TaskRecorder { store, writes })
    }

    /// A recorder that writes the given way, whatever the server supports.
    pub fn with_writes(store: Store, writes: TaskWrites) -> TaskRecorder {
        TaskRecorder { store, writes }
    }

    pub fn writes(&self) -> TaskWrites {
        self.writes
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Records an accepted TASK: the receipt first (a duplicate means a retry: nothing more is
    /// written), then the pool's score (+`increment`, capped at 100, upserted) and the
    /// validator's activity. The writes are ordered but not one transaction: a crash between the
    /// receipt and the score loses that one increment rather than ever counting one twice.
    pub async fn record_task(
        &self,
        validator: &str,
        pool: &str,
        val_id: &str,
        increment: i64,
        now: DateTime,
    ) -> Result<TaskRecorded> {
        let writes = TaskWriteSet::new(validator, pool, val_id, increment, now);
        match self.writes {
            TaskWrites::ClientBulkWrite => self.record_in_one_command(writes).await,
            TaskWrites::Separate => self.record_in_three_commands(writes).await,
        }
    }

    async fn record_in_one_command(&self, writes: TaskWriteSet) -> Result<TaskRecorded> {
        let models = writes.models(self.store.db.name());
        match self.store.client.bulk_write(models).ordered(true).await {
            Ok(_) => Ok(TaskRecorded::Accepted),
            Err(e) => match failed_model(&e) {
                Some((0, 11000)) => Ok(TaskRecorded::Replayed),
                // Two first TASKs for a new pool raced to insert it; the receipt is in, so finish
                // with the score and the validator (the pool now exists: a plain update wins).
                Some((1, 11000)) => {
                    let rest = writes.models(self.store.db.name()).split_off(1);
                    self.store
                        .client
                        .bulk_write(rest)
                        .ordered(true)
                        .await
                        .map_err(StoreError::mongo("record the TASK (after an upsert race)"))?;
                    Ok(TaskRecorded::Accepted)
                }
                _ => Err(StoreError::mongo("record the TASK")(e)),
            },
        }
    }

    async fn record_in_three_commands(&self, writes: TaskWriteSet) -> Result<TaskRecorded> {
        match self
            .store
            .collection::<Document>(names::TASK_RECEIPTS)
            .insert_one(writes.receipt)
            .await
        {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => return Ok(TaskRecorded::Replayed),
            Err(e) => return Err(StoreError::mongo("record the TASK receipt")(e)),
        }
        let pools = self.store.collection::<Document>(names::MINER_POOL);
        let scored = pools
            .update_one(writes.pool_filter.clone(), writes.pool_update.clone())
            .upsert(true)
            .await;
        match scored {
            Ok(_) => {}
            Err(e) if is_duplicate_key(&e) => {
                pools
                    .update_one(writes.pool_filter, writes.pool_update)
                    .upsert(true)
                    .await
                    .map_err(StoreError::mongo("add to the pool score"))?;
            }
            Err(e) => return Err(StoreError::mongo("add to the pool score")(e)),
        }
        self.store
            .collection::<Document>(names::VALIDATORS)
            .update_one(writes.validator_filter, writes.validator_update)
            .await
            .map_err(StoreError::mongo("mark the validator active"))?;
        Ok(TaskRecorded::Accepted)
    }
}

/// The three writes of one TASK, in the order they must happen.
struct TaskWriteSet {
    receipt: Document,
    pool_filter: Document,
    pool_update: Vec<Document>,
    validator_filter: Document,
    validator_update: Document,
}

impl TaskWriteSet {
    fn new(validator: &str, pool: &str, val_id: &str, increment: i64, now: DateTime) -> Self {
        TaskWriteSet {
            receipt: doc! { "validator_wallet": validator, "val_id": val_id, "accepted_at": now },
            pool_filter: doc! { "pool_address": pool },
            pool_update: vec![doc! { "$set": {
                "score": pool_score_after_task_expr(increment),
                "last_active_time": now,
            } }],
            validator_filter: doc! { "wallet_address": validator },
            validator_update: doc! { "$set": { "score": 1_i64, "last_active_time": now } },
        }
    }

    fn models(&self, database: &str) -> Vec<WriteModel> {
        let namespace = |collection: &str| Namespace::new(database, collection);
        vec![
            WriteModel::InsertOne(
                InsertOneModel::builder()
                    .namespace(namespace(names::TASK_RECEIPTS))
                    .document(self.receipt.clone())
                    .build(),
            ),
            WriteModel::UpdateOne(
                UpdateOneModel::builder()
                    .namespace(namespace(names::MINER_POOL))
                    .filter(self.pool_filter.clone())
                    .update(self.pool_update.clone())
                    .upsert(true)
                    .build(),
            ),
            WriteModel::UpdateOne(
                UpdateOneModel::builder()
                    .namespace(namespace(names::VALIDATORS))
                    .filter(self.validator_filter.clone())
                    .update(self.validator_update.clone())
                    .build(),
            ),
        ]
    }
}

/// (index, code) of the model an ordered multi-collection bulk write stopped at.
fn failed_model(error: &mongodb::error::Error) -> Option<(usize, i32)> {
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
                    pool_registered: false,
                });
            }
            (None, Some(pool)) => (names::POOL_LIST, pool_stage(pool)),
            (Some(validator), pool) => {
                let mut pipeline = vec![
                    doc! { "$match": { "wallet_address": validator } },
                    doc! { "$limit": 1 },
                    doc! { "$project": { "_id": 0, "percentage": 1, "party": "validator" } },
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
        let context = "look up the validator and pool";
        let found: Vec<Document> = self
            .collection::<Document>(collection)
            .aggregate(pipeline)
            .await
            .map_err(StoreError::mongo(context))?
            .try_collect()
            .await
            .map_err(StoreError::mongo(context))?;
        let validator_doc = found.iter().find(|d| d.get_str("party") == Ok("validator"));
        Ok(Parties {
            validator_found: validator_doc.is_some(),
            validator_percentage: validator_doc.and_then(|d| numeric(d.get("percentage"))),
            pool_registered: found.iter().any(|d| d.get_str("party") == Ok("pool")),
        })
    }

    /// Stores where a validator listens and when it pinged.
    pub async fn record_ping(
        &self,
        validator: &str,
        ip: &str,
        port: u16,
        now: DateTime,
    ) -> Result<()> {
        self.collection::<Document>(names::VALIDATORS)
            .update_one(
                doc! { "wallet_address": validator },
                doc! { "$set": { "ip": ip, "port": i64::from(port), "ping": now } },
            )
            .await
            .map_err(StoreError::mongo("record the PING"))?;
        Ok(())
    }

    /// Adds a pool to the registry.
    pub async fn register_pool(&self, address: &str) -> Result<PoolRegistration> {
        let id = ObjectId::new();
        match self
            .collection::<Document>(names::POOL_LIST)
            .insert_one(doc! { "_id": id, "pool_address": address })
            .await
        {
            Ok(_) => Ok(PoolRegistration::Added { id: id.to_hex() }),
            Err(e) if is_duplicate_key(&e) => Ok(PoolRegistration::AlreadyExists),
            Err(e) => Err(StoreError::mongo("register the pool")(e)),
        }
    }

    /// Removes a pool from the registry; `false` if it was not there. Its score stays (the
    /// original kept it too) and decays.
    pub async fn unregister_pool(&self, address: &str) -> Result<bool> {
        let deleted = self
            .pool_list()
            .delete_one(doc! { "pool_address": address })
            .await
            .map_err(StoreError::mongo("remove the pool"))?;
        Ok(deleted.deleted_count == 1)
    }

    /// Every registered or scored pool, by address (two queries).
    pub async fn pool_overviews(&self) -> Result<Vec<PoolOverview>> {
        self.pools_matching(doc! {}).await
    }

    /// One pool, if it is registered or scored.
    pub async fn pool_overview(&self, address: &str) -> Result<Option<PoolOverview>> {
        Ok(self
            .pools_matching(doc! { "pool_address": address })
            .await?
            .into_iter()
            .next())
    }

    async fn pools_matching(&self, filter: Document) -> Result<Vec<PoolOverview>> {
        let mut pools: BTreeMap<String, PoolOverview> = BTreeMap::new();
        for registered in self
            .find_documents(names::POOL_LIST, filter.clone())
            .await?
        {
            if let Ok(address) = registered.get_str("pool_address") {
                let pool = pool_entry(&mut pools, address);
                pool.registered = true;
                pool.registry_id = registered.get_object_id("_id").ok().map(|id| id.to_hex());
            }
        }
        for scored in self.find_documents(names::MINER_POOL, filter).await? {
            if let Ok(address) = scored.get_str("pool_address") {
                let pool = pool_entry(&mut pools, address);
                pool.score = numeric(scored.get("score")).map_or(0, |s| s as i64);
                pool.last_active_time = loose_time(scored.get("last_active_time"));
            }
        }
        Ok(pools.into_values().collect())
    }

    /// Every validator in insertion order, each read on its own so that one malformed document
    /// is reported (as `Err` with its address) without hiding the others.
    pub async fn validators_tolerant(&self) -> Result<Vec<(String, Result<Validator, String>)>> {
        let documents = self.find_documents(names::VALIDATORS, doc! {}).await?;
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

    /// Remembers an admin ciphertext by its digest; `false` if it was seen before (a replay).
    pub async fn record_admin_ciphertext(&self, digest_hex: &str, now: DateTime) -> Result<bool> {
        match self
            .collection::<Document>(names::ADMIN_REPLAYS)
            .insert_one(doc! { "_id": digest_hex, "seen_at": now })
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_duplicate_key(&e) => Ok(false),
            Err(e) => Err(StoreError::mongo("record the admin request")(e)),
        }
    }

    /// The balance of `address`, if it was ever credited.
    pub async fn balance_of(&self, address: &str) -> Result<Option<Balance>> {
        self.balances()
            .find_one(doc! { "address": address })
            .await
            .map_err(StoreError::mongo("read the balance"))
    }

    /// Payout batches paying `address`, newest first, at most `limit`. Batches are read
    /// tolerantly: `_id` (any type), `state`, `recipients: [{address, units}]`, `tx_hash`,
    /// `created_at`.
    pub async fn payouts_of(&self, address: &str, limit: i64) -> Result<Vec<PayoutLine>> {
        let context = "read payout batches";
        let batches: Vec<Document> = self
            .collection::<Document>(names::PAYOUT_BATCHES)
            .find(doc! { "recipients.address": address })
            .sort(doc! { "created_at": -1, "_id": -1 })
            .limit(limit)
            .await
            .map_err(StoreError::mongo(context))?
            .try_collect()
            .await
            .map_err(StoreError::mongo(context))?;
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
                            .filter_map(|r| numeric(r.get("units")).map(|u| u as i64))
                            .sum()
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

    /// Reward distributions, newest first, at most `limit`, optionally only those created before
    /// the distribution `before` (for paging).
    pub async fn recent_distributions(
        &self,
        limit: i64,
        before: Option<DateTime>,
    ) -> Result<Vec<RewardDistribution>> {
        let filter = match before {
            Some(before) => doc! { "created_at": { "$lt": before } },
            None => doc! {},
        };
        let context = "read reward distributions";
        self.reward_distributions()
            .find(filter)
            .sort(doc! { "created_at": -1, "last_block": -1 })
            .limit(limit)
            .await
            .map_err(StoreError::mongo(context))?
            .try_collect()
            .await
            .map_err(StoreError::mongo(context))
    }

    pub async fn distribution(&self, id: &str) -> Result<Option<RewardDistribution>> {
        self.reward_distributions()
            .find_one(doc! { "_id": id })
            .await
            .map_err(StoreError::mongo("read the reward distribution"))
    }

    /// Job runs, newest first, at most `limit`, of one job or all.
    pub async fn recent_job_runs(&self, job: Option<&str>, limit: i64) -> Result<Vec<JobRun>> {
        let filter = match job {
            Some(job) => doc! { "job": job },
            None => doc! {},
        };
        let context = "read job runs";
        self.job_runs()
            .find(filter)
            .sort(doc! { "started_at": -1 })
            .limit(limit)
            .await
            .map_err(StoreError::mongo(context))?
            .try_collect()
            .await
            .map_err(StoreError::mongo(context))
    }

    /// Totals for `/api/v1/stats`: three round trips, each an index scan or one `$group`.
    pub async fn totals(&self) -> Result<Totals> {
        let last_scanned_height = self.last_scanned_height().await?;
        let received = self
            .sum_fields(
                names::REWARD_DISTRIBUTIONS,
                doc! { "received": { "$sum": "$received" }, "count": { "$sum": 1_i64 } },
            )
            .await?;
        let balances = self
            .sum_fields(
                names::BALANCES,
                doc! { "pending": { "$sum": "$pending" }, "paid": { "$sum": "$paid" } },
            )
            .await?;
        let field = |d: &Option<Document>, name: &str| {
            d.as_ref()
                .and_then(|d| numeric(d.get(name)))
                .map_or(0, |v| v as i64)
        };
        let (pending, paid) = (field(&balances, "pending"), field(&balances, "paid"));
        Ok(Totals {
            last_scanned_height,
            received: field(&received, "received"),
            credited: pending.saturating_add(paid),
            paid,
            pending,
            distributions: field(&received, "count").max(0) as u64,
        })
    }

    /// One `$group` over a whole collection; `None` when it is empty.
    async fn sum_fields(&self, collection: &str, sums: Document) -> Result<Option<Document>> {
        let mut group = doc! { "_id": Bson::Null };
        group.extend(sums);
        let context = format!("sum {collection}");
        let mut found: Vec<Document> = self
            .collection::<Document>(collection)
            .aggregate(vec![doc! { "$group": group }])
            .await
            .map_err(StoreError::mongo(context.clone()))?
            .try_collect()
            .await
            .map_err(StoreError::mongo(context))?;
        Ok(found.pop())
    }

    async fn find_documents(&self, collection: &str, filter: Document) -> Result<Vec<Document>> {
        let context = format!("read {collection}");
        self.collection::<Document>(collection)
            .find(filter)
            .sort(doc! { "_id": 1 })
            .await
            .map_err(StoreError::mongo(context.clone()))?
            .try_collect()
            .await
            .map_err(StoreError::mongo(context))
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

/// A number stored as any BSON numeric type or numeric text.
fn numeric(value: Option<&Bson>) -> Option<f64> {
    match value? {
        Bson::Double(v) if v.is_finite() => Some(*v),
        Bson::Int32(v) => Some(f64::from(*v)),
        Bson::Int64(v) => Some(*v as f64),
        Bson::String(v) => v.trim().parse().ok().filter(|v: &f64| v.is_finite()),
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
