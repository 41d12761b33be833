//! Group commit and the registry cache against the real MongoDB-compatible test server.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bson::{DateTime, Document, doc};
use futures::TryStreamExt;
use minerpool_core::scoring::pool_score_after_task;
use minerpool_core::store::Store;
use minerpool_core::store::intake::groups::ActivityGroups;
use minerpool_core::store::intake::plan::{Activity, Effect, Recorded};
use minerpool_core::store::intake::{TaskRecorded, TaskWrites, receipt_id};
use minerpool_core::store::names;
use minerpool_core::store::registry::cache::RegistryCache;
use minerpool_core::testing::{fresh_store, refuse_pool_score};

const WRITES: [TaskWrites; 2] = [TaskWrites::ClientBulkWrite, TaskWrites::Separate];

fn task(validator: &str, pool: &str, val_id: &str, increment: i64) -> Activity {
    Activity::task(validator, pool, val_id, increment, DateTime::now())
}

async fn add_validator(store: &Store, address: &str, percentage: f64) {
    store
        .collection::<Document>(names::VALIDATORS)
        .insert_one(doc! { "wallet_address": address, "percentage": percentage, "score": 0_i64 })
        .await
        .unwrap();
}

async fn scores(store: &Store) -> HashMap<String, i64> {
    let pools: Vec<Document> = store
        .collection::<Document>(names::MINER_POOL)
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    pools
        .iter()
        .filter_map(|p| {
            Some((
                p.get_str("pool_address").ok()?.to_owned(),
                p.get_i64("score").ok()?,
            ))
        })
        .collect()
}

async fn receipts(store: &Store) -> u64 {
    store
        .collection::<Document>(names::TASK_RECEIPTS)
        .count_documents(doc! {})
        .await
        .unwrap()
}

/// The scores the same TASKs give processed one at a time, from `start`.
fn sequential(start: &HashMap<String, i64>, tasks: &[Activity]) -> HashMap<String, i64> {
    let mut scores = start.clone();
    let mut accepted = std::collections::HashSet::new();
    for message in tasks {
        if let Effect::Task {
            pool,
            val_id,
            increment,
        } = &message.effect
            && accepted.insert(receipt_id(&message.validator, val_id))
        {
            let score = scores.entry(pool.clone()).or_insert(0);
            *score = pool_score_after_task(*score, *increment);
        }
    }
    scores
}

/// One group with a repeat inside it, a TASK accepted by an earlier group, one pool hit by many
/// validators across the cap, a fresh pool and PINGs: the sequential result, for both ways of
/// writing.
#[tokio::test]
async fn a_mixed_group_scores_as_its_tasks_one_at_a_time() {
    for writes in WRITES {
        let store = fresh_store("group_mixed").await;
        let validators: Vec<String> = (0..8).map(|i| format!("v{i}")).collect();
        for v in &validators {
            add_validator(&store, v, 20.0).await;
        }
        let earlier = vec![task("v0", "hot", "early", 4)];
        store.write_group(&earlier, writes).await.unwrap();
        let mut group = vec![task("v0", "hot", "early", 4)];
        for (i, v) in validators.iter().enumerate() {
            group.push(task(v, "hot", &format!("t{i}"), 10 + i as i64));
            group.push(task(v, "cold", &format!("c{i}"), 1));
        }
        group.push(task("v3", "hot", "t3", 7));
        group.push(Activity::ping("v1", "10.0.0.1", 5502, DateTime::now()));
        group.push(Activity::ping("v1", "10.0.0.2", 5503, DateTime::now()));
        let before = scores(&store).await;
        let outcomes = store.write_group(&group, writes).await.unwrap();

        let all: Vec<Activity> = earlier.iter().chain(&group).cloned().collect();
        let expected = sequential(&HashMap::new(), &all);
        assert_eq!(scores(&store).await, expected, "{writes:?} from {before:?}");
        assert_eq!(expected["hot"], 100, "the cap was crossed inside the group");
        assert_eq!(expected["cold"], 8);
        use TaskRecorded::*;
        assert_eq!(
            outcomes[0],
            Recorded::Task(Replayed),
            "accepted by the earlier group"
        );
        assert_eq!(outcomes[1], Recorded::Task(Accepted));
        assert_eq!(
            outcomes[group.len() - 3],
            Recorded::Task(Replayed),
            "repeat inside"
        );
        assert_eq!(outcomes[group.len() - 1], Recorded::Ping);
        assert_eq!(receipts(&store).await, 1 + 16);
        let v1 = store
            .collection::<Document>(names::VALIDATORS)
            .find_one(doc! { "wallet_address": "v1" })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v1.get_str("ip"), Ok("10.0.0.2"), "the later PING wins");
        assert_eq!(v1.get_i64("port"), Ok(5503));
        assert_eq!(v1.get_i64("score"), Ok(1));
        assert!(v1.get_datetime("last_active_time").is_ok());
        store.database().drop().await.unwrap();
    }
}

