//! The books against the chain (SPEC §5.3 point 5): every spend of the wallet the chain's blocks
//! (or its pending list) show is read, a spend minerpool did not make holds the payouts until
//! an operator adopts or acknowledges it, and the audit compares what the chain paid with the
//! ledger. The real `minerpool-job` binary, the test MongoDB server and the chain simulator.

mod common;

use bson::doc;
use common::{Harness, run_blocked, stderr, summary};
use futures::TryStreamExt;
use minerpool_core::config::Sender;
use minerpool_core::money::Amount;
use minerpool_core::store::registry::PoolScore;
use minerpool_core::store::spends::{SpendFilter, WalletSpend};
use minerpool_core::upow::{address_of, parse_private_key};
use minerpool_tests::chain_sim::{Scenario, SimBlock, SimOutput, SimTransaction};
use minerpool_tests::fixtures::{PAYER, REWARD};

/// The iNode wallet's key in these tests.
const WALLET_KEY: &str = "0xbeef";
/// The first block the rewards job reads.
const START: u64 = 100;

fn wallet() -> String {
    address_of(parse_private_key(WALLET_KEY).unwrap().verifying_key())
}

fn pools() -> Vec<String> {
    (1..=4)
        .map(minerpool_tests::fixtures::address_from_key)
        .collect()
}

/// Everyone the rewards pay here: four pools and the reward address (fee and remainder).
fn payees() -> Vec<String> {
    let mut all = pools();
    all.push(REWARD.to_owned());
    all
}

/// A chain whose block 100 pays the wallet 80 coins, with blocks to 103; four scored pools;
/// two recipients a transaction, so paying everyone takes three transactions.
async fn harness(label: &str) -> Harness {
    let income = SimTransaction {
        hash: format!("{:064x}", 0xfeed),
        transaction_type: Some("REGULAR".into()),
        inputs: vec![PAYER.into()],
        outputs: vec![SimOutput {
            address: wallet(),
            amount: Amount::parse("80").unwrap(),
            output_type: "REGULAR".into(),
        }],
        ..SimTransaction::default()
    };
    let blocks = (START..=START + 3)
        .map(|id| {
            let mut block = empty_block(id);
            if id == START {
                block.transactions.push(income.clone());
            }
            block
        })
        .collect();
    let h = Harness::with_config(
        label,
        Scenario {
            blocks,
            ..Scenario::default()
        },
        |c| {
            c.chain.inode_wallet = wallet();
            c.payouts.sender = Sender::Upow;
            c.payouts.max_outputs_per_tx = 2;
            c.rewards.confirmations = 2;
            c.rewards.start_height = START;
        },
    )
    .await;
    h.store
        .pool_scores()
        .insert_many(
            pools()
                .into_iter()
                .zip([40, 30, 20, 10])
                .map(|(pool_address, score)| PoolScore {
                    pool_address,
                    score,
                    last_active_time: None,
                }),
        )
        .await
        .unwrap();
    h
}

/// A block holding only its coinbase (every block has one).
fn empty_block(id: u64) -> SimBlock {
    SimBlock::new(
        id,
        vec![SimTransaction {
            hash: format!("{:064x}", 0xc0_0000 + id),
            coinbase: true,
            outputs: vec![SimOutput {
                address: minerpool_tests::fixtures::MINER.into(),
                amount: Amount::parse("6").unwrap(),
                output_type: "REGULAR".into(),
            }],
            ..SimTransaction::default()
        }],
    )
}

async fn run(h: &Harness, job: &str) -> std::process::Output {
    h.run(job, &[("MINERPOOL_WALLET_KEY", WALLET_KEY)]).await
}

async fn run_ok(h: &Harness, job: &str) -> serde_json::Value {
    let output = run(h, job).await;
    assert!(
        output.status.success(),
        "{job} failed: {}\n{}",
        stderr(&output),
        String::from_utf8_lossy(&output.stdout)
    );
    summary(&output)
}

/// Mines what is pending and buries it `confirmations` deep.
fn bury(h: &Harness) {
    for _ in 0..=h.config.rewards.confirmations {
        h.sim.mine();
    }
}

