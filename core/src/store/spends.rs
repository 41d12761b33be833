//! `walletSpends`: every transaction the chain shows spending the iNode wallet (SPEC §5.3
//! point 5), matched to our batches or kept as foreign until an operator adopts or
//! acknowledges it; and how far the books have read them (`blockHeight`, `_id`
//! `wallet_spends_read`). The decisions are pure, in [`crate::spends`].

use std::collections::{BTreeMap, HashMap, HashSet};

use bson::{DateTime, Document, doc, oid::ObjectId};
use futures::TryStreamExt;
use mongodb::ClientSession;
use serde::{Deserialize, Serialize};

use crate::spends::{
    Adoption, BlockSpends, ForeignSpend, Spend, SpentOutput, Whereabouts, adoption,
};
use crate::store::db::{Result, Store, StoreError, update_many_matching};
use crate::store::ledger::rewards::AlsoInTransaction;
use crate::store::names;
use crate::store::payouts::{
    BatchKind, BatchState, DebitTo, PayoutBatch, Recipient, debit_pending,
};

/// The `_id` in `blockHeight` of how far the wallet's spends were read.
pub const SPENDS_READ_ID: &str = "wallet_spends_read";

/// Whose a spend is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpendOrigin {
    /// One of our payout batches' own transaction.
    Batch,
    /// The transaction abandoning one of our batches.
    Abandon,
    /// Not made by this store: unresolved until adopted or acknowledged.
    Foreign,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResolutionKind {
    /// Its outputs to known payees are recorded paid, by a recovered batch.
    Adopted,
    /// The operator moved those coins; balances unchanged.
    Acknowledged,
}

/// An operator's decision about a foreign spend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resolution {
    pub kind: ResolutionKind,
    pub reason: String,
    pub at: DateTime,
    /// The recovered batch an adoption recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    /// What the adoption recorded as paid.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adopted: Vec<Recipient>,
    /// Outputs to addresses without a balance: not payments the books know of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_adopted: Vec<Recipient>,
}

/// A wallet output a spend consumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendInput {
    pub tx_hash: Option<String>,
    pub index: Option<i64>,
}

/// `walletSpends`: one transaction spending the wallet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WalletSpend {
    /// The transaction hash (or, for a pending spend the node names only by the output it
    /// spends, `pending-spend-of:<tx_hash>:<index>`).
    #[serde(rename = "_id")]
    pub hash: String,
    /// The block holding it; none while it is only pending (or was seen pending and dropped).
    #[serde(default)]
    pub block: Option<i64>,
    #[serde(default)]
    pub block_hash: Option<String>,
    /// The block's time on the chain.
    #[serde(default)]
    pub block_time: Option<DateTime>,
    pub inputs: Vec<SpendInput>,
    /// Units paid to each address other than the wallet.
    pub outputs: Vec<Recipient>,
    /// Units paid back to the wallet.
    pub change: i64,
    #[serde(default)]
    pub unreadable: Option<String>,
    pub origin: SpendOrigin,
    /// Our batch, when the origin is a batch or an abandon.
    #[serde(default)]
    pub batch: Option<String>,
    /// When a pending spend was no longer pending yet in no block read.
    #[serde(default)]
    pub dropped_at: Option<DateTime>,
    #[serde(default)]
    pub resolution: Option<Resolution>,
    pub first_seen_at: DateTime,
    pub updated_at: DateTime,
}

impl WalletSpend {
    pub fn whereabouts(&self) -> Whereabouts {
        match (self.block, self.dropped_at) {
            (Some(block), _) => Whereabouts::InBlock(block),
            (None, None) => Whereabouts::Pending,
            (None, Some(_)) => Whereabouts::Dropped,
        }
    }

    /// Foreign and neither adopted nor acknowledged: payouts are held while one is.
    pub fn is_unresolved(&self) -> bool {
        self.origin == SpendOrigin::Foreign && self.resolution.is_none()
    }

    pub fn as_foreign(&self) -> ForeignSpend {
        ForeignSpend {
            hash: self.hash.clone(),
            whereabouts: self.whereabouts(),
            outputs: self
                .outputs
                .iter()
                .map(|r| (r.address.clone(), r.units))
                .collect(),
            unreadable: self.unreadable.clone(),
        }
    }

    /// Units paid away from the wallet.
    pub fn units(&self) -> i64 {
        self.as_foreign().units()
    }
}

