//! `minerpool-job payouts` against the real test MongoDB server and the chain simulator, which
//! judges pushed transactions with the project's own parser and verifier. Crashes are real
//! aborts of the process.

mod common;

use bson::doc;
use common::{Harness, job_run, run_blocked, signal, stderr};
use minerpool_core::config::Sender;
use minerpool_core::money::Amount;
use minerpool_core::store::ledger::Balance;
use minerpool_core::store::payouts::{BatchState, PayoutBatch};
use minerpool_core::upow::{address_of, parse_private_key};
use minerpool_tests::chain_sim::{Failure, PushMode, Scenario, SimUtxo};
use serde_json::json;

/// The iNode wallet's key in these tests.
const WALLET_KEY: &str = "0xc0ffee";

fn address_of_key(key: &str) -> String {
    address_of(parse_private_key(key).unwrap().verifying_key())
}

fn coins(n: &str) -> i64 {
    Amount::parse(n).unwrap().units()
}

/// Recipients r1 (5 coins), r2 (3), r3 (0.5, under the minimum of 1).
fn recipients() -> Vec<(String, i64)> {
    vec![
        (address_of_key("1"), coins("5")),
        (address_of_key("2"), coins("3")),
        (address_of_key("3"), coins("0.5")),
    ]
}

async fn harness(label: &str, wallet_coins: &[&str]) -> Harness {
    harness_with(label, wallet_coins, recipients(), |_| {}).await
}

/// A harness whose wallet holds `wallet_coins`, with `balances` pending and the config adjusted.
async fn harness_with(
    label: &str,
    wallet_coins: &[&str],
    balances: Vec<(String, i64)>,
    adjust: impl FnOnce(&mut minerpool_core::config::Config),
) -> Harness {
    let wallet = address_of_key(WALLET_KEY);
    let utxos = wallet_coins
        .iter()
        .enumerate()
        .map(|(i, amount)| SimUtxo {
            owner: wallet.clone(),
            tx_hash: format!("{:064x}", i + 1),
            index: 0,
            amount: Amount::parse(amount).unwrap(),
        })
        .collect();
    let h = Harness::with_config(
        label,
        Scenario {
            utxos,
            ..Scenario::default()
        },
        |c| {
            c.chain.inode_wallet = wallet.clone();
            c.payouts.sender = Sender::Upow;
            adjust(c);
        },
    )
    .await;
    h.store
        .balances()
        .insert_many(balances.into_iter().map(|(address, pending)| Balance {
            address,
            pending,
            paid: 0,
            updated_at: None,
        }))
        .await
        .unwrap();
    h
}

/// Mines the pending transactions into a block and buries it `rewards.confirmations` deep, so
/// payouts count it as settled.
fn bury(h: &Harness) {
    h.sim.mine();
    for _ in 0..h.config.rewards.confirmations {
        h.sim.mine();
    }
}

/// The one payout batch (panics if there is not exactly one).
async fn only_batch(h: &Harness) -> PayoutBatch {
    let batches = h.batches().await;
    assert_eq!(batches.len(), 1, "{batches:?}");
    batches.into_iter().next().unwrap()
}

async fn run(h: &Harness, fault: Option<&str>) -> std::process::Output {
    let mut env = vec![("MINERPOOL_WALLET_KEY", WALLET_KEY)];
    if let Some(point) = fault {
        env.push(("MINERPOOL_FAULT", point));
    }
    h.run("payouts", &env).await
}

/// `minerpool-job payouts --abandon BATCH`, which must succeed; its summary.
async fn abandon_ok(h: &Harness, batch: &str) -> serde_json::Value {
    let output = h
        .run_args(
            "payouts",
            &["--abandon", batch],
            &[("MINERPOOL_WALLET_KEY", WALLET_KEY)],
        )
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    common::summary(&output)
}

async fn run_ok(h: &Harness) -> serde_json::Value {
    let output = run(h, None).await;
    assert!(
        output.status.success(),
        "payouts failed: {}",
        stderr(&output)
    );
    common::summary(&output)
}

/// Every due recipient paid once on chain and in the database; r3 untouched.
async fn assert_paid_once(h: &Harness) {
    for (address, amount) in recipients().into_iter().take(2) {
        assert_eq!(
            h.sim.paid_to(&address),
            (amount as u64, 1),
            "{address} paid once on chain"
        );
        assert_eq!(
            h.balance(&address).await,
            (0, amount),
            "{address} in the database"
        );
    }
    let (r3, small) = recipients().pop().unwrap();
    assert_eq!(h.sim.paid_to(&r3), (0, 0));
    assert_eq!(h.balance(&r3).await, (small, 0));
}

