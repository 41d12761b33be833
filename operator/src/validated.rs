//! A MinerPool once validated: everything the build reads, parsed, checked and with every
//! default resolved. The build takes this alone, never the raw spec, so a spec field reaches the
//! children only through validation.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use minerpool_core::config::Config;
use minerpool_core::job::Job;

use crate::crd::{Images, SecretKeyRef};
use crate::defaults::DEFAULT_METRICS_PORT;

/// A MinerPool that passed validation, with its metadata for the children's owner reference.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedPool {
    /// The MinerPool's name, which its children's names start with.
    pub name: String,
    pub namespace: Option<String>,
    /// The MinerPool as the controller of its children (`None` for one not read from the API
    /// server).
    pub owner: Option<OwnerReference>,
    /// The config file the node and the jobs read.
    pub config: Config,
    pub images: Images,
    pub secrets: SecretRefs,
    pub node: NodeSettings,
    /// Every scheduled job, in [`Job::SCHEDULED`] order, enabled or not.
    pub jobs: Vec<JobSettings>,
    /// The NetworkPolicies, when wanted.
    pub network_policy: Option<NetworkPolicySettings>,
}

impl ValidatedPool {
    /// The node's metrics port: validation always sets one for a cluster.
    pub fn metrics_port(&self) -> u16 {
        self.config
            .node
            .metrics_address
            .map_or(DEFAULT_METRICS_PORT, |a| a.port())
    }

    pub fn job(&self, job: Job) -> Option<&JobSettings> {
        self.jobs.iter().find(|j| j.job == job)
    }
}

/// The Secret keys the pods read their secrets from; each of them exists.
#[derive(Debug, Clone, PartialEq)]
pub struct SecretRefs {
    pub mongodb_uri: SecretKeyRef,
    pub admin_token: Option<SecretKeyRef>,
    pub admin_rsa_key: Option<SecretKeyRef>,
    /// Read by the payouts job.
    pub wallet_key: Option<SecretKeyRef>,
}

/// The node's Kubernetes side: its Deployment, Service, budget and monitor.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSettings {
    /// `None`: whoever scales the Deployment owns the count.
    pub replicas: Option<i32>,
    pub resources: Option<ResourceRequirements>,
    pub service_type: String,
    /// Set for the LoadBalancer and NodePort types only.
    pub external_traffic_policy: Option<String>,
    /// The PodDisruptionBudget's maxUnavailable, when a budget is wanted.
    pub max_unavailable: Option<IntOrString>,
    pub service_monitor: Option<ServiceMonitorSettings>,
    /// `spec.node.podOverrides`, read as a pod template.
    pub overrides: Option<PodTemplateSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceMonitorSettings {
    pub interval: Option<String>,
    /// Extra labels, none of them the operator's own.
    pub labels: BTreeMap<String, String>,
}

/// One scheduled job's CronJob.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSettings {
    pub job: Job,
    /// `false`: the operator deletes its CronJob.
    pub enabled: bool,
    pub schedule: String,
    pub suspend: bool,
    pub successful_jobs_history_limit: i32,
    pub failed_jobs_history_limit: i32,
    pub active_deadline_seconds: i64,
    pub resources: ResourceRequirements,
    /// `spec.jobs.podOverrides`, then the job's own, read as pod templates, merged in this order.
    pub overrides: Vec<PodTemplateSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkPolicySettings {
    /// `None`: the MinerPool's own namespace.
    pub metrics_from_namespaces: Option<Vec<String>>,
}