/// How far the wallet's spends were read: blocks `from_height` to `block_height`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpendsRead {
    #[serde(rename = "_id")]
    pub id: String,
    /// The last block read.
    pub block_height: i64,
    pub block_hash: String,
    /// The first block ever read: spends below it were never read (a store that predates the
    /// reading, or an original iNode's), so the audit takes batches proven below it as they
    /// are.
    pub from_height: i64,
    pub read_at: DateTime,
}

/// Which spends a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpendFilter {
    #[default]
    All,
    Foreign,
    Unresolved,
}

impl SpendFilter {
    fn query(self) -> Document {
        match self {
            SpendFilter::All => doc! {},
            SpendFilter::Foreign => doc! { "origin": "foreign" },
            SpendFilter::Unresolved => doc! { "origin": "foreign", "resolution": null },
        }
    }
}

/// Unresolved foreign spends, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForeignSpendsHealth {
    pub unresolved: u64,
    /// Units they paid away from the wallet.
    pub units: i64,
}

fn recipients(map: impl IntoIterator<Item = (String, i64)>) -> Vec<Recipient> {
    map.into_iter()
        .map(|(address, units)| Recipient { address, units })
        .collect()
}

fn inputs(spend: &Spend) -> Vec<SpendInput> {
    spend
        .inputs
        .iter()
        .map(|SpentOutput { tx_hash, index }| SpendInput {
            tx_hash: tx_hash.clone(),
            index: index.map(i64::from),
        })
        .collect()
}

/// The fields of a spend as read from the chain (what a later read may correct).
fn chain_fields(spend: &Spend, origin: SpendOrigin, batch: Option<&String>) -> Result<Document> {
    Ok(doc! {
        "inputs": to_bson(&inputs(spend))?,
        "outputs": to_bson(&recipients(spend.outputs.clone()))?,
        "change": spend.change,
        "unreadable": spend.unreadable.clone(),
        "origin": to_bson(&origin)?,
        "batch": batch.cloned(),
        "updated_at": DateTime::now(),
    })
}

fn to_bson(value: &impl Serialize) -> Result<bson::Bson> {
    bson::to_bson(value).map_err(|e| StoreError::Invalid(e.to_string()))
}

impl Store {
    pub fn wallet_spends(&self) -> mongodb::Collection<WalletSpend> {
        self.collection(names::WALLET_SPENDS)
    }

    /// Which of `hashes` are our batches' transactions or abandons: hash → (origin, batch).
    /// Recovered batches (an adoption's record of a foreign spend) are not ours.
    async fn origins_of(
        &self,
        session: Option<&mut ClientSession>,
        hashes: &[String],
    ) -> Result<HashMap<String, (SpendOrigin, String)>> {
        if hashes.is_empty() {
            return Ok(HashMap::new());
        }
        let filter = doc! {
            "$or": [ { "tx_hash": { "$in": hashes } }, { "abandon.tx_hash": { "$in": hashes } } ],
            "recovered": { "$exists": false },
        };
        let collection = self.payout_batches();
        let find = collection.find(filter);
        let batches: Vec<PayoutBatch> = match session {
            Some(session) => {
                find.session(&mut *session)
                    .await
                    .map_err(StoreError::mongo("match spends to batches"))?
                    .stream(session)
                    .try_collect()
                    .await
            }
            None => {
                find.await
                    .map_err(StoreError::mongo("match spends to batches"))?
                    .try_collect()
                    .await
            }
        }
        .map_err(StoreError::mongo("match spends to batches"))?;
        let mut origins = HashMap::new();
        for batch in batches {
            if let Some(hash) = &batch.tx_hash {
                origins.insert(hash.clone(), (SpendOrigin::Batch, batch.id.clone()));
            }
            if let Some(hash) = batch.abandon.as_ref().and_then(|a| a.tx_hash.clone()) {
                origins.insert(hash, (SpendOrigin::Abandon, batch.id.clone()));
            }
        }
        Ok(origins)
    }

