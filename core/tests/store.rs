//! The store against the real MongoDB-compatible test server (see README: SecantusDB stands in
//! for mongod, which no reachable registry ships).

use bson::{Bson, DateTime, Document, doc};
use futures::TryStreamExt;
use minerpool_core::scoring;
use minerpool_core::store::intake::TaskReceipt;
use minerpool_core::store::intake::plan::{Activity, Recorded};
use minerpool_core::store::intake::{TaskRecorded, TaskWrites};
use minerpool_core::store::ledger::Balance;
use minerpool_core::store::registry::{PoolScore, RegisteredPool, Validator};
use minerpool_core::store::{Store, StoreError, names};
use minerpool_core::testing::{fresh_store, mongodb_uri, refuse_pool_score, unique_database};

#[tokio::test]
async fn unique_indexes_reject_duplicates() {
    let store = fresh_store("unique").await;
    let pool = RegisteredPool {
        id: None,
        pool_address: "pool-a".into(),
    };
    store.pool_list().insert_one(&pool).await.unwrap();
    let err = store.pool_list().insert_one(&pool).await.unwrap_err();
    assert!(
        minerpool_core::store::is_duplicate_key(&err),
        "expected E11000, got {err}"
    );

    let receipt = TaskReceipt {
        validator_wallet: "v".into(),
        val_id: "42".into(),
        accepted_at: DateTime::now(),
    };
    store.task_receipts().insert_one(&receipt).await.unwrap();
    let err = store
        .task_receipts()
        .insert_one(&receipt)
        .await
        .unwrap_err();
    assert!(minerpool_core::store::is_duplicate_key(&err), "{err}");
    // Same val_id from another validator is another receipt.
    let other = TaskReceipt {
        validator_wallet: "w".into(),
        ..receipt
    };
    store.task_receipts().insert_one(&other).await.unwrap();

    for (collection, key) in [
        (names::MINER_POOL, "pool_address"),
        (names::VALIDATORS, "wallet_address"),
        (names::BLOCK_TRANSACTIONS, "hash"),
        (names::BALANCES, "address"),
    ] {
        let c = store.collection::<Document>(collection);
        c.insert_one(doc! { key: "same" }).await.unwrap();
        let err = c.insert_one(doc! { key: "same" }).await.unwrap_err();
        assert!(
            minerpool_core::store::is_duplicate_key(&err),
            "{collection}.{key}: {err}"
        );
    }
}

#[tokio::test]
async fn creating_indexes_again_is_harmless() {
    let store = fresh_store("indexes_twice").await;
    store.ensure_indexes().await.unwrap();
    store.ensure_indexes().await.unwrap();
    let indexes: Vec<_> = store
        .task_receipts()
        .list_indexes()
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let ttl = indexes
        .iter()
        .find(|i| i.keys == doc! { "accepted_at": 1 })
        .expect("TTL index on taskReceipts.accepted_at");
    assert_eq!(
        ttl.options.as_ref().and_then(|o| o.expire_after),
        Some(std::time::Duration::from_secs(24 * 60 * 60))
    );
}

