//! The build: the children a validated MinerPool wants, as pure functions of the
//! [`ValidatedPool`] alone: a ConfigMap, the node Deployment and Service, one CronJob per enabled
//! job, and the optional ServiceMonitor, PodDisruptionBudget and NetworkPolicies.
//!
//! Each child carries [`APPLIED_HASH`], a digest of what the operator applies; the reconciler
//! skips the apply when the live object carries the same digest, so a steady state makes no writes.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec as K8sJobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{ConfigMap, PodTemplateSpec, Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;
use minerpool_core::job::Job;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::names::{self, APPLIED_HASH, CONFIG_FILE};
use crate::overrides;
use crate::pods;
use crate::validated::{JobSettings, ValidatedPool};

/// A missed run older than this is skipped, so an edited schedule never fires a backlog.
pub const STARTING_DEADLINE_SECONDS: i64 = 50;

/// Everything a MinerPool wants to exist; an owned CronJob not listed here is deleted.
#[derive(Debug, Clone)]
pub struct Desired {
    pub config_map: ConfigMap,
    pub deployment: Deployment,
    pub service: Service,
    pub cron_jobs: Vec<(Job, CronJob)>,
    /// The node ServiceMonitor, when `spec.node.serviceMonitor.enabled`.
    pub service_monitor: Option<kube::api::DynamicObject>,
    /// The node's PodDisruptionBudget, when wanted.
    pub disruption_budget: Option<PodDisruptionBudget>,
    /// The node's and the jobs' NetworkPolicies, when `spec.networkPolicy.enabled`.
    pub network_policies: Option<[NetworkPolicy; 2]>,
}

/// Builds the children of a validated MinerPool.
pub fn desired(pool: &ValidatedPool) -> Desired {
    let config_yaml = pool.config.to_yaml();
    let config_digest = digest(&config_yaml);
    Desired {
        config_map: config_map(pool, config_yaml),
        deployment: deployment(pool, &config_digest),
        service: service(pool),
        cron_jobs: pool
            .jobs
            .iter()
            .filter(|job| job.enabled)
            .map(|job| (job.job, cron_job(pool, job)))
            .collect(),
        service_monitor: service_monitor(pool),
        disruption_budget: disruption_budget(pool),
        network_policies: network_policies(pool),
    }
}

