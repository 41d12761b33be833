//! `minerpool-validator` as an operator runs it, against a real node: the replies it prints and
//! its exit status (0 accepted, 1 refused, 2 no reply).

mod common;

use common::{TempFile, node, run};
use minerpool_tests::fixtures::{INODE, POOL_A, POOL_B, address_from_key};
use tokio::process::Command;

const KEY: u64 = 0x5eed_0001;

fn validator() -> Command {
    Command::new(env!("CARGO_BIN_EXE_minerpool-validator"))
}

fn key_file() -> TempFile {
    TempFile::new("validator.key", &format!("0x{KEY:x}\n"))
}

fn task(ws: &str, key: &TempFile, pool: &str, val_id: &str) -> Command {
    let mut command = validator();
    command
        .args(["task", "--node", ws, "--key-file"])
        .arg(key.path())
        .args(["--inode", INODE, "--pool", pool, "--val-id", val_id]);
    command
}

#[tokio::test]
async fn a_signed_task_scores_and_the_validator_may_not_fall_back_to_unsigned() {
    let node = node("cli_signed").await;
    let me = address_from_key(KEY);
    node.register_pool(POOL_A).await;
    node.add_validator(&me, 60.0).await;
    let key = key_file();

    let address = run(validator().args(["address", "--key-file"]).arg(key.path())).await;
    assert_eq!(
        (address.code, address.stdout.trim()),
        (Some(0), me.as_str())
    );

    let sent = run(&mut task(&node.ws, &key, POOL_A, "v-1")).await;
    assert_eq!(sent.stdout, "SUCCESS: v-1\n", "stderr: {}", sent.stderr);
    assert_eq!(sent.code, Some(0));
    // ceil(60 / 100 × 20)
    assert_eq!(node.pool_score(POOL_A).await, Some(12));

    let mut ping = validator();
    ping.args(["ping", "--node", &node.ws, "--key-file"])
        .arg(key.path())
        .args(["--inode", INODE, "--ip", "10.0.0.7", "--port", "5502"]);
    let pong = run(&mut ping).await;
    assert_eq!(
        (pong.code, pong.stdout.as_str()),
        (Some(0), "SUCCESS: Pong\n")
    );

    // Once it has signed, its unsigned messages are refused (no downgrade).
    let unsigned = run(task(&node.ws, &key, POOL_A, "v-2").arg("--unsigned")).await;
    assert_eq!(
        (unsigned.code, unsigned.stdout.as_str()),
        (Some(1), "ERROR: Signature required\n")
    );
    assert_eq!(node.pool_score(POOL_A).await, Some(12));
}

#[tokio::test]
async fn a_refusal_is_printed_and_exits_1() {
    let node = node("cli_refused").await;
    let me = address_from_key(KEY);
    node.add_validator(&me, 60.0).await;
    let key = key_file();
    let refused = run(&mut task(&node.ws, &key, POOL_B, "v-1")).await;
    assert_eq!(refused.stdout, "ERROR: Pool not registered.\n");
    assert_eq!(refused.code, Some(1), "stderr: {}", refused.stderr);
    assert_eq!(node.pool_score(POOL_B).await, None);
}

#[tokio::test]
async fn a_bad_key_file_exits_2_without_showing_its_content() {
    let secretish = "c0ffee".repeat(11);
    for content in [
        format!("{secretish}\n"),
        format!("key = {secretish}"),
        // Zero is no key (keys are 1 to n − 1).
        "0".repeat(64),
    ] {
        let key = TempFile::new("junk.key", &content);
        let failed = run(&mut task("ws://127.0.0.1:9", &key, POOL_A, "v-1")).await;
        assert_eq!(failed.code, Some(2), "{content:?}: {}", failed.stderr);
        assert!(failed.stdout.is_empty(), "{}", failed.stdout);
        assert!(
            failed.stderr.contains(&key.path().display().to_string()),
            "the message names the file: {}",
            failed.stderr
        );
        assert!(
            !failed.stderr.contains(content.trim()) && !failed.stderr.contains("c0ffee"),
            "the message shows the file's content: {}",
            failed.stderr
        );
    }
    let missing = run(validator()
        .args(["address", "--key-file"])
        .arg("/nonexistent/validator.key"))
    .await;
    assert_eq!(missing.code, Some(2));
    assert!(missing.stderr.contains("/nonexistent/validator.key"));
}

#[tokio::test]
async fn an_unreachable_node_exits_2_naming_it() {
    let key = key_file();
    let url = format!("ws://127.0.0.1:{}", minerpool_tests::free_port());
    let failed = run(&mut task(&url, &key, POOL_A, "v-1")).await;
    assert_eq!(failed.code, Some(2), "{}", failed.stderr);
    assert!(failed.stdout.is_empty(), "{}", failed.stdout);
    assert!(failed.stderr.contains(&url), "{}", failed.stderr);

    let usage = run(validator().args(["task", "--node", &url])).await;
    assert_eq!(usage.code, Some(2), "{}", usage.stderr);
}