#[tokio::test]
async fn a_payout_counts_as_paid_only_once_its_block_is_settled() {
    let h = harness("payouts_depth", &["4", "6"]).await;
    run_ok(&h).await;
    let block = h.sim.mine();
    for depth in 0..h.config.rewards.confirmations {
        let run = run_ok(&h).await;
        assert_eq!(
            run["details"]["settled"][0]["now"], "submitted",
            "{depth} deep: {run}"
        );
        assert_eq!(
            h.balance(&recipients()[0].0).await,
            (0, 0),
            "{depth} deep: not yet paid"
        );
        h.sim.mine();
    }
    let settled = run_ok(&h).await;
    assert_eq!(
        settled["details"]["settled"][0]["now"], "confirmed",
        "{settled}"
    );
    assert_eq!(only_batch(&h).await.proof_block, Some(block as i64));
    assert_paid_once(&h).await;
}

#[tokio::test]
async fn a_batch_is_paid_submitted_then_confirmed() {
    let h = harness("payouts_happy", &["4", "6"]).await;
    let first = run_ok(&h).await;
    assert_eq!(first["details"]["created"]["now"], "submitted", "{first}");
    assert_eq!(h.sim.accepted(), 1);
    let batch = h
        .store
        .payout_batches()
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(batch.state, BatchState::Submitted);
    assert_eq!(batch.total, coins("8"));
    // Not yet in a block: nothing counts as paid, and no second batch is made.
    let again = run_ok(&h).await;
    assert_eq!(again["details"]["created"], serde_json::Value::Null);
    assert_eq!(h.balance(&recipients()[0].0).await, (0, 0));
    bury(&h);
    let settled = run_ok(&h).await;
    assert_eq!(
        settled["details"]["settled"][0]["now"], "confirmed",
        "{settled}"
    );
    assert_paid_once(&h).await;
}

async fn crash_then_rerun(point: &str) {
    let h = harness("payouts_crash", &["4", "6"]).await;
    let crashed = run(&h, Some(point)).await;
    assert!(
        crashed.status.code().is_none(),
        "{point}: must die by a signal: {:?}",
        crashed.status
    );
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    run_ok(&h).await;
    bury(&h);
    run_ok(&h).await;
    assert_paid_once(&h).await;
    assert_eq!(h.sim.accepted(), 1, "{point}: one transaction in all");
}

#[tokio::test]
async fn a_crash_after_the_batch_is_created_pays_once() {
    crash_then_rerun("payouts:after-create").await;
}

#[tokio::test]
async fn a_crash_after_signing_pays_once() {
    crash_then_rerun("payouts:after-sign").await;
}

#[tokio::test]
async fn a_crash_after_the_push_before_recording_pays_once() {
    crash_then_rerun("payouts:after-push").await;
}

#[tokio::test]
async fn a_crash_after_recording_pays_once() {
    crash_then_rerun("payouts:after-record").await;
}

#[tokio::test]
async fn a_push_that_timed_out_but_was_accepted_is_not_paid_again() {
    let h = harness("payouts_timeout", &["10"]).await;
    h.sim.set_push_mode(PushMode::AcceptThenTimeout);
    let first = run_ok(&h).await;
    assert_eq!(first["details"]["created"]["now"], "signed", "{first}");
    h.sim.set_push_mode(PushMode::Normal);
    let second = run_ok(&h).await;
    assert_eq!(
        second["details"]["settled"][0]["now"], "submitted",
        "{second}"
    );
    bury(&h);
    run_ok(&h).await;
    assert_paid_once(&h).await;
}

#[tokio::test]
async fn a_refused_push_never_refunds_and_an_abandon_by_hand_refunds_once_proven() {
    let h = harness("payouts_refused", &["10"]).await;
    record_credit(&h).await;
    h.sim.set_push_mode(PushMode::Reject);
    let first = run_ok(&h).await;
    assert_eq!(first["details"]["created"]["now"], "signed", "{first}");
    let batch = only_batch(&h).await;
    assert_eq!(batch.state, BatchState::Signed);
    assert_eq!(
        batch.error.as_deref(),
        Some("Transaction has not been added")
    );
    for (address, _) in recipients().into_iter().take(2) {
        assert_eq!(
            h.balance(&address).await,
            (0, 0),
            "{address}: still in flight, never refunded on an answer"
        );
    }
    let again = run_ok(&h).await;
    assert_eq!(again["details"]["settled"][0]["now"], "signed", "{again}");
    assert_eq!(
        again["details"]["created"],
        serde_json::Value::Null,
        "no second batch while one is in flight"
    );

    h.sim.set_push_mode(PushMode::Normal);
    let summary = abandon_ok(&h, &batch.id).await;
    assert_eq!(
        summary["details"]["settled"][0]["now"], "abandoning",
        "{summary}"
    );
    let stored = only_batch(&h).await;
    assert_eq!(stored.state, BatchState::Abandoning);
    assert_eq!(
        h.sim.accepted(),
        1,
        "only the abandoning self-send reached the chain"
    );
    assert_eq!(
        h.balance(&recipients()[0].0).await,
        (0, 0),
        "no refund before the proof is in a block"
    );

    bury(&h);
    let refunded = run_ok(&h).await;
    assert_eq!(
        refunded["details"]["settled"][0]["now"], "abandoned",
        "{refunded}"
    );
    assert_eq!(
        refunded["details"]["created"]["now"], "submitted",
        "paid again with the abandon's output: {refunded}"
    );
    bury(&h);
    run_ok(&h).await;
    assert_paid_once(&h).await;
    let first = h.store.payout_batch(&batch.id).await.unwrap().unwrap();
    assert_eq!(first.state, BatchState::Abandoned);
    assert!(first.proof_block.is_some());
    assert_eq!(h.run_ok("audit").await["outcome"], "succeeded");
}

