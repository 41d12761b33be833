//! An in-memory view of the pool registry (`poolList`) and the validators' percentages
//! (`validatorsList`), for the checks before a TASK or PING is scored: loaded at start, kept
//! current by a change stream, and read again in full when the stream fails and periodically as
//! a backstop. The stream is opened before each full read, so no change made after the read
//! began can be missed; changes it replays from before the read converge to the same view.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bson::{Bson, Document, doc};
use futures::{StreamExt, TryStreamExt};
use mongodb::change_stream::ChangeStream;
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType};

use crate::store::db::{Result, Store, StoreError};
use crate::store::loose::numeric;
use crate::store::names;
use crate::store::registry::Parties;

/// The cached registry; the watcher stops when this is dropped.
#[derive(Debug)]
pub struct RegistryCache {
    view: Arc<RwLock<View>>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Drop for RegistryCache {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

#[derive(Debug, Default)]
struct View {
    pools: HashSet<String>,
    /// `_id` (as text) → pool address: a delete event names only the `_id`.
    pool_ids: HashMap<String, String>,
    /// Validator address → its numeric percentage, if it has one.
    validators: HashMap<String, Option<f64>>,
    validator_ids: HashMap<String, String>,
    /// Validator address → its `_id`, for reads by the cheapest index.
    validator_id_of: HashMap<String, Bson>,
    /// Validators that have sent a valid signed message (SPEC §4.5).
    signing: HashSet<String>,
    /// Full reads so far, and when the last one ended.
    loads: u64,
    loaded_at: Option<Instant>,
}

/// What a change event asks of the view.
enum Change {
    Applied,
    /// The event cannot be applied alone (an unknown `_id`, a renamed key, a dropped
    /// collection): read everything again.
    ReloadNeeded,
}

/// How long the watcher waits before opening a failed stream again.
const REOPEN_PAUSE: Duration = Duration::from_millis(500);

impl RegistryCache {
    /// Opens the change stream, reads both collections, and starts the watcher.
    pub async fn start(store: Store, reload_every: Duration) -> Result<RegistryCache> {
        let stream = open_stream(&store).await?;
        let view = Arc::new(RwLock::new(View::default()));
        load(&store, &view).await?;
        let watcher = tokio::spawn(watch(store, view.clone(), stream, reload_every));
        Ok(RegistryCache { view, watcher })
    }

    /// The validator's percentage and the pool's registration, as the cache holds them.
    pub fn parties(&self, validator: Option<&str>, pool: Option<&str>) -> Parties {
        let view = self.view.read().expect("not poisoned");
        let validator_address = validator;
        let validator = validator.and_then(|v| view.validators.get(v));
        Parties {
            validator_found: validator.is_some(),
            validator_percentage: validator.copied().flatten(),
            validator_signs: validator_address.is_some_and(|v| view.signing.contains(v)),
            pool_registered: pool.is_some_and(|p| view.pools.contains(p)),
        }
    }

    /// The validator's `_id`, if the cache knows the validator.
    pub fn validator_id(&self, address: &str) -> Option<Bson> {
        let view = self.view.read().expect("not poisoned");
        view.validator_id_of.get(address).cloned()
    }

    /// Full reads so far (the first at start).
    pub fn loads(&self) -> u64 {
        self.view.read().expect("not poisoned").loads
    }
}

async fn open_stream(store: &Store) -> Result<ChangeStream<ChangeStreamEvent<Document>>> {
    let registry = [names::POOL_LIST, names::VALIDATORS];
    // Only what changes the view: not the score and activity every TASK writes.
    let pipeline = vec![doc! { "$match": { "$or": [
        { "ns.coll": { "$in": registry.to_vec() }, "$or": [
            { "operationType": { "$in": ["insert", "replace", "delete", "drop", "rename"] } },
            { "updateDescription.updatedFields.percentage": { "$exists": true } },
            { "updateDescription.updatedFields.signed_since": { "$exists": true } },
            { "updateDescription.updatedFields.wallet_address": { "$exists": true } },
            { "updateDescription.updatedFields.pool_address": { "$exists": true } },
            { "updateDescription.removedFields": { "$in": ["percentage", "signed_since", "wallet_address", "pool_address"] } },
        ] },
        { "operationType": { "$in": ["dropDatabase", "invalidate"] } },
    ] } }];
    store
        .database()
        .watch()
        .pipeline(pipeline)
        .await
        .map_err(StoreError::mongo("watch the pool and validator registry"))
}

/// Reads both collections and replaces the view.
async fn load(store: &Store, view: &RwLock<View>) -> Result<()> {
    let context = "read the pool and validator registry";
    let pools: Vec<Document> = store
        .collection::<Document>(names::POOL_LIST)
        .find(doc! {})
        .projection(doc! { "pool_address": 1 })
        .await
        .map_err(StoreError::mongo(context))?
        .try_collect()
        .await
        .map_err(StoreError::mongo(context))?;
    let validators: Vec<Document> = store
        .collection::<Document>(names::VALIDATORS)
        .find(doc! {})
        .projection(doc! { "wallet_address": 1, "percentage": 1, "signed_since": 1 })
        .await
        .map_err(StoreError::mongo(context))?
        .try_collect()
        .await
        .map_err(StoreError::mongo(context))?;
    let mut fresh = View::default();
    for pool in &pools {
        fresh.put_pool(pool);
    }
    for validator in &validators {
        fresh.put_validator(validator);
    }
    let mut view = view.write().expect("not poisoned");
    fresh.loads = view.loads + 1;
    fresh.loaded_at = Some(Instant::now());
    *view = fresh;
    Ok(())
}

/// Applies events until the stream fails, then opens it again and reads everything; reads
/// everything every `reload_every` as well.
async fn watch(
    store: Store,
    view: Arc<RwLock<View>>,
    mut stream: ChangeStream<ChangeStreamEvent<Document>>,
    reload_every: Duration,
) {
    let mut backstop = tokio::time::interval(reload_every);
    backstop.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    backstop.tick().await;
    loop {
        let reload = tokio::select! {
            event = stream.next() => match event {
                Some(Ok(event)) => {
                    let change = view.write().expect("not poisoned").apply(&event);
                    matches!(change, Change::ReloadNeeded)
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "registry change stream failed; reading the registry again");
                    stream = reopen(&store).await;
                    true
                }
                None => {
                    stream = reopen(&store).await;
                    true
                }
            },
            _ = backstop.tick() => true,
        };
        if reload {
            while let Err(error) = load(&store, &view).await {
                tracing::warn!(%error, "reading the registry failed; trying again");
                tokio::time::sleep(REOPEN_PAUSE).await;
            }
        }
    }
}

/// Opens the stream again, retrying until the server answers.
async fn reopen(store: &Store) -> ChangeStream<ChangeStreamEvent<Document>> {
    loop {
        tokio::time::sleep(REOPEN_PAUSE).await;
        match open_stream(store).await {
            Ok(stream) => return stream,
            Err(error) => tracing::warn!(%error, "opening the registry change stream failed"),
        }
    }
}

impl View {
    fn put_pool(&mut self, document: &Document) {
        if let (Some(id), Ok(address)) = (
            id_key(document.get("_id")),
            document.get_str("pool_address"),
        ) {
            self.pools.insert(address.to_owned());
            self.pool_ids.insert(id, address.to_owned());
        }
    }