/// A validator's activity is written whether the group knows its `_id`, knows a stale one (the
/// document was replaced by another with the same address) or knows none.
#[tokio::test]
async fn validators_are_marked_whatever_their_known_id() {
    for writes in WRITES {
        let store = fresh_store("group_validator_ids").await;
        for v in ["v0", "v1", "v2"] {
            add_validator(&store, v, 20.0).await;
        }
        let validators = store.collection::<Document>(names::VALIDATORS);
        let v0 = validators
            .find_one(doc! { "wallet_address": "v0" })
            .await
            .unwrap()
            .unwrap();
        let with_id = |validator: &str, id: Option<bson::Bson>, val_id: &str| Activity {
            validator_id: id,
            ..Activity::task(validator, "p", val_id, 1, DateTime::now())
        };
        let group = vec![
            with_id("v0", v0.get("_id").cloned(), "a"),
            with_id("v1", Some(bson::oid::ObjectId::new().into()), "b"),
            with_id("v2", None, "c"),
        ];
        store.write_group(&group, writes).await.unwrap();
        for v in ["v0", "v1", "v2"] {
            let doc = validators
                .find_one(doc! { "wallet_address": v })
                .await
                .unwrap()
                .unwrap();
            assert_eq!(doc.get_i64("score"), Ok(1), "{writes:?} {v}");
            assert!(doc.get_datetime("last_active_time").is_ok());
        }
        store.database().drop().await.unwrap();
    }
}

/// A receipt stored before receipts had their key as `_id` is not found by the group's lookup;
/// the unique key index stops the write, and the group is written again with that TASK as a
/// replay.
#[tokio::test]
async fn a_receipt_the_lookup_misses_still_scores_once() {
    for writes in WRITES {
        let store = fresh_store("group_old_receipt").await;
        add_validator(&store, "v0", 20.0).await;
        store
            .collection::<Document>(names::TASK_RECEIPTS)
            .insert_one(
                doc! { "validator_wallet": "v0", "val_id": "old", "accepted_at": DateTime::now() },
            )
            .await
            .unwrap();
        let group = vec![task("v0", "p", "new", 4), task("v0", "p", "old", 4)];
        let outcomes = store.write_group(&group, writes).await.unwrap();
        assert_eq!(
            outcomes,
            vec![
                Recorded::Task(TaskRecorded::Accepted),
                Recorded::Task(TaskRecorded::Replayed)
            ],
            "{writes:?}"
        );
        assert_eq!(scores(&store).await["p"], 4);
        store.database().drop().await.unwrap();
    }
}

/// The database refuses one write in the middle of a group: every message of the group gets the
/// error, nothing of it is stored (no receipt would swallow a retry), and the retried group
/// scores exactly once.
#[tokio::test]
async fn a_failed_group_stores_nothing_and_its_retry_scores_once() {
    for writes in WRITES {
        let store = fresh_store("group_failure").await;
        for v in ["v0", "v1", "v2"] {
            add_validator(&store, v, 20.0).await;
        }
        // Pool "full" may not reach 100: another pool holds that score under a unique index.
        let refusal = refuse_pool_score(&store, 100).await;
        store
            .collection::<Document>(names::MINER_POOL)
            .insert_one(doc! { "pool_address": "full", "score": 99_i64 })
            .await
            .unwrap();
        let group = vec![
            task("v0", "other", "a", 4),
            task("v1", "full", "b", 4),
            task("v2", "other", "c", 4),
        ];
        let before = scores(&store).await;
        let failed = store.write_group(&group, writes).await;
        assert!(failed.is_err(), "{writes:?}: {failed:?}");
        assert_eq!(scores(&store).await, before);
        assert_eq!(receipts(&store).await, 0);
        let v0 = store
            .collection::<Document>(names::VALIDATORS)
            .find_one(doc! { "wallet_address": "v0" })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            v0.get_i64("score"),
            Ok(0),
            "no activity from a failed group"
        );

        store
            .collection::<Document>(names::MINER_POOL)
            .drop_index(refusal)
            .await
            .unwrap();
        let outcomes = store.write_group(&group, writes).await.unwrap();
        assert!(
            outcomes
                .iter()
                .all(|o| *o == Recorded::Task(TaskRecorded::Accepted))
        );
        let again = store.write_group(&group, writes).await.unwrap();
        assert!(
            again
                .iter()
                .all(|o| *o == Recorded::Task(TaskRecorded::Replayed))
        );
        let after = scores(&store).await;
        assert_eq!((after["full"], after["other"]), (100, 8));
        store.database().drop().await.unwrap();
    }
}

