//! Standalone mode's job schedule (SPEC §4.4) against the test MongoDB server and the chain
//! simulator.

use std::time::{Duration, Instant};

use bson::{Document, doc};
use futures::TryStreamExt;
use minerpool_core::chain::ChainClient;
use minerpool_core::config::Config;
use minerpool_core::store::names;
use minerpool_core::testing::fresh_store;
use minerpool_jobs::Context;
use minerpool_node::standalone::spawn_schedule;
use minerpool_tests::chain_sim::{ChainSim, Scenario};
use minerpool_tests::fixtures::{INODE, REWARD};
use tokio_util::sync::CancellationToken;

/// A blocked run (here: the start height above the chain's tip) is not an error loop: each run
/// is recorded blocked with its reason, none fails, and the schedule tries again at the next
/// interval; once the chain reaches the start height, the next run credits.
#[tokio::test]
async fn a_blocked_run_is_tried_again_at_the_next_interval() {
    let store = fresh_store("standalone_blocked").await;
    let sim = ChainSim::start(Scenario::default()).await;
    let mut config = Config::with_wallets(INODE, REWARD);
    config.mongodb.database = store.database().name().to_owned();
    config.chain.api_url = sim.url.clone();
    config.chain.allow_insecure_http = true;
    config.chain.request_timeout_seconds = 2;
    config.rewards.start_height = 5;
    config.rewards.confirmations = 1;
    config.schedule.rewards_seconds = 1;
    config.schedule.payouts_seconds = 3600;
    config.schedule.validators_seconds = 3600;
    config.schedule.decay_seconds = 3600;
    let context = Context {
        chain: ChainClient::new(&config.chain).unwrap(),
        config,
        store: store.clone(),
        lock_ttl: Duration::from_secs(5),
        wallet_key: None,
        stop: CancellationToken::new(),
    };
    let handles = spawn_schedule(context.clone());
    let rewards_runs = || async {
        store
            .collection::<Document>(names::JOB_RUNS)
            .find(doc! { "job": "rewards", "outcome": { "$ne": "running" } })
            .await
            .unwrap()
            .try_collect::<Vec<Document>>()
            .await
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while rewards_runs().await.len() < 2 {
        assert!(Instant::now() < deadline, "{:?}", rewards_runs().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for run in rewards_runs().await {
        assert_eq!(run.get_str("outcome"), Ok("blocked"), "{run}");
        assert!(
            run.get_str("reason")
                .unwrap()
                .starts_with("rewards.startHeight 5 is above the chain's tip"),
            "{run}"
        );
    }
    for _ in 0..7 {
        sim.mine();
    }
    while rewards_runs()
        .await
        .iter()
        .all(|r| r.get_str("outcome") != Ok("succeeded"))
    {
        assert!(Instant::now() < deadline, "{:?}", rewards_runs().await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.last_scanned_height().await.unwrap(), Some(6));
    context.stop.cancel();
    for handle in handles {
        handle.await.unwrap();
    }
    assert!(
        rewards_runs()
            .await
            .iter()
            .all(|r| r.get_str("outcome") != Ok("failed")),
        "{:?}",
        rewards_runs().await
    );
}
