//! Runs the real `minerpool-job` binary against the test MongoDB server and a chain simulator.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;

use bson::doc;
use futures::TryStreamExt;
use minerpool_core::config::Config;
use minerpool_core::store::Store;
use minerpool_core::store::ledger::RewardDistribution;
use minerpool_core::store::payouts::PayoutBatch;
use minerpool_core::testing::{fresh_store, mongodb_uri};
use minerpool_tests::chain_sim::{ChainSim, Scenario};
use minerpool_tests::fixtures::{INODE, REWARD};

pub struct Harness {
    pub store: Store,
    pub sim: ChainSim,
    pub config: Config,
    pub config_path: PathBuf,
}

impl Harness {
    pub async fn new(label: &str, scenario: Scenario) -> Harness {
        Harness::with_config(label, scenario, |_| {}).await
    }

    pub async fn with_config(
        label: &str,
        scenario: Scenario,
        adjust: impl FnOnce(&mut Config),
    ) -> Harness {
        let store = fresh_store(label).await;
        let sim = ChainSim::start(scenario).await;
        let mut config = Config::with_wallets(INODE, REWARD);
        config.mongodb.database = store.database().name().to_owned();
        config.chain.api_url = sim.url.clone();
        config.chain.allow_insecure_http = true;
        config.chain.request_timeout_seconds = 2;
        config.rewards.start_height = 100;
        adjust(&mut config);
        config.validate().expect("test config is valid");
        let config_path = std::env::temp_dir().join(format!("{}.yaml", config.mongodb.database));
        std::fs::write(&config_path, config.to_yaml()).expect("write the config file");
        Harness {
            store,
            sim,
            config,
            config_path,
        }
    }

    /// Runs `minerpool-job <job> --config …` with extra environment, to completion.
    pub async fn run(&self, job: &str, env: &[(&str, &str)]) -> Output {
        self.run_args(job, &[], env).await
    }

    /// Like [`Harness::run`], with extra arguments after the config.
    pub async fn run_args(&self, job: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        self.command(job, args, env)
            .output()
            .await
            .expect("run minerpool-job")
    }

    /// The `minerpool-job` command, not yet started.
    pub fn command(
        &self,
        job: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_minerpool-job"));
        command
            .arg(job)
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .env("MONGODB_URI", mongodb_uri())
            .env("MINERPOOL_JOB_LOCK_TTL_SECONDS", "1")
            .env_remove("MINERPOOL_FAULT")
            .env_remove("MINERPOOL_PAUSE");
        for (k, v) in env {
            command.env(k, v);
        }
        command
    }

    /// Runs a job that must succeed; returns its JSON summary (the last stdout line).
    pub async fn run_ok(&self, job: &str) -> serde_json::Value {
        let output = self.run(job, &[]).await;
        assert!(
            output.status.success(),
            "minerpool-job {job} failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
        summary(&output)
    }

    /// Every payout batch.
    pub async fn batches(&self) -> Vec<PayoutBatch> {
        self.store
            .payout_batches()
            .find(doc! {})
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    }

    /// Every reward distribution, in block order.
    pub async fn distributions(&self) -> Vec<RewardDistribution> {
        self.store
            .reward_distributions()
            .find(doc! {})
            .sort(doc! { "first_block": 1 })
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap()
    }

    /// `(pending, paid)` of an address that has a balance.
    pub async fn balance(&self, address: &str) -> (i64, i64) {
        let b = self
            .store
            .balances()
            .find_one(doc! { "address": address })
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{address} has no balance"));
        (b.pending, b.paid)
    }
}

/// The `jobRuns` record of the run a summary names.
pub async fn job_run(h: &Harness, summary: &serde_json::Value) -> bson::Document {
    let id = summary["runId"]
        .as_str()
        .expect("the summary names its run");
    h.store
        .collection::<bson::Document>("jobRuns")
        .find_one(doc! { "_id": id })
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no jobRuns record {id}"))
}

/// Runs a job that must end blocked: exit code 3, the reason on stderr; returns its summary.
pub async fn run_blocked(h: &Harness, job: &str, env: &[(&str, &str)]) -> serde_json::Value {
    let output = h.run(job, env).await;
    assert_eq!(
        output.status.code(),
        Some(3),
        "minerpool-job {job} must end blocked: {}\n{}",
        stderr(&output),
        String::from_utf8_lossy(&output.stdout)
    );
    let last = summary(&output);
    assert_eq!(last["outcome"], "blocked", "{last}");
    let reason = last["reason"].as_str().expect("a blocked run says why");
    assert!(
        stderr(&output).contains(&format!("minerpool-job {job}: blocked: {reason}")),
        "{}",
        stderr(&output)
    );
    last
}

/// The one-line JSON summary: the last line on stdout.
pub fn summary(output: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout.lines().last().expect("a summary line on stdout");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("summary {last:?} is not JSON: {e}"))
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Sends `signal` (`-TERM`, `-STOP`, …) to a running job.
pub fn signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().expect("the job runs").to_string();
    let status = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} {pid}");
}

impl Harness {
    /// A copy of every collection of this harness's database, as a nightly backup takes it;
    /// returns the copy's database name.
    pub async fn backup(&self) -> String {
        let copy = format!("{}-backup", self.store.database().name());
        copy_database(&self.store, self.store.database().name(), &copy).await;
        copy
    }

    /// Puts the database back as `backup` holds it, as an operator does after losing a disk:
    /// every collection dropped, then copied back (indexes made again, as a start-up does).
    pub async fn restore(&self, backup: &str) {
        self.store
            .database()
            .drop()
            .await
            .expect("drop the database");
        copy_database(&self.store, backup, self.store.database().name()).await;
        self.store.ensure_indexes().await.expect("create indexes");
    }

    /// Another installation on the same chain with the same wallet key: its own database, the
    /// same configuration otherwise.
    pub async fn sharing_chain(&self, label: &str) -> Harness {
        let store = fresh_store(label).await;
        let mut config = self.config.clone();
        config.mongodb.database = store.database().name().to_owned();
        let config_path = std::env::temp_dir().join(format!("{}.yaml", config.mongodb.database));
        std::fs::write(&config_path, config.to_yaml()).expect("write the config file");
        Harness {
            store,
            sim: self.sim.clone(),
            config,
            config_path,
        }
    }
}

/// Copies every document of every collection of database `from` into database `to`.
async fn copy_database(store: &Store, from: &str, to: &str) {
    let client = store.client();
    let (source, target) = (client.database(from), client.database(to));
    for name in source
        .list_collection_names()
        .await
        .expect("list collections")
    {
        let documents: Vec<bson::Document> = source
            .collection::<bson::Document>(&name)
            .find(doc! {})
            .await
            .expect("read a collection")
            .try_collect()
            .await
            .expect("read a collection");
        if !documents.is_empty() {
            target
                .collection::<bson::Document>(&name)
                .insert_many(documents)
                .await
                .expect("copy a collection");
        }
    }
}
