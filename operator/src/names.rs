//! What the operator calls things: the names, labels and selectors of a MinerPool's children,
//! the annotations and the field manager it writes with, and the containers it builds.

use std::collections::BTreeMap;

use minerpool_core::job::Job;

/// Annotation holding the digest of the applied object.
pub const APPLIED_HASH: &str = "minerpool.io/applied-hash";
/// Pod template annotation that rolls the node when its config changes.
pub const CONFIG_HASH: &str = "minerpool.io/config-hash";
/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "minerpool-operator";
/// Key of the config file in the ConfigMap.
pub const CONFIG_FILE: &str = "minerpool.yaml";
/// The container the operator builds in every job's pod (the same name in each, so that
/// `spec.jobs.podOverrides` reaches all of them).
pub const JOB_CONTAINER: &str = "job";
/// The container the operator builds in the node pod.
pub const NODE_CONTAINER: &str = "node";

pub fn config_map(pool: &str) -> String {
    format!("{pool}-config")
}

pub fn node(pool: &str) -> String {
    format!("{pool}-node")
}

pub fn cron_job(pool: &str, job: Job) -> String {
    format!("{pool}-{}", job.name())
}

/// The NetworkPolicy of the job pods (the node's is named like the node).
pub fn jobs_network_policy(pool: &str) -> String {
    format!("{pool}-jobs")
}

/// Labels on every child; [`pool_selector`] finds them.
pub fn labels(pool: &str, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "minerpool".into()),
        ("app.kubernetes.io/instance".into(), pool.into()),
        ("app.kubernetes.io/component".into(), component.into()),
        ("app.kubernetes.io/managed-by".into(), FIELD_MANAGER.into()),
    ])
}

/// Label selector of all children of one MinerPool.
pub fn pool_selector(pool: &str) -> String {
    format!("app.kubernetes.io/instance={pool},app.kubernetes.io/managed-by={FIELD_MANAGER}")
}

/// Label selector of the pods of a job's runs (the CronJob's pod template carries [`labels`]):
/// one MinerPool's, or with `pool` unset every MinerPool's (what the controller watches).
pub fn job_pods_selector(job: Job, pool: Option<&str>) -> String {
    let mut selector = format!(
        "app.kubernetes.io/managed-by={FIELD_MANAGER},app.kubernetes.io/component={}",
        job.name()
    );
    if let Some(pool) = pool {
        selector.push_str(&format!(",app.kubernetes.io/instance={pool}"));
    }
    selector
}

/// Labels selecting the node pods (also the scale subresource's selector).
pub fn node_selector_labels(pool: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "minerpool".into()),
        ("app.kubernetes.io/instance".into(), pool.into()),
        ("app.kubernetes.io/component".into(), "node".into()),
    ])
}

pub fn node_selector(pool: &str) -> String {
    node_selector_labels(pool)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The Prometheus Operator's ServiceMonitor API.
pub fn service_monitor_resource() -> kube::api::ApiResource {
    kube::api::ApiResource {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        api_version: "monitoring.coreos.com/v1".into(),
        kind: "ServiceMonitor".into(),
        plural: "servicemonitors".into(),
    }
}
