//! `minerpool-job rewards` against a scripted chain and the real test MongoDB server.

mod common;

use std::collections::BTreeMap;

use bson::{Document, doc};
use common::{Harness, signal, stderr, summary};
use futures::TryStreamExt;
use minerpool_core::config::Config;
use minerpool_core::money::Amount;
use minerpool_core::store::ledger::rewards::SCANNED_BLOCKS_KEPT;
use minerpool_core::store::ledger::{Basis, LedgerKind, RewardDistribution};
use minerpool_core::store::names;
use minerpool_tests::chain_sim::{
    Failure, RateLimit, RateLimits, Scenario, SimBlock, SimOutput, SimTransaction, SimValidator,
};
use minerpool_tests::fixtures::*;

fn units(text: &str) -> Amount {
    Amount::parse(text).unwrap()
}

fn out(address: &str, amount: &str, kind: &str) -> SimOutput {
    SimOutput {
        address: address.into(),
        amount: units(amount),
        output_type: kind.into(),
    }
}

fn tx(hash: &str, kind: Option<&str>, inputs: &[&str], outputs: Vec<SimOutput>) -> SimTransaction {
    SimTransaction {
        hash: hash.into(),
        coinbase: false,
        transaction_type: kind.map(str::to_owned),
        inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
        outputs,
        spent: vec![],
    }
}

fn coinbase(hash: &str, outputs: Vec<SimOutput>) -> SimTransaction {
    SimTransaction {
        hash: hash.into(),
        coinbase: true,
        transaction_type: None,
        inputs: vec![],
        outputs,
        spent: vec![],
    }
}

fn block(id: u64, transactions: Vec<SimTransaction>) -> SimBlock {
    SimBlock::new(id, transactions)
}

/// A block that pays the iNode nothing (only its coinbase, to the miner).
fn quiet(id: u64) -> SimBlock {
    block(
        id,
        vec![coinbase(
            &format!("c{id}"),
            vec![out(MINER, "6", "REGULAR")],
        )],
    )
}

/// A block whose transaction `hash` pays the iNode `amount`.
fn paying(id: u64, hash: &str, amount: &str) -> SimBlock {
    block(
        id,
        vec![
            coinbase(&format!("c{id}"), vec![out(MINER, "6", "REGULAR")]),
            tx(
                hash,
                Some("REGULAR"),
                &[PAYER],
                vec![out(INODE, amount, "REGULAR")],
            ),
        ],
    )
}

/// Ten blocks make the first pass (100–109).
const BLOCKS_PER_RUN: u32 = 10;

/// The default `rewards.confirmations`: every test runs with it.
const CONFIRMATIONS: u64 = 10;

async fn harness(label: &str, scenario: Scenario) -> Harness {
    harness_with(label, scenario, |_| {}).await
}

async fn harness_with(
    label: &str,
    scenario: Scenario,
    adjust: impl FnOnce(&mut Config),
) -> Harness {
    Harness::with_config(label, scenario, |c| {
        c.rewards.blocks_per_run = BLOCKS_PER_RUN;
        assert_eq!(u64::from(c.rewards.confirmations), CONFIRMATIONS);
        adjust(c);
    })
    .await
}

/// Income: 2.5 (coinbase share) + 12.1 (REGULAR) + 0.00000001 (the REGULAR output beside a
/// STAKE one) + 1 (untyped) in blocks 100–109; the STAKE transaction and the self-send pay
/// nothing; block 110 repeats the 12.1 transaction; block 111 pays 0.3. Blocks 112–121 pay
/// nothing and settle 111 (ten confirmations).
fn scripted_chain() -> Scenario {
    let mut scenario = scripted_income();
    scenario
        .blocks
        .extend((105..=108).chain(112..=121).map(quiet));
    scenario.blocks.sort_by_key(|b| b.id);
    scenario
}

fn scripted_income() -> Scenario {
    Scenario {
        blocks: vec![
            block(
                100,
                vec![coinbase(
                    "c100",
                    vec![out(MINER, "6", "REGULAR"), out(INODE, "2.5", "REGULAR")],
                )],
            ),
            block(
                101,
                vec![
                    coinbase("c101", vec![out(MINER, "6", "REGULAR")]),
                    tx(
                        "t1",
                        Some("REGULAR"),
                        &[PAYER],
                        vec![out(INODE, "12.1", "REGULAR"), out(PAYER, "0.4", "REGULAR")],
                    ),
                ],
            ),
            block(
                102,
                vec![
                    coinbase("c102", vec![out(MINER, "6", "REGULAR")]),
                    tx(
                        "t2-stake",
                        Some("STAKE"),
                        &[PAYER],
                        vec![out(INODE, "5", "REGULAR")],
                    ),
                ],
            ),
            block(
                103,
                vec![
                    coinbase("c103", vec![out(MINER, "6", "REGULAR")]),
                    tx(
                        "t3-self-send",
                        Some("REGULAR"),
                        &[INODE],
                        vec![out(INODE, "7", "REGULAR"), out(POOL_A, "1", "REGULAR")],
                    ),
                ],
            ),
            block(
                104,
                vec![
                    coinbase("c104", vec![out(MINER, "6", "REGULAR")]),
                    tx(
                        "t4",
                        Some("REGULAR"),
                        &[PAYER],
                        vec![
                            out(INODE, "3", "STAKE"),
                            out(INODE, "0.00000001", "REGULAR"),
                        ],
                    ),
                ],
            ),
            block(
                109,
                vec![
                    coinbase("c109", vec![out(MINER, "6", "REGULAR")]),
                    tx(
                        "t5-untyped",
                        None,
                        &[PAYER],
                        vec![out(INODE, "1", "REGULAR")],
                    ),
                ],
            ),
            block(
                110,
                vec![
                    coinbase("c110", vec![out(MINER, "6", "REGULAR")]),
                    tx(
                        "t1",
                        Some("REGULAR"),
                        &[PAYER],
                        vec![out(INODE, "12.1", "REGULAR"), out(PAYER, "0.4", "REGULAR")],
                    ),
                ],
            ),
            block(
                111,
                vec![
                    coinbase("c111", vec![out(MINER, "6", "REGULAR")]),
                    tx(
                        "t6",
                        Some("REGULAR"),
                        &[PAYER],
                        vec![out(INODE, "0.3", "REGULAR")],
                    ),
                ],
            ),
        ],
        validators: vec![],
        utxos: vec![],
    }
}

