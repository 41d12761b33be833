//! Payout batches (SPEC §5.3): amounts leave `pending` only inside the transaction that creates a
//! batch, go back only inside the transaction that fails it, and become `paid` only inside the
//! transaction that confirms it, so every credited unit is paid at most once and never lost.

use bson::{DateTime, Document, doc, oid::ObjectId};
use futures::TryStreamExt;
use mongodb::ClientSession;
use serde::{Deserialize, Serialize};

use super::documents::names;
use super::{Result, Store, StoreError, update_many_by_key};
use crate::payouts::plan_batch;

/// Where a batch is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchState {
    /// Amounts moved out of pending; no transaction yet.
    Created,
    /// Signed transaction and hash stored; it may or may not have reached the chain.
    Signed,
    /// The chain accepted it; not yet in a block.
    Submitted,
    /// In a block: the amounts count as paid.
    Confirmed,
    /// Refused by the chain: the amounts went back to pending.
    Failed,
    /// Dry run: what would have been paid; no money moved.
    Simulated,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    pub units: i64,
}

/// `payoutBatches`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayoutBatch {
    #[serde(rename = "_id")]
    pub id: String,
    pub state: BatchState,
    pub recipients: Vec<Recipient>,
    pub total: i64,
    #[serde(default)]
    pub tx_hex: Option<String>,
    #[serde(default)]
    pub tx_hash: Option<String>,
    pub created_at: DateTime,
    pub updated_at: DateTime,
    #[serde(default)]
    pub error: Option<String>,
}

impl PayoutBatch {
    /// A new batch paying `due` (address, units).
    fn new(state: BatchState, due: &[(String, i64)]) -> PayoutBatch {
        let now = DateTime::now();
        PayoutBatch {
            id: ObjectId::new().to_hex(),
            state,
            total: due.iter().map(|(_, units)| units).sum(),
            recipients: due
                .iter()
                .map(|(address, units)| Recipient {
                    address: address.clone(),
                    units: *units,
                })
                .collect(),
            tx_hex: None,
            tx_hash: None,
            created_at: now,
            updated_at: now,
            error: None,
        }
    }
}

/// States whose amounts are out of pending and not yet paid.
pub const IN_FLIGHT: [BatchState; 3] = [
    BatchState::Created,
    BatchState::Signed,
    BatchState::Submitted,
];

fn state_bson(state: BatchState) -> bson::Bson {
    bson::to_bson(&state).expect("a state serialises")
}

impl Store {
    pub fn payout_batches(&self) -> mongodb::Collection<PayoutBatch> {
        self.collection(names::PAYOUT_BATCHES)
    }

