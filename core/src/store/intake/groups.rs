//! Group commit of TASKs and PINGs: what arrives while one write is in flight is written together
//! in the next, so the database cost of a message shrinks as load grows, while each client still
//! gets its reply only once the write carrying its message is committed.
//!
//! A group has exactly the effect of its messages processed one at a time, in arrival order
//! ([`plan_group`] is that rule, in `plan.rs`): a (`validator_wallet`, `val_id`) already accepted, or repeated
//! inside the group, scores once; a pool's increments sum and cap at 100 as sequential TASKs
//! would (increments are positive, so capping the sum equals capping each step). The receipts,
//! the validators' activity, the PINGs and the pools' scores commit in one transaction: a failed
//! group leaves no receipt that would swallow a client's retry.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bson::{Bson, DateTime, Document, doc};
use futures::TryStreamExt;
use mongodb::options::{InsertOneModel, UpdateManyModel, UpdateOneModel, WriteModel};
use mongodb::{ClientSession, Namespace};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::faults::crash_point;
use crate::scoring::pool_score_after_task_expr;
use crate::store::db::{Result, Store, StoreError};
use crate::store::intake::plan::{
    Activity, Effect, GroupPlan, Nonce, Proof, Recorded, Stored, nonce_id, plan_group,
};
use crate::store::intake::{TaskWrites, failed_model, receipt_id};
use crate::store::names;

pub const GROUP_BEFORE_COMMIT: &str = "group:before-commit";

/// Writes groups; cheap to clone. One writer task per process: a group is written while the
/// next one gathers.
#[derive(Debug, Clone)]
pub struct ActivityGroups {
    sender: mpsc::Sender<Pending>,
    totals: Arc<Totals>,
    /// Raised by [`ActivityGroups::close`]: the writer takes nothing new, writes what it holds,
    /// and ends.
    closing: Arc<watch::Sender<bool>>,
    writer: Arc<Mutex<Option<JoinHandle<()>>>>,
}

/// What the writer did since it started, for `/metrics`.
#[derive(Debug, Default)]
struct Totals {
    committed: AtomicU64,
    messages: AtomicU64,
    failed: AtomicU64,
}

/// Group writes committed and failed, and the messages the committed ones carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GroupTotals {
    pub committed: u64,
    pub messages: u64,
    pub failed: u64,
}

struct Pending {
    activity: Activity,
    reply: oneshot::Sender<Result<Recorded>>,
}

impl ActivityGroups {
    /// Starts the writer. `max_group` bounds a group; at most twice that many messages wait
    /// beyond the one being written (senders past that wait their turn).
    pub fn start(store: Store, writes: TaskWrites, max_group: usize) -> ActivityGroups {
        let max_group = max_group.max(1);
        let (sender, receiver) = mpsc::channel(2 * max_group);
        let totals = Arc::new(Totals::default());
        let (closing, closed) = watch::channel(false);
        let writer = tokio::spawn(write_groups(
            store,
            writes,
            receiver,
            closed,
            max_group,
            totals.clone(),
        ));
        ActivityGroups {
            sender,
            totals,
            closing: Arc::new(closing),
            writer: Arc::new(Mutex::new(Some(writer))),
        }
    }

    /// Stops taking messages (a message sent from now on is answered with an error at once),
    /// writes and answers every message already queued, and waits for the writer to end, for at
    /// most `timeout`. Returns whether it ended; if not, its group is still in flight and is lost
    /// with the process (uncommitted: its clients' retries score).
    pub async fn close(&self, timeout: std::time::Duration) -> bool {
        let _ = self.closing.send(true);
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        match writer {
            Some(writer) => tokio::time::timeout(timeout, writer).await.is_ok(),
            None => true,
        }
    }

    /// What the writer did so far.
    pub fn totals(&self) -> GroupTotals {
        GroupTotals {
            committed: self.totals.committed.load(Ordering::Relaxed),
            messages: self.totals.messages.load(Ordering::Relaxed),
            failed: self.totals.failed.load(Ordering::Relaxed),
        }
    }