async fn seed_scores(h: &Harness) {
    h.store
        .collection::<Document>(names::MINER_POOL)
        .insert_many([
            doc! { "pool_address": POOL_A, "score": 30_i64 },
            doc! { "pool_address": POOL_B, "score": 10_i64 },
            doc! { "pool_address": POOL_C, "score": 0_i64 },
        ])
        .await
        .unwrap();
    h.store
        .collection::<Document>(names::VALIDATORS)
        .insert_many([
            doc! { "wallet_address": VALIDATOR_1, "percentage": 60.0, "score": 1_i64 },
            doc! { "wallet_address": VALIDATOR_2, "percentage": 30.0, "score": 1_i64 },
            doc! { "wallet_address": VALIDATOR_3, "percentage": 10.0, "score": 0_i64 },
        ])
        .await
        .unwrap();
}

async fn pending(h: &Harness) -> BTreeMap<String, i64> {
    let balances: Vec<Document> = h
        .store
        .collection::<Document>(names::BALANCES)
        .find(doc! {})
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    balances
        .into_iter()
        .map(|b| {
            (
                b.get_str("address").unwrap().to_owned(),
                b.get_i64("pending").unwrap(),
            )
        })
        .collect()
}

fn assert_conserved(distributions: &[RewardDistribution]) {
    for d in distributions {
        let sum: i64 = d.lines.iter().map(|l| l.units).sum();
        assert_eq!(sum, d.received, "distribution {} conserves", d.id);
    }
}

#[tokio::test]
async fn a_scripted_chain_is_credited_exactly_as_computed_by_hand() {
    let h = harness("rewards_script", scripted_chain()).await;
    seed_scores(&h).await;

    let first = h.run_ok("rewards").await;
    assert_eq!(first["outcome"], "succeeded");
    assert_eq!(first["details"]["from"], 100);
    assert_eq!(first["details"]["to"], 109);
    assert_eq!(first["details"]["received"], "15.60000001");
    assert_eq!(first["details"]["transactionsCredited"], 4);

    let d = h.distributions().await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].id, "100-109");
    assert_eq!(d[0].received, 1_560_000_001);
    let mut hashes = d[0].hashes.clone();
    hashes.sort();
    assert_eq!(hashes, vec!["c100", "t1", "t4", "t5-untyped"]);
    // 18/41/41 of 1,560,000,001: 280,800,000.18 / 639,600,000.41 / 639,600,000.41; the
    // left-over unit goes to the pools (largest remainder, earlier on a tie).
    // Pools 30:10 of 639,600,001 → 479,700,000.75 / 159,900,000.25 → 479,700,001 / 159,900,000.
    // Validators: 60 % and 30 % of 639,600,000, the inactive 10 % unallocated.
    let lines: Vec<(LedgerKind, &str, i64)> = d[0]
        .lines
        .iter()
        .map(|l| (l.kind, l.address.as_str(), l.units))
        .collect();
    assert_eq!(
        lines,
        vec![
            (LedgerKind::Fee, REWARD, 280_800_000),
            (LedgerKind::Pool, POOL_A, 479_700_001),
            (LedgerKind::Pool, POOL_B, 159_900_000),
            (LedgerKind::Validator, VALIDATOR_2, 191_880_000),
            (LedgerKind::Validator, VALIDATOR_1, 383_760_000),
            (LedgerKind::Unallocated, REWARD, 63_960_000),
        ]
    );
    assert_eq!(d[0].lines[1].basis, Basis::Score { score: 30 });
    assert_eq!(d[0].lines[4].basis, Basis::Percentage { hundredths: 6000 });
    assert_conserved(&d);

    let second = h.run_ok("rewards").await;
    assert_eq!(second["details"]["from"], 110);
    assert_eq!(second["details"]["to"], 111);
    assert_eq!(second["details"]["transactionsCredited"], 1);
    assert_eq!(second["details"]["transactionsAlreadyCredited"], 1);
    assert_eq!(second["details"]["received"], "0.30000000");

    // Nothing to do: the run says which heights it looked at, not a misleading "from".
    let third = h.run_ok("rewards").await;
    assert_eq!(
        third["details"],
        serde_json::json!({
            "blocks": 0,
            "lastScannedHeight": 111,
            "chainTip": 121,
            "nextBlock": 112,
            "confirmations": 10,
            "note": "block 112 is credited once the chain reaches block 122 (it is at 121)",
        }),
        "nothing to do: {third}"
    );

    let d = h.distributions().await;
    assert_eq!(d.len(), 2);
    assert_conserved(&d);
    let balances = pending(&h).await;
    let total: i64 = balances.values().sum();
    assert_eq!(
        total,
        1_560_000_001 + 30_000_000,
        "every received unit credited once"
    );
    assert_eq!(
        balances[REWARD],
        280_800_000
            + 63_960_000
            + d[1]
                .lines
                .iter()
                .filter(|l| l.address == REWARD)
                .map(|l| l.units)
                .sum::<i64>()
    );
    let credited = h
        .store
        .credited_transactions()
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(credited, 5);
    assert_eq!(h.store.last_scanned_height().await.unwrap(), Some(111));
    // The scripted self-send pays POOL_A 1 coin from the wallet: a spend this store did not
    // make, so the audit names it until an operator says what it was.
    let foreign = h.store.unresolved_foreign_spends().await.unwrap();
    let found: Vec<(&str, Option<i64>, i64)> = foreign
        .iter()
        .map(|s| (s.hash.as_str(), s.block, s.units()))
        .collect();
    assert_eq!(found, vec![("t3-self-send", Some(103), 100_000_000)]);
    h.store
        .acknowledge_spend("t3-self-send", "a scripted transfer by the operator")
        .await
        .unwrap();
    let audit = h.run_ok("audit").await;
    // 15.60000001 + 0.3, as decimal coin strings like every amount in every summary.
    assert_eq!(SCRIPTED_TOTAL, 1_590_000_001);
    assert_eq!(audit["details"]["received"], "15.90000001", "{audit}");
    assert_eq!(audit["details"]["credited"], "15.90000001", "{audit}");

    let runs: Vec<Document> = h
        .store
        .collection::<Document>(names::JOB_RUNS)
        .find(doc! { "job": "rewards" })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs.iter().all(|r| r.get_str("outcome") == Ok("succeeded")));
}

