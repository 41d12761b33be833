//! Distributes one block range to 10,000 pools and 60 validators, and prints the time and the
//! MongoDB round trips (command monitoring), next to a run with 100 pools: the round trips must
//! not grow with the number of pools.
//!
//! Run: `scripts/with-test-servers.sh cargo bench -p minerpool-jobs --bench rewards`

use std::time::{Duration, Instant};

use bson::{Document, doc};
use minerpool_core::chain::ChainClient;
use minerpool_core::config::Config;
use minerpool_core::money::Amount;
use minerpool_core::store::names;
use minerpool_core::testing::counting_store;
use minerpool_jobs::{Context, Job, run_once};
use minerpool_tests::chain_sim::{ChainSim, Scenario, SimBlock, SimOutput, SimTransaction};
use minerpool_tests::fixtures::{INODE, PAYER, REWARD};

struct Figures {
    pools: usize,
    elapsed: Duration,
    round_trips: u64,
    lines: usize,
}

async fn distribute_to(pools: usize) -> Figures {
    let (store, counter) = counting_store("bench_rewards").await;
    let docs: Vec<Document> = (0..pools)
        .map(|i| doc! { "pool_address": format!("pool{i:05}"), "score": (i % 100 + 1) as i64 })
        .collect();
    store
        .collection::<Document>(names::MINER_POOL)
        .insert_many(docs)
        .await
        .expect("seed pools");
    let validators: Vec<Document> = (0..60)
        .map(|i| doc! { "wallet_address": format!("validator{i:02}"), "percentage": 1.66, "score": 1_i64 })
        .collect();
    store
        .collection::<Document>(names::VALIDATORS)
        .insert_many(validators)
        .await
        .expect("seed validators");
    let sim = ChainSim::start(Scenario {
        blocks: vec![SimBlock::new(
            20001,
            vec![SimTransaction {
                hash: "income".into(),
                coinbase: false,
                transaction_type: Some("REGULAR".into()),
                inputs: vec![PAYER.into()],
                outputs: vec![SimOutput {
                    address: INODE.into(),
                    amount: Amount::parse("1234.56789012").expect("amount"),
                    output_type: "REGULAR".into(),
                }],
                spent: vec![],
            }],
        )],
        validators: vec![],
        utxos: vec![],
    })
    .await;
    let mut config = Config::with_wallets(INODE, REWARD);
    config.mongodb.database = store.database().name().to_owned();
    config.chain.api_url = sim.url.clone();
    config.chain.allow_insecure_http = true;
    // The one block is the tip: credit it without waiting for confirmations (this measures the
    // distribution, not the scan).
    config.rewards.confirmations = 0;
    let context = Context {
        chain: ChainClient::new(&config.chain).expect("chain client"),
        config,
        store: store.clone(),
        // Long enough that no renewal (a round trip of time, not of work) enters the count.
        lock_ttl: Duration::from_secs(3600),
        stop: Default::default(),
        wallet_key: None,
    };
    let before = counter.count();
    let started = Instant::now();
    let summary = run_once(Job::Rewards, &context).await.expect("rewards run");
    let elapsed = started.elapsed();
    let round_trips = counter.count() - before;
    let lines = summary.details["ledgerLines"].as_u64().unwrap_or(0) as usize;
    let credited = store
        .balances()
        .count_documents(doc! {})
        .await
        .expect("count balances");
    assert_eq!(
        credited as usize,
        pools + 60 + 1,
        "every pool, validator and the reward address"
    );
    store
        .database()
        .drop()
        .await
        .expect("drop the bench database");
    Figures {
        pools,
        elapsed,
        round_trips,
        lines,
    }
}

#[tokio::main]
async fn main() {
    println!("rewards distribution: one block range, 60 validators");
    println!(
        "{:>8} {:>12} {:>12} {:>12}",
        "pools", "ledger lines", "round trips", "time"
    );
    let mut figures = Vec::new();
    for pools in [100, 10_000] {
        let f = distribute_to(pools).await;
        println!(
            "{:>8} {:>12} {:>12} {:>10.1?}",
            f.pools, f.lines, f.round_trips, f.elapsed
        );
        figures.push(f);
    }
    let (small, large) = (&figures[0], &figures[1]);
    println!(
        "round trips grow {:.2}x for {}x the pools",
        large.round_trips as f64 / small.round_trips as f64,
        large.pools / small.pools
    );
}
