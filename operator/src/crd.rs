//! The `MinerPool` custom resource (SPEC §6), generated from these types: every field's doc
//! comment becomes its description, so `kubectl explain minerpool.spec` documents itself.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{CustomResource, KubeSchema};
use minerpool_core::job::Job;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A minerpool deployment: the node, its Service and ConfigMap, and the four job CronJobs.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "minerpool.io",
    version = "v1alpha1",
    kind = "MinerPool",
    namespaced,
    shortname = "mp",
    status = "MinerPoolStatus",
    scale = r#"{"specReplicasPath":".spec.node.replicas","statusReplicasPath":".status.node.replicas","labelSelectorPath":".status.node.selector"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".status.node.readyReplicas"}"#,
    printcolumn = r#"{"name":"Rewards scheduled","type":"date","jsonPath":".status.jobs.rewards.lastScheduleTime"}"#,
    printcolumn = r#"{"name":"Last rewards","type":"date","jsonPath":".status.jobs.rewards.lastSuccessfulTime"}"#,
    printcolumn = r#"{"name":"Payouts","type":"string","jsonPath":".status.payouts"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MinerPoolSpec {
    /// Container images of the node and the jobs.
    pub images: Images,
    /// The uPow chain and the iNode's wallets.
    pub chain: Chain,
    /// The MongoDB replica set holding the shared state.
    pub mongodb: MongoDb,
    /// How received emissions are shared out.
    #[serde(default)]
    pub rewards: Rewards,
    /// The WebSocket/HTTP node.
    #[serde(default)]
    pub node: Node,
    /// The four CronJobs.
    #[serde(default)]
    pub jobs: Jobs,
    /// Paying pending balances on chain.
    #[serde(default)]
    pub payouts: Payouts,
    /// Which validators share the validator part.
    #[serde(default)]
    pub validators: Validators,
    /// What the dashboard keeps over time.
    #[serde(default)]
    pub history: History,
    /// A NetworkPolicy for the node and the jobs.
    #[serde(default)]
    pub network_policy: NetworkPolicy,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Images {
    /// Image of minerpool-node.
    pub node: String,
    /// Image of minerpool-job.
    pub jobs: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Chain {
    /// Base URL of the uPow node API (default https://api.upow.ai).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// Validators endpoint the iNode wallet is appended to; unset: {apiUrl}/get_validators_info?inode=.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validators_url: Option<String>,
    /// The wallet that receives emissions and pays out.
    pub inode_wallet: String,
    /// Receives the fee and the unallocated remainder.
    pub reward_address: String,
    /// First block scanned when the database has no stored height (default 20001).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_height: Option<u64>,
    /// Allow http:// chain URLs (a chain on a trusted network); otherwise https only (default
    /// false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_insecure_http: Option<bool>,
    /// Seconds one chain request may take (default 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout_seconds: Option<u64>,
    /// Seconds in all one chain read may wait out the node's HTTP 429 rate limits before it
    /// fails, 0 to 3600 (default 120).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit_wait_seconds: Option<u64>,
}

/// A key of a Secret in the MinerPool's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key within the Secret.
    pub key: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MongoDb {
    /// Secret key holding the MongoDB URI (a replica set: money moves in transactions).
    pub uri_secret_ref: SecretKeyRef,
    /// Database name; unset: iNode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// The three percentages must sum to 100.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.feePercent + self.poolsPercent + self.validatorsPercent == 100").message("feePercent + poolsPercent + validatorsPercent must be 100"))]
pub struct Rewards {
    /// Percent to the reward address.
    pub fee_percent: u8,
    /// Percent shared by pools by score.
    pub pools_percent: u8,
    /// Percent shared by validators by stake.
    pub validators_percent: u8,
    /// Blocks scanned per rewards run, 1 to 1000 (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks_per_run: Option<u32>,
    /// Blocks a block must be below the chain's tip before its income is credited, and a
    /// payout's block before it counts as paid, 0 to 998 (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmations: Option<u32>,
}

impl Default for Rewards {
    fn default() -> Self {
        Rewards {
            fee_percent: 18,
            pools_percent: 41,
            validators_percent: 41,
            blocks_per_run: None,
            confirmations: None,
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Node replicas; unset: the operator leaves replicas to whoever scales the Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// HTTP port (default 8001).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_port: Option<u16>,
    /// WebSocket port (default 5501).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub websocket_port: Option<u16>,
    /// Port of the node's /metrics, apart from the API so that the network policy can open it
    /// to the scrapers alone (default 9090).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_port: Option<u16>,
    /// Service type of the node (default ClusterIP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    /// Open WebSocket connections per replica (default 1500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    /// Seconds a stopping node pod fails readiness but still serves, so that connections sent
    /// before every kube-proxy drops it are answered (default 5; 0 to 300).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_delay_seconds: Option<u32>,
    /// Once a stopping node pod has stopped accepting: seconds its open connections get to
    /// finish; any still open then is closed with a reason (default 20; 1 to 300). The pod's
    /// grace period is the delay plus this plus 10 s for the last group write and exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout_seconds: Option<u32>,
    /// Resource requests and limits of the node container (default: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// A partial PodTemplateSpec (metadata and spec) merged over the node pod the operator
    /// builds, by Kubernetes' merge rules: containers, init containers, env, volumes, volume
    /// mounts, ports and pull secrets by name, topology spread constraints by topologyKey;
    /// tolerations are appended; every other list, and nodeSelector, is replaced. The operator's
    /// container is `node` in the node pod and `job` in every job's. Refused, as the operator
    /// owns them: that container's command, args and image, the env it fills from Secrets, its
    /// `config` mount, its `http`/`websocket` ports and its probes' httpGet,
    /// readOnlyRootFilesystem false; the `config` volume, automountServiceAccountToken true, the
    /// selector labels (app.kubernetes.io/*), the config-hash annotation, restartPolicy and the
    /// node's terminationGracePeriodSeconds. A refused or unknown field makes the spec invalid,
    /// named by its path in the Ready condition, and nothing is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_overrides: Option<PodOverrides>,
    /// A PodDisruptionBudget over the node pods (default: one with maxUnavailable 1 when
    /// replicas is above 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption_budget: Option<DisruptionBudget>,
    /// Secret key with the admin bearer token (enables /api/v1 writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_token_secret_ref: Option<SecretKeyRef>,
    /// Secret key with the legacy RSA admin key (enables /modify-pool-list/).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_rsa_key_secret_ref: Option<SecretKeyRef>,
    /// A Prometheus Operator ServiceMonitor for the node's /metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_monitor: Option<ServiceMonitor>,
    /// Open HTTP connections per replica (default 256).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_http_connections: Option<u32>,
    /// Open connections from one client address, on each port (default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections_per_client: Option<u32>,
    /// Seconds an HTTP connection may stay silent before it is closed (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_idle_timeout_seconds: Option<u32>,
    /// Seconds before an HTTP request not yet answered gets 503 (default 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_request_timeout_seconds: Option<u32>,
    /// /modify-pool-list/ requests a minute from one client address (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_requests_per_minute_per_client: Option<u32>,
    /// /modify-pool-list/ requests a minute from all clients together (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_requests_per_minute: Option<u32>,
    /// Which WebSocket messages are accepted: legacy (unsigned; signatures ignored), both
    /// (default: unsigned too, except from a validator that has sent a valid signed message),
    /// or signed (every TASK and PING signed with the validator's key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Seconds a signed message's ts may differ from the node's clock, either side, 1 to 3600
    /// (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_window_seconds: Option<u32>,
    /// Most messages in one group write, 1 to 10000 (default 512).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_group_size: Option<u32>,
    /// Checks read an in-memory copy of the registry kept current by a change stream
    /// (default true; false: the database for every message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_cache: Option<bool>,
    /// Seconds between full reads of the cached registry (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_reload_seconds: Option<u32>,
    /// Both ports read a PROXY protocol header (v1 or v2) first and take the client's address
    /// from it; a connection without a valid header is closed (default false). Turn it on only
    /// behind a load balancer that sends the header on every connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<bool>,
    /// The node Service's externalTrafficPolicy, for LoadBalancer and NodePort types: Local
    /// (default: traffic keeps its client address, so the per-client limits act on the
    /// validator) or Cluster (the client address becomes a cluster node's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_traffic_policy: Option<String>,
}

/// A `monitoring.coreos.com/v1` ServiceMonitor scraping every node replica through the node
/// Service's `http` port; the cluster needs the Prometheus Operator's CRDs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitor {
    /// Create it (default false); turned off, the one the operator created is deleted.
    #[serde(default)]
    pub enabled: bool,
    /// Scrape interval, a Prometheus duration such as `30s` (default: Prometheus's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Extra labels on the ServiceMonitor, such as the `release` label a Prometheus selects by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
}

/// A partial pod template (see `spec.node.podOverrides` for how it is merged and what is refused).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(transparent)]
pub struct PodOverrides(pub serde_json::Value);

impl JsonSchema for PodOverrides {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PodOverrides".into()
    }

    /// An open object: the full PodTemplateSpec schema is about 320 kB, and six copies of it
    /// would pass the API server's limit on a CRD's size. The operator checks the fields.
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "x-kubernetes-preserve-unknown-fields": true,
        })
    }
}

