//! The README's Python client (the ```python block of "## Signed validator messages"), run as
//! written against a real node: it signs a TASK the node accepts, a retry with a new nonce scores
//! nothing, and a refusal exits 1.

mod common;

use common::{TempFile, node, run};
use minerpool_tests::fixtures::{INODE, POOL_A, POOL_B, address_from_key};
use tokio::process::Command;

/// The Python with fastecdsa and websockets, from `scripts/python-validator.sh`.
const PYTHON_VAR: &str = "MINERPOOL_TEST_VALIDATOR_PYTHON";
const HEADING: &str = "## Signed validator messages";

fn python() -> String {
    std::env::var(PYTHON_VAR).unwrap_or_else(|_| {
        panic!(
            "{PYTHON_VAR} is not set: run the tests with `make test` (or \
             scripts/with-test-servers.sh cargo nextest run), which installs a Python with \
             fastecdsa and websockets (scripts/python-validator.sh) and sets it"
        )
    })
}

/// The first ```python block after the heading, before the next section.
fn readme_example() -> String {
    let readme = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let text = std::fs::read_to_string(readme).expect("read README.md");
    let section = text
        .split_once(&format!("\n{HEADING}\n"))
        .unwrap_or_else(|| panic!("README.md has no {HEADING:?} section"))
        .1;
    let section = section.split("\n## ").next().unwrap_or(section);
    let block = section
        .split_once("\n```python\n")
        .unwrap_or_else(|| panic!("README.md's {HEADING:?} section has no ```python block"))
        .1;
    let (code, _) = block
        .split_once("\n```")
        .unwrap_or_else(|| panic!("README.md's ```python block under {HEADING:?} is not closed"));
    format!("{code}\n")
}

#[tokio::test]
async fn the_readme_python_example_signs_a_task_the_node_accepts() {
    let python = python();
    let script = TempFile::new("send_task.py", &readme_example());
    let node = node("readme_python").await;
    let key = 0x7e57_ab1e_u64;
    node.register_pool(POOL_A).await;
    node.add_validator(&address_from_key(key), 30.0).await;
    let key_file = TempFile::new("validator.key", &format!("{key:x}\n"));

    let example = |pool: &str, val_id: &str| {
        let mut command = Command::new(&python);
        command
            .arg(script.path())
            .env("NODE", &node.ws)
            .env("INODE", INODE)
            .env("POOL", pool)
            .env("VAL_ID", val_id)
            .env("KEY_FILE", key_file.path());
        command
    };

    let first = run(&mut example(POOL_A, "py-1")).await;
    assert_eq!(
        (first.code, first.stdout.as_str()),
        (Some(0), "SUCCESS: py-1\n"),
        "stderr: {}",
        first.stderr
    );
    // ceil(30 / 100 × 20)
    assert_eq!(node.pool_score(POOL_A).await, Some(6));

    // A new nonce for the same val_id: a retry, answered again without score.
    let retry = run(&mut example(POOL_A, "py-1")).await;
    assert_eq!(
        (retry.code, retry.stdout.as_str()),
        (Some(0), "SUCCESS: py-1\n"),
        "stderr: {}",
        retry.stderr
    );
    assert_eq!(node.pool_score(POOL_A).await, Some(6));

    let refused = run(&mut example(POOL_B, "py-2")).await;
    assert_eq!(
        (refused.code, refused.stdout.as_str()),
        (Some(1), "ERROR: Pool not registered.\n"),
        "stderr: {}",
        refused.stderr
    );
}