#[tokio::test]
async fn a_batch_stuck_past_its_age_is_reported_and_abandoned() {
    let h = harness_with("payouts_stuck", &["10"], recipients(), |c| {
        c.payouts.abandon_after_seconds = 1;
    })
    .await;
    h.sim.set_push_mode(PushMode::ServerError);
    let first = run_ok(&h).await;
    assert_eq!(first["details"]["created"]["now"], "signed", "{first}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    h.sim.set_push_mode(PushMode::Normal);
    let stuck = run_ok(&h).await;
    let id = only_batch(&h).await.id;
    assert_eq!(
        stuck["details"]["stuck"][0]["batch"],
        id.as_str(),
        "{stuck}"
    );
    assert_eq!(
        stuck["details"]["settled"][0]["now"], "abandoning",
        "{stuck}"
    );
    bury(&h);
    let refunded = run_ok(&h).await;
    assert_eq!(
        refunded["details"]["settled"][0]["now"], "abandoned",
        "{refunded}"
    );
    bury(&h);
    run_ok(&h).await;
    assert_paid_once(&h).await;
}

#[tokio::test]
async fn an_abandon_that_loses_to_the_batch_pays_once() {
    let h = harness("payouts_abandon_race", &["10"]).await;
    // Accepted, but the answer never arrives.
    h.sim.set_push_mode(PushMode::AcceptThenTimeout);
    run_ok(&h).await;
    h.sim.set_push_mode(PushMode::Normal);
    let id = only_batch(&h).await.id;
    abandon_ok(&h, &id).await;
    // The chain holds the batch's transaction: the abandoning one cannot spend its inputs.
    bury(&h);
    let settled = run_ok(&h).await;
    assert_eq!(
        settled["details"]["settled"][0]["now"], "confirmed",
        "{settled}"
    );
    assert_paid_once(&h).await;
    assert_eq!(only_batch(&h).await.state, BatchState::Confirmed);
}

#[tokio::test]
async fn a_crash_after_signing_the_abandon_refunds_once() {
    let h = harness("payouts_abandon_crash", &["10"]).await;
    h.sim.set_push_mode(PushMode::Reject);
    run_ok(&h).await;
    h.sim.set_push_mode(PushMode::Normal);
    let id = only_batch(&h).await.id;
    let crashed = h
        .run_args(
            "payouts",
            &["--abandon", &id],
            &[
                ("MINERPOOL_WALLET_KEY", WALLET_KEY),
                ("MINERPOOL_FAULT", "payouts:after-abandon-sign"),
            ],
        )
        .await;
    assert!(
        crashed.status.code().is_none(),
        "must die by a signal: {:?}",
        crashed.status
    );
    assert_eq!(h.sim.accepted(), 0);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let resumed = run_ok(&h).await;
    assert_eq!(
        resumed["details"]["settled"][0]["now"], "abandoning",
        "the stored bytes pushed: {resumed}"
    );
    bury(&h);
    run_ok(&h).await;
    bury(&h);
    run_ok(&h).await;
    assert_paid_once(&h).await;
}

/// A payouts run started with a pause of `seconds` right after it creates its batch; returned
/// once the batch exists.
async fn run_paused_after_create(h: &Harness, seconds: u32) -> tokio::process::Child {
    let pause = format!("payouts:after-create:{seconds}");
    let running = h
        .command(
            "payouts",
            &[],
            &[
                ("MINERPOOL_WALLET_KEY", WALLET_KEY),
                ("MINERPOOL_PAUSE", pause.as_str()),
            ],
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while h
        .store
        .payout_batches()
        .count_documents(doc! {})
        .await
        .unwrap()
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the run never created its batch"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    running
}

#[tokio::test]
async fn a_run_that_lost_its_lock_stops_before_the_chain() {
    let h = harness("payouts_fence", &["4", "6"]).await;
    // The first run creates its batch, then its process is frozen (as a stalled pod is) until
    // its lock has expired by the server's clock and another run has taken over.
    let stalled = run_paused_after_create(&h, 3).await;
    signal(&stalled, "-STOP");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let takeover = run_ok(&h).await;
    assert_eq!(
        takeover["details"]["settled"][0]["now"], "submitted",
        "{takeover}"
    );
    signal(&stalled, "-CONT");
    let stalled = stalled.wait_with_output().await.unwrap();
    assert!(!stalled.status.success(), "the stale run must fail");
    assert!(stderr(&stalled).contains("fenced"), "{}", stderr(&stalled));
    assert_eq!(h.sim.accepted(), 1, "the stale run sent nothing");
    bury(&h);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    run_ok(&h).await;
    assert_paid_once(&h).await;
}

#[tokio::test]
async fn many_small_coins_pay_fewer_recipients_per_batch_and_never_fail() {
    // 500 coins of 0.02: 255 of them hold 5.1, so r1 (5) and r2 (3) cannot share a batch.
    let h = harness("payouts_inputs", &["0.02"; 500]).await;
    let first = run_ok(&h).await;
    assert_eq!(first["details"]["created"]["recipients"], 1, "{first}");
    assert_eq!(only_batch(&h).await.inputs.len(), 250);
    bury(&h);
    let second = run_ok(&h).await;
    assert_eq!(
        second["details"]["settled"][0]["now"], "confirmed",
        "{second}"
    );
    assert_eq!(second["details"]["created"]["recipients"], 1, "{second}");
    bury(&h);
    run_ok(&h).await;
    assert_paid_once(&h).await;
}

#[tokio::test]
async fn a_balance_no_255_coins_cover_is_paid_after_a_consolidation() {
    let big = address_of_key("4");
    let h = harness_with(
        "payouts_consolidate",
        &["0.02"; 400],
        vec![(big.clone(), coins("6"))],
        |_| {},
    )
    .await;
    let first = run_ok(&h).await;
    assert_eq!(
        first["details"]["created"]["kind"], "consolidation",
        "{first}"
    );
    assert_eq!(h.sim.paid_to(&big), (0, 0));
    bury(&h);
    let second = run_ok(&h).await;
    assert_eq!(second["details"]["created"]["kind"], "payout", "{second}");
    bury(&h);
    run_ok(&h).await;
    assert_eq!(h.sim.paid_to(&big), (coins("6") as u64, 1));
    assert_eq!(h.balance(&big).await, (0, coins("6")));
}

#[tokio::test]
async fn an_unpayable_address_is_held_aside_and_everyone_else_is_paid() {
    let off_curve = "DUiCyVdJHEpTzNA1X3siu2CS8kkbLzh4su1NYetFEQozw".to_string();
    assert!(minerpool_core::upow::decode_address(&off_curve).is_err());
    let mut balances = recipients();
    balances.push((off_curve.clone(), coins("9")));
    let h = harness_with("payouts_held", &["100"], balances, |_| {}).await;
    let first = run_ok(&h).await;
    assert_eq!(
        first["details"]["held"][0]["address"],
        off_curve.as_str(),
        "{first}"
    );
    assert_eq!(first["details"]["created"]["recipients"], 2, "{first}");
    bury(&h);
    run_ok(&h).await;
    assert_paid_once(&h).await;
    assert_eq!(h.balance(&off_curve).await, (coins("9"), 0), "left pending");
    let mut lines = recipients();
    lines.push((off_curve.clone(), coins("9")));
    credit(&h, lines).await;
    let audit = h.run_ok("audit").await;
    assert_eq!(
        audit["details"]["held"][0]["address"],
        off_curve.as_str(),
        "{audit}"
    );
}

#[tokio::test]
async fn the_fee_comes_from_the_reward_address_and_is_accounted() {
    let fee = coins("0.001");
    let reward = minerpool_tests::fixtures::REWARD.to_string();
    let mut balances = recipients();
    balances.push((reward.clone(), coins("0.5")));
    let h = harness_with("payouts_fee", &["10"], balances.clone(), |c| {
        c.payouts.fee = Amount::from_units(fee).unwrap();
    })
    .await;
    credit(&h, balances).await;
    let first = run_ok(&h).await;
    assert_eq!(first["details"]["created"]["fee"], "0.00100000", "{first}");
    assert_eq!(
        first["details"]["created"]["total"], "8.00000000",
        "{first}"
    );
    let batch = only_batch(&h).await;
    let tx = minerpool_core::upow::Transaction::parse(&hex::decode(batch.tx_hex.unwrap()).unwrap())
        .unwrap();
    let inputs: i64 = batch.inputs.iter().map(|i| i.units).sum();
    let outputs: u64 = tx.outputs.iter().map(|o| o.units).sum();
    assert_eq!(
        inputs - outputs as i64,
        fee,
        "the transaction pays exactly the fee"
    );
    assert_eq!(h.balance(&reward).await, (coins("0.5") - fee, 0));
    bury(&h);
    run_ok(&h).await;
    assert_paid_once(&h).await;
    let audit = h.run_ok("audit").await;
    assert_eq!(audit["details"]["feesPaid"], "0.00100000", "{audit}");
}

/// A fee the reward address cannot cover while balances are due: the run ends `blocked` (exit
/// 3), with the reason in decimal coins on the summary, on stderr and in `jobRuns`, and pays
/// nothing. With nothing due (all below the minimum) the same fee blocks nothing.
#[tokio::test]
async fn a_fee_the_reward_address_cannot_cover_blocks_the_run() {
    let reward = minerpool_tests::fixtures::REWARD.to_string();
    let mut balances = recipients();
    balances.push((reward.clone(), 190_080_000));
    let h = harness_with("payouts_fee_blocked", &["100"], balances, |c| {
        c.payouts.fee = Amount::parse("100").unwrap();
    })
    .await;
    let blocked = run_blocked(&h, "payouts", &[("MINERPOOL_WALLET_KEY", WALLET_KEY)]).await;
    let reason = format!(
        "payouts.fee 100.00000000 is not covered by the reward address {reward}'s pending 1.90080000: no batch is paid until its share reaches the fee (or payouts.fee is lowered)"
    );
    assert_eq!(blocked["reason"], reason.as_str(), "{blocked}");
    assert_eq!(blocked["job"], "payouts");
    assert_eq!(blocked["details"]["due"], 3, "{blocked}");
    assert_eq!(blocked["details"]["created"], serde_json::Value::Null);
    let record = job_run(&h, &blocked).await;
    assert_eq!(record.get_str("outcome"), Ok("blocked"), "{record}");
    assert_eq!(record.get_str("reason"), Ok(reason.as_str()), "{record}");
    assert_eq!(
        record
            .get_document("summary")
            .unwrap()
            .get_document("details")
            .unwrap()
            .get("due"),
        Some(&bson::Bson::Int64(3)),
        "{record}"
    );
    assert_eq!(h.sim.accepted(), 0);
    assert_eq!(h.balance(&recipients()[0].0).await, (coins("5"), 0));

    // Nothing due: succeeded with nothing to do, whatever the fee.
    let mut high = h.config.clone();
    high.payouts.minimum_payout = Amount::parse("50").unwrap();
    std::fs::write(&h.config_path, high.to_yaml()).unwrap();
    let idle = run_ok(&h).await;
    assert_eq!(idle["outcome"], "succeeded", "{idle}");
    assert!(idle.get("reason").is_none(), "{idle}");
    assert!(idle["details"].get("due").is_none(), "{idle}");
}

/// `minerpool-job --help` documents the exit codes.
#[tokio::test]
async fn help_names_the_blocked_exit_code() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_minerpool-job"))
        .arg("--help")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("3    blocked"), "{text}");
    assert!(text.contains("1    failed"), "{text}");
}

