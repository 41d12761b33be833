//! A randomized soak of rewards and payouts together, with the real `minerpool-job` binary, the
//! test MongoDB server and the chain simulator answering as the uPow node does: every round a new
//! block pays the iNode, then rewards and payouts run under one injected fault (a real crash at a
//! random step, a push accepted but answered with a timeout, an error or a refusal, lagging
//! lookups, rate limits, a reorganisation of the unsettled tip, an abandon by hand). After every
//! round no recipient has ever been paid on chain more than it was credited; at the end every
//! recipient's on-chain total equals its `paid`, and the audit (solvency and the on-chain check of
//! refunded batches included) passes.
//!
//! `soak_short` runs in `make test`; `soak_long` (ignored by default) runs several hundred
//! rounds: `scripts/with-test-servers.sh cargo nextest run --workspace --run-ignored only -E 'test(soak_long)' --no-capture`
//! (`MINERPOOL_SOAK_ROUNDS` sets the rounds, `MINERPOOL_SOAK_SEED` the seed).

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Harness, stderr};
use minerpool_core::config::Sender;
use minerpool_core::money::Amount;
use minerpool_core::store::registry::PoolScore;
use minerpool_core::upow::{address_of, parse_private_key};
use minerpool_tests::chain_sim::{
    Lag, PushMode, RateLimits, Scenario, SimBlock, SimOutput, SimTransaction,
};
use minerpool_tests::fixtures::PAYER;

const WALLET_KEY: &str = "0xc0ffee";
const START: u64 = 100;

fn address_of_key(key: &str) -> String {
    address_of(parse_private_key(key).unwrap().verifying_key())
}

/// xorshift64: seeded, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A block paying the wallet `units` from an outside payer.
fn income(id: u64, wallet: &str, units: i64) -> SimBlock {
    SimBlock::new(
        id,
        vec![SimTransaction {
            hash: format!("{:016x}{id:048x}", 0xfeed_u64),
            coinbase: false,
            transaction_type: Some("REGULAR".into()),
            inputs: vec![PAYER.into()],
            outputs: vec![SimOutput {
                address: wallet.to_owned(),
                amount: Amount::from_units(units).unwrap(),
                output_type: "REGULAR".into(),
            }],
            spent: vec![],
        }],
    )
}

/// Units credited to each address by every distribution so far.
async fn credited(h: &Harness) -> BTreeMap<String, i64> {
    let mut credited = BTreeMap::new();
    for d in h.distributions().await {
        for line in d.lines {
            *credited.entry(line.address).or_insert(0) += line.units;
        }
    }
    credited
}

#[derive(Default, Debug)]
struct Figures {
    rounds: u32,
    faults: BTreeMap<&'static str, u32>,
    failed_runs: u32,
    /// Payouts runs blocked because the reward address's pending did not cover the fee yet.
    blocked_runs: u32,
}

/// A blocked run (exit 3): it could not do its work, which here is the fee not yet covered.
fn blocked(output: &std::process::Output) -> bool {
    output.status.code() == Some(i32::from(minerpool_jobs::BLOCKED_EXIT_CODE))
}

/// Crashes between transactions. A crash inside one leaves it open on the server until its
/// lifetime limit (60 s), which `jobs/tests/rewards.rs` covers step by step; here it would only
/// make every such round a minute long.
const REWARDS_POINTS: [&str; 1] = ["rewards:after-commit"];
const PAYOUTS_POINTS: [&str; 5] = [
    "payouts:after-create",
    "payouts:after-sign",
    "payouts:after-push",
    "payouts:after-record",
    "payouts:after-abandon-sign",
];