/// Expected total after the whole scripted chain is scanned.
const SCRIPTED_TOTAL: i64 = 1_560_000_001 + 30_000_000;

async fn scan_to_the_end(h: &Harness) {
    for _ in 0..5 {
        let s = h.run_ok("rewards").await;
        if s["details"]["blocks"] == 0 {
            return;
        }
    }
    panic!("the chain was not scanned to its end");
}

async fn assert_credited_once(h: &Harness) {
    let balances = pending(h).await;
    assert_eq!(balances.values().sum::<i64>(), SCRIPTED_TOTAL);
    let d = h.distributions().await;
    assert_conserved(&d);
    assert_eq!(d.iter().map(|d| d.received).sum::<i64>(), SCRIPTED_TOTAL);
    let mut hashes: Vec<String> = d.iter().flat_map(|d| d.hashes.clone()).collect();
    let count = hashes.len();
    hashes.sort();
    hashes.dedup();
    assert_eq!(hashes.len(), count, "no transaction credited twice");
}

/// Crashes the process at `point`, then re-runs until the chain is scanned: every received unit
/// is credited once. A crash inside the transaction leaves it open on the server until the
/// server's transaction lifetime (60 s on MongoDB) ends it, so the re-run waits that long.
async fn crash_then_rerun(point: &str) {
    let h = harness("rewards_crash", scripted_chain()).await;
    seed_scores(&h).await;
    let crashed = h.run("rewards", &[("MINERPOOL_FAULT", point)]).await;
    assert!(
        !crashed.status.success() && crashed.status.code().is_none(),
        "{point}: the process must die by a signal, got {:?}",
        crashed.status
    );
    let after_crash = pending(&h).await.values().sum::<i64>();
    if point == "rewards:after-commit" {
        assert_eq!(after_crash, 1_560_000_001, "{point}: the commit stands");
    } else {
        assert_eq!(after_crash, 0, "{point}: nothing before the commit stands");
        assert_eq!(
            h.store.last_scanned_height().await.unwrap(),
            None,
            "{point}"
        );
    }
    // The crashed run's lock expires (1 s in these tests) and the next run proceeds.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    scan_to_the_end(&h).await;
    assert_credited_once(&h).await;
}

#[tokio::test]
async fn a_crash_after_moving_the_height_credits_once_after_a_rerun() {
    crash_then_rerun("rewards:after-height").await;
}

#[tokio::test]
async fn a_crash_before_the_balances_credits_once_after_a_rerun() {
    crash_then_rerun("rewards:before-balances").await;
}

#[tokio::test]
async fn a_crash_just_before_the_commit_credits_once_after_a_rerun() {
    crash_then_rerun("rewards:before-commit").await;
}

#[tokio::test]
async fn a_crash_after_the_commit_credits_once_after_a_rerun() {
    crash_then_rerun("rewards:after-commit").await;
}

#[tokio::test]
async fn two_runs_started_together_credit_once() {
    let h = harness("rewards_race", scripted_chain()).await;
    seed_scores(&h).await;
    let (a, b) = tokio::join!(h.run("rewards", &[]), h.run("rewards", &[]));
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    let outcomes = [
        summary(&a)["outcome"].clone(),
        summary(&b)["outcome"].clone(),
    ];
    assert!(outcomes.contains(&"succeeded".into()), "{outcomes:?}");
    scan_to_the_end(&h).await;
    assert_credited_once(&h).await;
}