    /// Queues `activity` for the next group and waits until that group is committed or failed.
    pub async fn record(&self, activity: Activity) -> Result<Recorded> {
        let (reply, replied) = oneshot::channel();
        self.sender
            .send(Pending { activity, reply })
            .await
            .map_err(|_| writer_gone())?;
        replied.await.map_err(|_| writer_gone())?
    }
}

fn writer_gone() -> StoreError {
    StoreError::Invalid("the group writer has stopped".into())
}

/// The writer: takes whatever has queued up (a lone message is written at once), writes it as
/// one group, answers every message in it, and repeats.
async fn write_groups(
    store: Store,
    writes: TaskWrites,
    mut receiver: mpsc::Receiver<Pending>,
    mut closed: watch::Receiver<bool>,
    max_group: usize,
    totals: Arc<Totals>,
) {
    let mut group = Vec::with_capacity(max_group);
    let mut closing = false;
    loop {
        let received = tokio::select! {
            biased;
            _ = closed.wait_for(|closed| *closed), if !closing => {
                // What is queued is still received (and written) below; new sends fail.
                receiver.close();
                closing = true;
                continue;
            }
            received = receiver.recv_many(&mut group, max_group) => received,
        };
        if received == 0 {
            if closing {
                tracing::info!(
                    "group writer closed: every queued message was written and answered"
                );
            }
            return;
        }
        let messages: Vec<Activity> = group.iter().map(|p| p.activity.clone()).collect();
        match store.write_group(&messages, writes).await {
            Ok(outcomes) => {
                totals.committed.fetch_add(1, Ordering::Relaxed);
                totals
                    .messages
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                for (pending, outcome) in group.drain(..).zip(outcomes) {
                    let _ = pending.reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                totals.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(messages = group.len(), error = %error, "group write failed; every message in it is answered with an error");
                let error = Arc::new(error);
                for pending in group.drain(..) {
                    let _ = pending.reply.send(Err(StoreError::Group(error.clone())));
                }
            }
        }
    }
}

impl Store {
    /// Writes one group in one transaction and returns each message's outcome. What the plan
    /// depends on (receipts, nonces, validators) is read first, by `_id` or the unique address
    /// index; a receipt or nonce that appears meanwhile (another node's commit, or a receipt from
    /// before receipt ids existed) stops the write at its duplicate key, and the group is planned
    /// and written again with it counted as taken.
    pub async fn write_group(
        &self,
        messages: &[Activity],
        writes: TaskWrites,
    ) -> Result<Vec<Recorded>> {
        let found_taken = Arc::new(Mutex::new(Stored::default()));
        loop {
            let store = self.clone();
            let messages_for_body = messages.to_vec();
            let found = found_taken.clone();
            let attempt = self
                .with_short_transaction(move |session| {
                    let (store, messages, found) =
                        (store.clone(), messages_for_body.clone(), found.clone());
                    Box::pin(async move {
                        let taken_nonces: Vec<String> = {
                            let found = found.lock().expect("not poisoned");
                            found.nonces.keys().cloned().collect()
                        };
                        let (mut stored, validators) =
                            store.read_stored(session, &messages, taken_nonces).await?;
                        {
                            let found = found.lock().expect("not poisoned");
                            stored.receipts.extend(found.receipts.iter().cloned());
                            for id in found.nonces.keys() {
                                stored.nonces.entry(id.clone()).or_insert(None);
                            }
                        }
                        let mut plan = plan_group(&messages, &stored);
                        plan.active_validators = to_mark(&validators, &plan);
                        let written = match writes {
                            TaskWrites::ClientBulkWrite => {
                                store.write_plan_in_one_command(session, &plan).await
                            }
                            TaskWrites::Separate => {
                                store.write_plan_per_collection(session, &plan).await
                            }
                        };
                        match written {
                            Err(GroupWriteError::ReceiptTaken(index)) => {
                                let id = plan.receipt_ids()[index].clone();
                                found.lock().expect("not poisoned").receipts.insert(id);
                                return Err(StoreError::Conflict(MARKER_TAKEN.into()));
                            }
                            Err(GroupWriteError::NonceTaken(index)) => {
                                let id = plan.nonces[index].0.clone();
                                found.lock().expect("not poisoned").nonces.insert(id, None);
                                return Err(StoreError::Conflict(MARKER_TAKEN.into()));
                            }
                            other => other.map_err(GroupWriteError::into_store)?,
                        }
                        crash_point(GROUP_BEFORE_COMMIT);
                        Ok(plan.outcomes)
                    })
                })
                .await;
            match attempt {
                Err(StoreError::Conflict(message)) if message == MARKER_TAKEN => continue,
                other => return other,
            }
        }
    }

    /// Whether a signed message's nonce was accepted before, for a message that will not be
    /// written (refused by the checks after the nonce's, SPEC §4.5): the nonce check comes
    /// first, so a reused nonce is refused as such whatever else is wrong.
    pub async fn nonce_status(&self, validator: &str, nonce: &str, digest: &str) -> Result<Nonce> {
        let stored = self
            .collection::<Document>(names::SIGNED_NONCES)
            .find_one(doc! { "_id": nonce_id(validator, nonce) })
            .projection(doc! { "digest": 1 })
            .await
            .map_err(StoreError::mongo("read the nonce"))?;
        Ok(match stored {
            None => Nonce::Fresh,
            Some(stored) if stored.get_str("digest") == Ok(digest) => Nonce::Resend,
            Some(_) => Nonce::Used,
        })
    }

    /// Lets a validator that signs send unsigned messages again (an admin's decision, for a
    /// validator that must go back to unsigned software): its next valid signed message
    /// records it as signing again. Returns whether it was recorded as signing.
    pub async fn allow_unsigned(&self, validator: &str, now: DateTime) -> Result<bool> {
        let updated = self
            .collection::<Document>(names::VALIDATORS)
            .update_one(
                doc! { "wallet_address": validator, "signed_since": { "$exists": true } },
                doc! { "$unset": { "signed_since": "" }, "$set": { "unsigned_allowed_at": now } },
            )
            .await
            .map_err(StoreError::mongo("allow the validator's unsigned messages"))?;
        Ok(updated.modified_count == 1)
    }

    /// What the group's plan depends on: its stored receipts, the stored digests of the nonces
    /// in `taken_nonces`, and the documents of the validators whose proof or activity it checks
    /// (with the validators that sign). Nonces are fresh nearly always, so they are not read
    /// first: a nonce already stored stops the write at its duplicate key, and the next attempt
    /// reads it (a resend of the same bytes, or a reuse).
    async fn read_stored(
        &self,
        session: &mut ClientSession,
        messages: &[Activity],
        taken_nonces: Vec<String>,
    ) -> Result<(Stored, Vec<Document>)> {
        let mut receipt_ids = Vec::new();
        let mut named: Vec<&str> = Vec::new();
        let mut ids: HashMap<&str, &Bson> = HashMap::new();
        for message in messages {
            if let Effect::Task { val_id, .. } = &message.effect {
                receipt_ids.push(receipt_id(&message.validator, val_id));
            }
            if matches!(message.effect, Effect::Task { .. }) || message.proof != Proof::Legacy {
                named.push(&message.validator);
                if let Some(id) = &message.validator_id {
                    ids.insert(&message.validator, id);
                }
            }
        }
        let mut stored = Stored::default();
        if !receipt_ids.is_empty() {
            stored.receipts = self
                .find_in_transaction(
                    session,
                    names::TASK_RECEIPTS,
                    doc! { "_id": { "$in": receipt_ids } },
                    doc! { "_id": 1 },
                    "read the group's stored TASK receipts",
                )
                .await?
                .iter()
                .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
                .collect();
        }
        if !taken_nonces.is_empty() {
            stored.nonces = self
                .find_in_transaction(
                    session,
                    names::SIGNED_NONCES,
                    doc! { "_id": { "$in": taken_nonces } },
                    doc! { "_id": 1, "digest": 1 },
                    "read the group's used nonces",
                )
                .await?
                .iter()
                .filter_map(|d| {
                    let id = d.get_str("_id").ok()?.to_owned();
                    Some((id, d.get_str("digest").ok().map(str::to_owned)))
                })
                .collect();
        }
        named.sort_unstable();
        named.dedup();
        let validators = self.read_named_validators(session, &named, &ids).await?;
        stored.signing = validators
            .iter()
            .filter(|v| matches!(v.get("signed_since"), Some(Bson::DateTime(_))))
            .filter_map(|v| v.get_str("wallet_address").ok().map(str::to_owned))
            .collect();
        Ok((stored, validators))
    }

    /// The documents of the `named` validators. Those with a known `_id` are read by it; the
    /// rest (and any whose `_id` no longer names them) by address.
    async fn read_named_validators(
        &self,
        session: &mut ClientSession,
        named: &[&str],
        ids: &HashMap<&str, &Bson>,
    ) -> Result<Vec<Document>> {
        if named.is_empty() {
            return Ok(Vec::new());
        }
        let by_id: Vec<&Bson> = named.iter().filter_map(|v| ids.get(v).copied()).collect();
        let mut found = if by_id.is_empty() {
            Vec::new()
        } else {
            self.read_validators(session, doc! { "_id": { "$in": by_id } })
                .await?
        };
        let seen: HashSet<&str> = found
            .iter()
            .filter_map(|v| v.get_str("wallet_address").ok())
            .collect();
        let unseen: Vec<&str> = named
            .iter()
            .copied()
            .filter(|v| !seen.contains(v))
            .collect();
        if !unseen.is_empty() {
            let by_address = self
                .read_validators(session, doc! { "wallet_address": { "$in": unseen } })
                .await?;
            found.extend(by_address);
        }
        Ok(found)
    }

    async fn read_validators(
        &self,
        session: &mut ClientSession,
        filter: Document,
    ) -> Result<Vec<Document>> {
        self.find_in_transaction(
            session,
            names::VALIDATORS,
            filter,
            doc! { "_id": 0, "wallet_address": 1, "score": 1, "last_active_time": 1, "signed_since": 1 },
            "read the group's validators",
        )
        .await
    }

    /// Every document of `collection` matching `filter`, read inside the session's transaction.
    async fn find_in_transaction(
        &self,
        session: &mut ClientSession,
        collection: &str,
        filter: Document,
        projection: Document,
        context: &str,
    ) -> Result<Vec<Document>> {
        self.collection::<Document>(collection)
            .find(filter)
            .projection(projection)
            .session(&mut *session)
            .await
            .map_err(StoreError::mongo(context))?
            .stream(&mut *session)
            .try_collect()
            .await
            .map_err(StoreError::mongo(context))
    }

    /// Every write of the plan in one ordered `bulkWrite` (MongoDB 8.0+).
    async fn write_plan_in_one_command(
        &self,
        session: &mut ClientSession,
        plan: &GroupPlan,
    ) -> Result<(), GroupWriteError> {
        let database = self.db.name();
        let namespace = |collection: &str| Namespace::new(database, collection);
        let mut models = Vec::new();
        for (collection, marker) in marker_documents(plan) {
            models.push(WriteModel::InsertOne(
                InsertOneModel::builder()
                    .namespace(namespace(collection))
                    .document(marker)
                    .build(),
            ));
        }
        for (filter, update) in validator_updates(plan) {
            models.push(WriteModel::UpdateMany(
                UpdateManyModel::builder()
                    .namespace(namespace(names::VALIDATORS))
                    .filter(filter)
                    .update(update)
                    .build(),
            ));
        }
        for (filter, pipeline) in pool_updates(plan) {
            models.push(WriteModel::UpdateOne(
                UpdateOneModel::builder()
                    .namespace(namespace(names::MINER_POOL))
                    .filter(filter)
                    .update(pipeline)
                    .upsert(true)
                    .build(),
            ));
        }
        if models.is_empty() {
            return Ok(());
        }
        match self
            .client
            .bulk_write(models)
            .ordered(true)
            .session(&mut *session)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match failed_model(&e) {
                Some((index, 11000)) if index < plan.receipts.len() => {
                    Err(GroupWriteError::ReceiptTaken(index))
                }
                Some((index, 11000)) if index < plan.receipts.len() + plan.nonces.len() => {
                    Err(GroupWriteError::NonceTaken(index - plan.receipts.len()))
                }
                _ => Err(GroupWriteError::Store(StoreError::mongo(
                    "write the group of TASKs and PINGs",
                )(e))),
            },
        }
    }

    /// The same writes as one batched command per collection, for servers before 8.0.
    async fn write_plan_per_collection(
        &self,
        session: &mut ClientSession,
        plan: &GroupPlan,
    ) -> Result<(), GroupWriteError> {
        let (receipts, nonces): (Vec<_>, Vec<_>) = marker_documents(plan)
            .into_iter()
            .partition(|(collection, _)| *collection == names::TASK_RECEIPTS);
        for (markers, taken, context) in [
            (
                receipts,
                GroupWriteError::ReceiptTaken as fn(usize) -> GroupWriteError,
                "record the group's TASK receipts",
            ),
            (
                nonces,
                GroupWriteError::NonceTaken,
                "record the group's nonces",
            ),
        ] {
            let Some((collection, _)) = markers.first() else {
                continue;
            };
            let inserted = self
                .collection::<Document>(collection)
                .insert_many(markers.into_iter().map(|(_, marker)| marker))
                .ordered(true)
                .session(&mut *session)
                .await;
            if let Err(e) = inserted {
                return Err(match inserted_many_duplicate(&e) {
                    Some(index) => taken(index),
                    None => GroupWriteError::Store(StoreError::mongo(context)(e)),
                });
            }
        }
        let validator_statements: Vec<Document> = validator_updates(plan)
            .into_iter()
            .map(|(q, u)| doc! { "q": q, "u": u, "multi": true })
            .collect();
        let pool_statements: Vec<Document> = pool_updates(plan)
            .into_iter()
            .map(|(q, u)| doc! { "q": q, "u": u, "upsert": true })
            .collect();
        for (collection, statements, context) in [
            (
                names::VALIDATORS,
                validator_statements,
                "mark the group's validators active",
            ),
            (
                names::MINER_POOL,
                pool_statements,
                "add the group's TASKs to the pool scores",
            ),
        ] {
            if statements.is_empty() {
                continue;
            }
            let reply = self
                .db
                .run_command(doc! { "update": collection, "updates": statements, "ordered": true })
                .session(&mut *session)
                .await
                .map_err(|e| GroupWriteError::Store(StoreError::mongo(context)(e)))?;
            if let Ok(errors) = reply.get_array("writeErrors")
                && !errors.is_empty()
            {
                return Err(GroupWriteError::Store(StoreError::Invalid(format!(
                    "MongoDB {context}: {errors:?}"
                ))));
            }
        }
        Ok(())
    }
}

