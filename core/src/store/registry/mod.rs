//! The pool registry (`poolList`), the pools' scores (`minerPool`) and the validators
//! (`validatorsList`): their documents, who a message names, the admin requests that change the
//! registry (each replay marker committed with the effect it guards), and the reads behind the
//! API (§4.2).

pub mod cache;
pub mod decay;
pub mod stakes;

use std::collections::BTreeMap;

use bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use futures::future::BoxFuture;
use mongodb::{ClientSession, Collection};
use serde::{Deserialize, Serialize};

use crate::store::db::{Result, Store, StoreError, is_duplicate_key};
use crate::store::loose::{self, loose_time, numeric, stored_score};
use crate::store::names;
use crate::store::paging::{PublicFind, capped};

/// `poolList`: pools allowed to receive TASK credit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredPool {
    #[serde(rename = "_id", skip_serializing_if = "Option::is_none")]
    pub id: Option<ObjectId>,
    pub pool_address: String,
}

/// `minerPool`: a pool's score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolScore {
    pub pool_address: String,
    #[serde(default, deserialize_with = "loose::int")]
    pub score: i64,
    #[serde(default, deserialize_with = "loose::datetime")]
    pub last_active_time: Option<DateTime>,
}

/// `validatorsList`: a validator's stake share, activity and contact address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validator {
    pub wallet_address: String,
    /// 1 when it reported work since the last decay, else 0.
    #[serde(default, deserialize_with = "loose::int")]
    pub score: i64,
    /// Share of the stake, in percent with 2 decimals.
    #[serde(default, deserialize_with = "loose::number")]
    pub percentage: f64,
    #[serde(rename = "totalStake", default, deserialize_with = "loose::number")]
    pub total_stake: f64,
    #[serde(default, deserialize_with = "loose::number")]
    pub vote: f64,
    #[serde(default, deserialize_with = "loose::ip")]
    pub ip: Option<String>,
    #[serde(default, deserialize_with = "loose::port")]
    pub port: Option<u16>,
    #[serde(default, deserialize_with = "loose::datetime")]
    pub ping: Option<DateTime>,
    #[serde(default, deserialize_with = "loose::datetime")]
    pub last_active_time: Option<DateTime>,
    #[serde(rename = "lastFetch", default, deserialize_with = "loose::datetime")]
    pub last_fetch: Option<DateTime>,
    #[serde(default, deserialize_with = "loose::number")]
    pub balance: f64,
    /// When its first valid signed message was accepted (SPEC §4.5); from then on its unsigned
    /// messages are refused, until an admin lifts that.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "loose::datetime"
    )]
    pub signed_since: Option<DateTime>,
}

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

impl Store {
    pub fn pool_list(&self) -> Collection<RegisteredPool> {
        self.collection(names::POOL_LIST)
    }

    pub fn pool_scores(&self) -> Collection<PoolScore> {
        self.collection(names::MINER_POOL)
    }

    pub fn validators(&self) -> Collection<Validator> {
        self.collection(names::VALIDATORS)
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

    /// One validator, read as tolerantly as the list (`Err`: its document is malformed).
    pub async fn validator_of(&self, address: &str) -> Result<Option<Result<Validator, String>>> {
        Ok(self
            .validators_read(&PublicFind::validator(address))
            .await?
            .into_iter()
            .next()
            .map(|(_, validator)| validator))
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
}