/// The node's PodDisruptionBudget.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DisruptionBudget {
    /// true: always; false: never; unset: when replicas is above 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Node pods that may be evicted at once: a number from 1 or a percentage from 1% to 100%
    /// (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_unavailable: Option<IntOrString>,
}

/// Who may connect to the pods. Egress is left to the cluster's own policies: the node needs
/// MongoDB and the cluster DNS; the jobs need MongoDB, the chain's API and the DNS.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicy {
    /// Create it (default false): the node takes its WebSocket and HTTP ports from anywhere
    /// and its metrics port from the namespaces below; the jobs take no connection. Turned
    /// off, the ones the operator created are deleted.
    #[serde(default)]
    pub enabled: bool,
    /// Namespaces whose pods may scrape the node's metrics port, matched by the
    /// kubernetes.io/metadata.name label (set by Kubernetes 1.21 and later; label the namespace
    /// yourself before that). Unset: the MinerPool's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_from_namespaces: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Jobs {
    /// A partial pod template merged over every job's pod, before the job's own podOverrides,
    /// as spec.node.podOverrides is over the node's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_overrides: Option<PodOverrides>,
    /// The rewards CronJob (default every minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewards: Option<JobSpec>,
    /// The validators CronJob (default every 10 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validators: Option<JobSpec>,
    /// The payouts CronJob (default every minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payouts: Option<JobSpec>,
    /// The decay CronJob (default every 10 minutes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decay: Option<JobSpec>,
}