/// Rewards, then payouts and a buried block, until no batch is open and nothing is due.
async fn pay_everyone(h: &Harness) {
    for _ in 0..10 {
        run_ok(h, "rewards").await;
        run_ok(h, "payouts").await;
        bury(h);
        run_ok(h, "rewards").await;
        let settled = run_ok(h, "payouts").await;
        if settled["details"]["created"].is_null()
            && h.store.open_payout_batches().await.unwrap().is_empty()
            && settled["details"]["due"].is_null()
        {
            return;
        }
    }
    panic!("not everyone was paid in ten rounds");
}

/// Units the chain's blocks show paid to each payee, and by how many transactions.
fn chain_paid(h: &Harness) -> Vec<(String, (u64, usize))> {
    payees()
        .into_iter()
        .map(|p| {
            let paid = h.sim.confirmed_paid_to(&p);
            (p, paid)
        })
        .collect()
}

async fn ledger_paid(h: &Harness) -> Vec<(String, (u64, usize))> {
    let mut paid = Vec::new();
    for p in payees() {
        let (_, units) = h.balance(&p).await;
        paid.push((p, (units as u64, 1)));
    }
    paid
}

async fn foreign(h: &Harness) -> Vec<WalletSpend> {
    h.store
        .list_wallet_spends(SpendFilter::Foreign, 100)
        .await
        .unwrap()
}

async fn spends_command(h: &Harness, args: &[&str]) -> std::process::Output {
    let mut all = vec![args[0], "--config"];
    let path = h.config_path.to_string_lossy().into_owned();
    all.push(&path);
    all.extend(&args[1..]);
    tokio::process::Command::new(env!("CARGO_BIN_EXE_minerpool-job"))
        .arg("spends")
        .args(&all)
        .env("MONGODB_URI", minerpool_core::testing::mongodb_uri())
        .output()
        .await
        .expect("run minerpool-job spends")
}

async fn resolve(h: &Harness, how: &str, hash: &str, reason: &str) -> std::process::Output {
    spends_command(h, &[how, hash, "--reason", reason]).await
}

#[tokio::test]
async fn a_store_restored_from_a_backup_pays_nobody_twice() {
    let h = harness("spends-restore").await;
    run_ok(&h, "rewards").await;
    let backup = h.backup().await;
    pay_everyone(&h).await;
    let pushed_before = h.sim.accepted();
    let paid = chain_paid(&h);
    assert!(
        pushed_before >= 3,
        "three transactions at least: {pushed_before}"
    );
    for (payee, (units, count)) in &paid {
        assert!(*units > 0 && *count == 1, "{payee} paid once: {paid:?}");
    }
    assert_eq!(ledger_paid(&h).await, paid, "the ledger agrees before");
    run_ok(&h, "audit").await;

    h.restore(&backup).await;
    // The restored books owe everyone again; the chain's blocks say they were paid.
    for _ in 0..2 {
        let held = run_blocked(&h, "payouts", &[("MINERPOOL_WALLET_KEY", WALLET_KEY)]).await;
        let reason = held["reason"].as_str().unwrap();
        for spend in &h.sim.mined_hashes() {
            assert!(reason.contains(spend.as_str()), "{spend} named: {reason}");
        }
        assert!(
            reason.contains("foreign spend") && reason.contains("adopt"),
            "{reason}"
        );
        assert_eq!(h.sim.accepted(), pushed_before, "a held run pushes nothing");
        assert!(h.batches().await.is_empty(), "a held run changes nothing");
    }
    let audit = run(&h, "audit").await;
    assert_eq!(audit.status.code(), Some(1), "{}", stderr(&audit));
    assert!(
        stderr(&audit).contains("foreign spend"),
        "{}",
        stderr(&audit)
    );

    // Adopting needs the spends' blocks credited: the rewards job goes on meanwhile.
    let first = foreign(&h).await[0].hash.clone();
    let refused = resolve(&h, "adopt", &first, "restored from the nightly backup").await;
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("settled") || stderr(&refused).contains("deep"),
        "{}",
        stderr(&refused)
    );
    for _ in 0..3 {
        bury(&h);
        run_ok(&h, "rewards").await;
    }
    let spends = foreign(&h).await;
    assert_eq!(spends.len(), h.sim.mined_hashes().len(), "{spends:?}");
    for spend in &spends {
        let adopted = resolve(&h, "adopt", &spend.hash, "restored from the nightly backup").await;
        assert!(adopted.status.success(), "{}", stderr(&adopted));
    }
    assert_eq!(
        ledger_paid(&h).await,
        paid,
        "paid is what the chain paid, once"
    );
    let again = resolve(&h, "adopt", &spends[0].hash, "twice").await;
    assert!(
        stderr(&again).contains("already adopted"),
        "{}",
        stderr(&again)
    );

    run_ok(&h, "payouts").await;
    bury(&h);
    run_ok(&h, "rewards").await;
    run_ok(&h, "payouts").await;
    assert_eq!(h.sim.accepted(), pushed_before, "nobody is paid twice");
    assert_eq!(chain_paid(&h), paid);
    run_ok(&h, "audit").await;
    let listed = spends_command(&h, &["list"]).await;
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed["unresolved"], 0, "{listed}");
    assert_eq!(
        listed["spends"][0]["resolution"]["reason"],
        "restored from the nightly backup"
    );
}