/// The node dropped a submitted batch's transaction but still answers its re-push "Transaction
/// just added" (its list of recent hashes): the run asks `get_transaction`, records the check on
/// the batch, warns with the hash, lists it under `notHeld`, and pays nothing again. Once the
/// node has forgotten the hash (a restart), the same bytes are accepted and paid once.
#[tokio::test]
async fn a_just_added_answer_for_a_dropped_transaction_is_checked_and_reported() {
    let h = harness("payouts_just_added", &["10"]).await;
    let first = run_ok(&h).await;
    assert_eq!(first["details"]["created"]["now"], "submitted", "{first}");
    let batch = only_batch(&h).await;
    let hash = batch.tx_hash.clone().unwrap();
    assert!(h.sim.drop_pending(&hash));

    let output = run(&h, None).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let second = common::summary(&output);
    assert_eq!(second["outcome"], "succeeded", "{second}");
    assert_eq!(
        second["details"]["settled"][0]["now"], "submitted",
        "{second}"
    );
    let not_held = &second["details"]["notHeld"][0];
    assert_eq!(not_held["batch"], batch.id.as_str(), "{second}");
    assert_eq!(not_held["txHash"], hash.as_str(), "{second}");
    let logs = stderr(&output);
    assert!(
        logs.contains("Transaction just added") && logs.contains(&hash) && logs.contains("WARN"),
        "the warning names the hash: {logs}"
    );
    let checked = only_batch(&h).await;
    let since = checked.not_held_since.expect("the check is recorded");
    assert_eq!(
        not_held["notHeldSince"],
        since.try_to_rfc3339_string().unwrap()
    );
    assert!(checked.last_held_check.is_some());
    assert_eq!(checked.state, BatchState::Submitted);
    assert_eq!(h.sim.accepted(), 0, "nothing paid again on an answer");

    // Checked again: since when stays the first time it was not held.
    let third = run_ok(&h).await;
    assert_eq!(
        third["details"]["notHeld"][0]["notHeldSince"], not_held["notHeldSince"],
        "{third}"
    );

    h.sim.restart();
    let resent = run_ok(&h).await;
    assert_eq!(
        resent["details"]["settled"][0]["now"], "submitted",
        "{resent}"
    );
    assert!(resent["details"].get("notHeld").is_none(), "{resent}");
    run_ok(&h).await;
    assert_eq!(only_batch(&h).await.not_held_since, None, "held again");
    bury(&h);
    run_ok(&h).await;
    assert_paid_once(&h).await;
}