/// The message of the conflict that makes [`Store::write_group`] plan the group again.
const MARKER_TAKEN: &str = "a TASK receipt or nonce of the group was already stored";

enum GroupWriteError {
    /// The receipt at this position of the plan already exists.
    ReceiptTaken(usize),
    /// The nonce at this position of the plan already exists.
    NonceTaken(usize),
    Store(StoreError),
}

impl GroupWriteError {
    fn into_store(self) -> StoreError {
        match self {
            GroupWriteError::ReceiptTaken(_) | GroupWriteError::NonceTaken(_) => {
                StoreError::Conflict(MARKER_TAKEN.into())
            }
            GroupWriteError::Store(e) => e,
        }
    }
}

/// The receipts, then the nonces, the plan inserts: (collection, document). Each is unique by
/// `_id`, so a message accepted elsewhere meanwhile stops the write at its duplicate key.
fn marker_documents(plan: &GroupPlan) -> Vec<(&'static str, Document)> {
    let receipts = plan.receipts.iter().map(|(validator, val_id)| {
        (
            names::TASK_RECEIPTS,
            doc! {
                "_id": receipt_id(validator, val_id),
                "validator_wallet": validator,
                "val_id": val_id,
                "accepted_at": plan.at,
            },
        )
    });
    let nonces = plan.nonces.iter().map(|(id, digest, expires_at)| {
        (
            names::SIGNED_NONCES,
            doc! { "_id": id, "digest": digest, "expires_at": expires_at },
        )
    });
    receipts.chain(nonces).collect()
}