#[tokio::test]
async fn chain_failures_end_the_run_and_change_nothing() {
    let cases = [
        (Failure::Timeout, "no answer within"),
        (Failure::ServerError, "HTTP 500"),
        (Failure::Malformed, "malformed response"),
        (Failure::EmptyBlock, "has no transactions"),
    ];
    for (failure, message) in cases {
        let h = harness("rewards_chain_fail", scripted_chain()).await;
        seed_scores(&h).await;
        h.sim.fail_next(failure, 10);
        let output = h.run("rewards", &[]).await;
        assert!(!output.status.success(), "{failure:?} must fail the run");
        let err = stderr(&output);
        assert!(err.contains(message), "{failure:?}: {err}");
        assert!(
            err.contains("get_blocks_details"),
            "{failure:?} names the URL: {err}"
        );
        assert_eq!(summary(&output)["outcome"], "failed");
        assert_eq!(h.store.last_scanned_height().await.unwrap(), None);
        assert!(pending(&h).await.is_empty(), "{failure:?} credited nothing");
        let run: Document = h
            .store
            .collection::<Document>(names::JOB_RUNS)
            .find_one(doc! { "job": "rewards" })
            .await
            .unwrap()
            .expect("the failed run is recorded");
        assert_eq!(run.get_str("outcome"), Ok("failed"));
        assert!(run.get_str("error").unwrap().contains(message));
    }
}

#[tokio::test]
async fn with_no_pools_and_no_validators_everything_goes_to_the_reward_address() {
    let h = harness("rewards_nobody", scripted_chain()).await;
    scan_to_the_end(&h).await;
    let balances = pending(&h).await;
    assert_eq!(balances.len(), 1);
    assert_eq!(balances[REWARD], SCRIPTED_TOTAL);
}

#[tokio::test]
async fn a_standalone_server_is_refused_with_a_clear_message() {
    let h = harness("rewards_standalone", Scenario::default()).await;
    let uri = std::env::var("MINERPOOL_TEST_MONGODB_STANDALONE_URI").unwrap();
    let output = h.run("rewards", &[("MONGODB_URI", uri.as_str())]).await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("not a replica set"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn bad_invocations_are_clear_errors() {
    let h = harness("rewards_bad_cli", Scenario::default()).await;
    let output = h.run("rewards", &[("MONGODB_URI", "")]).await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("MONGODB_URI"),
        "{}",
        stderr(&output)
    );

    let missing = tokio::process::Command::new(env!("CARGO_BIN_EXE_minerpool-job"))
        .args(["rewards", "--config", "/nonexistent.yaml"])
        .env("MONGODB_URI", "mongodb://127.0.0.1:9")
        .output()
        .await
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("/nonexistent.yaml"),
        "{}",
        stderr(&missing)
    );

    let unknown = tokio::process::Command::new(env!("CARGO_BIN_EXE_minerpool-job"))
        .arg("bake")
        .output()
        .await
        .unwrap();
    assert!(!unknown.status.success());
}

#[tokio::test]
async fn validators_job_keeps_what_the_node_wrote() {
    let h = Harness::new(
        "validators_sync",
        Scenario {
            blocks: vec![],
            validators: vec![
                SimValidator {
                    address: VALIDATOR_1.into(),
                    stake: units("600"),
                    votes: vec![units("10"), units("2.5")],
                },
                SimValidator {
                    address: VALIDATOR_2.into(),
                    stake: units("300"),
                    votes: vec![],
                },
            ],
            utxos: vec![],
        },
    )
    .await;
    let ping = bson::DateTime::from_millis(1_760_000_000_000);
    h.store
        .collection::<Document>(names::VALIDATORS)
        .insert_many([
            doc! { "wallet_address": VALIDATOR_1, "score": 1_i64, "ip": "10.0.0.7",
            "port": 5502_i64, "ping": ping, "percentage": 12.0 },
            doc! { "wallet_address": VALIDATOR_3, "score": 1_i64, "percentage": 10.0 },
        ])
        .await
        .unwrap();
    let s = h.run_ok("validators").await;
    assert_eq!(s["details"]["listed"], 2);
    assert_eq!(s["details"]["dropped"], 1);
    let get = |address: &'static str| {
        let validators = h.store.collection::<Document>(names::VALIDATORS);
        async move {
            validators
                .find_one(doc! { "wallet_address": address })
                .await
                .unwrap()
                .unwrap()
        }
    };
    let v1 = get(VALIDATOR_1).await;
    assert_eq!(v1.get_f64("percentage"), Ok(66.67));
    assert_eq!(v1.get_f64("vote"), Ok(12.5));
    assert_eq!(v1.get_f64("totalStake"), Ok(600.0));
    assert_eq!(v1.get_i64("score"), Ok(1), "the TASK-set score survives");
    assert_eq!(v1.get_str("ip"), Ok("10.0.0.7"), "the PING-set ip survives");
    assert_eq!(v1.get_i64("port"), Ok(5502));
    assert_eq!(v1.get_datetime("ping"), Ok(&ping));
    let v2 = get(VALIDATOR_2).await;
    assert_eq!(v2.get_f64("percentage"), Ok(33.33));
    assert_eq!(
        v2.get_i64("score"),
        Ok(0),
        "a new validator starts with score 0"
    );
    let v3 = get(VALIDATOR_3).await;
    assert_eq!(
        v3.get_f64("percentage"),
        Ok(0.0),
        "a drop-out gets percentage 0"
    );
    assert_eq!(v3.get_i64("score"), Ok(1));
}