#[tokio::test]
async fn a_second_installation_with_the_same_key_pays_nobody_the_first_paid() {
    let first = harness("spends-first").await;
    let second = first.sharing_chain("spends-second").await;
    second
        .store
        .pool_scores()
        .insert_many(
            first
                .store
                .pool_scores()
                .find(doc! {})
                .await
                .unwrap()
                .try_collect::<Vec<_>>()
                .await
                .unwrap(),
        )
        .await
        .unwrap();
    run_ok(&first, "rewards").await;
    run_ok(&second, "rewards").await;
    // The first pushes; its transaction is pending when the second looks.
    run_ok(&first, "payouts").await;
    let pushed = first.sim.accepted();
    let held = run_blocked(&second, "payouts", &[("MINERPOOL_WALLET_KEY", WALLET_KEY)]).await;
    assert!(
        held["reason"].as_str().unwrap().contains("pending"),
        "{held}"
    );
    assert_eq!(first.sim.accepted(), pushed);
    pay_everyone(&first).await;
    let paid = chain_paid(&first);
    for _ in 0..2 {
        bury(&second);
        run_ok(&second, "rewards").await;
        run_blocked(&second, "payouts", &[("MINERPOOL_WALLET_KEY", WALLET_KEY)]).await;
    }
    assert_eq!(chain_paid(&first), paid, "the second paid nobody");
    assert!(second.batches().await.is_empty());
    // Adopted, the second's books agree with the chain.
    for spend in foreign(&second).await {
        let adopted = resolve(&second, "adopt", &spend.hash, "the old installation paid").await;
        assert!(adopted.status.success(), "{}", stderr(&adopted));
    }
    run_ok(&second, "payouts").await;
    assert_eq!(chain_paid(&first), paid);
    assert_eq!(ledger_paid(&second).await, paid);
    run_ok(&second, "audit").await;
}

#[tokio::test]
async fn a_foreign_sweep_and_a_pending_spend_hold_the_payouts_until_acknowledged() {
    let h = harness("spends-sweep").await;
    run_ok(&h, "rewards").await;
    let key = parse_private_key(WALLET_KEY).unwrap();
    let thief = minerpool_tests::fixtures::address_from_key(0x7e1ef);
    let swept = h
        .sim
        .spend_as_holder(&key, vec![(thief.clone(), Amount::parse("30").unwrap())])
        .unwrap();
    h.sim.mine();
    let pending = h
        .sim
        .spend_as_holder(&key, vec![(thief.clone(), Amount::parse("1").unwrap())])
        .unwrap();
    assert!(h.sim.hold_pending(&pending));
    let pushed = h.sim.accepted();
    let rewards = run_ok(&h, "rewards").await;
    assert_eq!(rewards["outcome"], "succeeded", "income is still credited");
    let held = run_blocked(&h, "payouts", &[("MINERPOOL_WALLET_KEY", WALLET_KEY)]).await;
    let reason = held["reason"].as_str().unwrap();
    assert!(
        reason.contains(&swept) && reason.contains(&pending) && reason.contains("30.00000000 to"),
        "{reason}"
    );
    assert_eq!(h.sim.accepted(), pushed, "nothing pushed");
    let health = h.store.foreign_spends_health().await.unwrap();
    assert_eq!((health.unresolved, health.units), (2, 31 * 100_000_000));

    // The pending one is dropped and never mined: it stays until acknowledged.
    assert!(h.sim.drop_pending(&pending));
    let held = run_blocked(&h, "payouts", &[("MINERPOOL_WALLET_KEY", WALLET_KEY)]).await;
    assert!(
        held["reason"].as_str().unwrap().contains("dropped"),
        "{held}"
    );
    let refused = resolve(&h, "adopt", &pending, "a test").await;
    assert!(stderr(&refused).contains("block"), "{}", stderr(&refused));
    let refused = resolve(&h, "adopt", &swept, "a test").await;
    assert_eq!(refused.status.code(), Some(1), "the thief has no balance");
    for hash in [&swept, &pending] {
        let done = resolve(&h, "acknowledge", hash, "key rotated after the theft").await;
        assert!(done.status.success(), "{}", stderr(&done));
    }
    let empty = resolve(&h, "acknowledge", &swept, " ").await;
    assert!(stderr(&empty).contains("--reason"), "{}", stderr(&empty));
    let paying = run_ok(&h, "payouts").await;
    assert!(!paying["details"]["created"].is_null(), "{paying}");
}

