//! Payout batches (SPEC §5.3): amounts leave `pending` only inside the transaction that creates a
//! batch, go back only inside the transaction that fails an unsigned batch or finishes abandoning a
//! signed one, and become `paid` only inside the transaction that confirms it, so every credited
//! unit is paid at most once and never lost.
//!
//! Once a batch is signed its transaction may have left the process, and no answer from the chain
//! proves it did not reach a block: so a signed batch is never refunded on an answer. It is
//! refunded only when a transaction of our own that spends one of its inputs is in a block
//! ([`Store::finish_abandon`]). Every state change carries the job lock's [`Fence`].

use bson::{Bson, DateTime, Document, doc, oid::ObjectId};
use futures::TryStreamExt;
use mongodb::ClientSession;
use serde::{Deserialize, Serialize};

use crate::money::stored_units;
use crate::payouts::plan_batch;
use crate::store::db::{Result, Store, StoreError, update_many_matching};
use crate::store::loose::{id_text, loose_time};
use crate::store::names;
use crate::store::paging::{Before, NewestFirst, PublicPage};
use crate::store::runs::Fence;

/// Where a batch is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchState {
    /// Amounts moved out of pending; no transaction signed yet.
    Created,
    /// Signed transaction and hash stored; it may or may not have reached the chain.
    Signed,
    /// The chain accepted it; not yet in a block.
    Submitted,
    /// A transaction spending the batch's inputs back to the wallet is signed and stored; the
    /// batch is refunded once that one is in a block, or paid if its own transaction is.
    Abandoning,
    /// In a block: the amounts count as paid.
    Confirmed,
    /// Refused before any transaction was signed: the amounts went back to pending.
    Failed,
    /// Proven never to confirm (our transaction spending its inputs is in a block): refunded.
    Abandoned,
    /// Dry run: what would have been paid; no money moved.
    Simulated,
}

/// What a batch's transaction is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchKind {
    /// Pays recipients.
    #[default]
    Payout,
    /// Merges many small coins of the wallet into one output of the wallet; pays nobody.
    Consolidation,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    pub units: i64,
}

/// A wallet output a batch's transaction spends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpentInput {
    pub tx_hash: String,
    pub index: i32,
    pub units: i64,
}

/// The transaction that spends a batch's inputs back to the wallet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Abandonment {
    pub reason: String,
    pub requested_at: DateTime,
    #[serde(default)]
    pub tx_hex: Option<String>,
    #[serde(default)]
    pub tx_hash: Option<String>,
    #[serde(default)]
    pub inputs: Vec<SpentInput>,
}

/// `payoutBatches`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayoutBatch {
    #[serde(rename = "_id")]
    pub id: String,
    pub state: BatchState,
    #[serde(default)]
    pub kind: BatchKind,
    pub recipients: Vec<Recipient>,
    /// Units paid to the recipients (the fee not included).
    pub total: i64,
    /// The transaction fee, taken from `fee_payer`'s balance.
    #[serde(default)]
    pub fee: i64,
    #[serde(default)]
    pub fee_payer: Option<String>,
    #[serde(default)]
    pub inputs: Vec<SpentInput>,
    #[serde(default)]
    pub tx_hex: Option<String>,
    #[serde(default)]
    pub tx_hash: Option<String>,
    pub created_at: DateTime,
    pub updated_at: DateTime,
    #[serde(default)]
    pub signed_at: Option<DateTime>,
    /// The last error a push or check met (the batch stays where it was).
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub push_attempts: i64,
    #[serde(default)]
    pub abandon: Option<Abandonment>,
    /// The block that proved the outcome: the batch's transaction (confirmed) or the abandoning
    /// one (abandoned).
    #[serde(default)]
    pub proof_block: Option<i64>,
    /// The fence generation of the last move.
    #[serde(default)]
    pub generation: i64,
    /// When the chain was last asked whether it holds the batch's transaction, after the node
    /// answered a push "Transaction just added" (an answer it gives from a list of recent
    /// hashes, even for a transaction it dropped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_held_check: Option<DateTime>,
    /// Since when those checks found the node not holding the transaction (unset once a check
    /// finds it held). Informational: the abandon timer runs from `signed_at` regardless.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_held_since: Option<DateTime>,
    /// Set on a batch an adoption recorded: a foreign spend of the wallet (one this store did
    /// not make, found in a block) whose outputs to known payees were taken as paid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<Recovered>,
}