/// A refused abandon push is a warning with the node's answer and is listed in the summary
/// (`abandonRefused`); the batch stays abandoning and nothing is refunded.
#[tokio::test]
async fn a_refused_abandon_push_is_logged_and_summarised() {
    let h = harness("payouts_abandon_refused", &["10"]).await;
    h.sim.set_push_mode(PushMode::Reject);
    run_ok(&h).await;
    let batch = only_batch(&h).await;
    let output = h
        .run_args(
            "payouts",
            &["--abandon", &batch.id],
            &[("MINERPOOL_WALLET_KEY", WALLET_KEY)],
        )
        .await;
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = common::summary(&output);
    assert_eq!(
        summary["details"]["settled"][0]["now"], "abandoning",
        "{summary}"
    );
    let abandoning = only_batch(&h).await;
    let abandon_hash = abandoning.abandon.unwrap().tx_hash.unwrap();
    assert_eq!(
        summary["details"]["abandonRefused"],
        json!([{ "batch": batch.id, "txHash": abandon_hash, "answer": "Transaction has not been added" }]),
        "{summary}"
    );
    let logs = stderr(&output);
    assert!(
        logs.contains("WARN")
            && logs.contains(&abandon_hash)
            && logs.contains("Transaction has not been added"),
        "{logs}"
    );
    assert_eq!(
        abandoning.error.as_deref(),
        Some("abandoning: Transaction has not been added")
    );
    assert_eq!(
        h.balance(&recipients()[0].0).await,
        (0, 0),
        "nothing refunded"
    );
}