#[tokio::test]
async fn a_reorganised_block_takes_its_spend_with_it() {
    let h = harness("spends-reorg").await;
    run_ok(&h, "rewards").await;
    let key = parse_private_key(WALLET_KEY).unwrap();
    let thief = minerpool_tests::fixtures::address_from_key(0x7ee7);
    let swept = h.sim.sweep_as_holder(&key, &thief).unwrap();
    let block = h.sim.mine();
    run_ok(&h, "rewards").await;
    assert_eq!(
        foreign(&h).await.len(),
        1,
        "recorded from a block not yet settled"
    );
    run_blocked(&h, "payouts", &[("MINERPOOL_WALLET_KEY", WALLET_KEY)]).await;
    h.sim
        .reorg(block, vec![empty_block(block), empty_block(block + 1)])
        .unwrap();
    run_ok(&h, "rewards").await;
    assert!(
        h.store.wallet_spend(&swept).await.unwrap().is_none(),
        "the orphan's spend went with it"
    );
    let after = run(&h, "payouts").await;
    assert!(
        !String::from_utf8_lossy(&after.stdout).contains("foreign spend"),
        "{}",
        String::from_utf8_lossy(&after.stdout)
    );
}

#[tokio::test]
async fn a_chain_down_while_payouts_check_pushes_nothing() {
    let h = harness("spends-down").await;
    run_ok(&h, "rewards").await;
    h.sim.go_down(std::time::Duration::from_secs(30));
    let output = run(&h, "payouts").await;
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert_eq!(h.sim.accepted(), 0);
    assert!(h.batches().await.is_empty());
}

#[tokio::test]
async fn payouts_wait_for_the_books_to_read_to_the_chains_tip() {
    let h = harness("spends-behind").await;
    run_ok(&h, "rewards").await;
    // The chain runs far past what one read reaches (a store restored from an old backup).
    for _ in 0..30 {
        h.sim.mine();
    }
    let held = run_blocked(&h, "payouts", &[("MINERPOOL_WALLET_KEY", WALLET_KEY)]).await;
    assert!(
        held["reason"]
            .as_str()
            .unwrap()
            .contains("behind the chain"),
        "{held}"
    );
    assert_eq!(h.sim.accepted(), 0);
    for _ in 0..4 {
        run_ok(&h, "rewards").await;
    }
    let paying = run_ok(&h, "payouts").await;
    assert!(!paying["details"]["created"].is_null(), "{paying}");
}

