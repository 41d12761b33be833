//! A node started in-process (port 0) on a fresh database of the test server, a registered pool
//! and a validator whose key the test holds, for clients that run as separate processes.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bson::{Document, doc};
use minerpool_core::config::{Config, Secrets};
use minerpool_core::store::Store;
use minerpool_core::store::intake::front::{Intake, IntakeOptions};
use minerpool_core::store::names;
use minerpool_core::testing::{fresh_store, mongodb_uri};
use minerpool_node::{NodeState, RunningNode, start};
use minerpool_tests::fixtures::{INODE, REWARD};

pub struct TestNode {
    pub store: Store,
    pub intake: Intake,
    pub node: RunningNode,
    pub ws: String,
}

pub async fn node(label: &str) -> TestNode {
    let store = fresh_store(label).await;
    let mut config = Config::with_wallets(INODE, REWARD);
    config.mongodb.database = store.database().name().to_owned();
    let intake = Intake::start(store.clone(), IntakeOptions::from_config(&config.node))
        .await
        .expect("intake");
    let secrets = Secrets {
        mongodb_uri: mongodb_uri(),
        wallet_key: None,
        admin_token: None,
        admin_rsa_key: None,
    };
    let state = NodeState::new(store.clone(), intake.clone(), config, secrets, None);
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let node = start(state, any, any).await.expect("start the node");
    TestNode {
        ws: format!("ws://{}", node.websocket_address),
        store,
        intake,
        node,
    }
}

impl TestNode {
    /// Adds a validator and waits until the node's checks see it.
    pub async fn add_validator(&self, address: &str, percentage: f64) {
        self.store
            .collection::<Document>(names::VALIDATORS)
            .insert_one(
                doc! { "wallet_address": address, "percentage": percentage, "score": 0_i64 },
            )
            .await
            .unwrap();
        self.wait_until(|| async {
            let parties = self.intake.parties(Some(address), None).await.unwrap();
            parties.validator_percentage == Some(percentage)
        })
        .await;
    }

    /// Registers a pool and waits until the node's checks see it.
    pub async fn register_pool(&self, address: &str) {
        self.store.register_pool(address).await.unwrap();
        self.wait_until(|| async {
            let parties = self.intake.parties(None, Some(address)).await.unwrap();
            parties.pool_registered
        })
        .await;
    }

    /// The registry cache follows the database within milliseconds, not at once.
    async fn wait_until<F: std::future::Future<Output = bool>>(&self, shows: impl Fn() -> F) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !shows().await {
            assert!(
                std::time::Instant::now() < deadline,
                "the node's registry never showed the change"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The pool's score, 0 before its first TASK.
    pub async fn pool_score(&self, address: &str) -> i64 {
        let pool = self
            .store
            .collection::<Document>(names::MINER_POOL)
            .find_one(doc! { "pool_address": address })
            .await
            .unwrap();
        pool.and_then(|p| {
            let score = p.get("score")?;
            score.as_i64().or(score.as_i32().map(i64::from))
        })
        .unwrap_or(0)
    }
}

/// A file in a directory of its own under the system's temporary directory, removed on drop.
pub struct TempFile {
    dir: PathBuf,
    pub path: PathBuf,
}

impl TempFile {
    pub fn new(name: &str, content: &str) -> TempFile {
        let dir = std::env::temp_dir().join(minerpool_core::testing::unique_database("validator"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        TempFile { dir, path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The output of a finished child process, as text.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` to its end (at most 60 s).
pub async fn run(command: &mut tokio::process::Command) -> Run {
    command.kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the command finished within 60 s")
        .expect("the command started");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