#[tokio::test]
async fn a_transaction_that_fails_midway_leaves_nothing_behind() {
    let store = fresh_store("tx_abort").await;
    let result: Result<(), StoreError> = store
        .with_transaction(|session| {
            let store = store.clone();
            Box::pin(async move {
                store
                    .balances()
                    .insert_one(Balance {
                        address: "a".into(),
                        pending: 5,
                        paid: 0,
                        updated_at: None,
                    })
                    .session(&mut *session)
                    .await
                    .map_err(StoreError::mongo("insert"))?;
                store
                    .collection::<Document>(names::BLOCK_HEIGHT)
                    .insert_one(doc! { "_id": "last_block_height", "block_height": 7_i64 })
                    .session(&mut *session)
                    .await
                    .map_err(StoreError::mongo("insert"))?;
                Err(StoreError::Invalid("injected failure between steps".into()))
            })
        })
        .await;
    assert!(matches!(result, Err(StoreError::Invalid(_))));
    assert_eq!(store.balances().count_documents(doc! {}).await.unwrap(), 0);
    assert_eq!(
        store.block_height().count_documents(doc! {}).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn a_committed_transaction_keeps_everything() {
    let store = fresh_store("tx_commit").await;
    let value = store
        .with_transaction(|session| {
            let balances = store.balances();
            Box::pin(async move {
                balances
                    .insert_one(Balance {
                        address: "a".into(),
                        pending: 5,
                        paid: 0,
                        updated_at: None,
                    })
                    .session(&mut *session)
                    .await
                    .map_err(StoreError::mongo("insert"))?;
                Ok(41 + 1)
            })
        })
        .await
        .unwrap();
    assert_eq!(value, 42);
    assert_eq!(store.balances().count_documents(doc! {}).await.unwrap(), 1);
}

#[tokio::test]
async fn conflicting_transactions_are_retried_and_none_is_lost() {
    let store = fresh_store("tx_conflict").await;
    let counter = store.collection::<Document>("counter");
    counter
        .insert_one(doc! { "_id": 1, "n": 0_i64 })
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .with_transaction(|session| {
                    let counter = store.collection::<Document>("counter");
                    Box::pin(async move {
                        let current = counter
                            .find_one(doc! { "_id": 1 })
                            .session(&mut *session)
                            .await
                            .map_err(StoreError::mongo("read"))?
                            .expect("counter exists");
                        let n = current.get_i64("n").unwrap();
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        counter
                            .update_one(doc! { "_id": 1 }, doc! { "$set": { "n": n + 1 } })
                            .session(&mut *session)
                            .await
                            .map_err(StoreError::mongo("write"))?;
                        Ok(())
                    })
                })
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let n = counter
        .find_one(doc! { "_id": 1 })
        .await
        .unwrap()
        .unwrap()
        .get_i64("n")
        .unwrap();
    assert_eq!(n, 8, "every read-modify-write transaction counted once");
}

#[tokio::test]
async fn documents_written_by_the_original_inode_are_read() {
    let store = fresh_store("legacy").await;
    let raw_validators = store.collection::<Document>(names::VALIDATORS);
    raw_validators
        .insert_many([
            // As the Python iNode left them: strings where numbers and times belong.
            doc! {
                "wallet_address": "legacy-1", "score": 0, "percentage": 12.5,
                "totalStake": 1234.5, "vote": 3, "ip": "0", "port": "5502", "ping": "0",
                "last_active_time": "2024-06-01 12:34:56.123456", "lastFetch": "0",
            },
            doc! {
                "wallet_address": "legacy-2", "score": "1", "percentage": "7",
                "ip": "10.1.2.3", "port": 5501_i32, "ping": "2024-06-01T12:00:00",
                "last_active_time": DateTime::from_millis(1_700_000_000_000),
            },
            doc! { "wallet_address": "legacy-3" },
        ])
        .await
        .unwrap();
    let mut validators: Vec<Validator> = store
        .validators()
        .find(doc! {})
        .sort(doc! { "wallet_address": 1 })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(validators.len(), 3);
    let third = validators.pop().unwrap();
    let second = validators.pop().unwrap();
    let first = validators.pop().unwrap();
    assert_eq!(first.port, Some(5502));
    assert_eq!(first.ip, None);
    assert_eq!(first.ping, None);
    assert_eq!(first.last_fetch, None);
    assert_eq!(first.percentage, 12.5);
    assert_eq!(
        first
            .last_active_time
            .unwrap()
            .try_to_rfc3339_string()
            .unwrap(),
        "2024-06-01T12:34:56.123Z"
    );
    assert_eq!(second.score, 1);
    assert_eq!(second.percentage, 7.0);
    assert_eq!(second.ip.as_deref(), Some("10.1.2.3"));
    assert_eq!(second.port, Some(5501));
    assert_eq!(
        second.ping.unwrap().try_to_rfc3339_string().unwrap(),
        "2024-06-01T12:00:00Z"
    );
    assert_eq!(third.score, 0);
    assert_eq!(third.port, None);

    let raw_pools = store.collection::<Document>(names::MINER_POOL);
    raw_pools
        .insert_one(
            doc! { "pool_address": "p", "score": 37.0, "last_active_time": "2024-06-01 00:00:00" },
        )
        .await
        .unwrap();
    let pool: PoolScore = store
        .pool_scores()
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(pool.score, 37);
    assert!(pool.last_active_time.is_some());
}

#[tokio::test]
async fn a_document_of_the_wrong_shape_is_an_error_that_names_the_field() {
    let store = fresh_store("bad_shape").await;
    store
        .collection::<Document>(names::VALIDATORS)
        .insert_one(doc! { "wallet_address": "x", "port": "fifty" })
        .await
        .unwrap();
    let err = store.validators().find_one(doc! {}).await.unwrap_err();
    assert!(err.to_string().contains("fifty"), "{err}");
}

#[tokio::test]
async fn a_replica_set_is_accepted_and_a_standalone_server_refused() {
    let store = fresh_store("replset").await;
    store.require_replica_set().await.unwrap();

    let standalone_uri = std::env::var("MINERPOOL_TEST_MONGODB_STANDALONE_URI")
        .expect("MINERPOOL_TEST_MONGODB_STANDALONE_URI is set by scripts/with-test-servers.sh");
    let standalone = Store::connect(&standalone_uri, &unique_database("standalone"))
        .await
        .unwrap();
    let err = standalone.require_replica_set().await.unwrap_err();
    assert!(matches!(err, StoreError::NotAReplicaSet(_)));
    let message = err.to_string();
    assert!(message.contains("replica set"), "{message}");
    assert!(message.contains("127.0.0.1"), "{message}");
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error() {
    let store = Store::connect(
        "mongodb://127.0.0.1:9/?serverSelectionTimeoutMS=300",
        "nowhere",
    )
    .await
    .unwrap();
    let err = store.ping().await.unwrap_err();
    assert!(err.to_string().contains("ping"), "{err}");
}

/// The server-side score expressions apply exactly the pure rules of `scoring`.
#[tokio::test]
async fn server_side_score_rules_match_the_pure_rules() {
    let store = fresh_store("score_rules").await;
    let pools = store.collection::<Document>(names::MINER_POOL);
    let docs: Vec<Document> = (0..=100_i64)
        .map(|s| doc! { "pool_address": format!("p{s}"), "score": s })
        .chain([
            doc! { "pool_address": "string-score", "score": "55" },
            doc! { "pool_address": "double-score", "score": 33.0 },
        ])
        .collect();
    pools.insert_many(docs).await.unwrap();
    pools
        .update_many(
            doc! {},
            vec![doc! { "$set": { "score": scoring::decayed_pool_score_expr() } }],
        )
        .await
        .unwrap();
    let after: Vec<Document> = pools
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    for d in after {
        let address = d.get_str("pool_address").unwrap();
        let before = match address {
            "string-score" => 55,
            "double-score" => 33,
            a => a[1..].parse().unwrap(),
        };
        assert_eq!(
            d.get("score"),
            Some(&Bson::Int64(scoring::decayed_pool_score(before))),
            "{address}"
        );
    }

    for (start, increment) in [
        (None, 3),
        (Some(0), 1),
        (Some(95), 10),
        (Some(100), 20),
        (Some(50), 2),
    ] {
        let address = format!("task-{start:?}-{increment}");
        if let Some(score) = start {
            pools
                .insert_one(doc! { "pool_address": &address, "score": score })
                .await
                .unwrap();
        }
        pools
            .update_one(
                doc! { "pool_address": &address },
                vec![doc! { "$set": { "score": scoring::pool_score_after_task_expr(increment) } }],
            )
            .upsert(true)
            .await
            .unwrap();
        let d = pools
            .find_one(doc! { "pool_address": &address })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            d.get_i64("score").unwrap(),
            scoring::pool_score_after_task(start.unwrap_or(0), increment),
            "{address}"
        );
    }
}

#[test]
fn the_test_server_uri_is_given() {
    assert!(mongodb_uri().starts_with("mongodb://"));
}

#[tokio::test]
async fn a_task_whose_score_failed_leaves_no_receipt_and_its_retries_score_once() {
    for writes in [TaskWrites::ClientBulkWrite, TaskWrites::Separate] {
        let store = fresh_store("task_retry").await;
        store
            .collection::<Document>(names::VALIDATORS)
            .insert_one(doc! { "wallet_address": "v", "percentage": 50.0, "score": 0_i64 })
            .await
            .unwrap();
        let refusal = refuse_pool_score(&store, 10).await;
        let now = DateTime::now();
        let task = [Activity::task("v", "p", "7", 10, now)];
        let err = store.write_group(&task, writes).await.unwrap_err();
        assert!(err.to_string().contains("E11000"), "{writes:?}: {err}");
        let receipts = store.task_receipts().count_documents(doc! {}).await;
        assert_eq!(
            receipts.unwrap(),
            0,
            "{writes:?}: a receipt outlived the error"
        );
        store
            .collection::<Document>(names::MINER_POOL)
            .drop_index(refusal)
            .await
            .unwrap();

        // The validator retries, over several connections at once.
        let retries: Vec<_> = (0..6)
            .map(|_| {
                let (store, task) = (store.clone(), task.clone());
                tokio::spawn(async move { store.write_group(&task, writes).await })
            })
            .collect();
        let mut accepted = 0;
        for retry in retries {
            if retry.await.unwrap().unwrap() == [Recorded::Task(TaskRecorded::Accepted)] {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 1, "{writes:?}: exactly one retry scores");
        let pool = store
            .pool_scores()
            .find_one(doc! { "pool_address": "p" })
            .await
            .unwrap()
            .expect("the retry scored the pool");
        assert_eq!(pool.score, 10, "{writes:?}");
        let validator = store
            .collection::<Document>(names::VALIDATORS)
            .find_one(doc! { "wallet_address": "v" })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(validator.get_i64("score"), Ok(1), "{writes:?}");
        assert_eq!(validator.get_datetime("last_active_time"), Ok(&now));
    }
}

/// Every public read is served by an index, as the server's own planner says (`explain`), on a
/// database with documents in every collection they read: no collection scan, whatever the
/// page. The totals of `/api/v1/stats` are a document the jobs refresh.
#[tokio::test]
async fn no_public_read_scans_a_collection() {
    use minerpool_core::store::paging::PublicFind;
    let store = fresh_store("explain").await;
    let address = "DfGQ4MBdMw7bjNn56A2d4pYi8M9yfV9iFA6mMLXLizEEp";
    let now = DateTime::now();
    for i in 0..50_i64 {
        let a = format!("address-{i:03}");
        let inserts = [
            (names::POOL_LIST, doc! { "pool_address": &a }),
            (names::MINER_POOL, doc! { "pool_address": &a, "score": i }),
            (
                names::VALIDATORS,
                doc! { "wallet_address": &a, "percentage": 1.0 },
            ),
            (
                names::BALANCES,
                doc! { "address": &a, "pending": i, "paid": 0_i64 },
            ),
            (
                names::JOB_RUNS,
                doc! { "_id": format!("run-{i}"), "job": "rewards", "started_at": now, "outcome": "succeeded" },
            ),
            (
                names::REWARD_DISTRIBUTIONS,
                doc! { "_id": format!("{i}-{i}"), "received": i, "created_at": now, "last_block": i,
                "lines": [{ "address": &a, "units": i }, { "address": address, "units": 1_i64 }] },
            ),
            (
                names::PAYOUT_BATCHES,
                doc! { "_id": format!("batch-{i}"), "state": "confirmed", "created_at": now,
                "recipients": [{ "address": &a, "units": i }, { "address": address, "units": 1_i64 }] },
            ),
        ];
        for (collection, document) in inserts {
            store
                .collection::<Document>(collection)
                .insert_one(document)
                .await
                .unwrap();
        }
    }
    store.refresh_totals().await.unwrap();
    let reads = PublicFind::every_public_read(address, now);
    assert!(reads.len() >= 20);
    for (what, find) in reads {
        let explained = store
            .database()
            .run_command(doc! { "explain": find.command(), "verbosity": "queryPlanner" })
            .await
            .unwrap_or_else(|e| panic!("explain of {what}: {e}"));
        // An aggregation's plan is under its first stage on MongoDB, at the top elsewhere.
        let planner = explained.get_document("queryPlanner").or_else(|_| {
            explained
                .get_array("stages")
                .ok()
                .and_then(|stages| stages.first()?.as_document()?.get_document("$cursor").ok())
                .ok_or(bson::document::ValueAccessError::NotPresent)?
                .get_document("queryPlanner")
        });
        let plan = planner
            .and_then(|p| p.get_document("winningPlan"))
            .unwrap_or_else(|_| panic!("{what}: no winning plan in {explained}"))
            .clone();
        let text = plan.to_string();
        println!("{what}: {text}");
        assert!(
            !text.contains("COLLSCAN"),
            "{what} scans a collection: {text}"
        );
        assert!(
            text.contains("IXSCAN") || text.contains("IDHACK") || text.contains("EXPRESS"),
            "{what} is not served by an index: {text}"
        );
    }
    let totals = store.totals().await.unwrap();
    assert_eq!(totals.pending, (0..50).sum::<i64>());
    assert_eq!(totals.distributions, 50);
    assert!(totals.as_of.is_some());
}