/// Why a confirmed batch was recorded from a foreign spend rather than paid by a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recovered {
    /// The foreign spend's transaction hash (also the batch's `tx_hash`).
    pub spend: String,
    pub reason: String,
    pub at: DateTime,
}

/// What a new batch pays, decided before it is created.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBatch {
    pub kind: BatchKind,
    pub recipients: Vec<(String, i64)>,
    pub fee: i64,
    pub fee_payer: String,
}

impl PayoutBatch {
    fn new(state: BatchState, plan: &NewBatch, generation: i64) -> PayoutBatch {
        let now = DateTime::now();
        PayoutBatch {
            id: ObjectId::new().to_hex(),
            state,
            kind: plan.kind,
            total: plan.recipients.iter().map(|(_, units)| units).sum(),
            recipients: plan
                .recipients
                .iter()
                .map(|(address, units)| Recipient {
                    address: address.clone(),
                    units: *units,
                })
                .collect(),
            fee: plan.fee,
            fee_payer: (plan.fee > 0).then(|| plan.fee_payer.clone()),
            inputs: Vec::new(),
            tx_hex: None,
            tx_hash: None,
            created_at: now,
            updated_at: now,
            signed_at: None,
            error: None,
            push_attempts: 0,
            abandon: None,
            proof_block: None,
            generation,
            last_held_check: None,
            not_held_since: None,
            recovered: None,
        }
    }

    /// Every balance movement of this batch: (address, units), the fee included.
    fn debits(&self) -> Vec<(String, i64)> {
        let mut moves: Vec<(String, i64)> = self
            .recipients
            .iter()
            .map(|r| (r.address.clone(), r.units))
            .collect();
        if let Some(payer) = self.fee_payer.as_ref().filter(|_| self.fee > 0) {
            moves.push((payer.clone(), self.fee));
        }
        moves
    }
}

/// States whose amounts are out of pending and not yet paid or refunded.
pub const IN_FLIGHT: [BatchState; 4] = [
    BatchState::Created,
    BatchState::Signed,
    BatchState::Submitted,
    BatchState::Abandoning,
];

/// States in which a transaction may be on its way to a block.
pub const SIGNED: [BatchState; 3] = [
    BatchState::Signed,
    BatchState::Submitted,
    BatchState::Abandoning,
];

pub fn state_bson(state: BatchState) -> Bson {
    bson::to_bson(&state).expect("a state serialises")
}

fn states_bson(states: &[BatchState]) -> Vec<Bson> {
    states.iter().map(|s| state_bson(*s)).collect()
}

/// What an operator watches of payouts, for `/metrics`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PayoutsHealth {
    /// Batches created, signed, submitted or abandoning.
    pub in_flight: u64,
    /// When the oldest batch still waiting for a block was signed.
    pub oldest_signed_at: Option<DateTime>,
    /// Balances the last payouts run held aside (addresses that cannot be paid).
    pub held: u64,
}

impl Store {
    /// Two indexed reads: the open batches, and the last payouts run's summary.
    pub async fn payouts_health(&self) -> Result<PayoutsHealth> {
        let open = self.open_payout_batches().await?;
        let last_run = self.recent_job_runs(Some("payouts"), 1, None).await?;
        let held = last_run
            .first()
            .and_then(|run| run.summary.get_document("details").ok())
            .and_then(|details| details.get_array("held").ok())
            .map_or(0, |held| held.len() as u64);
        Ok(PayoutsHealth {
            in_flight: open.len() as u64,
            oldest_signed_at: open.iter().filter_map(|b| b.signed_at).min(),
            held,
        })
    }

    pub fn payout_batches(&self) -> mongodb::Collection<PayoutBatch> {
        self.collection(names::PAYOUT_BATCHES)
    }