    /// Batches created, signed or submitted by earlier runs, oldest first.
    pub async fn open_payout_batches(&self) -> Result<Vec<PayoutBatch>> {
        let states: Vec<bson::Bson> = IN_FLIGHT.iter().map(|s| state_bson(*s)).collect();
        self.payout_batches()
            .find(doc! { "state": { "$in": states } })
            .sort(doc! { "created_at": 1 })
            .await
            .map_err(StoreError::mongo("read open payout batches"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("read open payout batches"))
    }

    /// The balances the next batch would pay, without moving anything.
    pub async fn payable_balances(&self, minimum: i64, max: usize) -> Result<Vec<(String, i64)>> {
        self.payable(None, minimum, max).await
    }

    async fn payable(
        &self,
        session: Option<&mut ClientSession>,
        minimum: i64,
        max: usize,
    ) -> Result<Vec<(String, i64)>> {
        let balances_collection = self.balances();
        let find = balances_collection
            .find(doc! { "pending": { "$gte": minimum.max(1) } })
            .sort(doc! { "pending": -1, "address": 1 })
            .limit(max as i64);
        let balances: Vec<super::documents::Balance> = match session {
            Some(session) => find
                .session(&mut *session)
                .await
                .map_err(StoreError::mongo("read payable balances"))?
                .stream(session)
                .try_collect()
                .await
                .map_err(StoreError::mongo("read payable balances"))?,
            None => find
                .await
                .map_err(StoreError::mongo("read payable balances"))?
                .try_collect()
                .await
                .map_err(StoreError::mongo("read payable balances"))?,
        };
        Ok(plan_batch(
            &balances
                .into_iter()
                .map(|b| (b.address, b.pending))
                .collect::<Vec<_>>(),
            minimum,
            max,
        ))
    }

    /// Creates a batch of the largest balances of at least `minimum`, moving their amounts out of
    /// pending, in one transaction. `None` when nobody is due.
    pub async fn create_payout_batch(
        &self,
        minimum: i64,
        max: usize,
    ) -> Result<Option<PayoutBatch>> {
        let store = self.clone();
        self.with_transaction(move |session| {
            let store = store.clone();
            Box::pin(async move {
                let due = store.payable(Some(&mut *session), minimum, max).await?;
                if due.is_empty() {
                    return Ok(None);
                }
                let batch = PayoutBatch::new(BatchState::Created, &due);
                let now = batch.created_at;
                let moves = due
                    .iter()
                    .map(|(address, units)| {
                        (
                            address.clone(),
                            doc! { "$inc": { "pending": -units }, "$set": { "updated_at": now } },
                        )
                    })
                    .collect();
                update_many_by_key(
                    &store,
                    Some(&mut *session),
                    names::BALANCES,
                    "address",
                    moves,
                    false,
                )
                .await?;
                store
                    .payout_batches()
                    .insert_one(&batch)
                    .session(&mut *session)
                    .await
                    .map_err(StoreError::mongo("record the payout batch"))?;
                Ok(Some(batch))
            })
        })
        .await
    }

    /// Records what a dry run would pay; balances are not touched.
    pub async fn simulate_payout_batch(
        &self,
        minimum: i64,
        max: usize,
    ) -> Result<Option<PayoutBatch>> {
        let due = self.payable(None, minimum, max).await?;
        if due.is_empty() {
            return Ok(None);
        }
        let batch = PayoutBatch::new(BatchState::Simulated, &due);
        self.payout_batches()
            .insert_one(&batch)
            .await
            .map_err(StoreError::mongo("record the simulated batch"))?;
        Ok(Some(batch))
    }

    /// Moves a batch from `from` to `to`, with extra fields; `false` if it was not in `from`.
    async fn move_batch(
        &self,
        session: Option<&mut ClientSession>,
        id: &str,
        from: &[BatchState],
        to: BatchState,
        mut set: Document,
    ) -> Result<bool> {
        set.insert("state", state_bson(to));
        set.insert("updated_at", DateTime::now());
        let from: Vec<bson::Bson> = from.iter().map(|s| state_bson(*s)).collect();
        let batches = self.collection::<Document>(names::PAYOUT_BATCHES);
        let update = batches.update_one(
            doc! { "_id": id, "state": { "$in": from } },
            doc! { "$set": set },
        );
        let result = match session {
            Some(session) => update.session(session).await,
            None => update.await,
        }
        .map_err(StoreError::mongo(format!(
            "move payout batch {id} to {to:?}"
        )))?;
        Ok(result.modified_count == 1)
    }

    /// Stores the signed transaction before anything is sent.
    pub async fn record_signed_batch(&self, id: &str, tx_hex: &str, tx_hash: &str) -> Result<bool> {
        self.move_batch(
            None,
            id,
            &[BatchState::Created],
            BatchState::Signed,
            doc! { "tx_hex": tx_hex, "tx_hash": tx_hash },
        )
        .await
    }

    /// The chain accepted the transaction.
    pub async fn record_submitted_batch(&self, id: &str) -> Result<bool> {
        self.move_batch(
            None,
            id,
            &[BatchState::Signed],
            BatchState::Submitted,
            doc! {},
        )
        .await
    }

    /// The chain refused the transaction for good: the amounts go back to pending, in one
    /// transaction with the state change (so a re-run cannot refund twice).
    pub async fn fail_and_refund_batch(&self, batch: &PayoutBatch, error: &str) -> Result<bool> {
        self.settle(batch, BatchState::Failed, "pending", Some(error))
            .await
    }

    /// The transaction is in a block: the amounts count as paid.
    pub async fn confirm_batch(&self, batch: &PayoutBatch) -> Result<bool> {
        self.settle(batch, BatchState::Confirmed, "paid", None)
            .await
    }

    async fn settle(
        &self,
        batch: &PayoutBatch,
        to: BatchState,
        field: &'static str,
        error: Option<&str>,
    ) -> Result<bool> {
        let store = self.clone();
        let batch = batch.clone();
        let error = error.map(str::to_owned);
        self.with_transaction(move |session| {
            let store = store.clone();
            let batch = batch.clone();
            let error = error.clone();
            Box::pin(async move {
                let set = match &error {
                    Some(e) => doc! { "error": e },
                    None => doc! {},
                };
                if !store
                    .move_batch(Some(&mut *session), &batch.id, &IN_FLIGHT, to, set)
                    .await?
                {
                    return Ok(false);
                }
                let now = DateTime::now();
                let moves = batch
                    .recipients
                    .iter()
                    .map(|r| {
                        (
                            r.address.clone(),
                            doc! { "$inc": { field: r.units }, "$set": { "updated_at": now } },
                        )
                    })
                    .collect();
                update_many_by_key(
                    &store,
                    Some(&mut *session),
                    names::BALANCES,
                    "address",
                    moves,
                    false,
                )
                .await?;
                Ok(true)
            })
        })
        .await
    }
}
