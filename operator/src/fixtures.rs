//! MinerPools (and the pods of their runs) for tests and benchmarks.

use k8s_openapi::api::core::v1::Pod;
use minerpool_core::job::Job;

use crate::crd::{Chain, Images, MinerPool, MinerPoolSpec, MongoDb, SecretKeyRef};
use crate::names::{self, JOB_CONTAINER};

pub const INODE_WALLET: &str = "DfGQ4MBdMw7bjNn56A2d4pYi8M9yfV9iFA6mMLXLizEEp";
pub const REWARD_ADDRESS: &str = "DUiK4ykBjGDuXYFaU5mDu55p89sy6Y7UHMeLfBWVipWat";
pub const MONGODB_SECRET: &str = "mongodb-uri";

/// A valid spec with every optional field unset.
pub fn spec() -> MinerPoolSpec {
    MinerPoolSpec {
        images: Images {
            node: "minerpool/minerpool-node:0.1.0".into(),
            jobs: "minerpool/minerpool-jobs:0.1.0".into(),
        },
        chain: Chain {
            api_url: None,
            validators_url: None,
            inode_wallet: INODE_WALLET.into(),
            reward_address: REWARD_ADDRESS.into(),
            start_height: None,
            allow_insecure_http: None,
            request_timeout_seconds: None,
            rate_limit_wait_seconds: None,
        },
        mongodb: MongoDb {
            uri_secret_ref: SecretKeyRef {
                name: MONGODB_SECRET.into(),
                key: "uri".into(),
            },
            database: None,
        },
        rewards: Default::default(),
        node: Default::default(),
        jobs: Default::default(),
        payouts: Default::default(),
        validators: Default::default(),
        history: Default::default(),
        network_policy: Default::default(),
    }
}

/// A pod of a payouts run of the MinerPool `pool`, with the labels and the container the
/// operator gives it, whose container ended at `finished_at` (RFC 3339) with `exit_code` and
/// `message` as its termination message (a failed run's log tail).
pub fn payouts_run(
    pool: &str,
    name: &str,
    finished_at: &str,
    exit_code: i32,
    message: &str,
) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": names::labels(pool, Job::Payouts.name())},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "containers": [{"name": JOB_CONTAINER, "image": "minerpool/minerpool-jobs:0.1.0"}],
        },
        "status": {
            "phase": if exit_code == 0 { "Succeeded" } else { "Failed" },
            "containerStatuses": [{
                "name": JOB_CONTAINER,
                "ready": false,
                "restartCount": 0,
                "image": "minerpool/minerpool-jobs:0.1.0",
                "imageID": "",
                "state": {"terminated": {
                    "exitCode": exit_code,
                    "startedAt": finished_at,
                    "finishedAt": finished_at,
                    "message": message,
                }},
            }],
        },
    }))
    .expect("a pod")
}

/// The log tail of a payouts run blocked by `reason`, as its termination message holds it:
/// a JSON log line, the summary on stdout, then the stderr line.
pub fn blocked_log_tail(reason: &str) -> String {
    let log = serde_json::json!({"timestamp": "2026-11-29T00:00:00Z", "level": "INFO",
        "fields": {"message": "reading the wallet's spends"}});
    let summary = serde_json::json!({"job": "payouts", "runId": "run-1", "outcome": "blocked",
        "reason": reason, "details": {"sender": "upow", "settled": []}});
    format!("{log}\n{summary}\nminerpool-job payouts: blocked: {reason}\n")
}

/// A MinerPool as the API server returns it: namespace, uid and generation set.
pub fn minerpool(name: &str, namespace: &str) -> MinerPool {
    let mut mp = MinerPool::new(name, spec());
    mp.metadata.namespace = Some(namespace.into());
    mp.metadata.uid = Some(format!("uid-of-{name}"));
    mp.metadata.generation = Some(1);
    mp.metadata.resource_version = Some("1".into());
    mp
}
