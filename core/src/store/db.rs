//! The database handle every part of the store shares: the connection, the one error type,
//! transactions with the driver's retry rules, and batched updates. It knows no collection.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bson::{Document, doc};
use futures::future::BoxFuture;
use mongodb::error::{TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT};
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use mongodb::options::ClientOptions;
use mongodb::{Client, ClientSession, Collection, Database};

/// What went wrong talking to the database.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("MongoDB {context}: {source}")]
    Mongo {
        context: String,
        #[source]
        source: mongodb::error::Error,
    },
    #[error(
        "the MongoDB server at {0} is not a replica set member; minerpool moves money in \
         transactions, which need a replica set (a single-node replica set is fine: start mongod \
         with --replSet and run rs.initiate())"
    )]
    NotAReplicaSet(String),
    #[error("a transaction kept conflicting for {0:?} and was given up")]
    TransactionTimedOut(Duration),
    #[error("{0}")]
    Invalid(String),
    /// Another writer got there first; nothing was written.
    #[error("{0}")]
    Conflict(String),
    /// The run no longer holds its job lock: the move was refused and nothing was written.
    #[error("fenced: {0}")]
    Fenced(String),
    /// The run was told to stop (SIGTERM) before this step: nothing of the step was written.
    #[error("stopped: {0}")]
    Stopped(String),
    /// The group write carrying this message failed; every message in it gets this error.
    #[error("the group write failed: {0}")]
    Group(Arc<StoreError>),
}

impl StoreError {
    /// Adds what was being done to a driver error.
    pub fn mongo(context: impl Into<String>) -> impl FnOnce(mongodb::error::Error) -> StoreError {
        let context = context.into();
        move |source| StoreError::Mongo { context, source }
    }

    fn has_label(&self, label: &str) -> bool {
        match self {
            StoreError::Mongo { source, .. } => source.contains_label(label),
            StoreError::Group(error) => error.has_label(label),
            _ => false,
        }
    }

    /// A duplicate-key error (E11000): a unique index refused the write.
    pub fn is_duplicate_key(&self) -> bool {
        let StoreError::Mongo { source, .. } = self else {
            return false;
        };
        is_duplicate_key(source)
    }
}

/// Whether a driver error is E11000, including inside a bulk write.
pub fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == 11000,
        ErrorKind::Command(e) => e.code == 11000,
        ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()
            .is_some_and(|errors| errors.iter().any(|e| e.code == 11000)),
        ErrorKind::BulkWrite(e) => e.write_errors.values().any(|e| e.code == 11000),
        _ => false,
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Counts the commands the driver sends (MongoDB round trips), for benchmarks and tests that
/// must show a figure independent of the machine's speed.
#[derive(Clone, Default)]
pub struct CommandCounter {
    started: Arc<AtomicU64>,
}