/// Through the writer: concurrent messages grouped as they come; those in a failing group all get
/// an error, the others succeed, and retrying the failed ones gives the sequential result.
#[tokio::test]
async fn every_message_of_a_failed_group_gets_an_error_and_loses_nothing() {
    let store = fresh_store("group_writer_failure").await;
    let validators: Vec<String> = (0..40).map(|i| format!("v{i}")).collect();
    for v in &validators {
        add_validator(&store, v, 20.0).await;
    }
    let refusal = refuse_pool_score(&store, 100).await;
    store
        .collection::<Document>(names::MINER_POOL)
        .insert_one(doc! { "pool_address": "full", "score": 99_i64 })
        .await
        .unwrap();
    let groups = ActivityGroups::start(store.clone(), TaskWrites::ClientBulkWrite, 512);
    let messages: Vec<Activity> = validators
        .iter()
        .enumerate()
        .map(|(i, v)| task(v, if i % 4 == 0 { "full" } else { "other" }, "x", 1))
        .collect();
    let replies =
        futures::future::join_all(messages.iter().map(|m| groups.record(m.clone()))).await;
    let failed: Vec<Activity> = messages
        .iter()
        .zip(&replies)
        .filter(|(_, r)| r.is_err())
        .map(|(m, _)| m.clone())
        .collect();
    for (message, reply) in messages.iter().zip(&replies) {
        if matches!(&message.effect, Effect::Task { pool, .. } if pool == "full") {
            assert!(reply.is_err(), "a TASK for the refused pool succeeded");
        }
    }
    let ok = replies.iter().filter(|r| r.is_ok()).count() as u64;
    assert_eq!(
        receipts(&store).await,
        ok,
        "a receipt for each success, none for an error"
    );
    store
        .collection::<Document>(names::MINER_POOL)
        .drop_index(refusal)
        .await
        .unwrap();
    for reply in futures::future::join_all(failed.iter().map(|m| groups.record(m.clone()))).await {
        assert_eq!(reply.unwrap(), Recorded::Task(TaskRecorded::Accepted));
    }
    let after = scores(&store).await;
    assert_eq!((after["full"], after["other"]), (100, 30));
    assert_eq!(receipts(&store).await, 40);
}

/// At shutdown the writer is closed: every message already queued is written and answered
/// (none left unanswered while the process exits), a message sent after the close is answered
/// with an error at once, and what was answered as accepted is in the database.
#[tokio::test]
async fn closing_the_writer_writes_and_answers_what_it_holds() {
    let store = fresh_store("group_writer_close").await;
    let validators: Vec<String> = (0..60).map(|i| format!("v{i}")).collect();
    for v in &validators {
        add_validator(&store, v, 20.0).await;
    }
    // Groups of 4: most of the 60 messages are still queued when the close comes.
    let groups = ActivityGroups::start(store.clone(), TaskWrites::ClientBulkWrite, 4);
    let queued: Vec<_> = validators
        .iter()
        .map(|v| {
            let (groups, message) = (groups.clone(), task(v, "pool", "closing", 1));
            tokio::spawn(async move { groups.record(message).await })
        })
        .collect();
    // Let every sender reach the queue (or wait on it) before closing.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        groups.close(Duration::from_secs(30)).await,
        "the writer ended within its timeout"
    );
    let mut accepted = 0;
    let replies = tokio::time::timeout(Duration::from_secs(5), futures::future::join_all(queued))
        .await
        .expect("every sender was answered once the writer closed");
    for reply in replies {
        match reply.expect("the sender ran to its end") {
            Ok(Recorded::Task(TaskRecorded::Accepted)) => accepted += 1,
            other => assert!(other.is_err(), "unexpected answer {other:?}"),
        }
    }
    assert!(accepted > 0, "nothing queued was written at the close");
    assert_eq!(
        receipts(&store).await,
        accepted,
        "every message answered as accepted is stored, and no other"
    );
    assert_eq!(scores(&store).await["pool"], accepted as i64);
    let late = groups.record(task("v0", "pool", "late", 1)).await;
    assert!(
        late.is_err(),
        "a message after the close is refused: {late:?}"
    );
    assert_eq!(receipts(&store).await, accepted);
}

