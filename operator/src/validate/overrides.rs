//! The pod overrides, each read as a pod template and checked against the pod it is merged over
//! (the one [`crate::pods`] builds), which needs the rest of the MinerPool valid.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use minerpool_core::job::Job;

use crate::crd::{MinerPoolSpec, PodOverrides};
use crate::overrides;
use crate::pods;
use crate::problem::Problem;
use crate::validated::ValidatedPool;

/// Reads every override of the spec into `pool`; `Err` holds every problem of every override.
pub fn read(spec: &MinerPoolSpec, pool: &mut ValidatedPool) -> Result<(), Vec<Problem>> {
    let mut problems = Vec::new();
    let mut checked = |field: &str, over: &PodOverrides, built: &PodTemplateSpec| {
        overrides::check(field, &over.0, built)
            .map_err(|found| problems.extend(found))
            .ok()
    };
    let node = spec
        .node
        .pod_overrides
        .as_ref()
        .and_then(|over| checked("spec.node.podOverrides", over, &pods::node_pod(pool, "")));
    // The shared override is checked against one job's pod: every job's is built alike.
    let shared = spec.jobs.pod_overrides.as_ref().and_then(|over| {
        let rewards = pool
            .job(Job::Rewards)
            .expect("every scheduled job has settings");
        checked(
            "spec.jobs.podOverrides",
            over,
            &pods::job_pod(pool, rewards),
        )
    });
    let mut per_job = Vec::new();
    for job in &pool.jobs {
        let own = spec.jobs.get(job.job).pod_overrides.and_then(|over| {
            let field = format!("spec.jobs.{}.podOverrides", job.job.name());
            checked(&field, &over, &pods::job_pod(pool, job))
        });
        per_job.push(own);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    pool.node.overrides = node;
    for (job, own) in pool.jobs.iter_mut().zip(per_job) {
        job.overrides = shared.iter().cloned().chain(own).collect();
    }
    Ok(())
}