/// The validators' own documents as the plan changes them: activity, the first signed message,
/// contact addresses (filter, update).
fn validator_updates(plan: &GroupPlan) -> Vec<(Document, Document)> {
    let mut updates: Vec<(Document, Document)> = validators_update(plan).into_iter().collect();
    if !plan.newly_signing.is_empty() {
        updates.push((
            doc! {
                "wallet_address": { "$in": &plan.newly_signing },
                "signed_since": { "$exists": false },
            },
            doc! { "$set": { "signed_since": plan.signed_at } },
        ));
    }
    updates.extend(ping_updates(plan));
    updates
}

/// The plan's active validators whose documents ([`Store::read_stored`]) [`needs_marking`]: an
/// index read is far cheaper than a write, and most validators of a busy group were marked
/// moments ago.
fn to_mark(validators: &[Document], plan: &GroupPlan) -> Vec<String> {
    let active: HashSet<&str> = plan.active_validators.iter().map(String::as_str).collect();
    let mut marked: Vec<String> = validators
        .iter()
        .filter(|v| needs_marking(v, plan.at))
        .filter_map(|v| v.get_str("wallet_address").ok())
        .filter(|v| active.contains(v))
        .map(str::to_owned)
        .collect();
    marked.sort();
    marked.dedup();
    marked
}