/// How long a registry change may take to reach the cache; the README quotes it.
const REGISTRY_BOUND: Duration = Duration::from_secs(1);

async fn seen_within(
    cache: &RegistryCache,
    what: &str,
    check: impl Fn(&RegistryCache) -> bool,
) -> Duration {
    let started = Instant::now();
    while !check(cache) {
        assert!(
            started.elapsed() < REGISTRY_BOUND,
            "the cache did not see {what} within {REGISTRY_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let took = started.elapsed();
    println!("registry cache saw {what} after {took:?}");
    took
}

/// Pool added, pool removed, a validator's percentage dropped and removed, a validator added,
/// replaced and deleted: each reaches the cache within the bound.
#[tokio::test]
async fn the_registry_cache_follows_changes_within_the_bound() {
    let store = fresh_store("registry_cache").await;
    add_validator(&store, "v0", 5.0).await;
    store.register_pool("p0").await.unwrap();
    let cache = RegistryCache::start(store.clone(), Duration::from_secs(3600))
        .await
        .unwrap();
    let p = cache.parties(Some("v0"), Some("p0"));
    assert!(p.pool_registered && p.validator_percentage == Some(5.0));
    let validators = store.collection::<Document>(names::VALIDATORS);

    store.register_pool("p1").await.unwrap();
    seen_within(&cache, "a pool added", |c| {
        c.parties(None, Some("p1")).pool_registered
    })
    .await;
    store.unregister_pool("p0").await.unwrap();
    seen_within(&cache, "a pool removed", |c| {
        !c.parties(None, Some("p0")).pool_registered
    })
    .await;
    validators
        .update_one(
            doc! { "wallet_address": "v0" },
            doc! { "$set": { "percentage": 0.5 } },
        )
        .await
        .unwrap();
    seen_within(&cache, "a percentage dropped", |c| {
        c.parties(Some("v0"), None).validator_percentage == Some(0.5)
    })
    .await;
    validators
        .update_one(
            doc! { "wallet_address": "v0" },
            doc! { "$unset": { "percentage": 1 } },
        )
        .await
        .unwrap();
    seen_within(&cache, "a percentage removed", |c| {
        let p = c.parties(Some("v0"), None);
        p.validator_found && p.validator_percentage.is_none()
    })
    .await;
    add_validator(&store, "v1", 2.0).await;
    seen_within(&cache, "a validator added", |c| {
        c.parties(Some("v1"), None).validator_percentage == Some(2.0)
    })
    .await;
    validators
        .replace_one(
            doc! { "wallet_address": "v1" },
            doc! { "wallet_address": "v1", "percentage": "7.5" },
        )
        .await
        .unwrap();
    seen_within(&cache, "a validator replaced (percentage as text)", |c| {
        c.parties(Some("v1"), None).validator_percentage == Some(7.5)
    })
    .await;
    validators
        .delete_one(doc! { "wallet_address": "v1" })
        .await
        .unwrap();
    seen_within(&cache, "a validator deleted", |c| {
        !c.parties(Some("v1"), None).validator_found
    })
    .await;
    // Activity that every TASK writes is not a registry change: no reload.
    let loads = cache.loads();
    validators
        .update_one(
            doc! { "wallet_address": "v0" },
            doc! { "$set": { "score": 1_i64 } },
        )
        .await
        .unwrap();
    // A registry drop makes the cache read everything again.
    store
        .collection::<Document>(names::POOL_LIST)
        .drop()
        .await
        .unwrap();
    seen_within(&cache, "the pool registry dropped", |c| {
        !c.parties(None, Some("p1")).pool_registered
    })
    .await;
    assert!(cache.loads() > loads, "a drop is answered with a full read");
    store.database().drop().await.unwrap();
}

/// The backstop: the cache reads everything again every period, whatever the stream says.
#[tokio::test]
async fn the_registry_cache_reads_everything_again_periodically() {
    let store = fresh_store("registry_reload").await;
    let cache = RegistryCache::start(store.clone(), Duration::from_millis(300))
        .await
        .unwrap();
    let first = cache.loads();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        cache.loads() >= first + 2,
        "loads: {} then {}",
        first,
        cache.loads()
    );
    store.database().drop().await.unwrap();
}
