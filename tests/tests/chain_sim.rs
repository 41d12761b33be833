//! The chain simulator's payer half answers as the real uPow node does (upow/TRANSACTIONS.md
//! §8–9), checked over HTTP with real signed transactions: payout code tested against it sees
//! the node's unkind answers, not friendlier ones.

use std::time::Duration;

use minerpool_core::money::Amount;
use minerpool_core::upow::parse_private_key;
use minerpool_core::upow::{Input, Output, Transaction, address_of, decode_address};
use minerpool_tests::chain_sim::{
    ChainSim, Lag, PushMode, Scenario, SimBlock, SimOutput, SimSpent, SimTransaction, SimUtxo,
    Stale, TxState,
};
use minerpool_tests::fixtures::{OFF_CURVE, PAYER};
use serde_json::{Value, json};

/// The paying wallet's key, and a second key owning coins of its own.
const WALLET_KEY: &str = "0xc0ffee";
const OTHER_KEY: &str = "0x2";

fn address(key: &str) -> String {
    address_of(parse_private_key(key).unwrap().verifying_key())
}

fn units(coins: &str) -> u64 {
    Amount::parse(coins).unwrap().units() as u64
}

/// A recipient that is no one in these tests.
fn recipient() -> String {
    address("0x1")
}

/// The seeded coin number `n` (1-based): hash `00…0n`, index 0.
fn coin_hash(n: usize) -> String {
    format!("{n:064x}")
}

fn utxo(key: &str, n: usize, coins: &str) -> SimUtxo {
    SimUtxo {
        owner: address(key),
        tx_hash: coin_hash(n),
        index: 0,
        amount: Amount::parse(coins).unwrap(),
    }
}

/// A simulator whose wallet holds `coins[i]` in coin `i + 1`.
async fn sim_with(coins: &[&str]) -> ChainSim {
    ChainSim::start(Scenario {
        utxos: coins
            .iter()
            .enumerate()
            .map(|(i, c)| utxo(WALLET_KEY, i + 1, c))
            .collect(),
        ..Scenario::default()
    })
    .await
}

/// A version-3 transaction from `inputs` (hash, index) to `outputs` (address, units), signed
/// by `key` for every input; no validity checks, so tests can build what the node must refuse.
fn signed(key: &str, inputs: &[(&str, u8)], outputs: &[(&str, u64)]) -> Transaction {
    let mut tx = Transaction {
        version: 3,
        inputs: inputs
            .iter()
            .map(|(hash, index)| Input {
                tx_hash: hex::decode(hash).unwrap().try_into().unwrap(),
                index: *index,
            })
            .collect(),
        outputs: outputs
            .iter()
            .map(|(to, units)| Output {
                address: decode_address(to).unwrap().to_vec(),
                units: *units,
            })
            .collect(),
        message: None,
        signatures: vec![],
    };
    let key = parse_private_key(key).unwrap();
    let keys = vec![&key; tx.inputs.len()];
    tx.sign(&keys).unwrap();
    tx
}

/// Coin `n` of the wallet (1 coin unless said otherwise) paid whole to the recipient.
fn pay_coin(n: usize, coins: &str) -> Transaction {
    signed(
        WALLET_KEY,
        &[(&coin_hash(n), 0)],
        &[(&recipient(), units(coins))],
    )
}