/// How stale a validator's `last_active_time` may be left: a validator sending TASKs every
/// second would otherwise cost a document write with nearly every group, for a time nobody reads
/// to the second. Its score is always made 1 (only validators with score 1 are paid).
pub const VALIDATOR_ACTIVITY_RESOLUTION: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether a validator with an accepted TASK at `at` must be written: its score is not 1, or its
/// `last_active_time` is missing, not a time, or older than [`VALIDATOR_ACTIVITY_RESOLUTION`].
pub fn needs_marking(validator: &Document, at: DateTime) -> bool {
    let scored = crate::store::loose::numeric(validator.get("score")) == Some(1.0);
    let fresh = match validator.get("last_active_time") {
        Some(bson::Bson::DateTime(last)) => {
            at.timestamp_millis() - last.timestamp_millis()
                < VALIDATOR_ACTIVITY_RESOLUTION.as_millis() as i64
        }
        _ => false,
    };
    !(scored && fresh)
}

fn validators_update(plan: &GroupPlan) -> Option<(Document, Document)> {
    (!plan.active_validators.is_empty()).then(|| {
        (
            doc! { "wallet_address": { "$in": &plan.active_validators } },
            doc! { "$set": { "score": 1_i64, "last_active_time": plan.at } },
        )
    })
}

fn ping_updates(plan: &GroupPlan) -> Vec<(Document, Document)> {
    plan.pings
        .iter()
        .map(|(validator, ip, port, at)| {
            (
                doc! { "wallet_address": validator },
                doc! { "$set": { "ip": ip, "port": i64::from(*port), "ping": at } },
            )
        })
        .collect()
}

fn pool_updates(plan: &GroupPlan) -> Vec<(Document, Vec<Document>)> {
    plan.pool_increments
        .iter()
        .map(|(pool, increment)| {
            (
                doc! { "pool_address": pool },
                vec![doc! { "$set": {
                    "score": pool_score_after_task_expr(*increment),
                    "last_active_time": plan.at,
                } }],
            )
        })
        .collect()
}

/// The position of the duplicate receipt an ordered `insert_many` stopped at.
fn inserted_many_duplicate(error: &mongodb::error::Error) -> Option<usize> {
    use mongodb::error::ErrorKind;
    match error.kind.as_ref() {
        ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()?
            .iter()
            .find(|w| w.code == 11000)
            .map(|w| w.index),
        _ => None,
    }
}
