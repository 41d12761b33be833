//! Group commit of TASKs and PINGs: what arrives while one write is in flight is written together
//! in the next, so the database cost of a message shrinks as load grows, while each client still
//! gets its reply only once the write carrying its message is committed.
//!
//! A group has exactly the effect of its messages processed one at a time, in arrival order
//! ([`plan_group`] is that rule): a (`validator_wallet`, `val_id`) already accepted, or repeated
//! inside the group, scores once; a pool's increments sum and cap at 100 as sequential TASKs
//! would (increments are positive, so capping the sum equals capping each step). The receipts,
//! the validators' activity, the PINGs and the pools' scores commit in one transaction: a failed
//! group leaves no receipt that would swallow a client's retry.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bson::{Bson, DateTime, Document, doc};
use futures::TryStreamExt;
use mongodb::options::{InsertOneModel, UpdateManyModel, UpdateOneModel, WriteModel};
use mongodb::{ClientSession, Namespace};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::activity::{TaskRecorded, TaskWrites, failed_model, receipt_id};
use super::{Result, Store, StoreError, names};
use crate::faults::crash_point;
use crate::scoring::pool_score_after_task_expr;

/// One message to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Activity {
    /// An accepted TASK: its pool gains `increment` unless (`validator`, `val_id`) was accepted
    /// before.
    Task {
        validator: String,
        /// The validator's `_id`, when known (from the cached registry): its document is then
        /// read by `_id`, the cheapest index.
        validator_id: Option<Bson>,
        pool: String,
        val_id: String,
        increment: i64,
        at: DateTime,
    },
    /// Where a validator listens, and when it said so.
    Ping {
        validator: String,
        ip: String,
        port: u16,
        at: DateTime,
    },
}

/// What a message did once its group committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    Task(TaskRecorded),
    Ping,
}

/// The writes of one group, derived from its messages alone (and the receipts already stored).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPlan {
    /// (validator, val_id) of every TASK accepted now, in arrival order.
    pub receipts: Vec<(String, String)>,
    /// Validators with an accepted TASK, each once.
    pub active_validators: Vec<String>,
    /// The `_id`s known for them.
    pub validator_ids: HashMap<String, Bson>,
    /// Each pool's summed increment over the accepted TASKs.
    pub pool_increments: BTreeMap<String, i64>,
    /// Every PING, in arrival order (a later one for the same validator wins, as it would).
    pub pings: Vec<(String, String, u16, DateTime)>,
    /// Each message's outcome, by position.
    pub outcomes: Vec<Recorded>,
    /// The time written as `last_active_time`: the latest of the group's TASKs.
    pub at: DateTime,
}

impl GroupPlan {
    /// The receipt ids the plan would insert, in order.
    fn receipt_ids(&self) -> Vec<String> {
        self.receipts
            .iter()
            .map(|(validator, val_id)| receipt_id(validator, val_id))
            .collect()
    }
}

/// The group's effect, as if its messages were processed one after another: `accepted_before`
/// holds the receipt ids ([`receipt_id`]) already stored.
pub fn plan_group(messages: &[Activity], accepted_before: &HashSet<String>) -> GroupPlan {
    let mut seen = HashSet::new();
    let mut validators_seen = HashSet::new();
    let mut plan = GroupPlan {
        receipts: Vec::new(),
        active_validators: Vec::new(),
        validator_ids: HashMap::new(),
        pool_increments: BTreeMap::new(),
        pings: Vec::new(),
        outcomes: Vec::with_capacity(messages.len()),
        at: DateTime::from_millis(0),
    };
    for message in messages {
        let outcome = match message {
            Activity::Task {
                validator,
                validator_id,
                pool,
                val_id,
                increment,
                at,
            } => {
                if let Some(validator_id) = validator_id {
                    plan.validator_ids
                        .insert(validator.clone(), validator_id.clone());
                }
                let id = receipt_id(validator, val_id);
                if accepted_before.contains(&id) || !seen.insert(id) {
                    Recorded::Task(TaskRecorded::Replayed)
                } else {
                    plan.receipts.push((validator.clone(), val_id.clone()));
                    if validators_seen.insert(validator.as_str()) {
                        plan.active_validators.push(validator.clone());
                    }
                    *plan.pool_increments.entry(pool.clone()).or_insert(0) += increment;
                    plan.at = plan.at.max(*at);
                    Recorded::Task(TaskRecorded::Accepted)
                }
            }
            Activity::Ping {
                validator,
                ip,
                port,
                at,
            } => {
                plan.pings.push((validator.clone(), ip.clone(), *port, *at));
                Recorded::Ping
            }
        };
        plan.outcomes.push(outcome);
    }
    plan
}