/// A `get_transaction` answer that is not the node's shape fails the run naming what was
/// wrong; the batch and the balances stay as they were.
#[tokio::test]
async fn a_malformed_get_transaction_answer_is_a_clear_error() {
    let h = harness("payouts_bad_lookup", &["10"]).await;
    run_ok(&h).await;
    let batch = only_batch(&h).await;
    let hash = batch.tx_hash.clone().unwrap();
    for (answer, expected) in [
        (
            json!({ "ok": true, "result": { "hash": hash, "block_no": "12", "is_confirm": true } }),
            r#""block_no" is not a block number: "12""#.to_owned(),
        ),
        (
            json!({ "ok": true, "result": { "hash": "ab".repeat(32), "block_no": null, "is_confirm": false } }),
            format!(
                "the answer is for transaction {}, not {hash}",
                "ab".repeat(32)
            ),
        ),
        (
            json!({ "ok": true, "result": { "hash": hash, "block_no": 7, "is_confirm": false } }),
            r#""block_no" is 7 but "is_confirm" is false"#.to_owned(),
        ),
        (
            json!({ "result": "Transaction not found" }),
            r#"no boolean "ok""#.to_owned(),
        ),
    ] {
        h.sim.answer_transactions_with(vec![answer.clone()]);
        let output = run(&h, None).await;
        assert_eq!(
            output.status.code(),
            Some(1),
            "{answer}: {}",
            stderr(&output)
        );
        let err = stderr(&output);
        assert!(
            err.contains("get_transaction")
                && err.contains("malformed response")
                && err.contains(&expected),
            "{answer}: {err}"
        );
        let after = only_batch(&h).await;
        assert_eq!(after.state, BatchState::Submitted, "{answer}");
        assert_eq!(h.balance(&recipients()[0].0).await, (0, 0), "{answer}");
        assert_eq!(h.sim.accepted(), 1, "{answer}");
    }
    bury(&h);
    run_ok(&h).await;
    assert_paid_once(&h).await;
}

/// Rewards and payouts on one host share the node's 10 block-detail calls a minute: a payouts
/// run that waits them out says so in its summary (`rateLimitedSeconds`, shown from 5 s) and in
/// `jobRuns.rate_limited_seconds` (what `/metrics` shows); a run that waited less shows nothing.
#[tokio::test]
async fn time_waited_on_shared_rate_limits_is_in_the_summary() {
    let h = harness_with("payouts_rate_limited", &["10"], recipients(), |c| {
        c.rewards.start_height = 1;
        c.chain.rate_limit_wait_seconds = 30;
    })
    .await;
    let first = run_ok(&h).await;
    assert!(first.get("rateLimitedSeconds").is_none(), "{first}");
    assert_eq!(
        job_run(&h, &first).await.get_f64("rate_limited_seconds"),
        Ok(0.0)
    );
    bury(&h);
    // One get_blocks_details call every 7 s; the rewards run takes this window's.
    h.sim
        .set_rate_limits(Some(minerpool_tests::chain_sim::RateLimits {
            blocks_details: Some(minerpool_tests::chain_sim::RateLimit {
                requests: 1,
                per_ms: 7_000,
            }),
            ..Default::default()
        }));
    h.run_ok("rewards").await;
    let settled = run_ok(&h).await;
    assert_eq!(
        settled["details"]["settled"][0]["now"], "confirmed",
        "{settled}"
    );
    let waited = settled["rateLimitedSeconds"]
        .as_f64()
        .unwrap_or_else(|| panic!("no rateLimitedSeconds: {settled}"));
    assert!((5.0..30.0).contains(&waited), "{settled}");
    let record = job_run(&h, &settled).await;
    assert_eq!(
        record.get_f64("rate_limited_seconds"),
        Ok(waited),
        "{record}"
    );
    assert_eq!(
        record
            .get_document("summary")
            .unwrap()
            .get_f64("rateLimitedSeconds"),
        Ok(waited),
        "{record}"
    );
    assert_paid_once(&h).await;
}

