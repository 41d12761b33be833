//! Support for tests and benchmarks that run against the real MongoDB-compatible server started
//! by `scripts/with-test-servers.sh`. Each caller gets a database of its own, so tests run in
//! parallel on one server.

use std::sync::atomic::{AtomicU32, Ordering};

use mongodb::options::ClientOptions;

use crate::store::{CommandCounter, Store};

/// The variable that names the test server's URI.
pub const MONGODB_URI_VAR: &str = "MINERPOOL_TEST_MONGODB_URI";

/// The test server's URI; panics with the way to get one when unset, so a test that needs the
/// database can never pass without it.
pub fn mongodb_uri() -> String {
    std::env::var(MONGODB_URI_VAR).unwrap_or_else(|_| {
        panic!(
            "{MONGODB_URI_VAR} is not set: run the tests with `make test` (or \
             scripts/with-test-servers.sh cargo nextest run), which starts a MongoDB-compatible \
             server"
        )
    })
}

/// A database name no other test uses.
pub fn unique_database(label: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let label: String = label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(24)
        .collect();
    format!(
        "t_{label}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A store on a fresh database of the test server, with every index created.
pub async fn fresh_store(label: &str) -> Store {
    let store = Store::connect(&mongodb_uri(), &unique_database(label))
        .await
        .expect("connect to the test MongoDB server");
    store.ensure_indexes().await.expect("create indexes");
    store
}

/// Like [`fresh_store`], with a counter of the commands sent (round trips).
pub async fn counting_store(label: &str) -> (Store, CommandCounter) {
    let counter = CommandCounter::default();
    let mut options = ClientOptions::parse(mongodb_uri())
        .await
        .expect("parse the test MongoDB URI");
    counter.attach(&mut options);
    let store =
        Store::with_options(options, &unique_database(label)).expect("connect to the test server");
    store.ensure_indexes().await.expect("create indexes");
    (store, counter)
}

/// A server-side write failure on demand: from now on the server refuses to give any pool in
/// `minerPool` the score `score` (another pool holds it under a unique index). Returns the
/// index's name; dropping it ends the fault.
pub async fn refuse_pool_score(store: &Store, score: i64) -> String {
    use bson::{Document, doc};
    let index = "refused_score";
    store
        .collection::<Document>(crate::store::names::MINER_POOL)
        .insert_one(doc! { "pool_address": "holder-of-the-refused-score", "score": score })
        .await
        .expect("insert the score holder");
    store
        .database()
        .run_command(
            doc! { "createIndexes": crate::store::names::MINER_POOL, "indexes": [
                { "key": { "score": 1 }, "name": index, "unique": true },
            ] },
        )
        .await
        .expect("create the refusing index");
    index.to_owned()
}