impl Jobs {
    /// A job's settings; an absent entry (and the audit job, which has no CronJob) means every
    /// default.
    pub fn get(&self, job: Job) -> JobSpec {
        let entry = match job {
            Job::Rewards => &self.rewards,
            Job::Validators => &self.validators,
            Job::Payouts => &self.payouts,
            Job::Decay => &self.decay,
            Job::Audit => &None,
        };
        entry.clone().unwrap_or_default()
    }

    /// Whether the operator keeps a CronJob for a scheduled job.
    pub fn enabled(&self, job: Job) -> bool {
        job.is_scheduled() && self.get(job).enabled.unwrap_or(true)
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobSpec {
    /// Cron schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Suspend the CronJob (runs stop; the CronJob stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspend: Option<bool>,
    /// false: the operator deletes this CronJob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Successful Jobs kept (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful_jobs_history_limit: Option<i32>,
    /// Failed Jobs kept (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_jobs_history_limit: Option<i32>,
    /// Seconds a run may take before it is stopped (default 600).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<i64>,
    /// Resource requests and limits of the job container (default: requests cpu 50m and
    /// memory 64Mi, limit memory 512Mi); given, it replaces the default as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// A partial pod template merged over this job's pod, after spec.jobs.podOverrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_overrides: Option<PodOverrides>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Payouts {
    /// Secret key with the iNode wallet's hex private key (read only when sender is upow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallet_key_secret_ref: Option<SecretKeyRef>,
    /// Smallest balance paid, in coins as a decimal string (default "1").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_payout: Option<String>,
    /// Recipients per transaction, 1 to 254 (default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_outputs_per_tx: Option<u32>,
    /// dry-run (default: record what would be paid) or upow (sign and send).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    /// Fee per batch in coins as a decimal string, paid from the reward address's balance
    /// (default "0").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee: Option<String>,
    /// Seconds after signing before a batch not yet in a block is abandoned (default 3600;
    /// 0: only by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abandon_after_seconds: Option<u64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Validators {
    /// How many validators, by stake, share the validator part, 1 to 1000 (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct History {
    /// Days of hourly pool and validator scores kept for the dashboard's charts, 1 to 366
    /// (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score_retention_days: Option<u32>,
}

/// What the operator last saw.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MinerPoolStatus {
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, NodeAvailable, JobsScheduled and PayoutsHeld, each with reason and message.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// The node Deployment.
    #[serde(default)]
    pub node: NodeStatus,
    /// Per job: last schedule and last success.
    #[serde(default)]
    pub jobs: BTreeMap<String, JobStatus>,
    /// `held` while the newest finished payouts run was blocked (the PayoutsHeld condition says
    /// why), `ok` otherwise, `unknown` when the payouts job's pods could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payouts: Option<String>,
    /// The node ServiceMonitor the operator applied, so that it is deleted when turned off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_monitor: Option<String>,
    /// The node PodDisruptionBudget the operator applied, so that it is deleted when no longer
    /// wanted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disruption_budget: Option<String>,
    /// The NetworkPolicies the operator applied, so that they are deleted when turned off.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_policies: Vec<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Ready, NodeAvailable, JobsScheduled or PayoutsHeld.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// A CamelCase reason.
    pub reason: String,
    /// What a person should know.
    pub message: String,
    /// When the status last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    /// Replicas of the node Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Ready replicas of the node Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Label selector of the node pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobStatus {
    /// When the CronJob last started a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<String>,
    /// When a run last succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_time: Option<String>,
}