#[tokio::test]
async fn two_runs_at_once_pay_once() {
    let h = harness("payouts_race", &["4", "6"]).await;
    let (a, b) = tokio::join!(run(&h, None), run(&h, None));
    assert!(
        a.status.success() && b.status.success(),
        "{} {}",
        stderr(&a),
        stderr(&b)
    );
    bury(&h);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    run_ok(&h).await;
    assert_paid_once(&h).await;
}

#[tokio::test]
async fn bad_input_is_a_clear_error_and_changes_nothing() {
    // Not enough coins for the batch: blocked, not failed, and nothing moves.
    let h = harness("payouts_funds", &["1", "2"]).await;
    let blocked = run_blocked(&h, "payouts", &[("MINERPOOL_WALLET_KEY", WALLET_KEY)]).await;
    let wallet = address_of_key(WALLET_KEY);
    assert_eq!(
        blocked["reason"],
        format!(
            "the wallet's spendable outputs hold 3.00000000; the largest balance due needs 5.00000000 with the fee: no batch is paid until the wallet {wallet} receives more"
        ),
        "{blocked}"
    );
    assert_eq!(blocked["details"]["due"], 2, "{blocked}");
    assert_eq!(
        job_run(&h, &blocked).await.get_str("outcome"),
        Ok("blocked")
    );
    assert_eq!(h.balance(&recipients()[0].0).await, (coins("5"), 0));
    assert_eq!(
        h.store
            .payout_batches()
            .count_documents(doc! {})
            .await
            .unwrap(),
        0
    );

    // A malformed or failing chain answer: the first read (the wallet's spends in the blocks)
    // fails, and nothing moves. (A read is tried three times on a 5xx, once on a malformed
    // answer.)
    for (failure, times) in [(Failure::Malformed, 1), (Failure::ServerError, 3)] {
        h.sim.fail_next(failure, times);
        let output = run(&h, None).await;
        assert!(!output.status.success(), "{failure:?}");
        assert!(
            stderr(&output).contains("get_blocks_details"),
            "{failure:?}: {}",
            stderr(&output)
        );
        assert_eq!(h.balance(&recipients()[0].0).await, (coins("5"), 0));
        assert_eq!(
            h.store
                .payout_batches()
                .count_documents(doc! {})
                .await
                .unwrap(),
            0
        );
    }

    // Wallet keys that are not keys, or not the iNode's.
    for (key, message) in [
        ("not-hex", "MINERPOOL_WALLET_KEY"),
        ("0", "MINERPOOL_WALLET_KEY"),
        (
            "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551",
            "MINERPOOL_WALLET_KEY",
        ),
        ("0x1", "not of chain.inodeWallet"),
    ] {
        let output = h.run("payouts", &[("MINERPOOL_WALLET_KEY", key)]).await;
        assert!(!output.status.success(), "{key}");
        assert!(
            stderr(&output).contains(message),
            "{key}: {}",
            stderr(&output)
        );
        assert!(
            !stderr(&output).contains(key) || key == "0",
            "the key is never printed: {}",
            stderr(&output)
        );
    }
}

#[tokio::test]
async fn the_dry_run_sender_sends_nothing() {
    let h = harness("payouts_dry", &["10"]).await;
    let config = h.config.clone();
    let mut dry = config;
    dry.payouts.sender = Sender::DryRun;
    std::fs::write(&h.config_path, dry.to_yaml()).unwrap();
    let summary = h.run_ok("payouts").await;
    assert_eq!(summary["details"]["sender"], "dry-run");
    assert_eq!(summary["details"]["simulated"]["recipients"], 2);
    assert_eq!(h.sim.accepted(), 0);
    assert_eq!(h.balance(&recipients()[0].0).await, (coins("5"), 0));
}

/// Records a distribution that credited exactly the seeded balances, so the books start right.
async fn record_credit(h: &Harness) {
    credit(h, recipients()).await;
}