#[tokio::test]
async fn validators_job_fails_cleanly_on_a_bad_chain_answer() {
    let h = Harness::new("validators_fail", Scenario::default()).await;
    h.sim.fail_next(Failure::Malformed, 10);
    let output = h.run("validators", &[]).await;
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("get_validators_info"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        h.store.validators().count_documents(doc! {}).await.unwrap(),
        0
    );
}

#[tokio::test]
async fn validators_job_skips_an_off_curve_validator_from_the_chain() {
    let validator = |address: &str, stake: &str| SimValidator {
        address: address.into(),
        stake: units(stake),
        votes: vec![],
    };
    let h = Harness::new(
        "validators_off_curve",
        Scenario {
            validators: vec![
                validator(VALIDATOR_1, "600"),
                validator(OFF_CURVE, "300"),
                validator(OFF_CURVE_FULL, "100"),
            ],
            ..Scenario::default()
        },
    )
    .await;
    let s = h.run_ok("validators").await;
    assert_eq!(s["details"]["listed"], 1, "{s}");
    assert_eq!(s["details"]["skipped"], 2, "{s}");
    let skipped = &s["details"]["skippedValidators"];
    assert_eq!(skipped[0]["address"], OFF_CURVE, "{s}");
    assert_eq!(skipped[1]["address"], OFF_CURVE_FULL, "{s}");
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .contains("not a P-256 point"),
        "{s}"
    );
    assert_eq!(
        h.store
            .collection::<Document>(names::VALIDATORS)
            .count_documents(doc! { "wallet_address": { "$in": [OFF_CURVE, OFF_CURVE_FULL] } })
            .await
            .unwrap(),
        0,
        "never stored"
    );
    let v1 = h
        .store
        .collection::<Document>(names::VALIDATORS)
        .find_one(doc! { "wallet_address": VALIDATOR_1 })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        v1.get_f64("percentage"),
        Ok(100.0),
        "the skipped stake counts for no one"
    );
}

/// Blocks `first..=last`, each paying the iNode 1 coin with transaction `t{id}`.
fn paying_chain(first: u64, last: u64) -> Scenario {
    Scenario {
        blocks: (first..=last)
            .map(|id| paying(id, &format!("t{id}"), "1"))
            .collect(),
        ..Scenario::default()
    }
}

const COIN: i64 = 100_000_000;

async fn credited_hashes(h: &Harness) -> Vec<String> {
    let mut hashes: Vec<String> = h
        .distributions()
        .await
        .into_iter()
        .flat_map(|d| d.hashes)
        .collect();
    hashes.sort();
    hashes
}

/// `scannedBlocks` as (id, hash), in id order.
async fn scanned_blocks(h: &Harness) -> Vec<(i64, String)> {
    let blocks: Vec<Document> = h
        .store
        .collection::<Document>(names::SCANNED_BLOCKS)
        .find(doc! {})
        .sort(doc! { "_id": 1 })
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    blocks
        .into_iter()
        .map(|b| {
            (
                b.get_i64("_id").unwrap(),
                b.get_str("hash").unwrap().to_owned(),
            )
        })
        .collect()
}

/// What the chain shows for blocks `ids`, as `scannedBlocks` should hold them.
fn chain_hashes(h: &Harness, ids: impl IntoIterator<Item = u64>) -> Vec<(i64, String)> {
    ids.into_iter()
        .map(|id| (id as i64, h.sim.block_hash(id).unwrap()))
        .collect()
}

fn total_pending(balances: &BTreeMap<String, i64>) -> i64 {
    balances.values().sum()
}

/// Runs a rewards pass that must fail; returns its error output.
async fn failing_run(h: &Harness) -> String {
    let output = h.run("rewards", &[]).await;
    assert!(
        !output.status.success(),
        "the run must fail: {}",
        stderr(&output)
    );
    assert_eq!(summary(&output)["outcome"], "failed");
    stderr(&output)
}

#[tokio::test]
async fn only_blocks_confirmations_deep_are_credited_and_more_as_the_tip_moves() {
    let h = harness("rewards_depth", paying_chain(100, 112)).await;
    // Tip 112: only 100–102 are ten blocks deep.
    let first = h.run_ok("rewards").await;
    assert_eq!(first["details"]["from"], 100);
    assert_eq!(first["details"]["to"], 102);
    assert_eq!(h.store.last_scanned_height().await.unwrap(), Some(102));
    assert_eq!(total_pending(&pending(&h).await), 3 * COIN);
    assert_eq!(credited_hashes(&h).await, vec!["t100", "t101", "t102"]);
    assert_eq!(
        h.run_ok("rewards").await["details"]["blocks"],
        0,
        "nothing more is settled while the tip stays"
    );

    // The tip moves to 115: 103–105 settle.
    for id in 113..=115 {
        h.sim.add_block(paying(id, &format!("t{id}"), "1"));
    }
    let second = h.run_ok("rewards").await;
    assert_eq!(
        (
            second["details"]["from"].clone(),
            second["details"]["to"].clone()
        ),
        (103.into(), 105.into())
    );
    assert_eq!(total_pending(&pending(&h).await), 6 * COIN);
    // Every scanned block's hash is stored, as the chain showed it.
    assert_eq!(scanned_blocks(&h).await, chain_hashes(&h, 100..=105));
}

