//! The four scheduled jobs' CronJobs: schedules, history limits, deadlines and resources.

use minerpool_core::job::Job;

use crate::crd::MinerPoolSpec;
use crate::cron::check_schedule;
use crate::defaults::{
    DEFAULT_ACTIVE_DEADLINE_SECONDS, DEFAULT_HISTORY_LIMIT, default_job_resources, default_schedule,
};
use crate::problem::Problem;
use crate::validate::syntax::check_resources;
use crate::validated::JobSettings;

/// Each scheduled job's settings, enabled or not (its pod overrides are read later, against
/// the pod built).
pub fn check(spec: &MinerPoolSpec, problems: &mut Vec<Problem>) -> Vec<JobSettings> {
    Job::SCHEDULED
        .into_iter()
        .map(|job| check_job(spec, job, problems))
        .collect()
}

fn check_job(spec: &MinerPoolSpec, job: Job, problems: &mut Vec<Problem>) -> JobSettings {
    let settings = spec.jobs.get(job);
    let field = format!("spec.jobs.{}", job.name());
    if let Some(schedule) = &settings.schedule
        && let Err(why) = check_schedule(schedule)
    {
        problems.push(Problem::new(format!("{field}.schedule"), why));
    }
    for (key, value) in [
        (
            "successfulJobsHistoryLimit",
            settings.successful_jobs_history_limit,
        ),
        ("failedJobsHistoryLimit", settings.failed_jobs_history_limit),
    ] {
        if let Some(v) = value
            && v < 0
        {
            problems.push(Problem::new(
                format!("{field}.{key}"),
                format!("{v} is negative"),
            ));
        }
    }
    if let Some(v) = settings.active_deadline_seconds
        && v < 1
    {
        problems.push(Problem::new(
            format!("{field}.activeDeadlineSeconds"),
            format!("{v} must be at least 1"),
        ));
    }
    check_resources(
        &format!("{field}.resources"),
        settings.resources.as_ref(),
        problems,
    );
    JobSettings {
        job,
        enabled: spec.jobs.enabled(job),
        schedule: settings
            .schedule
            .or_else(|| default_schedule(job).map(Into::into))
            .unwrap_or_default(),
        suspend: settings.suspend.unwrap_or(false),
        successful_jobs_history_limit: settings
            .successful_jobs_history_limit
            .unwrap_or(DEFAULT_HISTORY_LIMIT),
        failed_jobs_history_limit: settings
            .failed_jobs_history_limit
            .unwrap_or(DEFAULT_HISTORY_LIMIT),
        active_deadline_seconds: settings
            .active_deadline_seconds
            .unwrap_or(DEFAULT_ACTIVE_DEADLINE_SECONDS),
        resources: settings.resources.unwrap_or_else(default_job_resources),
        overrides: Vec::new(),
    }
}