impl CommandCounter {
    /// Installs the counter as the command-monitoring handler of `options`.
    pub fn attach(&self, options: &mut ClientOptions) {
        let started = self.started.clone();
        options.command_event_handler = Some(EventHandler::callback(move |event| {
            if let CommandEvent::Started(_) = event {
                started.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }

    /// Commands started so far.
    pub fn count(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }
}

/// Handle to the minerpool database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pub(super) client: Client,
    pub(super) db: Database,
    /// `host:port` list, for messages.
    pub(super) hosts: String,
    /// How far the server's clock is ahead of this process's (ms), read once.
    pub(super) clock_offset: Arc<tokio::sync::OnceCell<i64>>,
}

impl Store {
    /// Connects (lazily, as the driver does) to `uri` and selects `database`.
    pub async fn connect(uri: &str, database: &str) -> Result<Store> {
        let options = ClientOptions::parse(uri)
            .await
            .map_err(StoreError::mongo("connection string"))?;
        Store::with_options(options, database)
    }

    /// Like [`Store::connect`], with driver options already made (e.g. with a
    /// [`CommandCounter`] attached).
    pub fn with_options(mut options: ClientOptions, database: &str) -> Result<Store> {
        if options.app_name.is_none() {
            options.app_name = Some("minerpool".into());
        }
        let hosts = options
            .hosts
            .iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let client = Client::with_options(options).map_err(StoreError::mongo("client"))?;
        let db = client.database(database);
        Ok(Store {
            client,
            db,
            hosts,
            clock_offset: Arc::default(),
        })
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn collection<T: Send + Sync>(&self, name: &str) -> Collection<T> {
        self.db.collection(name)
    }

    /// Runs an aggregation on `collection` and collects its results, read as `T`; `context`
    /// says what it was for in errors.
    pub(crate) async fn aggregate_all<T>(
        &self,
        collection: &str,
        pipeline: Vec<Document>,
        context: &str,
    ) -> Result<Vec<T>>
    where
        T: serde::de::DeserializeOwned + Send + Sync,
    {
        use futures::TryStreamExt;
        self.collection::<Document>(collection)
            .aggregate(pipeline)
            .with_type::<T>()
            .await
            .map_err(StoreError::mongo(context))?
            .try_collect()
            .await
            .map_err(StoreError::mongo(context))
    }

    /// Pings the server: what `/readyz` reports.
    pub async fn ping(&self) -> Result<()> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(StoreError::mongo("ping"))?;
        Ok(())
    }

    /// Refuses a server that cannot run transactions, with a message that says how to fix it.
    pub async fn require_replica_set(&self) -> Result<()> {
        let hello = self
            .db
            .run_command(doc! { "hello": 1 })
            .await
            .map_err(StoreError::mongo("hello"))?;
        let is_replica_set = hello.get_str("setName").is_ok();
        let is_mongos = hello.get_str("msg") == Ok("isdbgrid");
        if is_replica_set || is_mongos {
            Ok(())
        } else {
            Err(StoreError::NotAReplicaSet(self.hosts.clone()))
        }
    }

    /// Runs `body` in a transaction, retrying the whole body on TransientTransactionError and the
    /// commit on UnknownTransactionCommitResult, as the driver's convenient-transaction API does,
    /// for at most two minutes ([`Retry::LONG`]).
    ///
    /// `body` may run more than once, so it returns a fresh future each time; that future borrows
    /// only the session (clone what else it needs into it), which keeps it `Send` for spawned
    /// tasks and axum handlers.
    pub async fn with_transaction<T, F>(&self, body: F) -> Result<T>
    where
        F: for<'s> FnMut(&'s mut ClientSession) -> BoxFuture<'s, Result<T>>,
    {
        self.transaction(true, Retry::LONG, body).await
    }

    /// A short transaction answering a client that waits ([`Retry::SHORT`]), in a session
    /// without causal consistency: its retries need not be ordered after its aborted attempts
    /// (all run on the primary), and then send no `readConcern.afterClusterTime`, which some
    /// MongoDB-compatible servers refuse on the multi-collection `bulkWrite`.
    pub(crate) async fn with_short_transaction<T, F>(&self, body: F) -> Result<T>
    where
        F: for<'s> FnMut(&'s mut ClientSession) -> BoxFuture<'s, Result<T>>,
    {
        self.transaction(false, Retry::SHORT, body).await
    }

    async fn transaction<T, F>(&self, causal: bool, retry: Retry, mut body: F) -> Result<T>
    where
        F: for<'s> FnMut(&'s mut ClientSession) -> BoxFuture<'s, Result<T>>,
    {
        let started = Instant::now();
        let within_limit = || started.elapsed() < retry.give_up_after;
        let mut session = self
            .client
            .start_session()
            .causal_consistency(causal)
            .await
            .map_err(StoreError::mongo("start session"))?;
        let mut attempt = 0;
        loop {
            session
                .start_transaction()
                .await
                .map_err(StoreError::mongo("start transaction"))?;
            let mut value = match body(&mut session).await {
                Ok(value) => Some(value),
                Err(error) => {
                    // Aborting an already aborted transaction fails harmlessly.
                    let _ = session.abort_transaction().await;
                    if error.has_label(TRANSIENT_TRANSACTION_ERROR) && within_limit() {
                        tokio::time::sleep(retry.pause(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(error);
                }
            };
            loop {
                match session.commit_transaction().await {
                    Ok(()) => return Ok(value.take().expect("committed once")),
                    // A commit that failed as a whole must not be retried as a commit: its
                    // transaction is gone, and only running the body again can succeed.
                    Err(e) if e.contains_label(TRANSIENT_TRANSACTION_ERROR) && within_limit() => {
                        tokio::time::sleep(retry.pause(attempt)).await;
                        attempt += 1;
                        break;
                    }
                    Err(e)
                        if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
                            && within_limit() =>
                    {
                        tokio::time::sleep(retry.pause(attempt)).await;
                        attempt += 1;
                        continue;
                    }
                    Err(e) if !within_limit() => {
                        return Err(StoreError::TransactionTimedOut(started.elapsed()))
                            .inspect_err(|_| tracing::warn!(error = %e, "transaction given up"));
                    }
                    Err(e) => return Err(StoreError::mongo("commit transaction")(e)),
                }
            }
        }
    }
}

/// How a transaction waits between attempts after a transient failure, and for how long it
/// keeps trying.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retry {
    /// Doubling from `first` up to `max`; or, with `jitter`, a random pause in `first..=max`.
    first: Duration,
    max: Duration,
    jitter: bool,
    give_up_after: Duration,
}

impl Retry {
    /// The money transactions (distributions, payouts, imports): few, large, run by jobs that
    /// can wait; a growing pause keeps a long conflict from hammering the server.
    const LONG: Retry = Retry {
        first: Duration::from_millis(5),
        max: Duration::from_millis(500),
        jitter: false,
        give_up_after: Duration::from_secs(120),
    };

    /// The node's marker + effect transactions (TASK, admin request): a few writes each, so a
    /// conflict clears within milliseconds, and a doubling pause would leave a busy pool idle
    /// for hundreds of milliseconds while its TASKs queue up. A short random pause spreads
    /// the contenders instead. A client is waiting for the reply: after
    /// [`TASK_GIVE_UP_AFTER`] it gets an error and retries later (e.g. while a crashed node's
    /// transaction still holds the pool until the server aborts it).
    const SHORT: Retry = Retry {
        first: Duration::from_millis(1),
        max: Duration::from_millis(10),
        jitter: true,
        give_up_after: TASK_GIVE_UP_AFTER,
    };

    fn pause(&self, attempt: u32) -> Duration {
        if self.jitter {
            let span = (self.max - self.first).as_micros() as u64 + 1;
            return self.first + Duration::from_micros(random_u64() % span);
        }
        self.first
            .saturating_mul(1 << attempt.min(16))
            .min(self.max)
    }
}

/// How long the node keeps retrying one TASK or admin request's transaction before replying
/// with an error: well under the 20 s a validator waits for its reply.
pub const TASK_GIVE_UP_AFTER: Duration = Duration::from_secs(10);

/// A random number for spreading retries apart (each `RandomState` has fresh keys): not for
/// secrets.
fn random_u64() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0u8)
}