    fn put_validator(&mut self, document: &Document) {
        if let (Some(id), Ok(address)) = (
            id_key(document.get("_id")),
            document.get_str("wallet_address"),
        ) {
            self.validators
                .insert(address.to_owned(), numeric(document.get("percentage")));
            self.validator_ids.insert(id, address.to_owned());
            if let Some(raw_id) = document.get("_id") {
                self.validator_id_of
                    .insert(address.to_owned(), raw_id.clone());
            }
            self.set_signing(address, document.get("signed_since"));
        }
    }

    fn apply(&mut self, event: &ChangeStreamEvent<Document>) -> Change {
        let collection = event.ns.as_ref().and_then(|ns| ns.coll.as_deref());
        let id = event
            .document_key
            .as_ref()
            .and_then(|key| id_key(key.get("_id")));
        let is_pools = collection == Some(names::POOL_LIST);
        match (&event.operation_type, id) {
            (OperationType::Insert | OperationType::Replace, Some(id)) => {
                let Some(document) = &event.full_document else {
                    return Change::ReloadNeeded;
                };
                // A replacement may change the address: forget the old one first.
                self.remove(is_pools, &id);
                if is_pools {
                    self.put_pool(document);
                } else {
                    self.put_validator(document);
                }
                Change::Applied
            }
            (OperationType::Delete, Some(id)) => {
                self.remove(is_pools, &id);
                Change::Applied
            }
            (OperationType::Update, Some(id)) if !is_pools => {
                let Some(update) = &event.update_description else {
                    return Change::ReloadNeeded;
                };
                let renamed = update.updated_fields.contains_key("wallet_address")
                    || update.removed_fields.iter().any(|f| f == "wallet_address");
                let Some(address) = self.validator_ids.get(&id).cloned() else {
                    return Change::ReloadNeeded;
                };
                if renamed {
                    return Change::ReloadNeeded;
                }
                if let Some(percentage) = update.updated_fields.get("percentage") {
                    self.validators
                        .insert(address.clone(), numeric(Some(percentage)));
                } else if update.removed_fields.iter().any(|f| f == "percentage") {
                    self.validators.insert(address.clone(), None);
                }
                if let Some(since) = update.updated_fields.get("signed_since") {
                    self.set_signing(&address, Some(since));
                } else if update.removed_fields.iter().any(|f| f == "signed_since") {
                    self.set_signing(&address, None);
                }
                Change::Applied
            }
            _ => Change::ReloadNeeded,
        }
    }

    fn set_signing(&mut self, address: &str, signed_since: Option<&Bson>) {
        if matches!(signed_since, Some(Bson::DateTime(_))) {
            self.signing.insert(address.to_owned());
        } else {
            self.signing.remove(address);
        }
    }

    fn remove(&mut self, is_pools: bool, id: &str) {
        if is_pools {
            if let Some(address) = self.pool_ids.remove(id) {
                self.pools.remove(&address);
            }
        } else if let Some(address) = self.validator_ids.remove(id) {
            self.validators.remove(&address);
            self.validator_id_of.remove(&address);
            self.signing.remove(&address);
        }
    }
}

/// An `_id` of any type as a map key.
fn id_key(id: Option<&Bson>) -> Option<String> {
    id.map(|id| format!("{id:?}"))
}