    /// Batches created, signed, submitted or abandoning, oldest first.
    pub async fn open_payout_batches(&self) -> Result<Vec<PayoutBatch>> {
        self.payout_batches()
            .find(doc! { "state": { "$in": states_bson(&IN_FLIGHT) } })
            .sort(doc! { "created_at": 1 })
            .await
            .map_err(StoreError::mongo("read open payout batches"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("read open payout batches"))
    }

    pub async fn payout_batch(&self, id: &str) -> Result<Option<PayoutBatch>> {
        self.payout_batches()
            .find_one(doc! { "_id": id })
            .await
            .map_err(StoreError::mongo(format!("read payout batch {id}")))
    }

    /// The balances the next batch would pay, without moving anything.
    pub async fn payable_balances(&self, minimum: i64, max: usize) -> Result<Vec<(String, i64)>> {
        let balances: Vec<crate::store::ledger::Balance> = self
            .balances()
            .find(doc! { "pending": { "$gte": minimum.max(1) } })
            .sort(doc! { "pending": -1, "address": 1 })
            .limit(max as i64)
            .await
            .map_err(StoreError::mongo("read payable balances"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("read payable balances"))?;
        Ok(plan_batch(
            &balances
                .into_iter()
                .map(|b| (b.address, b.pending))
                .collect::<Vec<_>>(),
            minimum,
            max,
        ))
    }

    /// The pending units of one address (0 when it has no balance).
    pub async fn pending_of(&self, address: &str) -> Result<i64> {
        Ok(self
            .balances()
            .find_one(doc! { "address": address })
            .await
            .map_err(StoreError::mongo(format!("read the balance of {address}")))?
            .map_or(0, |b| b.pending))
    }

    /// Wallet outputs among `candidates` (tx hash, index) that a batch of ours has spent or
    /// holds: they are never selected again, whatever a (possibly lagging) chain lists.
    pub async fn inputs_used_by_batches(
        &self,
        candidates: &[(String, u8)],
    ) -> Result<std::collections::HashSet<(String, u8)>> {
        let hashes: Vec<&str> = candidates.iter().map(|(h, _)| h.as_str()).collect();
        let batches: Vec<PayoutBatch> = self
            .payout_batches()
            .find(doc! { "$or": [
                { "inputs.tx_hash": { "$in": &hashes } },
                { "abandon.inputs.tx_hash": { "$in": &hashes } },
            ] })
            .await
            .map_err(StoreError::mongo("read the inputs of payout batches"))?
            .try_collect()
            .await
            .map_err(StoreError::mongo("read the inputs of payout batches"))?;
        Ok(batches
            .iter()
            .flat_map(|b| {
                b.inputs
                    .iter()
                    .chain(b.abandon.iter().flat_map(|a| a.inputs.iter()))
            })
            .filter_map(|i| Some((i.tx_hash.clone(), u8::try_from(i.index).ok()?)))
            .filter(|used| candidates.contains(used))
            .collect())
    }

    /// Creates a batch for `plan`, moving its amounts (and the fee) out of pending, in one fenced
    /// transaction. Each debit is conditional on the balance still covering it; if one does not
    /// (the balances changed since the plan), nothing is written and `None` is returned.
    pub async fn create_payout_batch(
        &self,
        fence: &Fence,
        plan: &NewBatch,
    ) -> Result<Option<PayoutBatch>> {
        let store = self.clone();
        let fence = fence.clone();
        let plan = plan.clone();
        self.with_transaction(move |session| {
            let (store, fence, plan) = (store.clone(), fence.clone(), plan.clone());
            Box::pin(async move {
                store.check_fence(session, &fence).await?;
                let batch = PayoutBatch::new(BatchState::Created, &plan, fence.generation);
                let now = batch.created_at;
                let debits = batch.debits();
                if !debit_pending(&store, session, &debits, DebitTo::InFlight, now).await? {
                    return Err(StoreError::Conflict(
                        "balances changed while the batch was planned; nothing was written".into(),
                    ));
                }
                store
                    .payout_batches()
                    .insert_one(&batch)
                    .session(&mut *session)
                    .await
                    .map_err(StoreError::mongo("record the payout batch"))?;
                Ok(batch)
            })
        })
        .await
        .map(Some)
        .or_else(|e| match e {
            StoreError::Conflict(reason) => {
                tracing::warn!(%reason, "payout batch not created");
                Ok(None)
            }
            other => Err(other),
        })
    }

    /// Records what a dry run would pay; balances are not touched.
    pub async fn simulate_payout_batch(
        &self,
        minimum: i64,
        max: usize,
    ) -> Result<Option<PayoutBatch>> {
        let due = self.payable_balances(minimum, max).await?;
        if due.is_empty() {
            return Ok(None);
        }
        let plan = NewBatch {
            kind: BatchKind::Payout,
            recipients: due,
            fee: 0,
            fee_payer: String::new(),
        };
        let batch = PayoutBatch::new(BatchState::Simulated, &plan, 0);
        self.payout_batches()
            .insert_one(&batch)
            .await
            .map_err(StoreError::mongo("record the simulated batch"))?;
        Ok(Some(batch))
    }

    /// Moves a batch from `from` to `to` with extra fields, inside a fenced transaction;
    /// `false` if it was not in `from`.
    async fn move_batch(
        &self,
        session: &mut ClientSession,
        fence: &Fence,
        id: &str,
        from: &[BatchState],
        to: BatchState,
        mut set: Document,
    ) -> Result<bool> {
        set.insert("state", state_bson(to));
        set.insert("updated_at", DateTime::now());
        set.insert("generation", fence.generation);
        let result = self
            .collection::<Document>(names::PAYOUT_BATCHES)
            .update_one(
                doc! { "_id": id, "state": { "$in": states_bson(from) } },
                doc! { "$set": set },
            )
            .session(session)
            .await
            .map_err(StoreError::mongo(format!(
                "move payout batch {id} to {to:?}"
            )))?;
        Ok(result.modified_count == 1)
    }

    /// A fenced state change with no money moving.
    async fn fenced_move(
        &self,
        fence: &Fence,
        id: &str,
        from: &'static [BatchState],
        to: BatchState,
        set: Document,
    ) -> Result<bool> {
        let (store, fence, id) = (self.clone(), fence.clone(), id.to_owned());
        self.with_transaction(move |session| {
            let (store, fence, id, set) = (store.clone(), fence.clone(), id.clone(), set.clone());
            Box::pin(async move {
                store.check_fence(session, &fence).await?;
                store.move_batch(session, &fence, &id, from, to, set).await
            })
        })
        .await
    }

    /// Stores the signed transaction and the inputs it spends, before anything is sent. `false`
    /// if the batch was no longer `created` (another run signed it): then nothing may be sent.
    pub async fn record_signed_batch(
        &self,
        fence: &Fence,
        id: &str,
        tx_hex: &str,
        tx_hash: &str,
        inputs: &[SpentInput],
    ) -> Result<bool> {
        let inputs = bson::to_bson(inputs).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.fenced_move(
            fence,
            id,
            &[BatchState::Created],
            BatchState::Signed,
            doc! { "tx_hex": tx_hex, "tx_hash": tx_hash, "inputs": inputs, "signed_at": DateTime::now() },
        )
        .await
    }

    /// The chain accepted the transaction (or holds it).
    pub async fn record_submitted_batch(&self, fence: &Fence, id: &str) -> Result<bool> {
        self.fenced_move(
            fence,
            id,
            &[BatchState::Signed],
            BatchState::Submitted,
            doc! {},
        )
        .await
    }

    /// Notes an unclear push or check on the batch; its state does not change.
    pub async fn record_batch_attempt(&self, fence: &Fence, id: &str, error: &str) -> Result<()> {
        let (store, fence, id, error) =
            (self.clone(), fence.clone(), id.to_owned(), error.to_owned());
        self.with_transaction(move |session| {
            let (store, fence, id, error) =
                (store.clone(), fence.clone(), id.clone(), error.clone());
            Box::pin(async move {
                store.check_fence(session, &fence).await?;
                store
                    .payout_batches()
                    .update_one(
                        doc! { "_id": &id },
                        doc! {
                            "$set": { "error": &error, "updated_at": DateTime::now() },
                            "$inc": { "push_attempts": 1_i64 },
                        },
                    )
                    .session(session)
                    .await
                    .map_err(StoreError::mongo(format!("note an attempt on batch {id}")))?;
                Ok(())
            })
        })
        .await
    }

    /// Records a check of whether the node holds batch `id`'s transaction (see
    /// [`PayoutBatch::not_held_since`]); returns since when it has not been held, if it is not.
    /// Fenced like every batch write, though it moves no money.
    pub async fn record_held_check(
        &self,
        fence: &Fence,
        id: &str,
        held: bool,
    ) -> Result<Option<DateTime>> {
        let (store, fence, id) = (self.clone(), fence.clone(), id.to_owned());
        self.with_transaction(move |session| {
            let (store, fence, id) = (store.clone(), fence.clone(), id.clone());
            Box::pin(async move {
                store.check_fence(session, &fence).await?;
                let now = DateTime::now();
                let update = if held {
                    doc! { "$set": { "last_held_check": now }, "$unset": { "not_held_since": "" } }
                } else {
                    doc! { "$set": { "last_held_check": now }, "$min": { "not_held_since": now } }
                };
                let batch = store
                    .payout_batches()
                    .find_one_and_update(doc! { "_id": &id }, update)
                    .return_document(mongodb::options::ReturnDocument::After)
                    .session(session)
                    .await
                    .map_err(StoreError::mongo(format!("note a check on batch {id}")))?
                    .ok_or_else(|| StoreError::Invalid(format!("no payout batch {id}")))?;
                Ok(batch.not_held_since)
            })
        })
        .await
    }

    /// Asks for a signed batch to be abandoned. A batch still `created` (nothing signed) is
    /// refunded at once. Returns the batch as it now is.
    pub async fn request_abandon(
        &self,
        fence: &Fence,
        id: &str,
        reason: &str,
    ) -> Result<PayoutBatch> {
        let batch = self
            .payout_batch(id)
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("there is no payout batch {id}")))?;
        match batch.state {
            BatchState::Created => {
                self.fail_unsigned_batch(fence, &batch, reason).await?;
            }
            BatchState::Signed | BatchState::Submitted if batch.abandon.is_none() => {
                let abandon = bson::to_bson(&Abandonment {
                    reason: reason.to_owned(),
                    requested_at: DateTime::now(),
                    tx_hex: None,
                    tx_hash: None,
                    inputs: Vec::new(),
                })
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
                self.fenced_move(
                    fence,
                    id,
                    &[BatchState::Signed, BatchState::Submitted],
                    batch.state,
                    doc! { "abandon": abandon },
                )
                .await?;
            }
            BatchState::Signed | BatchState::Submitted | BatchState::Abandoning => {}
            done => {
                return Err(StoreError::Invalid(format!(
                    "payout batch {id} is {done:?}: there is nothing to abandon"
                )));
            }
        }
        self.payout_batch(id)
            .await?
            .ok_or_else(|| StoreError::Invalid(format!("payout batch {id} vanished")))
    }

