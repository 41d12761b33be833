//! The children a valid MinerPool wants, as pure functions of the MinerPool and its rendered
//! config: a ConfigMap, the node Deployment and Service, one CronJob per enabled job, and the
//! optional ServiceMonitor, PodDisruptionBudget and NetworkPolicies.
//!
//! Each child carries [`APPLIED_HASH`], a digest of what the operator applies; the reconciler
//! skips the apply when the live object carries the same digest, so a steady state makes no writes.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec as K8sJobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements,
    SeccompProfile, SecretKeySelector, SecurityContext, Service, ServicePort, ServiceSpec,
    TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use minerpool_core::config::Config;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::crd::{JobSpec, MinerPool, MinerPoolSpec, PodOverrides, SecretKeyRef};
use crate::overrides;

/// Annotation holding the digest of the applied object.
pub const APPLIED_HASH: &str = "minerpool.io/applied-hash";
/// Pod template annotation that rolls the node when its config changes.
pub const CONFIG_HASH: &str = "minerpool.io/config-hash";
/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "minerpool-operator";
/// Key of the config file in the ConfigMap.
pub const CONFIG_FILE: &str = "minerpool.yaml";
const CONFIG_DIR: &str = "/etc/minerpool";
/// UID and GID of the distroless `nonroot` user the images run as.
const NON_ROOT_ID: i64 = 65532;
/// A missed run older than this is skipped, so an edited schedule never fires a backlog.
pub const STARTING_DEADLINE_SECONDS: i64 = 50;
/// A run that hangs is stopped after this, so `Forbid` cannot block a job for ever.
pub const DEFAULT_ACTIVE_DEADLINE_SECONDS: i64 = 600;
pub const DEFAULT_HISTORY_LIMIT: i32 = 3;
/// The container the operator builds in every job's pod (the same name in each, so that
/// `spec.jobs.podOverrides` reaches all of them).
pub const JOB_CONTAINER: &str = "job";
/// The container the operator builds in the node pod.
pub const NODE_CONTAINER: &str = "node";
/// The node pods are spread over this topology by default.
pub const SPREAD_TOPOLOGY_KEY: &str = "kubernetes.io/hostname";
/// Time a node pod has, after its drain delay and its shutdown timeout, for the group writer's
/// last write and the exit.
pub const NODE_EXIT_SECONDS: i64 = 10;

/// A node pod's grace period: its drain delay, then its shutdown timeout for open connections,
/// then the last write and the exit; the kubelet kills it only after all three.
pub fn node_grace_period_seconds(node: &minerpool_core::config::NodeConfig) -> i64 {
    i64::from(node.shutdown_delay_seconds)
        + i64::from(node.shutdown_timeout_seconds)
        + NODE_EXIT_SECONDS
}

/// The four jobs, each a CronJob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JobKind {
    Rewards,
    Validators,
    Payouts,
    Decay,
}

impl JobKind {
    pub const ALL: [JobKind; 4] = [
        JobKind::Rewards,
        JobKind::Validators,
        JobKind::Payouts,
        JobKind::Decay,
    ];

    /// The `minerpool-job` subcommand, the key under `spec.jobs` and `status.jobs`.
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Rewards => "rewards",
            JobKind::Validators => "validators",
            JobKind::Payouts => "payouts",
            JobKind::Decay => "decay",
        }
    }

    pub fn default_schedule(self) -> &'static str {
        match self {
            JobKind::Rewards | JobKind::Payouts => "* * * * *",
            JobKind::Validators | JobKind::Decay => "*/10 * * * *",
        }
    }

    /// This job's settings; an absent entry means every default.
    pub fn spec(self, spec: &MinerPoolSpec) -> JobSpec {
        let jobs = &spec.jobs;
        let job = match self {
            JobKind::Rewards => &jobs.rewards,
            JobKind::Validators => &jobs.validators,
            JobKind::Payouts => &jobs.payouts,
            JobKind::Decay => &jobs.decay,
        };
        job.clone().unwrap_or_default()
    }

    pub fn enabled(self, spec: &MinerPoolSpec) -> bool {
        self.spec(spec).enabled.unwrap_or(true)
    }
}