    /// Records the spends of blocks `window.from..=window.to` inside `session`: each found spend
    /// is upserted (its block, origin and outputs as read now; a resolution is kept), the spends
    /// recorded in that range that the blocks no longer hold are deleted (a reorganised block's
    /// spends go with it; an adopted one is never deleted, as adoption needs a settled block),
    /// and the read mark moves to `window.to`.
    pub async fn record_block_spends_in(
        &self,
        session: &mut ClientSession,
        window: &BlockSpends,
    ) -> Result<()> {
        let hashes: Vec<String> = window.found.iter().map(|f| f.spend.hash.clone()).collect();
        self.wallet_spends()
            .delete_many(doc! {
                "block": { "$gte": window.from, "$lte": window.to },
                "_id": { "$nin": &hashes },
                "resolution.kind": { "$ne": "adopted" },
            })
            .session(&mut *session)
            .await
            .map_err(StoreError::mongo("delete spends no block holds"))?;
        let origins = self.origins_of(Some(&mut *session), &hashes).await?;
        let now = DateTime::now();
        let mut updates = Vec::with_capacity(window.found.len());
        for found in &window.found {
            let (origin, batch) = origins
                .get(&found.spend.hash)
                .map_or((SpendOrigin::Foreign, None), |(o, b)| (*o, Some(b)));
            let mut set = chain_fields(&found.spend, origin, batch)?;
            set.insert("block", found.block);
            set.insert("block_hash", &found.block_hash);
            set.insert("block_time", found.time);
            updates.push((
                doc! { "_id": &found.spend.hash },
                doc! {
                    "$set": set,
                    "$unset": { "dropped_at": "" },
                    "$setOnInsert": { "first_seen_at": now },
                },
            ));
        }
        update_many_matching(
            self,
            Some(&mut *session),
            names::WALLET_SPENDS,
            updates,
            true,
        )
        .await?;
        self.collection::<Document>(names::BLOCK_HEIGHT)
            .update_one(
                doc! { "_id": SPENDS_READ_ID },
                doc! {
                    "$set": { "block_height": window.to, "block_hash": &window.to_hash, "read_at": now },
                    "$min": { "from_height": window.from },
                },
            )
            .upsert(true)
            .session(&mut *session)
            .await
            .map_err(StoreError::mongo("record how far the wallet's spends were read"))?;
        Ok(())
    }

    /// [`Store::record_block_spends_in`] as more writes of a rewards record's transaction.
    pub fn block_spends_writer(window: BlockSpends) -> AlsoInTransaction {
        let window = std::sync::Arc::new(window);
        std::sync::Arc::new(move |store, session| {
            let window = window.clone();
            Box::pin(async move { store.record_block_spends_in(session, &window).await })
        })
    }

    /// [`Store::record_block_spends_in`] in a transaction of its own.
    pub async fn record_block_spends(&self, window: &BlockSpends) -> Result<()> {
        let (store, window) = (self.clone(), window.clone());
        self.with_transaction(move |session| {
            let (store, window) = (store.clone(), window.clone());
            Box::pin(async move { store.record_block_spends_in(session, &window).await })
        })
        .await
    }

    /// Records the wallet's foreign pending spends as the node lists them now: each is kept
    /// (a spend already read in a block stays as the block has it), and a foreign spend seen
    /// pending before that is neither listed now nor in a block is marked dropped (it stays
    /// unresolved: anyone holding it can push it again). Our own pending transactions are left
    /// to the batches that track them.
    pub async fn record_pending_spends(&self, pending: &[Spend]) -> Result<()> {
        let hashes: Vec<String> = pending.iter().map(|s| s.hash.clone()).collect();
        let origins = self.origins_of(None, &hashes).await?;
        let foreign: Vec<&Spend> = pending
            .iter()
            .filter(|s| !origins.contains_key(&s.hash))
            .collect();
        let now = DateTime::now();
        let mut updates = Vec::with_capacity(foreign.len());
        for spend in &foreign {
            let set = chain_fields(spend, SpendOrigin::Foreign, None)?;
            updates.push((
                doc! { "_id": &spend.hash, "block": null },
                doc! {
                    "$set": set,
                    "$unset": { "dropped_at": "" },
                    "$setOnInsert": { "first_seen_at": now },
                },
            ));
        }
        // A spend already in a block does not match `block: null`; its upsert would collide
        // on `_id`, so it is left out.
        let in_blocks: HashSet<String> = self
            .collection::<Document>(names::WALLET_SPENDS)
            .find(doc! { "_id": { "$in": &hashes }, "block": { "$ne": null } })
            .projection(doc! { "_id": 1 })
            .await
            .map_err(StoreError::mongo("read recorded spends"))?
            .try_collect::<Vec<Document>>()
            .await
            .map_err(StoreError::mongo("read recorded spends"))?
            .into_iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
            .collect();
        updates.retain(|(filter, _)| {
            filter
                .get_str("_id")
                .is_ok_and(|hash| !in_blocks.contains(hash))
        });
        update_many_matching(self, None, names::WALLET_SPENDS, updates, true).await?;
        self.wallet_spends()
            .update_many(
                doc! {
                    "origin": "foreign", "block": null, "dropped_at": null,
                    "_id": { "$nin": &hashes },
                },
                doc! { "$set": { "dropped_at": now, "updated_at": now } },
            )
            .await
            .map_err(StoreError::mongo("mark dropped pending spends"))?;
        Ok(())
    }