    /// Stores the signed transaction that spends the batch's inputs back to the wallet, before it
    /// is sent.
    pub async fn record_abandoning_batch(
        &self,
        fence: &Fence,
        batch: &PayoutBatch,
        abandon: &Abandonment,
    ) -> Result<bool> {
        let abandon = bson::to_bson(abandon).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.fenced_move(
            fence,
            &batch.id,
            &[BatchState::Signed, BatchState::Submitted],
            BatchState::Abandoning,
            doc! { "abandon": abandon },
        )
        .await
    }

    /// A batch that was never signed cannot be on chain: its amounts go back to pending.
    pub async fn fail_unsigned_batch(
        &self,
        fence: &Fence,
        batch: &PayoutBatch,
        error: &str,
    ) -> Result<bool> {
        self.settle(
            fence,
            batch,
            &[BatchState::Created],
            BatchState::Failed,
            "pending",
            doc! { "error": error },
        )
        .await
    }

    /// The batch's own transaction is in block `block`: the amounts count as paid.
    pub async fn confirm_batch(
        &self,
        fence: &Fence,
        batch: &PayoutBatch,
        block: i64,
    ) -> Result<bool> {
        self.settle(
            fence,
            batch,
            &SIGNED,
            BatchState::Confirmed,
            "paid",
            doc! { "proof_block": block },
        )
        .await
    }