/// `scannedBlocks` keeps the newest `SCANNED_BLOCKS_KEPT` blocks up to the last scanned one: each
/// pass prunes the rest, says how many went, and the next pass's reorg check still reads the
/// last scanned block.
#[tokio::test]
async fn each_pass_prunes_the_scanned_blocks_no_reorg_check_needs() {
    let h = harness_with("rewards_prune_scanned", paying_chain(20_000, 20_015), |c| {
        c.rewards.start_height = 20_000
    })
    .await;
    // Blocks an earlier pass scanned long ago, up to one past the first prune's bound.
    let old: Vec<Document> = (1..=100)
        .chain(10_001..=10_007)
        .map(|id| doc! { "_id": id as i64, "hash": format!("old{id}"), "scanned_at": bson::DateTime::now() })
        .collect();
    h.store
        .collection::<Document>(names::SCANNED_BLOCKS)
        .insert_many(old)
        .await
        .unwrap();

    let first = h.run_ok("rewards").await;
    let to = first["details"]["to"].as_i64().unwrap();
    assert_eq!(to, 20_005, "{first}");
    let kept_from = to - SCANNED_BLOCKS_KEPT + 1;
    assert_eq!(kept_from, 10_006);
    assert_eq!(first["details"]["scannedBlocksPruned"], 105, "{first}");
    let mut expected = vec![
        (10_006, "old10006".to_owned()),
        (10_007, "old10007".to_owned()),
    ];
    expected.extend(chain_hashes(&h, 20_000..=20_005));
    assert_eq!(scanned_blocks(&h).await, expected);

    // Two more blocks settle: the pass checks block 20,005's hash, credits 20,006–20,007 and
    // prunes the two old blocks that fell out of the window.
    for id in 20_016..=20_017 {
        h.sim.add_block(paying(id, &format!("t{id}"), "1"));
    }
    let second = h.run_ok("rewards").await;
    assert_eq!(second["details"]["to"], 20_007, "{second}");
    assert_eq!(second["details"]["scannedBlocksPruned"], 2, "{second}");
    assert_eq!(scanned_blocks(&h).await, chain_hashes(&h, 20_000..=20_007));

    // Nothing left to prune: the summary says nothing of it.
    h.sim.add_block(paying(20_018, "t20018", "1"));
    let third = h.run_ok("rewards").await;
    assert_eq!(third["details"]["to"], 20_008, "{third}");
    assert!(
        third["details"].get("scannedBlocksPruned").is_none(),
        "{third}"
    );
}

#[tokio::test]
async fn a_reorg_below_the_settled_depth_stops_every_run_until_an_operator_resolves_it() {
    let h = harness("rewards_deep_reorg", paying_chain(100, 115)).await;
    assert_eq!(h.run_ok("rewards").await["details"]["to"], 105);
    let credited = pending(&h).await;
    let old_hash = h.sim.block_hash(105).unwrap();

    // A reorganisation deeper than the confirmations replaces 104 on (same transactions).
    h.sim.reorg(104, vec![]).unwrap();
    let new_hash = h.sim.block_hash(105).unwrap();
    assert_ne!(old_hash, new_hash);
    for _ in 0..2 {
        let err = failing_run(&h).await;
        assert!(err.contains("block 105"), "{err}");
        assert!(err.contains(&old_hash) && err.contains(&new_hash), "{err}");
        assert!(err.contains("reorganised"), "{err}");
        assert_eq!(h.store.last_scanned_height().await.unwrap(), Some(105));
        assert_eq!(pending(&h).await, credited, "nothing more is credited");
        // The chain grows on; the error stays.
        let tip = h.sim.tip().unwrap();
        for id in tip + 1..=tip + 5 {
            h.sim.add_block(paying(id, &format!("t{id}"), "1"));
        }
    }
    let failed = h
        .store
        .collection::<Document>(names::JOB_RUNS)
        .count_documents(doc! { "job": "rewards", "outcome": "failed" })
        .await
        .unwrap();
    assert_eq!(failed, 2);

    // The README's resolution: rescan from below the fork.
    h.store
        .collection::<Document>(names::SCANNED_BLOCKS)
        .delete_many(doc! { "_id": { "$gte": 104_i64 } })
        .await
        .unwrap();
    h.store
        .collection::<Document>(names::BLOCK_HEIGHT)
        .update_one(
            doc! { "_id": "last_block_height" },
            doc! { "$set": { "block_height": 103_i64 } },
        )
        .await
        .unwrap();
    let resumed = h.run_ok("rewards").await;
    assert_eq!(resumed["details"]["from"], 104);
    assert_eq!(
        resumed["details"]["transactionsAlreadyCredited"], 2,
        "104 and 105 kept their transactions: not credited twice"
    );
    assert_eq!(scanned_blocks(&h).await[4..6], chain_hashes(&h, 104..=105));
}

#[tokio::test]
async fn a_reorg_within_the_unsettled_depth_credits_the_replacement_and_never_the_orphan() {
    let mut chain = paying_chain(100, 112);
    chain.blocks[8] = paying(108, "orphan", "5");
    let h = harness("rewards_shallow_reorg", chain).await;
    assert_eq!(h.run_ok("rewards").await["details"]["to"], 102);

    // 106 on are replaced before they settle; the new 108 pays 7 in another transaction.
    h.sim
        .reorg(106, vec![paying(108, "replacement", "7")])
        .unwrap();
    for id in 113..=125 {
        h.sim.add_block(quiet(id));
    }
    scan_to_the_end(&h).await;
    assert_eq!(h.store.last_scanned_height().await.unwrap(), Some(115));
    let hashes = credited_hashes(&h).await;
    assert!(hashes.contains(&"replacement".to_owned()), "{hashes:?}");
    assert!(!hashes.contains(&"orphan".to_owned()), "{hashes:?}");
    // 100–112 but 108 pay 1 each (12), the replacement 7.
    assert_eq!(total_pending(&pending(&h).await), 19 * COIN);
    assert_eq!(scanned_blocks(&h).await, chain_hashes(&h, 100..=115));
    assert_conserved(&h.distributions().await);
}