/// The environment variables the operator fills from the Secrets the spec names.
pub mod env {
    pub const MONGODB_URI: &str = "MONGODB_URI";
    pub const ADMIN_TOKEN: &str = "MINERPOOL_ADMIN_TOKEN";
    pub const ADMIN_RSA_KEY: &str = "MINERPOOL_ADMIN_RSA_KEY";
    pub const WALLET_KEY: &str = "MINERPOOL_WALLET_KEY";
    /// Every one, whether or not a given pod gets it: none may come from elsewhere.
    pub const ALL: [&str; 4] = [MONGODB_URI, ADMIN_TOKEN, ADMIN_RSA_KEY, WALLET_KEY];
}

/// Names of the children of a MinerPool.
pub mod names {
    use super::JobKind;

    pub fn config_map(pool: &str) -> String {
        format!("{pool}-config")
    }
    pub fn node(pool: &str) -> String {
        format!("{pool}-node")
    }
    pub fn cron_job(pool: &str, job: JobKind) -> String {
        format!("{pool}-{}", job.name())
    }
    /// The NetworkPolicy of the job pods (the node's is named like the node).
    pub fn jobs_network_policy(pool: &str) -> String {
        format!("{pool}-jobs")
    }
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
pub fn job_pods_selector(kind: JobKind, pool: Option<&str>) -> String {
    let mut selector = format!(
        "app.kubernetes.io/managed-by={FIELD_MANAGER},app.kubernetes.io/component={}",
        kind.name()
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

/// Everything a MinerPool wants to exist; an owned CronJob not listed here is deleted.
#[derive(Debug, Clone)]
pub struct Desired {
    pub config_map: ConfigMap,
    pub deployment: Deployment,
    pub service: Service,
    pub cron_jobs: Vec<(JobKind, CronJob)>,
    /// The node ServiceMonitor, when `spec.node.serviceMonitor.enabled`.
    pub service_monitor: Option<kube::api::DynamicObject>,
    /// The node's PodDisruptionBudget, when wanted ([`disruption_budget`]).
    pub disruption_budget: Option<PodDisruptionBudget>,
    /// The node's and the jobs' NetworkPolicies, when `spec.networkPolicy.enabled`.
    pub network_policies: Option<[NetworkPolicy; 2]>,
}

/// Builds the children of a validated MinerPool. `mp` must come from the API server (it needs a
/// name, a namespace and a uid for the owner reference).
pub fn desired(mp: &MinerPool, config: &Config) -> Desired {
    let config_yaml = config.to_yaml();
    let config_digest = digest(&config_yaml);
    Desired {
        config_map: config_map(mp, config_yaml),
        deployment: deployment(mp, config, &config_digest),
        service: service(mp, config),
        cron_jobs: JobKind::ALL
            .into_iter()
            .filter(|kind| kind.enabled(&mp.spec))
            .map(|kind| (kind, cron_job(mp, kind)))
            .collect(),
        service_monitor: service_monitor(mp),
        disruption_budget: disruption_budget(mp),
        network_policies: network_policies(mp, config),
    }
}

/// The default budget: one node pod at a time.
pub const DEFAULT_MAX_UNAVAILABLE: i32 = 1;

/// A budget over the node pods: `enabled` true or false decides; unset, there is one when the
/// MinerPool asks for more than one replica (at one, a budget of one changes nothing; with
/// replicas unset, whoever scales the Deployment decides and the spec says nothing).
pub fn disruption_budget(mp: &MinerPool) -> Option<PodDisruptionBudget> {
    let node = &mp.spec.node;
    let budget = node.disruption_budget.clone().unwrap_or_default();
    let wanted = budget
        .enabled
        .unwrap_or_else(|| node.replicas.is_some_and(|r| r > 1));
    if !wanted {
        return None;
    }
    let pool = mp.name_any();
    Some(stamped(PodDisruptionBudget {
        metadata: metadata(mp, names::node(&pool), "node"),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(
                budget
                    .max_unavailable
                    .unwrap_or(IntOrString::Int(DEFAULT_MAX_UNAVAILABLE)),
            ),
            selector: Some(LabelSelector {
                match_labels: Some(node_selector_labels(&pool)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }))
}

/// The node's metrics port: validation always sets one for a cluster.
fn metrics_port(config: &Config) -> u16 {
    config
        .node
        .metrics_address
        .map_or(crate::validate::DEFAULT_METRICS_PORT, |a| a.port())
}

/// Ingress only: the node takes its API ports from anywhere and its metrics port from the
/// namespaces given (its own by default); the job pods take nothing (they listen on no port).
/// Egress is the cluster's own choice (README: what each must reach).
/// Who may scrape the node's metrics: pods of the namespaces given, or of the MinerPool's own.
fn metrics_scrapers(mp: &MinerPool) -> NetworkPolicyPeer {
    match &mp.spec.network_policy.metrics_from_namespaces {
        Some(namespaces) => NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "kubernetes.io/metadata.name".into(),
                    operator: "In".into(),
                    values: Some(namespaces.clone()),
                }]),
                ..LabelSelector::default()
            }),
            ..NetworkPolicyPeer::default()
        },
        // A pod selector alone selects pods of the policy's own namespace.
        None => NetworkPolicyPeer {
            pod_selector: Some(LabelSelector::default()),
            ..NetworkPolicyPeer::default()
        },
    }
}