    /// Our transaction spending the batch's inputs is in block `block`, so the batch's own can
    /// never confirm: the amounts go back to pending.
    pub async fn finish_abandon(
        &self,
        fence: &Fence,
        batch: &PayoutBatch,
        block: i64,
    ) -> Result<bool> {
        self.settle(
            fence,
            batch,
            &[BatchState::Abandoning],
            BatchState::Abandoned,
            "pending",
            doc! { "proof_block": block },
        )
        .await
    }

    /// Moves a batch to a final state and its amounts (the fee with them) into `field` — `paid`
    /// for recipients when confirmed, `pending` when refunded — in one fenced transaction. A
    /// confirmed fee is spent, so it moves nowhere.
    async fn settle(
        &self,
        fence: &Fence,
        batch: &PayoutBatch,
        from: &'static [BatchState],
        to: BatchState,
        field: &'static str,
        set: Document,
    ) -> Result<bool> {
        let (store, fence, batch) = (self.clone(), fence.clone(), batch.clone());
        self.with_transaction(move |session| {
            let (store, fence, batch, set) =
                (store.clone(), fence.clone(), batch.clone(), set.clone());
            Box::pin(async move {
                store.check_fence(session, &fence).await?;
                if !store
                    .move_batch(session, &fence, &batch.id, from, to, set)
                    .await?
                {
                    return Ok(false);
                }
                let now = DateTime::now();
                let moves = if field == "paid" {
                    batch
                        .recipients
                        .iter()
                        .map(|r| (r.address.clone(), r.units))
                        .collect()
                } else {
                    batch.debits()
                };
                let updates = moves
                    .into_iter()
                    .map(|(address, units)| {
                        (
                            doc! { "address": address },
                            doc! { "$inc": { field: units }, "$set": { "updated_at": now } },
                        )
                    })
                    .collect();
                update_many_matching(&store, Some(&mut *session), names::BALANCES, updates, false)
                    .await?;
                Ok(true)
            })
        })
        .await
    }
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

impl Store {
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
                            .filter_map(|r| stored_units(r.get("units")))
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
                total: stored_units(batch.get("total")).unwrap_or(0),
                fee: stored_units(batch.get("fee")).unwrap_or(0),
                tx_hash: batch.get_str("tx_hash").ok().map(str::to_owned),
                created_at: loose_time(batch.get("created_at")),
            })
            .collect())
    }
}

impl PublicPage {
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

/// Where units taken out of `pending` go: they leave the balance (a batch in flight), or are
/// counted as `paid` at once (a payment the chain already holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DebitTo {
    InFlight,
    Paid,
}

/// Takes each address's units out of its `pending`, only if the balance still covers them, in
/// `session`'s transaction; whether every one did. A caller aborts its transaction on `false`,
/// so no balance is ever debited below zero or only in part.
pub(crate) async fn debit_pending(
    store: &Store,
    session: &mut ClientSession,
    debits: &[(String, i64)],
    to: DebitTo,
    now: DateTime,
) -> Result<bool> {
    let moves: Vec<(Document, Document)> = debits
        .iter()
        .map(|(address, units)| {
            let inc = match to {
                DebitTo::InFlight => doc! { "pending": -units },
                DebitTo::Paid => doc! { "pending": -units, "paid": units },
            };
            (
                doc! { "address": address, "pending": { "$gte": units } },
                doc! { "$inc": inc, "$set": { "updated_at": now } },
            )
        })
        .collect();
    let wanted = moves.len() as u64;
    let matched = update_many_matching(store, Some(session), names::BALANCES, moves, false).await?;
    Ok(matched == wanted)
}