#[tokio::test]
async fn a_block_the_chain_skips_stops_the_scan_with_an_error_naming_it() {
    let h = harness("rewards_skip", paying_chain(100, 130)).await;
    assert_eq!(h.run_ok("rewards").await["details"]["to"], 109);
    let credited = pending(&h).await;
    h.sim.skip(112);
    for _ in 0..2 {
        let err = failing_run(&h).await;
        assert!(err.contains("skips block 112"), "{err}");
        assert_eq!(h.store.last_scanned_height().await.unwrap(), Some(109));
        assert_eq!(
            pending(&h).await,
            credited,
            "nothing past the gap is credited"
        );
    }
    assert!(!credited_hashes(&h).await.contains(&"t113".to_owned()));
}

#[tokio::test]
async fn rate_limited_chain_reads_are_waited_out() {
    // One get_blocks_details per 3 s: back-to-back runs each meet HTTP 429 first.
    let h = harness("rewards_429", scripted_chain()).await;
    seed_scores(&h).await;
    let limits = |retry_after| RateLimits {
        blocks_details: Some(RateLimit {
            requests: 1,
            per_ms: 3000,
        }),
        retry_after,
        ..RateLimits::default()
    };
    h.sim.set_rate_limits(Some(limits(false)));
    let mut logs = String::new();
    for _ in 0..2 {
        let output = h.run("rewards", &[]).await;
        assert!(output.status.success(), "{}", stderr(&output));
        logs.push_str(&stderr(&output));
    }
    assert!(h.sim.rate_limited() > 0, "the runs met the limit");
    assert!(logs.contains("HTTP 429"), "the wait is logged: {logs}");
    // The node's Retry-After, when sent, is what the client waits.
    h.sim.set_rate_limits(Some(limits(true)));
    let before = h.sim.rate_limited();
    h.run_ok("rewards").await;
    let third = h.run("rewards", &[]).await;
    assert!(third.status.success(), "{}", stderr(&third));
    assert!(
        stderr(&third).contains(r#""wait_from":"retry-after""#),
        "{}",
        stderr(&third)
    );
    assert!(h.sim.rate_limited() > before);
    assert_eq!(h.store.last_scanned_height().await.unwrap(), Some(111));
    assert_credited_once(&h).await;
}

/// A start height above the chain's tip: the run is blocked (exit 3), says so, records it, and
/// credits nothing; once the chain reaches it, the next run credits as usual.
#[tokio::test]
async fn a_start_height_above_the_tip_blocks_the_run() {
    let h = harness_with("rewards_above_tip", paying_chain(100, 125), |c| {
        c.rewards.start_height = 200;
    })
    .await;
    let blocked = common::run_blocked(&h, "rewards", &[]).await;
    let reason = "rewards.startHeight 200 is above the chain's tip: get_blocks_details has no block at or above it; nothing is credited until the chain reaches it (or startHeight is lowered)";
    assert_eq!(blocked["reason"], reason, "{blocked}");
    assert_eq!(
        blocked["details"],
        serde_json::json!({
            "blocks": 0,
            "lastScannedHeight": null,
            "chainTip": null,
            "nextBlock": 200,
            "confirmations": 10,
        }),
        "{blocked}"
    );
    let record = common::job_run(&h, &blocked).await;
    assert_eq!(record.get_str("outcome"), Ok("blocked"), "{record}");
    assert_eq!(record.get_str("reason"), Ok(reason), "{record}");
    assert_eq!(h.store.last_scanned_height().await.unwrap(), None);
    for id in 126..=215 {
        h.sim.add_block(quiet(id));
    }
    let resumed = h.run_ok("rewards").await;
    assert_eq!(resumed["outcome"], "succeeded", "{resumed}");
    assert_eq!(resumed["details"]["from"], 200, "{resumed}");
}

#[tokio::test]
async fn a_rate_limit_longer_than_the_allowed_wait_fails_the_run_clearly() {
    let h = harness_with("rewards_429_budget", scripted_chain(), |c| {
        c.chain.rate_limit_wait_seconds = 1
    })
    .await;
    h.sim.set_rate_limits(Some(RateLimits {
        blocks_details: Some(RateLimit {
            requests: 1,
            per_ms: 60_000,
        }),
        ..RateLimits::default()
    }));
    h.run_ok("rewards").await;
    let err = failing_run(&h).await;
    assert!(err.contains("still rate limited (HTTP 429)"), "{err}");
    assert!(err.contains("get_blocks_details"), "{err}");
    assert!(err.contains("Rate limit exceeded: 1 per 1 minute"), "{err}");
}

#[tokio::test]
async fn an_original_database_with_a_height_and_no_hashes_carries_on() {
    let h = harness("rewards_old_db", paying_chain(100, 125)).await;
    // As the original iNode wrote it: a 32-bit height, no scannedBlocks.
    h.store
        .collection::<Document>(names::BLOCK_HEIGHT)
        .insert_one(doc! { "_id": "last_block_height", "block_height": 104_i32 })
        .await
        .unwrap();
    let first = h.run_ok("rewards").await;
    assert_eq!(first["details"]["from"], 105);
    assert_eq!(first["details"]["to"], 114);
    assert_eq!(total_pending(&pending(&h).await), 10 * COIN);
    // The chain's hash of the stored height is adopted, then every scanned block's is stored.
    assert_eq!(scanned_blocks(&h).await, chain_hashes(&h, 104..=114));
    assert_eq!(h.run_ok("rewards").await["details"]["to"], 115);
    // From now on the stored hashes are checked.
    h.sim.reorg(110, vec![]).unwrap();
    let err = failing_run(&h).await;
    assert!(err.contains("block 115"), "{err}");
}

/// Two confirmed blocks, the first paying the iNode 5.
fn one_payment() -> Scenario {
    let mut blocks = vec![paying(100, "pay-5", "5")];
    blocks.extend((101..=111).map(quiet));
    Scenario {
        blocks,
        ..Scenario::default()
    }
}

/// SIGTERM while the run waits on the chain, before its transaction: the run begins no
/// transaction, writes nothing, and its last line says it stopped and that nothing of the step
/// was written; the next run credits the income once.
#[tokio::test]
async fn sigterm_before_the_rewards_transaction_leaves_nothing_behind() {
    let h = Harness::new("stop_rewards_before", one_payment()).await;
    // The first chain read hangs until the client's 2 s timeout.
    h.sim.fail_next(Failure::Timeout, 1);
    let child = h
        .command("rewards", &[], &[])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    signal(&child, "-TERM");
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the run ended")
        .unwrap();
    assert_eq!(output.status.code(), Some(143), "{}", stderr(&output));
    let last = summary(&output);
    assert_eq!(last["outcome"], "stopped", "{last}");
    assert_eq!(last["signal"], "SIGTERM", "{last}");
    assert!(
        last["error"].as_str().unwrap().contains("nothing"),
        "the last line says nothing was written: {last}"
    );
    assert!(h.distributions().await.is_empty());
    assert!(h.store.last_scanned().await.unwrap().is_none());

    let again = h.run_ok("rewards").await;
    assert_eq!(again["outcome"], "succeeded");
    let distributions = h.distributions().await;
    assert_eq!(distributions.len(), 1);
    assert_eq!(distributions[0].received, units("5").units());
}

/// SIGTERM while the run's transaction is under way: the transaction commits whole, the run
/// ends succeeded, and its last line says the signal came and the run finished its work.
#[tokio::test]
async fn sigterm_inside_the_rewards_transaction_lets_it_commit() {
    use tokio::io::AsyncBufReadExt;
    let h = Harness::new("stop_rewards_inside", one_payment()).await;
    let mut child = h
        .command(
            "rewards",
            &[],
            &[("MINERPOOL_PAUSE", "rewards:before-commit:2")],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut errors = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let paused = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = errors.next_line().await.unwrap() {
            if line.contains("MINERPOOL_PAUSE=rewards:before-commit") {
                return;
            }
        }
        panic!("the run ended before its pause point");
    });
    paused
        .await
        .expect("the run reached its transaction's pause");
    signal(&child, "-TERM");
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the run ended")
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let last = summary(&output);
    assert_eq!(last["outcome"], "succeeded", "{last}");
    assert!(
        last["signal"].as_str().unwrap().contains("SIGTERM"),
        "the last line says the signal came: {last}"
    );
    let distributions = h.distributions().await;
    assert_eq!(distributions.len(), 1, "the transaction committed");
    assert_eq!(distributions[0].received, units("5").units());
}