/// Where a test crashes the node with a group's writes sent but not committed.
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
    /// Writes one group in one transaction and returns each message's outcome. Receipts already
    /// stored are read first (by `_id`, one indexed query); one that appears meanwhile (another
    /// node's commit, or a receipt from before receipt ids existed) stops the write at its
    /// duplicate key, and the group is planned and written again with it counted as a replay.
    pub async fn write_group(
        &self,
        messages: &[Activity],
        writes: TaskWrites,
    ) -> Result<Vec<Recorded>> {
        let found_taken = Arc::new(Mutex::new(HashSet::new()));
        loop {
            let store = self.clone();
            let messages_for_body = messages.to_vec();
            let found = found_taken.clone();
            let attempt = self
                .with_short_transaction(move |session| {
                    let (store, messages, found) =
                        (store.clone(), messages_for_body.clone(), found.clone());
                    Box::pin(async move {
                        let mut accepted_before = store.stored_receipts(session, &messages).await?;
                        accepted_before.extend(found.lock().expect("not poisoned").iter().cloned());
                        let mut plan = plan_group(&messages, &accepted_before);
                        plan.active_validators = store.validators_to_mark(session, &plan).await?;
                        let written = match writes {
                            TaskWrites::ClientBulkWrite => {
                                store.write_plan_in_one_command(session, &plan).await
                            }
                            TaskWrites::Separate => {
                                store.write_plan_per_collection(session, &plan).await
                            }
                        };
                        if let Err(GroupWriteError::ReceiptTaken(index)) = written {
                            found
                                .lock()
                                .expect("not poisoned")
                                .insert(plan.receipt_ids()[index].clone());
                            return Err(StoreError::Conflict(RECEIPT_TAKEN.into()));
                        }
                        written.map_err(GroupWriteError::into_store)?;
                        crash_point(GROUP_BEFORE_COMMIT);
                        Ok(plan.outcomes)
                    })
                })
                .await;
            match attempt {
                Err(StoreError::Conflict(message)) if message == RECEIPT_TAKEN => continue,
                other => return other,
            }
        }
    }

    /// Receipt ids of the group's TASKs that are already stored.
    async fn stored_receipts(
        &self,
        session: &mut ClientSession,
        messages: &[Activity],
    ) -> Result<HashSet<String>> {
        let ids: Vec<String> = messages
            .iter()
            .filter_map(|m| match m {
                Activity::Task {
                    validator, val_id, ..
                } => Some(receipt_id(validator, val_id)),
                Activity::Ping { .. } => None,
            })
            .collect();
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let found = self
            .find_in_transaction(
                session,
                names::TASK_RECEIPTS,
                doc! { "_id": { "$in": ids } },
                doc! { "_id": 1 },
                "read the group's stored TASK receipts",
            )
            .await?;
        Ok(found
            .iter()
            .filter_map(|d| d.get_str("_id").ok().map(str::to_owned))
            .collect())
    }

    /// The plan's active validators that [`needs_marking`], read in the transaction: an index
    /// read is far cheaper than a write, and most validators of a busy group were marked moments
    /// ago. Validators with a known `_id` are read by it; the rest (and any whose `_id` no
    /// longer names them) by address.
    async fn validators_to_mark(
        &self,
        session: &mut ClientSession,
        plan: &GroupPlan,
    ) -> Result<Vec<String>> {
        let ids: Vec<&Bson> = plan
            .active_validators
            .iter()
            .filter_map(|v| plan.validator_ids.get(v))
            .collect();
        let mut found = if ids.is_empty() {
            Vec::new()
        } else {
            self.read_validators(session, doc! { "_id": { "$in": ids } })
                .await?
        };
        let seen: HashSet<&str> = found
            .iter()
            .filter_map(|v| v.get_str("wallet_address").ok())
            .collect();
        let unseen: Vec<&String> = plan
            .active_validators
            .iter()
            .filter(|v| !seen.contains(v.as_str()))
            .collect();
        if !unseen.is_empty() {
            let by_address = self
                .read_validators(session, doc! { "wallet_address": { "$in": unseen } })
                .await?;
            found.extend(by_address);
        }
        let active: HashSet<&str> = plan.active_validators.iter().map(String::as_str).collect();
        let mut marked: Vec<String> = found
            .iter()
            .filter(|v| needs_marking(v, plan.at))
            .filter_map(|v| v.get_str("wallet_address").ok())
            .filter(|v| active.contains(v))
            .map(str::to_owned)
            .collect();
        marked.sort();
        marked.dedup();
        Ok(marked)
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
            doc! { "_id": 0, "wallet_address": 1, "score": 1, "last_active_time": 1 },
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
        for receipt in receipt_documents(plan) {
            models.push(WriteModel::InsertOne(
                InsertOneModel::builder()
                    .namespace(namespace(names::TASK_RECEIPTS))
                    .document(receipt)
                    .build(),
            ));
        }
        if let Some((filter, update)) = validators_update(plan) {
            models.push(WriteModel::UpdateMany(
                UpdateManyModel::builder()
                    .namespace(namespace(names::VALIDATORS))
                    .filter(filter)
                    .update(update)
                    .build(),
            ));
        }
        for (filter, update) in ping_updates(plan) {
            models.push(WriteModel::UpdateOne(
                UpdateOneModel::builder()
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
        let receipts = receipt_documents(plan);
        if !receipts.is_empty() {
            let inserted = self
                .collection::<Document>(names::TASK_RECEIPTS)
                .insert_many(receipts)
                .ordered(true)
                .session(&mut *session)
                .await;
            if let Err(e) = inserted {
                return Err(match inserted_many_duplicate(&e) {
                    Some(index) => GroupWriteError::ReceiptTaken(index),
                    None => GroupWriteError::Store(StoreError::mongo(
                        "record the group's TASK receipts",
                    )(e)),
                });
            }
        }
        let mut validator_statements: Vec<Document> = validators_update(plan)
            .map(|(q, u)| doc! { "q": q, "u": u, "multi": true })
            .into_iter()
            .collect();
        validator_statements.extend(
            ping_updates(plan)
                .into_iter()
                .map(|(q, u)| doc! { "q": q, "u": u }),
        );
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
const RECEIPT_TAKEN: &str = "a TASK receipt of the group was already stored";

enum GroupWriteError {
    /// The receipt at this position of the plan already exists.
    ReceiptTaken(usize),
    Store(StoreError),
}

impl GroupWriteError {
    fn into_store(self) -> StoreError {
        match self {
            GroupWriteError::ReceiptTaken(_) => StoreError::Conflict(RECEIPT_TAKEN.into()),
            GroupWriteError::Store(e) => e,
        }
    }
}

fn receipt_documents(plan: &GroupPlan) -> Vec<Document> {
    plan.receipts
        .iter()
        .map(|(validator, val_id)| {
            doc! {
                "_id": receipt_id(validator, val_id),
                "validator_wallet": validator,
                "val_id": val_id,
                "accepted_at": plan.at,
            }
        })
        .collect()
}

/// How stale a validator's `last_active_time` may be left: a validator sending TASKs every
/// second would otherwise cost a document write with nearly every group, for a time nobody reads
/// to the second. Its score is always made 1 (only validators with score 1 are paid).
pub const VALIDATOR_ACTIVITY_RESOLUTION: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether a validator with an accepted TASK at `at` must be written: its score is not 1, or its
/// `last_active_time` is missing, not a time, or older than [`VALIDATOR_ACTIVITY_RESOLUTION`].
pub fn needs_marking(validator: &Document, at: DateTime) -> bool {
    let scored = super::activity::numeric(validator.get("score")) == Some(1.0);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::pool_score_after_task;

    fn task(validator: &str, pool: &str, val_id: &str, increment: i64) -> Activity {
        Activity::Task {
            validator: validator.into(),
            validator_id: None,
            pool: pool.into(),
            val_id: val_id.into(),
            increment,
            at: DateTime::from_millis(1),
        }
    }

    #[test]
    fn repeats_inside_the_group_and_before_it_score_once() {
        let before: HashSet<String> = [receipt_id("v2", "old")].into();
        let plan = plan_group(
            &[
                task("v1", "p", "a", 3),
                task("v1", "p", "a", 3),
                task("v2", "p", "old", 5),
                task("v2", "q", "b", 5),
            ],
            &before,
        );
        use Recorded::Task as T;
        use TaskRecorded::*;
        assert_eq!(
            plan.outcomes,
            vec![T(Accepted), T(Replayed), T(Replayed), T(Accepted)]
        );
        assert_eq!(
            plan.pool_increments,
            BTreeMap::from([("p".into(), 3), ("q".into(), 5)])
        );
        assert_eq!(plan.active_validators, vec!["v1", "v2"]);
        assert_eq!(plan.receipts.len(), 2);
    }

    proptest::proptest! {
        /// Capping the summed increments gives the score of the same TASKs applied one by one.
        #[test]
        fn a_group_scores_as_its_tasks_one_at_a_time(
            start in 0_i64..=100,
            tasks in proptest::collection::vec((0_u8..4, 0_u8..6, 1_i64..=20), 0..60),
        ) {
            let messages: Vec<Activity> = tasks
                .iter()
                .map(|(v, id, inc)| task(&format!("v{v}"), "p", &id.to_string(), *inc))
                .collect();
            let mut sequential = start;
            let mut accepted = HashSet::new();
            for (v, id, inc) in &tasks {
                if accepted.insert((*v, *id)) {
                    sequential = pool_score_after_task(sequential, *inc);
                }
            }
            let plan = plan_group(&messages, &HashSet::new());
            let grouped = plan
                .pool_increments
                .get("p")
                .map_or(start, |sum| pool_score_after_task(start, *sum));
            proptest::prop_assert_eq!(grouped, sequential);
            proptest::prop_assert_eq!(plan.receipts.len(), accepted.len());
        }
    }
}