/// Statements per `update` command: well under the server's 100,000 and 16 MiB limits.
const UPDATE_BATCH: usize = 10_000;

/// Applies `updates` — (value of `key`, update document) — to `collection` as `update` commands
/// of many statements each: one round trip per [`UPDATE_BATCH`] documents rather than one per
/// document, on any MongoDB since 3.6, inside `session`'s transaction when given.
pub(crate) async fn update_many_by_key(
    store: &Store,
    session: Option<&mut ClientSession>,
    collection: &str,
    key: &str,
    updates: Vec<(String, Document)>,
    upsert: bool,
) -> Result<()> {
    let updates = updates
        .into_iter()
        .map(|(value, update)| (doc! { key: value }, update))
        .collect();
    update_many_matching(store, session, collection, updates, upsert).await?;
    Ok(())
}

/// Applies `updates` — (filter, update document), one document each — as `update` commands of
/// many statements; returns how many statements matched a document, so a caller whose filters
/// carry a condition can tell that one did not hold.
pub(crate) async fn update_many_matching(
    store: &Store,
    mut session: Option<&mut ClientSession>,
    collection: &str,
    updates: Vec<(Document, Document)>,
    upsert: bool,
) -> Result<u64> {
    let mut matched = 0;
    for chunk in updates.chunks(UPDATE_BATCH) {
        let statements: Vec<Document> = chunk
            .iter()
            .map(|(filter, update)| doc! { "q": filter.clone(), "u": update.clone(), "upsert": upsert })
            .collect();
        let command = doc! { "update": collection, "updates": statements, "ordered": true };
        let context = || format!("update {} documents of {collection}", chunk.len());
        let reply = match session.as_deref_mut() {
            Some(session) => store.db.run_command(command).session(session).await,
            None => store.db.run_command(command).await,
        }
        .map_err(StoreError::mongo(context()))?;
        if let Ok(errors) = reply.get_array("writeErrors") {
            return Err(StoreError::Invalid(format!(
                "{}: {} statements failed, first: {}",
                context(),
                errors.len(),
                errors.first().map(|e| e.to_string()).unwrap_or_default()
            )));
        }
        if let Ok(error) = reply.get_document("writeConcernError") {
            return Err(StoreError::Invalid(format!("{}: {error}", context())));
        }
        // `n` counts matched and upserted documents.
        let n = match reply.get("n") {
            Some(bson::Bson::Int32(n)) => i64::from(*n),
            Some(bson::Bson::Int64(n)) => *n,
            _ => 0,
        };
        let upserted = reply.get_array("upserted").map_or(0, |u| u.len() as i64);
        matched += u64::try_from(n - upserted).unwrap_or(0);
    }
    Ok(matched)
}
