//! What a MinerPool field left unset becomes where the operator, not `minerpool_core::config`,
//! decides: the settings of the pods, the Service and the CronJobs, and the two config values
//! that differ in a cluster.

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use minerpool_core::job::Job;

/// A node pod's drain when the spec names none: kube-proxy drops a deleted pod within a second
/// or two of its deletion.
pub const DEFAULT_SHUTDOWN_DELAY_SECONDS: u32 = 5;
/// The node's metrics port when the spec names none: a cluster always serves them apart from the
/// API.
pub const DEFAULT_METRICS_PORT: u16 = 9090;
pub const DEFAULT_SERVICE_TYPE: &str = "ClusterIP";
/// Through a node port, `Cluster` forwards from any cluster node and replaces the client's
/// address with that node's: every validator would share a few addresses and their per-client
/// limits. `Local` keeps the address (traffic goes only to nodes with a ready node pod).
pub const DEFAULT_EXTERNAL_TRAFFIC_POLICY: &str = "Local";
/// The default budget: one node pod at a time.
pub const DEFAULT_MAX_UNAVAILABLE: i32 = 1;
/// A run that hangs is stopped after this, so `Forbid` cannot block a job for ever.
pub const DEFAULT_ACTIVE_DEADLINE_SECONDS: i64 = 600;
pub const DEFAULT_HISTORY_LIMIT: i32 = 3;

/// A job's CronJob schedule when the spec names none; `None` for a job run only when asked.
pub fn default_schedule(job: Job) -> Option<&'static str> {
    match job {
        Job::Rewards | Job::Payouts => Some("* * * * *"),
        Job::Validators | Job::Decay => Some("*/10 * * * *"),
        Job::Audit => None,
    }
}

/// A job's resources when its spec names none: a run is mostly waiting on MongoDB and the
/// chain; the limit stops a run gone wrong before it troubles the node's neighbours.
pub fn default_job_resources() -> ResourceRequirements {
    let quantities = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                .collect(),
        )
    };
    ResourceRequirements {
        requests: quantities(&[("cpu", "50m"), ("memory", "64Mi")]),
        limits: quantities(&[("memory", "512Mi")]),
        ..ResourceRequirements::default()
    }
}