/// Records a distribution crediting `credited`.
async fn credit(h: &Harness, credited: Vec<(String, i64)>) {
    use minerpool_core::store::ledger::{
        Basis, CreditedTransaction, LedgerKind, LedgerLine, RewardDistribution,
    };
    let lines: Vec<LedgerLine> = credited
        .into_iter()
        .map(|(address, units)| LedgerLine {
            address,
            kind: LedgerKind::Pool,
            units,
            basis: Basis::Score { score: 1 },
        })
        .collect();
    h.store
        .reward_distributions()
        .insert_one(RewardDistribution {
            id: "1-1".into(),
            first_block: 1,
            last_block: 1,
            received: lines.iter().map(|l| l.units).sum(),
            hashes: vec!["h".into()],
            lines,
            created_at: bson::DateTime::now(),
            received_by_block: Vec::new(),
        })
        .await
        .unwrap();
    // As the rewards job records it, with the transaction it credited.
    h.store
        .credited_transactions()
        .insert_one(CreditedTransaction {
            hash: "h".into(),
            block_id: Some(1),
            credited_at: None,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn audit_passes_through_a_payout_and_names_a_tampered_balance() {
    let h = harness("payouts_audit", &["4", "6"]).await;
    record_credit(&h).await;
    assert_eq!(h.run_ok("audit").await["outcome"], "succeeded");
    run_ok(&h).await; // batch in flight
    let in_flight = h.run_ok("audit").await;
    assert_eq!(
        in_flight["details"]["inFlight"], "8.00000000",
        "{in_flight}"
    );
    bury(&h);
    run_ok(&h).await; // confirmed
    let done = h.run_ok("audit").await;
    assert_eq!(done["details"]["paid"], "8.00000000", "{done}");

    let (victim, _) = recipients().remove(1);
    h.store
        .balances()
        .update_one(
            doc! { "address": &victim },
            doc! { "$inc": { "pending": 1_i64 } },
        )
        .await
        .unwrap();
    let output = h.run("audit", &[]).await;
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains(&victim), "names the address: {err}");
    assert!(
        err.contains("should be 3.00000000, found 3.00000001"),
        "{err}"
    );
}

/// A migrated database: the original's `tempWithdrawals` are imported on the first run, an
/// unpayable entry is held aside and named in the payouts and audit summaries, the rest paid.
#[tokio::test]
async fn the_first_run_imports_temp_withdrawals_and_names_what_it_held() {
    use minerpool_core::store::names;
    let h = harness("payouts_import", &["10"]).await;
    record_credit(&h).await;
    let mut dry = h.config.clone();
    dry.payouts.sender = Sender::DryRun;
    std::fs::write(&h.config_path, dry.to_yaml()).unwrap();
    let owed = address_of_key("4");
    let entry = |id: &str, wallet: &str, new_balance: f64| {
        doc! { "id": id, "wallet_address": wallet, "new_balance": new_balance,
        "timestamp": bson::DateTime::now(), "type": "pool_reward" }
    };
    h.store
        .collection::<bson::Document>(names::TEMP_WITHDRAWALS)
        .insert_many([
            entry("6f1e2d3c-4b5a-4c6d-8e7f-0a1b2c3d4e5f", &owed, 0.1 + 0.2),
            entry("7a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", &owed, 1.2),
            entry(
                "8b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e",
                minerpool_tests::fixtures::OFF_CURVE,
                2.0,
            ),
        ])
        .await
        .unwrap();
    let summary = run_ok(&h).await;
    let held = &summary["details"]["importHeld"];
    assert_eq!(held.as_array().map(Vec::len), Some(1), "{summary}");
    assert_eq!(held[0]["id"], "8b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e");
    assert_eq!(held[0]["address"], minerpool_tests::fixtures::OFF_CURVE);
    assert_eq!(h.balance(&owed).await, (coins("1.5"), 0));
    assert_eq!(
        summary["details"]["simulated"]["recipients"], 3,
        "the imported wallet is due with the others: {summary}"
    );
    let again = run_ok(&h).await;
    assert!(again["details"].get("importHeld").is_none(), "{again}");
    let audit = h.run_ok("audit").await;
    assert_eq!(
        audit["details"]["importHeld"][0]["id"], "8b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e",
        "{audit}"
    );
}

/// SIGTERM while a payouts run sits between its steps (its batch created, not yet signed): the
/// run begins no further step, sends nothing, ends `stopped` (exit 143) saying so, and leaves
/// the batch for the next run, which pays it exactly once.
#[tokio::test]
async fn sigterm_between_steps_stops_the_run_and_the_next_pays_once() {
    let h = harness("payouts_sigterm", &["4", "6"]).await;
    let running = run_paused_after_create(&h, 2).await;
    signal(&running, "-TERM");
    let stopped = running.wait_with_output().await.unwrap();
    assert_eq!(stopped.status.code(), Some(143), "{}", stderr(&stopped));
    let last = common::summary(&stopped);
    assert_eq!(last["outcome"], "stopped", "{last}");
    assert_eq!(last["signal"], "SIGTERM", "{last}");
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains("every earlier step of the run is committed"),
        "{last}"
    );
    assert_eq!(h.sim.accepted(), 0, "the stopped run sent nothing");
    assert_eq!(only_batch(&h).await.state, BatchState::Created);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    run_ok(&h).await;
    bury(&h);
    run_ok(&h).await;
    assert_paid_once(&h).await;
    assert_eq!(h.sim.accepted(), 1, "one transaction in all");
}