/// The commands of the README's "Restoring from a backup" section: its ```sh block, a line
/// each.
fn readme_restore_commands() -> Vec<String> {
    const HEADING: &str = "### Restoring from a backup";
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("read README.md");
    let section = &readme[readme
        .find(HEADING)
        .unwrap_or_else(|| panic!("README.md has no {HEADING:?} section"))..];
    let block = &section[section
        .find("```sh\n")
        .unwrap_or_else(|| panic!("{HEADING:?} has no ```sh block"))
        + "```sh\n".len()..];
    let block = &block[..block.find("```").expect("the ```sh block is closed")];
    assert!(
        !section[..section.find("```sh").unwrap()].contains("\n## "),
        "the ```sh block is not in {HEADING:?}"
    );
    block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// The README's restore, run as written with `sh` against a store restored from a copy taken
/// before everyone was paid: each command shows what the README says it does.
#[tokio::test]
async fn the_readmes_restore_section_runs_as_written() {
    let h = harness("spends-readme").await;
    run_ok(&h, "rewards").await;
    let backup = h.backup().await;
    pay_everyone(&h).await;
    let pushed_before = h.sim.accepted();
    let paid = chain_paid(&h);
    let mined = h.sim.mined_hashes();
    h.restore(&backup).await;

    // `minerpool-job` on the PATH, `minerpool.yaml` in the working directory.
    let dir = std::env::temp_dir().join(format!("{}-readme", h.config.mongodb.database));
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let _ = std::fs::remove_file(bin.join("minerpool-job"));
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_minerpool-job"),
        bin.join("minerpool-job"),
    )
    .unwrap();
    std::fs::copy(&h.config_path, dir.join("minerpool.yaml")).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let sh = |line: &str| {
        let line = line.to_owned();
        let (dir, path) = (dir.clone(), path.clone());
        async move {
            let output = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&line)
                .current_dir(&dir)
                .env("PATH", &path)
                .env("MONGODB_URI", minerpool_core::testing::mongodb_uri())
                .env("MINERPOOL_WALLET_KEY", WALLET_KEY)
                .env("MINERPOOL_JOB_LOCK_TTL_SECONDS", "1")
                .output()
                .await
                .expect("run sh");
            eprintln!("$ {line}\n{}", String::from_utf8_lossy(&output.stdout));
            output
        }
    };

    let commands = readme_restore_commands();
    let expected = [
        "minerpool-job rewards ",
        "minerpool-job payouts ",
        "minerpool-job spends list ",
        "minerpool-job spends adopt HASH ",
        "minerpool-job audit ",
        "minerpool-job payouts ",
    ];
    assert_eq!(commands.len(), expected.len(), "{commands:#?}");
    for (command, prefix) in commands.iter().zip(expected) {
        assert!(
            command.starts_with(prefix),
            "{command:?} is not {prefix:?}…"
        );
    }

    let rewards = sh(&commands[0]).await;
    assert!(rewards.status.success(), "{}", stderr(&rewards));

    let held = sh(&commands[1]).await;
    assert_eq!(held.status.code(), Some(3), "blocked: {}", stderr(&held));
    let reason = summary(&held)["reason"].as_str().unwrap().to_owned();
    for hash in &mined {
        assert!(reason.contains(hash.as_str()), "{hash} named: {reason}");
    }
    assert_eq!(h.sim.accepted(), pushed_before, "a held run pushes nothing");

    let listed = sh(&commands[2]).await;
    assert!(listed.status.success(), "{}", stderr(&listed));
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let mut hashes: Vec<String> = listed["spends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["txHash"].as_str().unwrap().to_owned())
        .collect();
    hashes.sort();
    let mut expected_hashes = mined.clone();
    expected_hashes.sort();
    assert_eq!(hashes, expected_hashes, "every payment since the backup");
    assert_eq!(listed["unresolved"], mined.len(), "{listed}");

    for hash in &hashes {
        let adopted = sh(&commands[3].replace("HASH", hash)).await;
        assert!(adopted.status.success(), "{hash}: {}", stderr(&adopted));
    }
    assert_eq!(ledger_paid(&h).await, paid, "paid is what the chain paid");

    let audit = sh(&commands[4]).await;
    assert!(audit.status.success(), "{}", stderr(&audit));

    let payouts = sh(&commands[5]).await;
    assert!(payouts.status.success(), "{}", stderr(&payouts));
    assert_eq!(h.sim.accepted(), pushed_before, "nobody is paid twice");
    assert_eq!(chain_paid(&h), paid);
    eprintln!(
        "restore: {pushed_before} transactions before, {} after; units per recipient {paid:?}",
        h.sim.accepted() - pushed_before
    );
}
