//! The MinerPool status as a pure function of what the reconciler saw. Transition times carry
//! over while a condition keeps its status, so the same observation gives the same status and a
//! steady state writes nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Pod};
use kube::ResourceExt;
use minerpool_core::job::Job;

use crate::crd::{Condition, JobStatus, MinerPool, MinerPoolStatus, NodeStatus};
use crate::names::{self, JOB_CONTAINER, node_selector};
use crate::problem::{Problem, describe};
use crate::served_api::ObservedCronJob;

pub const READY: &str = "Ready";
pub const NODE_AVAILABLE: &str = "NodeAvailable";
pub const JOBS_SCHEDULED: &str = "JobsScheduled";
pub const PAYOUTS_HELD: &str = "PayoutsHeld";

/// The exit code of a blocked job run (`minerpool_jobs::BLOCKED_EXIT_CODE`; the operator does
/// not link the jobs crate).
pub const BLOCKED_EXIT_CODE: i32 = 3;

/// The longest condition message or Event note written, in characters: a blocked run's reason
/// can list many transactions.
pub const MESSAGE_MAX: usize = 1000;

/// What the reconciler found (after applying, when the spec was valid).
#[derive(Debug)]
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
    /// The pods of the payouts job's runs (none are read while the job is disabled), or why
    /// they could not be read.
    pub payouts_pods: Result<&'a [Pod], &'a str>,
}

/// The status to write. `now` is RFC 3339.
pub fn compute(mp: &MinerPool, seen: &Observation<'_>, now: &str) -> MinerPoolStatus {
    let pool = &mp.name_any();
    let previous = mp.status.clone().unwrap_or_default();
    let node = node_condition(seen.deployment);
    let jobs = jobs_condition(mp, seen.cron_jobs);
    let payouts = payouts_condition(mp, seen.payouts_pods);
    let payouts_state = match payouts.0 {
        "True" => "held",
        "False" => "ok",
        _ => "unknown",
    };
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
        (PAYOUTS_HELD, owned(payouts)),
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
        jobs: Job::SCHEDULED
            .into_iter()
            .filter_map(|job| {
                let name = names::cron_job(pool, job);
                let live = seen.cron_jobs.iter().find(|c| c.name == name)?;
                Some((
                    job.name().to_string(),
                    JobStatus {
                        last_schedule_time: live.last_schedule_time.clone(),
                        last_successful_time: live.last_successful_time.clone(),
                    },
                ))
            })
            .collect::<BTreeMap<_, _>>(),
        payouts: Some(payouts_state.to_owned()),
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
    for job in Job::SCHEDULED
        .into_iter()
        .filter(|job| mp.spec.jobs.enabled(*job))
    {
        let name = names::cron_job(pool, job);
        match live.iter().find(|c| c.name == name) {
            None => missing.push(job.name()),
            Some(c) if c.suspended => suspended.push(job.name()),
            Some(_) => scheduled.push(job.name()),
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

/// Whether payouts are held: the newest finished run of the payouts job (the pod whose job
/// container ended last) exited [`BLOCKED_EXIT_CODE`]. The message is the reason the run gave,
/// read from its container's termination message (the log's tail, by `FallbackToLogsOnError`).
fn payouts_condition(mp: &MinerPool, pods: Result<&[Pod], &str>) -> Verdict {
    let pods = match pods {
        Ok(pods) => pods,
        Err(error) => return ("Unknown", "PodsUnreadable", truncate(error, MESSAGE_MAX)),
    };
    if !mp.spec.jobs.enabled(Job::Payouts) {
        return ("False", "NotHeld", "the payouts job is disabled".into());
    }
    let newest = pods
        .iter()
        .filter_map(|pod| Some((pod, job_termination(pod)?)))
        .max_by_key(|&(pod, ended)| {
            (
                ended.finished_at.as_ref(),
                pod.metadata.creation_timestamp.as_ref(),
            )
        });
    match newest {
        Some((_, ended)) if ended.exit_code == BLOCKED_EXIT_CODE => {
            let reason = ended
                .message
                .as_deref()
                .and_then(blocked_reason)
                .unwrap_or_else(|| {
                    format!(
                        "the newest payouts run was blocked (exit code {BLOCKED_EXIT_CODE}); its log says why"
                    )
                });
            ("True", "Blocked", truncate(&reason, MESSAGE_MAX))
        }
        Some(_) => (
            "False",
            "NotHeld",
            "the newest finished payouts run was not blocked".into(),
        ),
        None => ("False", "NotHeld", "no payouts run has finished".into()),
    }
}

/// How the job container of a job's pod ended, once it has.
pub(crate) fn job_termination(pod: &Pod) -> Option<&ContainerStateTerminated> {
    pod.status
        .as_ref()?
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == JOB_CONTAINER)?
        .state
        .as_ref()?
        .terminated
        .as_ref()
}

/// The reason a blocked run gave, from the tail of its log: the `reason` of its JSON summary
/// line (`"outcome":"blocked"`; the JSON log lines around it are not summaries), else the text
/// after `blocked: ` on its stderr line (`minerpool-job payouts: blocked: …`), which is still
/// whole when Kubernetes cut the summary short (a termination message keeps the log's last
/// 2048 bytes).
pub fn blocked_reason(log_tail: &str) -> Option<String> {
    let summary = log_tail.lines().rev().find_map(|line| {
        let line: serde_json::Value = serde_json::from_str(line).ok()?;
        if line.get("outcome")? != "blocked" {
            return None;
        }
        line.get("reason")?.as_str().map(str::to_owned)
    });
    summary
        .or_else(|| {
            log_tail.lines().rev().find_map(|line| {
                let (_, reason) = line.split_once(": blocked: ")?;
                Some(reason.trim().to_owned())
            })
        })
        .filter(|reason| !reason.is_empty())
}

/// At most `max` characters of `text`, with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
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