/// Each block's income is kept at the block's chain time, so the charts place it in the hour it
/// was paid, not the hour a run credited it: two blocks an hour apart land in two hours.
#[tokio::test]
async fn each_block_s_income_is_kept_at_its_chain_time() {
    let now = minerpool_tests::chain_sim::now_seconds();
    let hour = 3600;
    let this_hour = now - now.rem_euclid(hour);
    let at = |id: u64, seconds: i64| SimBlock {
        timestamp: seconds,
        ..paying(id, &format!("timed-{id}"), "1.5")
    };
    let mut blocks = vec![
        at(100, this_hour - 2 * hour + 10),
        at(101, this_hour - hour + 20),
    ];
    blocks.extend((102..=111).map(quiet));
    let h = harness(
        "rewards_block_time",
        Scenario {
            blocks,
            ..Scenario::default()
        },
    )
    .await;
    seed_scores(&h).await;
    assert_eq!(h.run_ok("rewards").await["outcome"], "succeeded");

    let d = h.distributions().await;
    assert_eq!(d.len(), 1);
    let by_block: Vec<(i64, i64, i64)> = d[0]
        .received_by_block
        .iter()
        .map(|b| (b.block, b.time.timestamp_millis() / 1000, b.units))
        .collect();
    assert_eq!(
        by_block,
        vec![
            (100, this_hour - 2 * hour + 10, 150_000_000),
            (101, this_hour - hour + 20, 150_000_000),
        ]
    );
    let hours = minerpool_core::store::history::Hours::ending_at(
        bson::DateTime::from_millis(this_hour * 1000),
        3,
    );
    assert_eq!(
        h.store.income_per_hour(hours).await.unwrap(),
        vec![150_000_000, 150_000_000, 0],
        "each block's income in its own hour; nothing in the hour it was credited"
    );
}