/// POST /push_tx: HTTP status and body.
async fn push(sim: &ChainSim, tx_hex: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/push_tx", sim.url))
        .json(&json!({ "tx_hex": tx_hex }))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn accepted(hash: &str) -> (u16, Value) {
    (
        200,
        json!({ "ok": true, "result": "Transaction has been accepted", "tx_hash": hash }),
    )
}

fn refused(status: u16, error: &str) -> (u16, Value) {
    (status, json!({ "ok": false, "error": error }))
}

const NOT_ADDED: &str = "Transaction has not been added";

async fn get(sim: &ChainSim, path: &str) -> Value {
    reqwest::get(format!("{}{path}", sim.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn lookup(sim: &ChainSim, hash: &str) -> Value {
    get(sim, &format!("/get_transaction?tx_hash={hash}")).await
}

async fn address_info(sim: &ChainSim, address: &str) -> Value {
    get(
        sim,
        &format!("/get_address_info?address={address}&show_pending=true"),
    )
    .await["result"]
        .clone()
}

fn not_found() -> Value {
    json!({ "ok": false, "error": "Transaction not found" })
}

#[tokio::test]
async fn a_repush_is_just_added_only_among_the_last_100_accepted() {
    let sim = sim_with(&["1"; 102]).await;
    let mined = pay_coin(1, "1");
    assert_eq!(push(&sim, &mined.to_hex()).await, accepted(&mined.hash()));
    sim.mine();
    let pending = pay_coin(2, "1");
    assert_eq!(
        push(&sim, &pending.to_hex()).await,
        accepted(&pending.hash())
    );
    // Inside the window, mined or pending: the node says it has it.
    for tx in [&mined, &pending] {
        assert_eq!(
            push(&sim, &tx.to_hex()).await,
            refused(200, "Transaction just added")
        );
    }
    let others: Vec<Transaction> = (3..=102).map(|n| pay_coin(n, "1")).collect();
    for tx in &others {
        assert_eq!(push(&sim, &tx.to_hex()).await, accepted(&tx.hash()));
    }
    // 100 accepted since: the same re-push is refused exactly like a bad transaction, though
    // the node holds both (one mined, one pending).
    for tx in [&mined, &pending] {
        assert_eq!(push(&sim, &tx.to_hex()).await, refused(200, NOT_ADDED));
    }
    assert!(matches!(sim.tx_state(&mined.hash()), TxState::Mined { .. }));
    assert_eq!(sim.tx_state(&pending.hash()), TxState::Pending);
    let newest = others.last().unwrap();
    assert_eq!(
        push(&sim, &newest.to_hex()).await,
        refused(200, "Transaction just added")
    );
}

#[tokio::test]
async fn bad_transactions_get_the_node_answers_in_the_node_order() {
    let sim = sim_with(&["4", "6"]).await;
    let coin = coin_hash(1);
    let to = recipient();
    let internal = |error: &str| refused(500, error);
    let mut version_4 = pay_coin(1, "4").to_bytes();
    version_4[0] = 4;
    let mut unknown_output_type = pay_coin(1, "4").to_bytes();
    // The output type byte follows the 33 address bytes and the 5 amount bytes.
    let type_at = 1 + 1 + 34 + 1 + 33 + 5;
    unknown_output_type[type_at] = 4;
    let cases: Vec<(&str, String, (u16, Value))> = vec![
        (
            "not hex",
            "zz".into(),
            internal("Uncaught ValueError exception"),
        ),
        (
            "version 4",
            hex::encode(version_4),
            internal("Uncaught NotImplementedError exception"),
        ),
        (
            "unknown output type",
            hex::encode(unknown_output_type),
            internal("Uncaught ValueError exception"),
        ),
        (
            "first input from an unknown transaction",
            signed(WALLET_KEY, &[(&"ab".repeat(32), 0)], &[(&to, 1)]).to_hex(),
            internal("Exception: "),
        ),
        (
            "a later input from an unknown transaction",
            signed(
                WALLET_KEY,
                &[(&coin, 0), (&"ab".repeat(32), 0)],
                &[(&to, 1)],
            )
            .to_hex(),
            refused(200, NOT_ADDED),
        ),
        (
            "the same output spent twice",
            signed(WALLET_KEY, &[(&coin, 0), (&coin, 0)], &[(&to, 1)]).to_hex(),
            refused(200, NOT_ADDED),
        ),
        (
            "signed by a key that does not own the coin",
            signed(OTHER_KEY, &[(&coin, 0)], &[(&to, 1)]).to_hex(),
            refused(200, NOT_ADDED),
        ),
        (
            "an output of zero",
            signed(WALLET_KEY, &[(&coin, 0)], &[(&to, 0)]).to_hex(),
            refused(200, NOT_ADDED),
        ),
        (
            "more out than in",
            signed(WALLET_KEY, &[(&coin, 0)], &[(&to, units("4") + 1)]).to_hex(),
            refused(200, NOT_ADDED),
        ),
    ];
    for (what, tx_hex, answer) in cases {
        assert_eq!(push(&sim, &tx_hex).await, answer, "{what}");
    }
    assert_eq!(sim.accepted(), 0);

    // A coin a pending transaction spends cannot be spent again.
    let first = signed(WALLET_KEY, &[(&coin, 0)], &[(&to, units("4"))]);
    assert_eq!(push(&sim, &first.to_hex()).await, accepted(&first.hash()));
    let second = signed(WALLET_KEY, &[(&coin, 0)], &[(&to, units("3"))]);
    assert_eq!(push(&sim, &second.to_hex()).await, refused(200, NOT_ADDED));

    // An output index beyond a known transaction's outputs.
    sim.mine();
    let beyond = signed(WALLET_KEY, &[(&first.hash(), 7)], &[(&to, 1)]);
    assert_eq!(
        push(&sim, &beyond.to_hex()).await,
        internal("Uncaught IndexError exception")
    );
}

#[tokio::test]
async fn push_modes_answer_as_failing_nodes_do() {
    let cases = [
        (
            PushMode::AcceptThenServerError,
            refused(500, "Exception: "),
            true,
        ),
        (PushMode::AcceptThenNotAdded, refused(200, NOT_ADDED), true),
        (PushMode::ServerError, refused(500, "Exception: "), false),
        (PushMode::Reject, refused(200, NOT_ADDED), false),
        (
            PushMode::Syncing,
            refused(200, "Node is already syncing"),
            false,
        ),
        (
            PushMode::Forbidden,
            refused(403, "Access forbidden temporarily."),
            false,
        ),
    ];
    for (mode, answer, kept) in cases {
        let sim = sim_with(&["1"]).await;
        let tx = pay_coin(1, "1");
        sim.set_push_mode(mode);
        assert_eq!(push(&sim, &tx.to_hex()).await, answer, "{mode:?}");
        let expected = if kept {
            TxState::Pending
        } else {
            TxState::Unknown
        };
        assert_eq!(sim.tx_state(&tx.hash()), expected, "{mode:?}");
        sim.set_push_mode(PushMode::Normal);
        let again = if kept {
            refused(200, "Transaction just added")
        } else {
            accepted(&tx.hash())
        };
        assert_eq!(
            push(&sim, &tx.to_hex()).await,
            again,
            "{mode:?} then normal"
        );
    }
}

/// HTTP status and body of a GET.
async fn status_of(sim: &ChainSim, path: &str) -> (u16, Value) {
    let response = reqwest::get(format!("{}{path}", sim.url)).await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_chain_down_answers_500_everywhere_yet_takes_a_push_and_comes_back() {
    let sim = sim_with(&["1"]).await;
    let wallet = address(WALLET_KEY);
    let reads = [
        "/get_blocks_details?offset=0&limit=10".to_owned(),
        "/get_validators_info".to_owned(),
        format!("/get_address_info?address={wallet}&show_pending=true"),
        format!("/get_transaction?tx_hash={}", coin_hash(1)),
    ];
    sim.go_down(Duration::from_secs(3600));
    for path in &reads {
        assert_eq!(
            status_of(&sim, path).await,
            refused(500, "Exception: the node is down"),
            "{path}"
        );
    }
    let tx = pay_coin(1, "1");
    assert_eq!(
        push(&sim, &tx.to_hex()).await,
        refused(500, "Exception: "),
        "a push while down"
    );
    assert_eq!(
        sim.tx_state(&tx.hash()),
        TxState::Pending,
        "the push was taken all the same"
    );
    // The control endpoints stay up; bringing the chain back serves the truth again.
    let up = reqwest::Client::new()
        .delete(format!("{}/sim/down", sim.url))
        .send()
        .await
        .unwrap();
    assert_eq!(up.status().as_u16(), 204);
    for path in &reads {
        assert_ne!(status_of(&sim, path).await.0, 500, "{path} once up");
    }
    let block = sim.mine();
    assert_eq!(sim.tx_state(&tx.hash()), TxState::Mined { block });
    // A window ends by itself.
    let window = reqwest::Client::new()
        .post(format!("{}/sim/down", sim.url))
        .json(&json!({"seconds": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(window.status().as_u16(), 204);
    assert_eq!(status_of(&sim, &reads[0]).await.0, 500);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(status_of(&sim, &reads[0]).await.0, 200);
}

#[tokio::test]
async fn a_lagging_node_answers_not_found_then_pending_then_mined() {
    let sim = sim_with(&["4", "6"]).await;
    sim.set_accept_lag(Some(Lag::Lookups(2)));
    let tx = signed(
        WALLET_KEY,
        &[(&coin_hash(1), 0)],
        &[
            (&recipient(), units("1.5")),
            (&address(WALLET_KEY), units("2.5")),
        ],
    );
    assert_eq!(push(&sim, &tx.to_hex()).await, accepted(&tx.hash()));
    for _ in 0..2 {
        assert_eq!(lookup(&sim, &tx.hash()).await, not_found());
    }
    let pending = lookup(&sim, &tx.hash()).await;
    assert_eq!(pending["ok"], true);
    let t = &pending["result"];
    assert_eq!(
        (
            &t["is_confirm"],
            &t["block_no"],
            &t["block_hash"],
            &t["datetime"]
        ),
        (&json!(false), &Value::Null, &Value::Null, &Value::Null),
        "{t}"
    );
    assert_eq!(t["hash"], tx.hash());

    sim.set_mine_lag(Some((Lag::For(Duration::from_millis(500)), Stale::Pending)));
    let block = sim.mine();
    assert_eq!(
        lookup(&sim, &tx.hash()).await["result"]["is_confirm"],
        false
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let mined = lookup(&sim, &tx.hash()).await["result"].clone();
    assert_eq!(mined["is_confirm"], true, "{mined}");
    assert_eq!(mined["block_no"], block);

    // Mined and lagging as "not found" (a node behind the chain).
    let second = signed(
        WALLET_KEY,
        &[(&coin_hash(2), 0)],
        &[(&recipient(), units("6"))],
    );
    sim.set_accept_lag(None);
    sim.set_mine_lag(Some((Lag::Lookups(1), Stale::NotFound)));
    assert_eq!(push(&sim, &second.to_hex()).await, accepted(&second.hash()));
    assert_eq!(
        lookup(&sim, &second.hash()).await["result"]["is_confirm"],
        false
    );
    sim.mine();
    assert_eq!(lookup(&sim, &second.hash()).await, not_found());
    assert_eq!(
        lookup(&sim, &second.hash()).await["result"]["is_confirm"],
        true
    );
}

#[tokio::test]
async fn a_mined_transaction_is_in_a_served_block_and_its_outputs_are_spendable() {
    let sim = sim_with(&["4", "6"]).await;
    let (wallet, to) = (address(WALLET_KEY), recipient());
    let tx = signed(
        WALLET_KEY,
        &[(&coin_hash(2), 0)],
        &[(&to, units("1.5")), (&wallet, units("4.5"))],
    );
    assert_eq!(push(&sim, &tx.to_hex()).await, accepted(&tx.hash()));
    assert_eq!(sim.pending_paid_to(&to), (units("1.5"), 1));
    assert_eq!(sim.confirmed_paid_to(&to), (0, 0));
    assert_eq!(sim.paid_to(&to), (units("1.5"), 1));
    let block = sim.mine();
    assert_eq!(sim.tx_state(&tx.hash()), TxState::Mined { block });
    assert_eq!(sim.mined_hashes(), vec![tx.hash()]);
    assert_eq!(sim.confirmed_paid_to(&to), (units("1.5"), 1));
    assert_eq!(sim.pending_paid_to(&to), (0, 0));

    let served = get(
        &sim,
        &format!("/get_blocks_details?offset={block}&limit=10"),
    )
    .await;
    let served = &served["result"][0];
    assert_eq!(served["block"]["id"], block);
    let in_block = served["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["hash"] == tx.hash())
        .expect("the transaction is in the block")
        .clone();
    assert_eq!(
        in_block,
        json!({
            "is_coinbase": false, "hash": tx.hash(), "block_hash": served["block"]["hash"],
            "block_no": block, "datetime": "2024-06-01T12:34:56", "message": null,
            "transaction_type": "REGULAR", "is_confirm": true,
            "inputs": [{ "index": 0, "tx_hash": coin_hash(2), "address": wallet, "amount": 6 }],
            "delta": null, "fees": 0,
            "outputs": [
                { "address": to, "amount": 1.5, "type": "REGULAR" },
                { "address": wallet, "amount": 4.5, "type": "REGULAR" },
            ],
        })
    );
    assert_eq!(lookup(&sim, &tx.hash()).await["result"], in_block);
    assert!(
        served["transactions"][0]["is_coinbase"] == true,
        "a block starts with its coinbase: {served}"
    );

    // The recipient owns its output, the wallet its change; the spent coin is gone.
    let spendable = |info: &Value| info["spendable_outputs"].clone();
    assert_eq!(
        spendable(&address_info(&sim, &to).await),
        json!([{ "amount": "1.5", "tx_hash": tx.hash(), "index": 0 }])
    );
    assert_eq!(
        spendable(&address_info(&sim, &wallet).await),
        json!([
            { "amount": "4", "tx_hash": coin_hash(1), "index": 0 },
            { "amount": "4.5", "tx_hash": tx.hash(), "index": 1 },
        ])
    );
    assert_eq!(sim.confirmed_spendable(&wallet), units("8.5"));
    // … and the change can be paid on.
    let onward = signed(WALLET_KEY, &[(&tx.hash(), 1)], &[(&to, units("4.5"))]);
    assert_eq!(push(&sim, &onward.to_hex()).await, accepted(&onward.hash()));
}

#[tokio::test]
async fn address_info_lists_confirmed_outputs_and_only_this_address_pending_spends() {
    let sim = ChainSim::start(Scenario {
        utxos: vec![
            utxo(WALLET_KEY, 1, "4"),
            utxo(WALLET_KEY, 2, "1.5"),
            utxo(OTHER_KEY, 3, "0.00000001"),
        ],
        ..Scenario::default()
    })
    .await;
    let wallet = address(WALLET_KEY);
    let spend = pay_coin(1, "4");
    assert_eq!(push(&sim, &spend.to_hex()).await, accepted(&spend.hash()));
    let other = signed(OTHER_KEY, &[(&coin_hash(3), 0)], &[(&recipient(), 1)]);
    assert_eq!(push(&sim, &other.to_hex()).await, accepted(&other.hash()));

    let info = address_info(&sim, &wallet).await;
    assert_eq!(info["balance"], "5.5", "pending spends still count: {info}");
    assert_eq!(
        info["spendable_outputs"],
        json!([
            { "amount": "4", "tx_hash": coin_hash(1), "index": 0 },
            { "amount": "1.5", "tx_hash": coin_hash(2), "index": 0 },
        ])
    );
    assert_eq!(
        info["pending_spent_outputs"],
        json!([{ "tx_hash": coin_hash(1), "index": 0 }])
    );
    let pending = info["pending_transactions"].as_array().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0]["hash"], spend.hash());
    assert_eq!(
        address_info(&sim, &address(OTHER_KEY)).await["spendable_outputs"][0]["amount"],
        "0.00000001"
    );
    let without = get(&sim, &format!("/get_address_info?address={wallet}")).await;
    assert_eq!(without["result"]["pending_spent_outputs"], Value::Null);
    assert_eq!(sim.confirmed_spendable(&wallet), units("5.5"));
}

#[tokio::test]
async fn a_dropped_transaction_is_not_found_and_its_coins_are_free_again() {
    let sim = sim_with(&["1"]).await;
    let tx = pay_coin(1, "1");
    assert_eq!(push(&sim, &tx.to_hex()).await, accepted(&tx.hash()));
    assert!(sim.drop_pending(&tx.hash()));
    assert!(!sim.drop_pending(&tx.hash()));
    assert_eq!(sim.tx_state(&tx.hash()), TxState::Unknown);
    assert_eq!(lookup(&sim, &tx.hash()).await, not_found());
    assert_eq!(
        address_info(&sim, &address(WALLET_KEY)).await["pending_spent_outputs"],
        json!([])
    );
    // As the real node: the hash is still among the last accepted, so a re-push is "just
    // added" though the node holds nothing, until a restart empties that list.
    assert_eq!(
        push(&sim, &tx.to_hex()).await,
        refused(200, "Transaction just added")
    );
    assert_eq!(lookup(&sim, &tx.hash()).await, not_found());
    sim.restart();
    assert_eq!(push(&sim, &tx.to_hex()).await, accepted(&tx.hash()));
}

#[tokio::test]
async fn added_blocks_pay_spendable_outputs_and_drop_pending_transactions_they_conflict_with() {
    let sim = sim_with(&["1"]).await;
    let wallet = address(WALLET_KEY);
    let income = "cd".repeat(32);
    sim.add_block(SimBlock {
        id: 500,
        hash: None,
        timestamp: minerpool_tests::chain_sim::now_seconds(),
        transactions: vec![SimTransaction {
            hash: income.clone(),
            coinbase: false,
            transaction_type: Some("REGULAR".into()),
            inputs: vec![PAYER.into()],
            outputs: vec![SimOutput {
                address: wallet.clone(),
                amount: Amount::parse("2").unwrap(),
                output_type: "REGULAR".into(),
            }],
            spent: vec![],
        }],
    });
    assert_eq!(sim.confirmed_spendable(&wallet), units("3"));
    let from_income = signed(WALLET_KEY, &[(&income, 0)], &[(&recipient(), units("2"))]);
    assert_eq!(
        push(&sim, &from_income.to_hex()).await,
        accepted(&from_income.hash())
    );

    // Another transaction spending the same coin reaches a block first (pushed elsewhere).
    sim.add_block(SimBlock {
        id: 501,
        hash: None,
        timestamp: minerpool_tests::chain_sim::now_seconds(),
        transactions: vec![SimTransaction {
            hash: "ef".repeat(32),
            coinbase: false,
            transaction_type: Some("REGULAR".into()),
            inputs: vec![wallet.clone()],
            outputs: vec![SimOutput {
                address: recipient(),
                amount: Amount::parse("2").unwrap(),
                output_type: "REGULAR".into(),
            }],
            spent: vec![SimSpent {
                tx_hash: income.clone(),
                index: 0,
                amount: Amount::parse("2").unwrap(),
            }],
        }],
    });
    assert_eq!(sim.tx_state(&from_income.hash()), TxState::Unknown);
    assert_eq!(lookup(&sim, &from_income.hash()).await, not_found());
    assert_eq!(sim.confirmed_spendable(&wallet), units("1"));
}

#[test]
fn scenarios_written_before_spent_outputs_still_load() {
    let scenario: Scenario = serde_yaml::from_str(
        "blocks:\n- id: 1\n  transactions:\n  - hash: h\n    inputs: [a]\n    outputs:\n    - {address: b, amount: \"1\"}\n",
    )
    .unwrap();
    assert!(scenario.blocks[0].transactions[0].spent.is_empty());
}

/// A failure planned for many requests stops at `DELETE /sim/fail`: the cluster test makes
/// job runs fail for a while, then lets the next one succeed.
#[tokio::test]
async fn planned_failures_end_when_cleared() {
    let sim = sim_with(&["1"]).await;
    let http = reqwest::Client::new();
    let blocks = format!("{}/get_blocks_details?offset=20001&limit=1", sim.url);
    let status = |r: reqwest::Response| r.status().as_u16();
    let planned = http
        .post(format!("{}/sim/fail", sim.url))
        .json(&json!({"mode": "server-error", "times": 1000}))
        .send()
        .await
        .unwrap();
    assert_eq!(status(planned), 204);
    for _ in 0..3 {
        assert_eq!(status(http.get(&blocks).send().await.unwrap()), 500);
    }
    let cleared = http
        .delete(format!("{}/sim/fail", sim.url))
        .send()
        .await
        .unwrap();
    assert_eq!(status(cleared), 204);
    assert_eq!(status(http.get(&blocks).send().await.unwrap()), 200);
}

/// The wallet key as another holder has it (a thief, a second installation).
fn holder() -> p256::ecdsa::SigningKey {
    parse_private_key(WALLET_KEY).unwrap()
}

/// Transaction `hash` as `get_blocks_details` serves it in block `block`, if it is there.
async fn in_block(sim: &ChainSim, block: u64, hash: &str) -> Option<Value> {
    let served = get(sim, &format!("/get_blocks_details?offset={block}&limit=1")).await;
    served["result"][0]["transactions"]
        .as_array()?
        .iter()
        .find(|t| t["hash"] == hash)
        .cloned()
}

#[tokio::test]
async fn a_sweep_by_another_holder_is_pending_then_mined_and_empties_the_wallet() {
    let sim = sim_with(&["4", "6"]).await;
    let (wallet, thief) = (address(WALLET_KEY), address("0x7"));
    let hash = sim.sweep_as_holder(&holder(), &thief).unwrap();
    assert_eq!(sim.tx_state(&hash), TxState::Pending);
    assert_eq!(lookup(&sim, &hash).await["result"]["is_confirm"], false);
    // Largest coin first, both spent by the pending sweep.
    let info = address_info(&sim, &wallet).await;
    assert_eq!(
        info["pending_spent_outputs"],
        json!([
            { "tx_hash": coin_hash(2), "index": 0 },
            { "tx_hash": coin_hash(1), "index": 0 },
        ])
    );
    assert_eq!(info["pending_transactions"][0]["hash"], hash);

    let block = sim.mine();
    assert_eq!(sim.tx_state(&hash), TxState::Mined { block });
    let info = address_info(&sim, &wallet).await;
    assert_eq!(
        (&info["balance"], &info["spendable_outputs"]),
        (&json!("0"), &json!([]))
    );
    assert_eq!(
        address_info(&sim, &thief).await["spendable_outputs"],
        json!([{ "amount": "10", "tx_hash": hash, "index": 0 }])
    );
    let t = in_block(&sim, block, &hash)
        .await
        .expect("the sweep is mined");
    assert_eq!(
        (&t["inputs"], &t["outputs"], &t["fees"]),
        (
            &json!([
                { "index": 0, "tx_hash": coin_hash(2), "address": wallet, "amount": 6 },
                { "index": 0, "tx_hash": coin_hash(1), "address": wallet, "amount": 4 },
            ]),
            &json!([{ "address": thief, "amount": 10, "type": "REGULAR" }]),
            &json!(0),
        ),
        "{t}"
    );
    assert_eq!(
        sim.sweep_as_holder(&holder(), &thief),
        Err(format!("not enough coins: {wallet} has none spendable"))
    );
}

#[tokio::test]
async fn a_held_spend_stays_pending_through_mining_until_released() {
    let sim = sim_with(&["4", "6"]).await;
    let (wallet, to) = (address(WALLET_KEY), recipient());
    let five = Amount::parse("5").unwrap();
    let held = sim
        .spend_as_holder(&holder(), vec![(to.clone(), five)])
        .unwrap();
    assert!(sim.hold_pending(&held));
    assert!(!sim.hold_pending(&"ab".repeat(32)), "not pending");
    let block = sim.mine();
    assert_eq!(sim.tx_state(&held), TxState::Pending);
    assert_eq!(in_block(&sim, block, &held).await, None);
    let info = address_info(&sim, &wallet).await;
    assert_eq!(
        info["pending_spent_outputs"],
        json!([{ "tx_hash": coin_hash(2), "index": 0 }])
    );
    let pending = &info["pending_transactions"][0];
    assert_eq!(
        (
            &pending["hash"],
            &pending["is_confirm"],
            &pending["inputs"],
            &pending["outputs"]
        ),
        (
            &json!(held),
            &json!(false),
            &json!([{ "index": 0, "tx_hash": coin_hash(2), "address": wallet, "amount": 6 }]),
            &json!([
                { "address": to, "amount": 5, "type": "REGULAR" },
                { "address": wallet, "amount": 1, "type": "REGULAR" },
            ]),
        ),
        "{pending}"
    );
    assert_eq!(lookup(&sim, &held).await["result"]["is_confirm"], false);

    // Another spend leaves the held one's coin alone, and is mined past it.
    let four = Amount::parse("4").unwrap();
    let other = sim
        .spend_as_holder(&holder(), vec![(to.clone(), four)])
        .unwrap();
    let block = sim.mine();
    assert_eq!(sim.tx_state(&other), TxState::Mined { block });
    assert_eq!(sim.tx_state(&held), TxState::Pending);

    assert!(sim.release_pending(&held));
    assert!(!sim.release_pending(&held), "no longer held");
    let block = sim.mine();
    assert_eq!(sim.tx_state(&held), TxState::Mined { block });
    assert!(in_block(&sim, block, &held).await.is_some());
    assert_eq!(sim.confirmed_spendable(&wallet), units("1"));
}

#[tokio::test]
async fn a_held_transaction_can_still_be_dropped() {
    let sim = sim_with(&["1"]).await;
    let hash = sim.sweep_as_holder(&holder(), &recipient()).unwrap();
    assert!(sim.hold_pending(&hash));
    assert!(sim.drop_pending(&hash));
    assert!(!sim.release_pending(&hash));
    sim.mine();
    assert_eq!(sim.tx_state(&hash), TxState::Unknown);
    assert_eq!(sim.confirmed_spendable(&address(WALLET_KEY)), units("1"));
}

#[tokio::test]
async fn a_spend_the_wallet_cannot_cover_is_refused_with_the_reason() {
    let sim = sim_with(&["4", "6"]).await;
    let wallet = address(WALLET_KEY);
    let coins = |text: &str| Amount::parse(text).unwrap();
    // Coin 2 is spent by a pending push: only coin 1 is left to spend.
    let pushed = pay_coin(2, "6");
    assert_eq!(push(&sim, &pushed.to_hex()).await, accepted(&pushed.hash()));
    assert_eq!(
        sim.spend_as_holder(&holder(), vec![(recipient(), coins("4.00000001"))]),
        Err(format!(
            "not enough coins: {wallet} has 4.00000000 spendable, 4.00000001 asked"
        ))
    );
    assert_eq!(
        sim.spend_as_holder(&holder(), vec![]),
        Err("no outputs to pay".into())
    );
    let off_curve = sim
        .spend_as_holder(&holder(), vec![(OFF_CURVE.into(), coins("1"))])
        .unwrap_err();
    assert!(off_curve.contains(OFF_CURVE), "{off_curve}");
    let nothing = sim
        .spend_as_holder(&holder(), vec![(recipient(), coins("0"))])
        .unwrap_err();
    assert!(nothing.contains("pays nothing"), "{nothing}");
    assert_eq!(
        sim.sweep_as_holder(&parse_private_key(OTHER_KEY).unwrap(), &wallet),
        Err(format!(
            "not enough coins: {} has none spendable",
            address(OTHER_KEY)
        ))
    );
    assert_eq!(sim.accepted(), 1, "only the push");
}

/// POST `body` to the control endpoint `path`: HTTP status and body text.
async fn control(sim: &ChainSim, path: &str, body: Value) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{}{path}", sim.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn the_spend_and_release_controls_work_over_http() {
    let sim = sim_with(&["4", "6"]).await;
    let (wallet, to) = (address(WALLET_KEY), recipient());
    let (status, body) = control(
        &sim,
        "/sim/spend",
        json!({ "key": WALLET_KEY, "to": to, "amount": "1.5", "hold": true }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let held = serde_json::from_str::<Value>(&body).unwrap()["tx_hash"]
        .as_str()
        .unwrap()
        .to_owned();
    sim.mine();
    assert_eq!(sim.tx_state(&held), TxState::Pending);
    assert_eq!(sim.pending_paid_to(&to), (units("1.5"), 1));
    assert_eq!(
        control(&sim, "/sim/release", json!({ "hash": held })).await,
        (204, String::new())
    );
    assert_eq!(
        control(&sim, "/sim/release", json!({ "hash": held })).await,
        (404, "not a held pending transaction".into())
    );
    let block = sim.mine();
    assert_eq!(sim.tx_state(&held), TxState::Mined { block });

    // No amount: a sweep of what is left (coin 1 and the change), not held.
    let (status, body) = control(
        &sim,
        "/sim/spend",
        json!({ "key": WALLET_KEY, "to": to, "amount": null }),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let swept: Value = serde_json::from_str(&body).unwrap();
    let block = sim.mine();
    assert_eq!(
        sim.tx_state(swept["tx_hash"].as_str().unwrap()),
        TxState::Mined { block }
    );
    assert_eq!(sim.confirmed_spendable(&wallet), 0);
    assert_eq!(sim.confirmed_spendable(&to), units("10"));

    let refusals = [
        (
            json!({ "key": "not hex", "to": to, "amount": "1" }),
            "wallet key",
        ),
        (
            json!({ "key": WALLET_KEY, "to": to, "amount": "1", "fee": "0" }),
            "unknown field `fee`",
        ),
        (
            json!({ "key": WALLET_KEY, "to": to, "amount": "1" }),
            "not enough coins",
        ),
    ];
    for (request, reason) in refusals {
        let (status, body) = control(&sim, "/sim/spend", request.clone()).await;
        assert_eq!(status, 400, "{request}: {body}");
        assert!(body.contains(reason), "{request}: {body}");
    }
    let (status, body) = control(&sim, "/sim/release", json!({ "tx_hash": held })).await;
    assert_eq!(status, 400, "{body}");
}
