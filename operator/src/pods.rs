//! The pods the operator builds for a validated MinerPool, before any pod override: the node's
//! and each job's. Validation checks the overrides against these same pods, so that what is
//! refused and what is built cannot drift apart.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    HTTPGetAction, PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile,
    SecretKeySelector, SecurityContext, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use minerpool_core::config::NodeConfig;
use minerpool_core::job::Job;

use crate::crd::SecretKeyRef;
use crate::env;
use crate::names::{self, CONFIG_FILE, CONFIG_HASH, JOB_CONTAINER, NODE_CONTAINER};
use crate::validated::{JobSettings, ValidatedPool};

const CONFIG_DIR: &str = "/etc/minerpool";
/// UID and GID of the distroless `nonroot` user the images run as.
const NON_ROOT_ID: i64 = 65532;
/// The node pods are spread over this topology by default.
pub const SPREAD_TOPOLOGY_KEY: &str = "kubernetes.io/hostname";
/// Time a node pod has, after its drain delay and its shutdown timeout, for the group writer's
/// last write and the exit.
pub const NODE_EXIT_SECONDS: i64 = 10;

/// A node pod's grace period: its drain delay, then its shutdown timeout for open connections,
/// then the last write and the exit; the kubelet kills it only after all three.
pub fn node_grace_period_seconds(node: &NodeConfig) -> i64 {
    i64::from(node.shutdown_delay_seconds)
        + i64::from(node.shutdown_timeout_seconds)
        + NODE_EXIT_SECONDS
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

fn config_volume(pool: &str) -> Volume {
    Volume {
        name: "config".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: names::config_map(pool),
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

/// The node pod as the operator builds it, before `spec.node.podOverrides`.
pub fn node_pod(pool: &ValidatedPool, config_digest: &str) -> PodTemplateSpec {
    let config = &pool.config;
    let secrets = &pool.secrets;
    let mut env = vec![secret_env(env::MONGODB_URI, &secrets.mongodb_uri)];
    if let Some(r) = &secrets.admin_token {
        env.push(secret_env(env::ADMIN_TOKEN, r));
    }
    if let Some(r) = &secrets.admin_rsa_key {
        env.push(secret_env(env::ADMIN_RSA_KEY, r));
    }
    let container = Container {
        name: NODE_CONTAINER.into(),
        image: Some(pool.images.node.clone()),
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
                container_port: pool.metrics_port().into(),
                protocol: Some("TCP".into()),
                ..ContainerPort::default()
            },
        ]),
        readiness_probe: Some(http_probe("/readyz")),
        liveness_probe: Some(http_probe("/healthz")),
        resources: pool.node.resources.clone(),
        security_context: Some(container_security_context()),
        volume_mounts: Some(vec![config_mount()]),
        ..Container::default()
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(names::labels(&pool.name, "node")),
            annotations: Some(BTreeMap::from([(CONFIG_HASH.into(), config_digest.into())])),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            security_context: Some(pod_security_context()),
            automount_service_account_token: Some(false),
            volumes: Some(vec![config_volume(&pool.name)]),
            termination_grace_period_seconds: Some(node_grace_period_seconds(&config.node)),
            // Replicas on different machines, where there are several; one machine still
            // schedules them all. A constraint on the same key in podOverrides replaces it.
            topology_spread_constraints: Some(vec![TopologySpreadConstraint {
                max_skew: 1,
                topology_key: SPREAD_TOPOLOGY_KEY.into(),
                when_unsatisfiable: "ScheduleAnyway".into(),
                label_selector: Some(LabelSelector {
                    match_labels: Some(names::node_selector_labels(&pool.name)),
                    ..LabelSelector::default()
                }),
                ..TopologySpreadConstraint::default()
            }]),
            ..PodSpec::default()
        }),
    }
}

/// A job's pod as the operator builds it, before the pod overrides.
pub fn job_pod(pool: &ValidatedPool, job: &JobSettings) -> PodTemplateSpec {
    let secrets = &pool.secrets;
    let mut env = vec![secret_env(env::MONGODB_URI, &secrets.mongodb_uri)];
    if job.job == Job::Payouts
        && let Some(r) = &secrets.wallet_key
    {
        env.push(secret_env(env::WALLET_KEY, r));
    }
    let container = Container {
        name: JOB_CONTAINER.into(),
        image: Some(pool.images.jobs.clone()),
        args: Some(config_args(job.job.name())),
        env: Some(env),
        resources: Some(job.resources.clone()),
        security_context: Some(container_security_context()),
        volume_mounts: Some(vec![config_mount()]),
        // A failed run's log tail (its JSON summary and its stderr line) becomes the
        // container's termination message, where the status reads why payouts are held.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Container::default()
    };
    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(names::labels(&pool.name, job.job.name())),
            ..ObjectMeta::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            restart_policy: Some("Never".into()),
            security_context: Some(pod_security_context()),
            // Neither the node nor a job talks to the Kubernetes API.
            automount_service_account_token: Some(false),
            volumes: Some(vec![config_volume(&pool.name)]),
            ..PodSpec::default()
        }),
    }
}