pub fn network_policies(mp: &MinerPool, config: &Config) -> Option<[NetworkPolicy; 2]> {
    if !mp.spec.network_policy.enabled {
        return None;
    }
    let pool = mp.name_any();
    let port = |number: u16| NetworkPolicyPort {
        port: Some(IntOrString::Int(number.into())),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    };
    let node = NetworkPolicy {
        metadata: metadata(mp, names::node(&pool), "node"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(node_selector_labels(&pool)),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    ports: Some(vec![
                        port(config.node.http_address.port()),
                        port(config.node.websocket_address.port()),
                    ]),
                    ..NetworkPolicyIngressRule::default()
                },
                NetworkPolicyIngressRule {
                    ports: Some(vec![port(metrics_port(config))]),
                    from: Some(vec![metrics_scrapers(mp)]),
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    };
    let jobs = NetworkPolicy {
        metadata: metadata(mp, names::jobs_network_policy(&pool), "jobs"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([
                    ("app.kubernetes.io/name".into(), "minerpool".into()),
                    ("app.kubernetes.io/instance".into(), pool.clone()),
                ])),
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "app.kubernetes.io/component".into(),
                    operator: "In".into(),
                    values: Some(JobKind::ALL.iter().map(|k| k.name().into()).collect()),
                }]),
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(Vec::new()),
            ..NetworkPolicySpec::default()
        }),
    };
    Some([stamped(node), stamped(jobs)])
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