async fn soak(label: &str, rounds: u32, seed: u64) {
    let wallet = address_of_key(WALLET_KEY);
    let pools: Vec<String> = (11..16)
        .map(|k| address_of_key(&format!("{k:x}")))
        .collect();
    let h = Harness::with_config(label, Scenario::default(), |c| {
        c.chain.inode_wallet = wallet.clone();
        c.chain.request_timeout_seconds = 1;
        c.chain.rate_limit_wait_seconds = 5;
        c.rewards.start_height = START;
        c.rewards.confirmations = 2;
        c.payouts.sender = Sender::Upow;
        c.payouts.minimum_payout = Amount::parse("0.5").unwrap();
        c.payouts.max_outputs_per_tx = 3;
        c.payouts.fee = Amount::parse("0.0001").unwrap();
        c.payouts.abandon_after_seconds = 0;
    })
    .await;
    h.store
        .pool_scores()
        .insert_many(pools.iter().enumerate().map(|(i, p)| PoolScore {
            pool_address: p.clone(),
            score: 10 + 20 * i as i64,
            last_active_time: None,
        }))
        .await
        .unwrap();
    let mut rng = Rng(seed.max(1));
    let mut figures = Figures::default();
    let mut next_block = START;
    let env = |fault: Option<&str>| {
        let mut env = vec![("MINERPOOL_WALLET_KEY", WALLET_KEY.to_owned())];
        if let Some(point) = fault {
            env.push(("MINERPOOL_FAULT", point.to_owned()));
        }
        env
    };
    let run = |job: &'static str, env: Vec<(&'static str, String)>| {
        let h = &h;
        async move {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            h.run(job, &env).await
        }
    };

    for round in 0..rounds {
        figures.rounds += 1;
        let units = (rng.below(40) as i64 + 1) * 10_000_000 + rng.below(997) as i64;
        h.sim.add_block(income(next_block, &wallet, units));
        next_block += 1;

        let mut rewards_fault = None;
        let mut payouts_fault = None;
        let mut abandon = None;
        let fault: &'static str = match rng.below(11) {
            0 => {
                rewards_fault =
                    Some(REWARDS_POINTS[rng.below(REWARDS_POINTS.len() as u64) as usize]);
                "rewards crash"
            }
            1 => {
                payouts_fault =
                    Some(PAYOUTS_POINTS[rng.below(PAYOUTS_POINTS.len() as u64) as usize]);
                "payouts crash"
            }
            2 => {
                h.sim.set_push_mode(PushMode::AcceptThenTimeout);
                "accepted, answer timed out"
            }
            3 => {
                h.sim.set_push_mode(PushMode::Reject);
                "push refused"
            }
            4 => {
                h.sim.set_push_mode(PushMode::AcceptThenNotAdded);
                "accepted, answered not added"
            }
            5 => {
                h.sim.set_accept_lag(Some(Lag::Lookups(3)));
                "lagging lookups"
            }
            6 => {
                h.sim.set_rate_limits(Some(RateLimits::node_scaled(60)));
                "rate limits"
            }
            7 => {
                let open = h.store.open_payout_batches().await.unwrap();
                abandon = open.first().map(|b| b.id.clone());
                "abandon by hand"
            }
            8 => {
                // The tip is less than `confirmations` deep: nothing settled depends on it.
                let tip = h.sim.tip().unwrap();
                h.sim.reorg(tip, vec![]).unwrap();
                "reorganisation of the tip"
            }
            9 => {
                h.sim.set_push_mode(PushMode::AcceptThenServerError);
                "accepted, answered HTTP 500"
            }
            _ => "none",
        };
        *figures.faults.entry(fault).or_default() += 1;

        let rewards = run("rewards", env(rewards_fault)).await;
        let payouts = match &abandon {
            Some(id) => {
                let env = env(None);
                let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                h.run_args("payouts", &["--abandon", id], &env).await
            }
            None => run("payouts", env(payouts_fault)).await,
        };
        for (job, output, crashed) in [
            ("rewards", &rewards, rewards_fault.is_some()),
            ("payouts", &payouts, payouts_fault.is_some()),
        ] {
            if blocked(output) {
                figures.blocked_runs += 1;
                let err = stderr(output);
                assert!(
                    err.contains("payouts.fee 0.00010000 is not covered"),
                    "round {round}: {job} blocked with fault {fault:?}: {err}"
                );
            } else if !output.status.success() {
                figures.failed_runs += 1;
                // Only an injected crash (a signal) or the chain's refusal to answer in time may
                // fail a run; anything else is a defect.
                let err = stderr(output);
                assert!(
                    crashed || err.contains("no answer within") || err.contains("rate limited"),
                    "round {round}: {job} failed with fault {fault:?}: {err}"
                );
            }
            if crashed {
                // A crashed run's lock expires after 1 s.
                tokio::time::sleep(Duration::from_millis(1100)).await;
            }
        }
        h.sim.set_push_mode(PushMode::Normal);
        h.sim.set_accept_lag(None);
        h.sim.set_rate_limits(None);
        if rng.below(3) > 0 {
            h.sim.mine();
            next_block = h.sim.tip().unwrap() + 1;
        }

        // Never paid more than credited, at any point.
        let credit = credited(&h).await;
        for (address, units) in &credit {
            let (confirmed, _) = h.sim.confirmed_paid_to(address);
            let (pending, _) = h.sim.pending_paid_to(address);
            assert!(
                (confirmed + pending) as i64 <= *units,
                "round {round}: {address} paid {confirmed} + {pending} pending on chain, credited {units}"
            );
        }
    }

    // Settle: a quiet chain until nothing is in flight.
    for _ in 0..40 {
        if h.store.open_payout_batches().await.unwrap().is_empty() {
            break;
        }
        for _ in 0..3 {
            h.sim.mine();
        }
        let settled = run("payouts", env(None)).await;
        assert!(
            settled.status.success() || blocked(&settled),
            "{}",
            stderr(&settled)
        );
    }
    let open = h.store.open_payout_batches().await.unwrap();
    assert!(open.is_empty(), "still in flight: {open:?}");

    let credit = credited(&h).await;
    let mut paid_total = 0;
    for address in credit.keys() {
        let (_, paid) = h.balance(address).await;
        let (on_chain, _) = h.sim.confirmed_paid_to(address);
        assert_eq!(on_chain as i64, paid, "{address}: on chain vs paid");
        assert_eq!(h.sim.pending_paid_to(address).0, 0, "{address}");
        paid_total += paid;
    }
    let audit = h.run_ok("audit").await;
    let batches = h.batches().await;
    let by_state = batches.iter().fold(BTreeMap::new(), |mut m, b| {
        *m.entry(format!("{:?}", b.state)).or_insert(0) += 1;
        m
    });
    println!(
        "soak {label}: {} rounds (seed {seed}), faults {:?}, {} runs failed as injected, {} payouts runs blocked on the fee",
        figures.rounds, figures.faults, figures.failed_runs, figures.blocked_runs
    );
    println!(
        "  transactions mined: {}, batches by state: {by_state:?}",
        h.sim.mined_hashes().len()
    );
    println!(
        "  units credited {}, paid {paid_total}, audit {}",
        credit.values().sum::<i64>(),
        audit["details"]
    );
}

fn seed() -> u64 {
    std::env::var("MINERPOOL_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed)
}

#[tokio::test]
async fn soak_short() {
    soak("soak_short", 30, seed()).await;
}

#[tokio::test]
#[ignore = "several minutes: run on purpose"]
async fn soak_long() {
    let rounds = std::env::var("MINERPOOL_SOAK_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    soak("soak_long", rounds, seed()).await;
}
