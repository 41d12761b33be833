//! The MinerPool status as a pure function of what the reconciler saw. Transition times carry
//! over while a condition keeps its status, so the same observation gives the same status and a
//! steady state writes nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;

use crate::crd::{Condition, JobStatus, MinerPool, MinerPoolStatus, NodeStatus};
use crate::desired::{JobKind, names, node_selector};
use crate::served_api::ObservedCronJob;
use crate::validate::{Problem, describe};

pub const READY: &str = "Ready";
pub const NODE_AVAILABLE: &str = "NodeAvailable";
pub const JOBS_SCHEDULED: &str = "JobsScheduled";

/// What the reconciler found (after applying, when the spec was valid).
#[derive(Debug, Default)]
pub struct Observation<'a> {
    /// `Err`: the spec is invalid and nothing was applied.
    pub problems: &'a [Problem],
    pub deployment: Option<&'a Deployment>,
    pub cron_jobs: &'a [ObservedCronJob],
    /// A valid spec whose children could not be applied: the reason (`Conflict`, or the API
    /// server's reason such as `Invalid`) and a message naming the object.
    pub apply_failure: Option<(String, String)>,
    /// The node ServiceMonitor that exists by the operator's hand.
    pub service_monitor: Option<&'a str>,
    /// The node PodDisruptionBudget that exists by the operator's hand.
    pub disruption_budget: Option<&'a str>,
    /// The NetworkPolicies that exist by the operator's hand.
    pub network_policies: &'a [String],
}

/// The status to write. `now` is RFC 3339.
pub fn compute(mp: &MinerPool, seen: &Observation<'_>, now: &str) -> MinerPoolStatus {
    let pool = &mp.name_any();
    let previous = mp.status.clone().unwrap_or_default();
    let node = node_condition(seen.deployment);
    let jobs = jobs_condition(mp, seen.cron_jobs);
    let ready = if !seen.problems.is_empty() {
        ("False", "InvalidSpec".to_owned(), describe(seen.problems))
    } else if let Some((reason, message)) = &seen.apply_failure {
        ("False", reason.clone(), message.clone())
    } else if node.0 != "True" {
        ("False", "NodeUnavailable".to_owned(), node.2.clone())
    } else if jobs.0 != "True" {
        ("False", "JobsNotScheduled".to_owned(), jobs.2.clone())
    } else {
        (
            "True",
            "Ready".to_owned(),
            "the node is available and the jobs are scheduled".into(),
        )
    };
    let owned = |(status, reason, message): (&'static str, &str, String)| {
        (status, reason.to_owned(), message)
    };
    let conditions = [
        (READY, ready),
        (NODE_AVAILABLE, owned(node)),
        (JOBS_SCHEDULED, owned(jobs)),
    ]
    .into_iter()
    .map(|(type_, (status, reason, message))| {
        let last_transition_time = previous
            .conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .or_else(|| Some(now.to_string()));
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason,
            message,
            last_transition_time,
        }
    })
    .collect();
    let deployment_status = seen.deployment.and_then(|d| d.status.as_ref());
    MinerPoolStatus {
        observed_generation: mp.metadata.generation,
        conditions,
        node: NodeStatus {
            replicas: Some(deployment_status.and_then(|s| s.replicas).unwrap_or(0)),
            ready_replicas: Some(
                deployment_status
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0),
            ),
            selector: Some(node_selector(pool)),
        },
        jobs: JobKind::ALL
            .into_iter()
            .filter_map(|kind| {
                let name = names::cron_job(pool, kind);
                let live = seen.cron_jobs.iter().find(|c| c.name == name)?;
                Some((
                    kind.name().to_string(),
                    JobStatus {
                        last_schedule_time: live.last_schedule_time.clone(),
                        last_successful_time: live.last_successful_time.clone(),
                    },
                ))
            })
            .collect::<BTreeMap<_, _>>(),
        service_monitor: seen.service_monitor.map(str::to_owned),
        disruption_budget: seen.disruption_budget.map(str::to_owned),
        network_policies: seen.network_policies.to_vec(),
    }
}

type Verdict = (&'static str, &'static str, String);

fn node_condition(deployment: Option<&Deployment>) -> Verdict {
    let Some(deployment) = deployment else {
        return (
            "False",
            "NotCreated",
            "the node Deployment does not exist".into(),
        );
    };
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let status = deployment.status.clone().unwrap_or_default();
    let available = status.available_replicas.unwrap_or(0);
    if wanted == 0 {
        (
            "False",
            "ScaledToZero",
            "the node Deployment is scaled to 0 replicas".into(),
        )
    } else if available > 0 {
        (
            "True",
            "Available",
            format!("{available} of {wanted} node replicas available"),
        )
    } else {
        (
            "False",
            "NoReplicasAvailable",
            format!("0 of {wanted} node replicas available"),
        )
    }
}

fn jobs_condition(mp: &MinerPool, live: &[ObservedCronJob]) -> Verdict {
    let pool = &mp.name_any();
    let mut missing = Vec::new();
    let mut suspended = Vec::new();
    let mut scheduled = Vec::new();
    for kind in JobKind::ALL.into_iter().filter(|k| k.enabled(&mp.spec)) {
        let name = names::cron_job(pool, kind);
        match live.iter().find(|c| c.name == name) {
            None => missing.push(kind.name()),
            Some(c) if c.suspended => suspended.push(kind.name()),
            Some(_) => scheduled.push(kind.name()),
        }
    }
    if !missing.is_empty() {
        return (
            "False",
            "NotCreated",
            format!("no CronJob for {}", missing.join(", ")),
        );
    }
    let mut message = if scheduled.is_empty() {
        "no job is scheduled".to_string()
    } else {
        format!("{} scheduled", scheduled.join(", "))
    };
    if !suspended.is_empty() {
        message.push_str(&format!("; {} suspended", suspended.join(", ")));
    }
    ("True", "Scheduled", message)
}

/// A Ready transition worth an Event: `(warning, reason, message)`.
pub fn ready_transition(
    before: Option<&MinerPoolStatus>,
    after: &MinerPoolStatus,
) -> Option<(bool, String, String)> {
    let find = |s: &MinerPoolStatus| s.conditions.iter().find(|c| c.type_ == READY).cloned();
    let new = find(after)?;
    let old = before.and_then(find);
    if old.as_ref().map(|c| (&c.status, &c.reason)) == Some((&new.status, &new.reason)) {
        return None;
    }
    Some((new.status != "True", new.reason, new.message))
}