/// A ServiceMonitor selecting the node Service by its labels and scraping `/metrics` on its
/// `metrics` port, so that Prometheus keeps one target per node pod.
pub fn service_monitor(mp: &MinerPool) -> Option<kube::api::DynamicObject> {
    let wanted = mp
        .spec
        .node
        .service_monitor
        .as_ref()
        .filter(|m| m.enabled)?;
    let pool = mp.name_any();
    let mut metadata = metadata(mp, names::node(&pool), "node");
    if let (Some(labels), Some(extra)) = (metadata.labels.as_mut(), &wanted.labels) {
        for (key, value) in extra {
            labels.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    let mut endpoint = serde_json::json!({ "port": "metrics", "path": "/metrics" });
    if let Some(interval) = &wanted.interval {
        endpoint["interval"] = interval.clone().into();
    }
    let resource = service_monitor_resource();
    let mut object = kube::api::DynamicObject::new(&names::node(&pool), &resource).data(
        serde_json::json!({ "spec": {
            "selector": { "matchLabels": labels(&pool, "node") },
            "endpoints": [endpoint],
        } }),
    );
    object.metadata = metadata;
    Some(stamped(object))
}

fn metadata(mp: &MinerPool, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: mp.namespace(),
        labels: Some(labels(&mp.name_any(), component)),
        owner_references: mp.controller_owner_ref(&()).map(|owner| vec![owner]),
        ..ObjectMeta::default()
    }
}

/// Sets [`APPLIED_HASH`] to the digest of the object as it is without it.
fn stamped<K: Resource + Serialize>(mut object: K) -> K {
    let hash = digest(&serde_json::to_string(&object).expect("Kubernetes objects serialise"));
    object
        .meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(APPLIED_HASH.into(), hash);
    object
}

fn digest(text: &str) -> String {
    let hash = Sha256::digest(text.as_bytes());
    hex::encode(&hash[..12])
}

/// The digest a live object was applied with, if the operator applied it.
pub fn applied_hash(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()?
        .get(APPLIED_HASH)
        .map(String::as_str)
}

pub fn config_map(mp: &MinerPool, config_yaml: String) -> ConfigMap {
    let name = names::config_map(&mp.name_any());
    stamped(ConfigMap {
        metadata: metadata(mp, name, "config"),
        data: Some(BTreeMap::from([(CONFIG_FILE.into(), config_yaml)])),
        ..ConfigMap::default()
    })
}

fn secret_env(name: &str, reference: &SecretKeyRef) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: reference.name.clone(),
                key: reference.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn pod_security_context() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(NON_ROOT_ID),
        run_as_group: Some(NON_ROOT_ID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

fn container_security_context() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

fn config_volume(mp: &MinerPool) -> Volume {
    Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: names::config_map(&mp.name_any()),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn config_mount() -> VolumeMount {
    VolumeMount {
        name: "config".into(),
        mount_path: CONFIG_DIR.into(),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

fn config_args(first: &str) -> Vec<String> {
    vec![
        first.into(),
        "--config".into(),
        format!("{CONFIG_DIR}/{CONFIG_FILE}"),
    ]
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

/// Merges the overrides, in order, over the pod the operator built. Each was checked by
/// validation; one that is not a pod template (impossible after it) is left out.
fn with_overrides(mut pod: PodTemplateSpec, all: &[&Option<PodOverrides>]) -> PodTemplateSpec {
    for over in all.iter().copied().flatten() {
        if let Ok(parsed) = overrides::parse("", &over.0) {
            overrides::merge(&mut pod, parsed);
        }
    }
    pod
}

fn http_probe(path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(10),
        ..Probe::default()
    }
}

pub fn deployment(mp: &MinerPool, config: &Config, config_digest: &str) -> Deployment {
    let pool = mp.name_any();
    let template = with_overrides(
        node_pod(mp, config, config_digest),
        &[&mp.spec.node.pod_overrides],
    );
    stamped(Deployment {
        metadata: metadata(mp, names::node(&pool), "node"),
        spec: Some(DeploymentSpec {
            // Unset: whoever scales the Deployment (kubectl scale, an HPA) owns the count.
            replicas: mp.spec.node.replicas,
            selector: LabelSelector {
                match_labels: Some(node_selector_labels(&pool)),
                ..LabelSelector::default()
            },
            template,
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    })
}

/// The node pod as the operator builds it, before `spec.node.podOverrides`.
pub fn node_pod(mp: &MinerPool, config: &Config, config_digest: &str) -> PodTemplateSpec {
    let pool = mp.name_any();
    let node = &mp.spec.node;
    let mut env = vec![secret_env(
        env::MONGODB_URI,
        &mp.spec.mongodb.uri_secret_ref,
    )];
    if let Some(r) = &node.admin_token_secret_ref {
        env.push(secret_env(env::ADMIN_TOKEN, r));
    }
    if let Some(r) = &node.admin_rsa_key_secret_ref {
        env.push(secret_env(env::ADMIN_RSA_KEY, r));
    }
    let container = Container {
        name: NODE_CONTAINER.into(),
        image: Some(mp.spec.images.node.clone()),
        args: Some(config_args("serve")),
        env: Some(env),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".into()),
                container_port: config.node.http_address.port().into(),
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("websocket".into()),
                container_port: config.node.websocket_address.port().into(),
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
            ContainerPort {
                name: Some("metrics".into()),
                container_port: metrics_port(config).into(),
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        readiness_probe: Some(http_probe("/readyz")),
        liveness_probe: Some(http_probe("/healthz")),
        resources: node.resources.clone(),
        security_context: Some(container_security_context()),
        volume_mounts: Some(vec![config_mount()]),
        ..Container::default()
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(&pool, "node")),
            annotations: Some(BTreeMap::from([(CONFIG_HASH.into(), config_digest.into())])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            security_context: Some(pod_security_context()),
            automount_service_account_token: Some(false),
            volumes: Some(vec![config_volume(mp)]),
            termination_grace_period_seconds: Some(node_grace_period_seconds(&config.node)),
            // Replicas on different machines, where there are several; one machine still
            // schedules them all. A constraint on the same key in podOverrides replaces it.
            topology_spread_constraints: Some(vec![TopologySpreadConstraint {
                max_skew: 1,
                topology_key: SPREAD_TOPOLOGY_KEY.into(),
                when_unsatisfiable: "ScheduleAnyway".into(),
                label_selector: Some(LabelSelector {
                    match_labels: Some(node_selector_labels(&pool)),
                    ..LabelSelector::default()
                }),
                ..TopologySpreadConstraint::default()
            }]),
            ..PodSpec::default()
        }),
    }
}

pub fn service(mp: &MinerPool, config: &Config) -> Service {
    let pool = mp.name_any();
    let port = |name: &str, number: u16| ServicePort {
        name: Some(name.into()),
        port: number.into(),
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    };
    let type_ = mp
        .spec
        .node
        .service_type
        .clone()
        .unwrap_or_else(|| "ClusterIP".into());
    // Through a node port, `Cluster` forwards from any cluster node and replaces the client's
    // address with that node's: every validator would share a few addresses and their
    // per-client limits. `Local` keeps the address (traffic goes only to nodes with a ready
    // node pod). A ClusterIP Service has no such policy.
    let external_traffic_policy = (type_ == "LoadBalancer" || type_ == "NodePort").then(|| {
        mp.spec
            .node
            .external_traffic_policy
            .clone()
            .unwrap_or_else(|| "Local".into())
    });
    stamped(Service {
        metadata: metadata(mp, names::node(&pool), "node"),
        spec: Some(ServiceSpec {
            type_: Some(type_),
            external_traffic_policy,
            selector: Some(node_selector_labels(&pool)),
            ports: Some(vec![
                port("http", config.node.http_address.port()),
                port("websocket", config.node.websocket_address.port()),
                port("metrics", metrics_port(config)),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// A job's pod as the operator builds it, before the pod overrides.
pub fn job_pod(mp: &MinerPool, kind: JobKind) -> PodTemplateSpec {
    let pool = mp.name_any();
    let job = kind.spec(&mp.spec);
    let mut env = vec![secret_env(
        env::MONGODB_URI,
        &mp.spec.mongodb.uri_secret_ref,
    )];
    if kind == JobKind::Payouts
        && let Some(r) = &mp.spec.payouts.wallet_key_secret_ref
    {
        env.push(secret_env(env::WALLET_KEY, r));
    }
    let container = Container {
        name: JOB_CONTAINER.into(),
        image: Some(mp.spec.images.jobs.clone()),
        args: Some(config_args(kind.name())),
        env: Some(env),
        resources: Some(job.resources.unwrap_or_else(default_job_resources)),
        security_context: Some(container_security_context()),
        volume_mounts: Some(vec![config_mount()]),
        // A failed run's log tail (its JSON summary and its stderr line) becomes the
        // container's termination message, where the status reads why payouts are held.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels(&pool, kind.name())),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            restart_policy: Some("Never".into()),
            security_context: Some(pod_security_context()),
            // Neither the node nor a job talks to the Kubernetes API.
            automount_service_account_token: Some(false),
            volumes: Some(vec![config_volume(mp)]),
            ..PodSpec::default()
        }),
    }
}

pub fn cron_job(mp: &MinerPool, kind: JobKind) -> CronJob {
    let pool = mp.name_any();
    let job = kind.spec(&mp.spec);
    let template = with_overrides(
        job_pod(mp, kind),
        &[&mp.spec.jobs.pod_overrides, &job.pod_overrides],
    );
    stamped(CronJob {
        metadata: metadata(mp, names::cron_job(&pool, kind), kind.name()),
        spec: Some(CronJobSpec {
            schedule: job
                .schedule
                .clone()
                .unwrap_or_else(|| kind.default_schedule().into()),
            suspend: Some(job.suspend.unwrap_or(false)),
            concurrency_policy: Some("Forbid".into()),
            starting_deadline_seconds: Some(STARTING_DEADLINE_SECONDS),
            successful_jobs_history_limit: Some(
                job.successful_jobs_history_limit
                    .unwrap_or(DEFAULT_HISTORY_LIMIT),
            ),
            failed_jobs_history_limit: Some(
                job.failed_jobs_history_limit
                    .unwrap_or(DEFAULT_HISTORY_LIMIT),
            ),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&pool, kind.name())),
                    ..ObjectMeta::default()
                }),
                spec: Some(K8sJobSpec {
                    // The jobs are idempotent and exactly-once; a failed run is retried by the
                    // next schedule rather than by piling up pods.
                    backoff_limit: Some(0),
                    active_deadline_seconds: Some(
                        job.active_deadline_seconds
                            .unwrap_or(DEFAULT_ACTIVE_DEADLINE_SECONDS),
                    ),
                    template,
                    ..K8sJobSpec::default()
                }),
            },
            ..CronJobSpec::default()
        }),
        ..CronJob::default()
    })
}

/// Whether this MinerPool (by uid) is the controller of an object. The operator changes only
/// objects it controls: one of the same name that someone else made is a conflict, never
/// adopted (adopting would also let the MinerPool's deletion collect it).
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// The first field the operator applies that `live` no longer carries as applied (a
/// `kubectl set image`, an edited ConfigMap), as a JSON path; `None` when nothing drifted.
/// Compared: every field of `wanted` outside metadata, and its labels and annotations. What the
/// server or another controller added (defaults, a cluster IP, replicas when unset) is not drift.
pub fn drift<K: Serialize>(wanted: &K, live: &K) -> Option<String> {
    let (Ok(wanted), Ok(live)) = (serde_json::to_value(wanted), serde_json::to_value(live)) else {
        return Some("(unserialisable)".into());
    };
    let wanted_fields = wanted.as_object()?;
    for (key, value) in wanted_fields {
        let path = key.as_str();
        let found = match path {
            "apiVersion" | "kind" | "status" => continue,
            "metadata" => {
                for part in ["labels", "annotations"] {
                    let path = format!("metadata.{part}");
                    if let Some(drifted) =
                        subset_drift(&value[part], live["metadata"].get(part), &path)
                    {
                        return Some(drifted);
                    }
                }
                continue;
            }
            _ => subset_drift(value, live.get(path), path),
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// Where `wanted` is not contained in `live`: objects by key (extra live keys are fine), arrays
/// element by element with equal length, scalars by equality. An empty or null wanted value
/// matches a missing one (the server drops empty fields).
fn subset_drift(
    wanted: &serde_json::Value,
    live: Option<&serde_json::Value>,
    path: &str,
) -> Option<String> {
    use serde_json::Value;
    let empty = match wanted {
        Value::Null => true,
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    let Some(live) = live.filter(|v| !v.is_null()) else {
        return (!empty).then(|| path.to_owned());
    };
    match (wanted, live) {
        (Value::Object(w), Value::Object(l)) => w
            .iter()
            .find_map(|(key, value)| subset_drift(value, l.get(key), &format!("{path}.{key}"))),
        (Value::Array(w), Value::Array(l)) if w.len() == l.len() => w
            .iter()
            .zip(l)
            .enumerate()
            .find_map(|(i, (w, l))| subset_drift(w, Some(l), &format!("{path}[{i}]"))),
        (w, l) if w == l => None,
        (w, _) if empty && matches!(w, Value::Null) => None,
        _ => Some(path.to_owned()),
    }
}
