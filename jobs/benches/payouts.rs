//! Pays 10,000 balances through the chain simulator, one batch of up to 254 recipients per run
//! (each mined before the next, as a new batch waits for the last to confirm), and prints the
//! time and the MongoDB round trips per batch.
//!
//! Run: `scripts/with-test-servers.sh cargo bench -p minerpool-jobs --bench payouts`

use std::time::{Duration, Instant};

use minerpool_core::chain::ChainClient;
use minerpool_core::config::{Config, Sender};
use minerpool_core::money::Amount;
use minerpool_core::store::ledger::Balance;
use minerpool_core::testing::counting_store;
use minerpool_core::upow::{address_of, parse_private_key};
use minerpool_jobs::{Context, Job, run_once};
use minerpool_tests::chain_sim::{ChainSim, Scenario, SimUtxo};
use minerpool_tests::fixtures::REWARD;

const BALANCES: usize = 10_000;

#[tokio::main]
async fn main() {
    let key = "0xc0ffee";
    let wallet = address_of(parse_private_key(key).unwrap().verifying_key());
    let (store, counter) = counting_store("bench_payouts").await;
    let balances: Vec<Balance> = (1..=BALANCES)
        .map(|d| Balance {
            address: address_of(
                parse_private_key(&format!("{:x}", d + 1000))
                    .unwrap()
                    .verifying_key(),
            ),
            pending: 100_000_000 + d as i64,
            paid: 0,
            updated_at: None,
        })
        .collect();
    let owed: i64 = balances.iter().map(|b| b.pending).sum();
    store.balances().insert_many(balances).await.unwrap();
    let utxos = (0..400)
        .map(|i| SimUtxo {
            owner: wallet.clone(),
            tx_hash: format!("{:064x}", i + 1),
            index: 0,
            amount: Amount::parse("100").unwrap(),
        })
        .collect();
    let sim = ChainSim::start(Scenario {
        utxos,
        ..Scenario::default()
    })
    .await;
    let mut config = Config::with_wallets(&wallet, REWARD);
    config.mongodb.database = store.database().name().to_owned();
    config.chain.api_url = sim.url.clone();
    config.chain.allow_insecure_http = true;
    config.payouts.sender = Sender::Upow;
    config.payouts.max_outputs_per_tx = 254;
    // Each mined block counts as settled at once: the bench measures paying, not waiting.
    config.rewards.confirmations = 0;
    let context = Context {
        chain: ChainClient::new(&config.chain).unwrap(),
        config,
        store: store.clone(),
        // Long enough that no renewal (a round trip of time, not of work) enters the count.
        lock_ttl: Duration::from_secs(3600),
        stop: Default::default(),
        wallet_key: Some(key.into()),
    };
    let before = counter.count();
    let started = Instant::now();
    let mut runs = 0;
    loop {
        runs += 1;
        let summary = run_once(Job::Payouts, &context).await.expect("payouts run");
        sim.mine();
        let created = summary.details["created"].is_object();
        let settled = summary.details["settled"].as_array().map_or(0, Vec::len);
        if !created && settled == 0 {
            break;
        }
        assert!(runs < 200, "payouts do not finish");
    }
    let elapsed = started.elapsed();
    let round_trips = counter.count() - before;
    let batches = sim.accepted();
    let paid: i64 = store.audit().await.unwrap().paid;
    assert_eq!(paid, owed, "every balance paid");
    println!("payouts: {BALANCES} balances, up to 254 recipients per transaction");
    println!("  batches (transactions): {batches} in {runs} runs");
    println!(
        "  time: {elapsed:.2?} ({:.0?} per batch)",
        elapsed / batches as u32
    );
    println!(
        "  MongoDB round trips: {round_trips} ({:.1} per batch)",
        round_trips as f64 / batches as f64
    );
    store.database().drop().await.unwrap();
}
