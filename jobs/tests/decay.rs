//! `decay`: the score sequence, validator resets, and round trips that do not grow with pools.

mod common;

use std::time::Duration;

use bson::{Document, doc};
use common::Harness;
use minerpool_core::chain::ChainClient;
use minerpool_core::config::Config;
use minerpool_core::store::names;
use minerpool_core::testing::counting_store;
use minerpool_jobs::{Context, Job, run_once};
use minerpool_tests::chain_sim::Scenario;
use minerpool_tests::fixtures::{INODE, REWARD};

async fn score_of(h: &Harness, address: &str) -> i64 {
    h.store
        .pool_scores()
        .find_one(doc! { "pool_address": address })
        .await
        .unwrap()
        .unwrap()
        .score
}

#[tokio::test]
async fn scores_decay_100_90_81_72_to_0_and_validators_reset() {
    let h = Harness::new("decay_sequence", Scenario::default()).await;
    h.store
        .collection::<Document>(names::MINER_POOL)
        .insert_many([
            doc! { "pool_address": "p100", "score": 100_i64 },
            doc! { "pool_address": "legacy", "score": "7" },
        ])
        .await
        .unwrap();
    h.store
        .collection::<Document>(names::VALIDATORS)
        .insert_one(doc! { "wallet_address": "v", "score": 1_i64 })
        .await
        .unwrap();
    let mut seen = vec![score_of(&h, "p100").await];
    while *seen.last().unwrap() > 0 {
        h.run_ok("decay").await;
        seen.push(score_of(&h, "p100").await);
        assert!(seen.len() < 100, "decay must reach 0");
    }
    assert_eq!(&seen[..6], &[100, 90, 81, 72, 64, 57]);
    for pair in seen.windows(2) {
        let expected = pair[0] - (pair[0] + 9) / 10;
        assert_eq!(pair[1], expected);
    }
    assert_eq!(score_of(&h, "legacy").await, 0);
    let v = h
        .store
        .validators()
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.score, 0);
}

/// Round trips of one decay pass over `pools` pools.
async fn decay_round_trips(pools: usize) -> u64 {
    let (store, counter) = counting_store("decay_round_trips").await;
    let docs: Vec<Document> = (0..pools)
        .map(|i| doc! { "pool_address": format!("pool{i}"), "score": 50_i64 })
        .collect();
    store
        .collection::<Document>(names::MINER_POOL)
        .insert_many(docs)
        .await
        .unwrap();
    let mut config = Config::with_wallets(INODE, REWARD);
    config.mongodb.database = store.database().name().to_owned();
    let context = Context {
        chain: ChainClient::new(&config.chain).unwrap(),
        config,
        store: store.clone(),
        // The lock is renewed every third of its lifetime, by the clock: a pass over 2000 pools
        // on the slow test server can take 20 s, and a renewal then is a round trip of time
        // passing, not of pools. A long lifetime keeps it out of the count.
        lock_ttl: Duration::from_secs(3600),
        stop: Default::default(),
        wallet_key: None,
    };
    let before = counter.count();
    run_once(Job::Decay, &context).await.unwrap();
    let trips = counter.count() - before;
    let decayed = store
        .pool_scores()
        .count_documents(doc! { "score": 45_i64 })
        .await
        .unwrap();
    assert_eq!(decayed as usize, pools);
    trips
}

#[tokio::test]
async fn decay_round_trips_do_not_grow_with_the_number_of_pools() {
    let few = decay_round_trips(10).await;
    let many = decay_round_trips(2000).await;
    println!("decay round trips: {few} for 10 pools, {many} for 2000 pools");
    assert_eq!(
        few, many,
        "round trips: {few} for 10 pools, {many} for 2000"
    );
    // the server's clock (once per process), lock, run record, the score history (two reads,
    // one write of the pools', a removal of expired days), two updates, run end, unlock.
    assert!(many <= 11, "{many} round trips");
}

/// The score history only feeds charts: a run that cannot write it still decays, and says why
/// the history is missing.
#[tokio::test]
async fn a_failed_score_history_does_not_hold_back_the_decay() {
    let h = Harness::new("decay_without_history", Scenario::default()).await;
    h.store
        .collection::<Document>(names::MINER_POOL)
        .insert_many([
            doc! { "pool_address": "p1", "score": 100_i64 },
            doc! { "pool_address": "p2", "score": 50_i64 },
        ])
        .await
        .unwrap();
    // A real server refusal: the second pool's day document would repeat a unique `kind`.
    h.store
        .database()
        .run_command(doc! { "createIndexes": names::SCORE_HISTORY, "indexes": [
            { "key": { "kind": 1 }, "name": "refused", "unique": true },
        ] })
        .await
        .unwrap();
    let summary = h.run_ok("decay").await;
    let error = summary["details"]["history"]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(error.contains("scoreHistory"), "{summary}");
    assert_eq!(score_of(&h, "p1").await, 90);
    assert_eq!(score_of(&h, "p2").await, 45);
    // Once the server takes it again, the next run records the history.
    h.store
        .collection::<Document>(names::SCORE_HISTORY)
        .drop_index("refused")
        .await
        .unwrap();
    let summary = h.run_ok("decay").await;
    assert_eq!(
        summary["details"]["history"]["scoresRecorded"], 2,
        "{summary}"
    );
    assert_eq!(score_of(&h, "p1").await, 81);
}