/// A budget over the node pods, when validation decided one is wanted.
pub fn disruption_budget(pool: &ValidatedPool) -> Option<PodDisruptionBudget> {
    let max_unavailable = pool.node.max_unavailable.clone()?;
    Some(stamped(PodDisruptionBudget {
        metadata: metadata(pool, names::node(&pool.name), "node"),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(max_unavailable),
            selector: Some(LabelSelector {
                match_labels: Some(names::node_selector_labels(&pool.name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }))
}

/// Who may scrape the node's metrics: pods of the namespaces given, or of the MinerPool's own.
fn metrics_scrapers(namespaces: Option<&Vec<String>>) -> NetworkPolicyPeer {
    match namespaces {
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

/// Ingress only: the node takes its API ports from anywhere and its metrics port from the
/// namespaces given (its own by default); the job pods take nothing (they listen on no port).
/// Egress is the cluster's own choice (README: what each must reach).
pub fn network_policies(pool: &ValidatedPool) -> Option<[NetworkPolicy; 2]> {
    let wanted = pool.network_policy.as_ref()?;
    let config = &pool.config;
    let port = |number: u16| NetworkPolicyPort {
        port: Some(IntOrString::Int(number.into())),
        protocol: Some("TCP".into()),
        ..NetworkPolicyPort::default()
    };
    let node = NetworkPolicy {
        metadata: metadata(pool, names::node(&pool.name), "node"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(names::node_selector_labels(&pool.name)),
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
                    ports: Some(vec![port(pool.metrics_port())]),
                    from: Some(vec![metrics_scrapers(
                        wanted.metrics_from_namespaces.as_ref(),
                    )]),
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    };
    let jobs = NetworkPolicy {
        metadata: metadata(pool, names::jobs_network_policy(&pool.name), "jobs"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([
                    ("app.kubernetes.io/name".into(), "minerpool".into()),
                    ("app.kubernetes.io/instance".into(), pool.name.clone()),
                ])),
                match_expressions: Some(vec![LabelSelectorRequirement {
                    key: "app.kubernetes.io/component".into(),
                    operator: "In".into(),
                    values: Some(Job::SCHEDULED.iter().map(|j| j.name().into()).collect()),
                }]),
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(Vec::new()),
            ..NetworkPolicySpec::default()
        }),
    };
    Some([stamped(node), stamped(jobs)])
}

/// A ServiceMonitor selecting the node Service by its labels and scraping `/metrics` on its
/// `metrics` port, so that Prometheus keeps one target per node pod.
pub fn service_monitor(pool: &ValidatedPool) -> Option<kube::api::DynamicObject> {
    let wanted = pool.node.service_monitor.as_ref()?;
    let mut metadata = metadata(pool, names::node(&pool.name), "node");
    if let Some(labels) = metadata.labels.as_mut() {
        for (key, value) in &wanted.labels {
            labels.entry(key.clone()).or_insert_with(|| value.clone());
        }
    }
    let mut endpoint = serde_json::json!({ "port": "metrics", "path": "/metrics" });
    if let Some(interval) = &wanted.interval {
        endpoint["interval"] = interval.clone().into();
    }
    let resource = names::service_monitor_resource();
    let mut object = kube::api::DynamicObject::new(&names::node(&pool.name), &resource).data(
        serde_json::json!({ "spec": {
            "selector": { "matchLabels": names::labels(&pool.name, "node") },
            "endpoints": [endpoint],
        } }),
    );
    object.metadata = metadata;
    Some(stamped(object))
}

fn metadata(pool: &ValidatedPool, name: String, component: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: pool.namespace.clone(),
        labels: Some(names::labels(&pool.name, component)),
        owner_references: pool.owner.clone().map(|owner| vec![owner]),
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

pub fn config_map(pool: &ValidatedPool, config_yaml: String) -> ConfigMap {
    stamped(ConfigMap {
        metadata: metadata(pool, names::config_map(&pool.name), "config"),
        data: Some(BTreeMap::from([(CONFIG_FILE.into(), config_yaml)])),
        ..ConfigMap::default()
    })
}

/// Merges the overrides, in order, over the pod the operator built.
fn with_overrides<'a>(
    mut pod: PodTemplateSpec,
    all: impl IntoIterator<Item = &'a PodTemplateSpec>,
) -> PodTemplateSpec {
    for over in all {
        overrides::merge(&mut pod, over.clone());
    }
    pod
}

pub fn deployment(pool: &ValidatedPool, config_digest: &str) -> Deployment {
    let template = with_overrides(pods::node_pod(pool, config_digest), &pool.node.overrides);
    stamped(Deployment {
        metadata: metadata(pool, names::node(&pool.name), "node"),
        spec: Some(DeploymentSpec {
            // Unset: whoever scales the Deployment (kubectl scale, an HPA) owns the count.
            replicas: pool.node.replicas,
            selector: LabelSelector {
                match_labels: Some(names::node_selector_labels(&pool.name)),
                ..LabelSelector::default()
            },
            template,
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    })
}

pub fn service(pool: &ValidatedPool) -> Service {
    let config = &pool.config;
    let port = |name: &str, number: u16| ServicePort {
        name: Some(name.into()),
        port: number.into(),
        target_port: Some(IntOrString::String(name.into())),
        protocol: Some("TCP".into()),
        ..ServicePort::default()
    };
    stamped(Service {
        metadata: metadata(pool, names::node(&pool.name), "node"),
        spec: Some(ServiceSpec {
            type_: Some(pool.node.service_type.clone()),
            external_traffic_policy: pool.node.external_traffic_policy.clone(),
            selector: Some(names::node_selector_labels(&pool.name)),
            ports: Some(vec![
                port("http", config.node.http_address.port()),
                port("websocket", config.node.websocket_address.port()),
                port("metrics", pool.metrics_port()),
            ]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

pub fn cron_job(pool: &ValidatedPool, job: &JobSettings) -> CronJob {
    let template = with_overrides(pods::job_pod(pool, job), &job.overrides);
    let labels = names::labels(&pool.name, job.job.name());
    stamped(CronJob {
        metadata: metadata(pool, names::cron_job(&pool.name, job.job), job.job.name()),
        spec: Some(CronJobSpec {
            schedule: job.schedule.clone(),
            suspend: Some(job.suspend),
            concurrency_policy: Some("Forbid".into()),
            starting_deadline_seconds: Some(STARTING_DEADLINE_SECONDS),
            successful_jobs_history_limit: Some(job.successful_jobs_history_limit),
            failed_jobs_history_limit: Some(job.failed_jobs_history_limit),
            job_template: JobTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(K8sJobSpec {
                    // The jobs are idempotent and exactly-once; a failed run is retried by the
                    // next schedule rather than by piling up pods.
                    backoff_limit: Some(0),
                    active_deadline_seconds: Some(job.active_deadline_seconds),
                    template,
                    ..K8sJobSpec::default()
                }),
            },
            ..CronJobSpec::default()
        }),
        ..CronJob::default()
    })
}