    /// How far the wallet's spends were read, if they ever were.
    pub async fn spends_read(&self) -> Result<Option<SpendsRead>> {
        self.collection::<SpendsRead>(names::BLOCK_HEIGHT)
            .find_one(doc! { "_id": SPENDS_READ_ID })
            .await
            .map_err(StoreError::mongo(
                "read how far the wallet's spends were read",
            ))
    }

    /// Recorded spends, newest first (by first sighting), at most `limit`.
    pub async fn list_wallet_spends(
        &self,
        filter: SpendFilter,
        limit: i64,
    ) -> Result<Vec<WalletSpend>> {
        self.wallet_spends()
            .find(filter.query())
            .sort(doc! { "first_seen_at": -1, "_id": -1 })
            .limit(limit)
            .await
            .map_err(StoreError::mongo("read walletSpends"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("read walletSpends"))
    }

    pub async fn wallet_spend(&self, hash: &str) -> Result<Option<WalletSpend>> {
        self.wallet_spends()
            .find_one(doc! { "_id": hash })
            .await
            .map_err(StoreError::mongo(format!("read wallet spend {hash}")))
    }

    /// Every unresolved foreign spend, oldest first.
    pub async fn unresolved_foreign_spends(&self) -> Result<Vec<WalletSpend>> {
        self.wallet_spends()
            .find(SpendFilter::Unresolved.query())
            .sort(doc! { "first_seen_at": 1, "_id": 1 })
            .await
            .map_err(StoreError::mongo("read unresolved foreign spends"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("read unresolved foreign spends"))
    }

    /// The unresolved foreign spends' count and units.
    pub async fn foreign_spends_health(&self) -> Result<ForeignSpendsHealth> {
        let unresolved = self.unresolved_foreign_spends().await?;
        Ok(ForeignSpendsHealth {
            unresolved: unresolved.len() as u64,
            units: unresolved
                .iter()
                .fold(0_i64, |sum, s| sum.saturating_add(s.units())),
        })
    }

    /// Acknowledges a foreign spend: the operator moved those coins; balances are unchanged.
    pub async fn acknowledge_spend(&self, hash: &str, reason: &str) -> Result<WalletSpend> {
        let resolution = Resolution {
            kind: ResolutionKind::Acknowledged,
            reason: reason.to_owned(),
            at: DateTime::now(),
            batch: None,
            adopted: Vec::new(),
            not_adopted: Vec::new(),
        };
        let (store, hash_owned) = (self.clone(), hash.to_owned());
        self.with_transaction(move |session| {
            let (store, hash, resolution) = (store.clone(), hash_owned.clone(), resolution.clone());
            Box::pin(async move {
                let spend = store.unresolved_spend(session, &hash).await?;
                store.resolve(session, &spend, &resolution).await
            })
        })
        .await
    }

    /// Adopts a foreign spend in a settled block: its outputs to addresses with a balance are
    /// recorded paid, exactly what the chain paid each ([`crate::spends::adoption`]), by a
    /// recovered batch that carries the chain's hash and proof block, in one transaction.
    pub async fn adopt_spend(&self, hash: &str, reason: &str) -> Result<WalletSpend> {
        let (store, hash_owned, reason) = (self.clone(), hash.to_owned(), reason.to_owned());
        self.with_transaction(move |session| {
            let (store, hash, reason) = (store.clone(), hash_owned.clone(), reason.clone());
            Box::pin(async move {
                let spend = store.unresolved_spend(session, &hash).await?;
                let settled = store
                    .block_height()
                    .find_one(doc! { "_id": crate::store::ledger::LAST_BLOCK_HEIGHT_ID })
                    .session(&mut *session)
                    .await
                    .map_err(StoreError::mongo("read blockHeight"))?
                    .map_or(-1, |h| h.block_height);
                let addresses: Vec<&String> = spend.outputs.iter().map(|r| &r.address).collect();
                let pending: BTreeMap<String, i64> = store
                    .balances()
                    .find(doc! { "address": { "$in": addresses } })
                    .session(&mut *session)
                    .await
                    .map_err(StoreError::mongo("read the payees' balances"))?
                    .stream(&mut *session)
                    .try_collect::<Vec<_>>()
                    .await
                    .map_err(StoreError::mongo("read the payees' balances"))?
                    .into_iter()
                    .map(|b| (b.address, b.pending))
                    .collect();
                let Adoption { paid, not_adopted } =
                    adoption(&spend.as_foreign(), &pending, settled)
                        .map_err(|e| StoreError::Invalid(e.to_string()))?;
                let batch = recovered_batch(&spend, &paid, &reason)?;
                store
                    .payout_batches()
                    .insert_one(&batch)
                    .session(&mut *session)
                    .await
                    .map_err(StoreError::mongo("record the recovered batch"))?;
                let now = DateTime::now();
                if !debit_pending(&store, session, &paid, DebitTo::Paid, now).await? {
                    return Err(StoreError::Conflict(format!(
                        "the payees' balances changed while {hash} was adopted; nothing was written: try again"
                    )));
                }
                let resolution = Resolution {
                    kind: ResolutionKind::Adopted,
                    reason: reason.clone(),
                    at: now,
                    batch: Some(batch.id.clone()),
                    adopted: recipients(paid),
                    not_adopted: recipients(not_adopted),
                };
                store.resolve(session, &spend, &resolution).await
            })
        })
        .await
    }

    /// The spend `hash`, if it is foreign and unresolved; else an error saying what it is.
    async fn unresolved_spend(
        &self,
        session: &mut ClientSession,
        hash: &str,
    ) -> Result<WalletSpend> {
        let spend = self
            .wallet_spends()
            .find_one(doc! { "_id": hash })
            .session(&mut *session)
            .await
            .map_err(StoreError::mongo(format!("read wallet spend {hash}")))?
            .ok_or_else(|| {
                StoreError::Invalid(format!(
                    "no spend of the wallet {hash} is recorded (see `minerpool-job spends list`)"
                ))
            })?;
        match (&spend.origin, &spend.resolution) {
            (SpendOrigin::Foreign, None) => Ok(spend),
            (SpendOrigin::Foreign, Some(done)) => Err(StoreError::Conflict(format!(
                "{hash} was already {} ({})",
                match done.kind {
                    ResolutionKind::Adopted => "adopted",
                    ResolutionKind::Acknowledged => "acknowledged",
                },
                done.reason
            ))),
            (_, _) => Err(StoreError::Invalid(format!(
                "{hash} is payout batch {}'s own transaction, not a foreign spend",
                spend.batch.as_deref().unwrap_or("?")
            ))),
        }
    }

    async fn resolve(
        &self,
        session: &mut ClientSession,
        spend: &WalletSpend,
        resolution: &Resolution,
    ) -> Result<WalletSpend> {
        let value = to_bson(resolution)?;
        self.wallet_spends()
            .find_one_and_update(
                doc! { "_id": &spend.hash, "resolution": null },
                doc! { "$set": { "resolution": value, "updated_at": resolution.at } },
            )
            .return_document(mongodb::options::ReturnDocument::After)
            .session(session)
            .await
            .map_err(StoreError::mongo(format!(
                "resolve wallet spend {}",
                spend.hash
            )))?
            .ok_or_else(|| {
                StoreError::Conflict(format!(
                    "{} was resolved by someone else meanwhile",
                    spend.hash
                ))
            })
    }
}

/// The confirmed batch an adoption records: the chain's hash and block, what it paid the
/// known payees, and why.
fn recovered_batch(
    spend: &WalletSpend,
    paid: &[(String, i64)],
    reason: &str,
) -> Result<PayoutBatch> {
    let now = DateTime::now();
    Ok(PayoutBatch {
        id: ObjectId::new().to_hex(),
        state: BatchState::Confirmed,
        kind: BatchKind::Payout,
        recipients: recipients(paid.to_vec()),
        total: paid.iter().map(|(_, units)| units).sum(),
        fee: 0,
        fee_payer: None,
        inputs: Vec::new(),
        tx_hex: None,
        tx_hash: Some(spend.hash.clone()),
        created_at: now,
        updated_at: now,
        signed_at: None,
        error: None,
        push_attempts: 0,
        abandon: None,
        proof_block: spend.block,
        generation: 0,
        last_held_check: None,
        not_held_since: None,
        recovered: Some(crate::store::payouts::Recovered {
            spend: spend.hash.clone(),
            reason: reason.to_owned(),
            at: now,
        }),
    })
}
