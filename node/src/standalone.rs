//! Standalone mode (SPEC §4.4): the servers and the four jobs on their intervals in one process,
//! sharing the job code. A failed run is logged as an error, a blocked run (SPEC §5: it could
//! not do its work, and says why) as a warning; either is tried again at its next interval and
//! never stops the process.

use std::time::Duration;

use minerpool_core::config::ScheduleConfig;
use minerpool_jobs::{Context, Job, RunOutcome, run_once};
use tokio::task::JoinHandle;

/// Every job with its interval.
pub fn intervals(schedule: &ScheduleConfig) -> Vec<(Job, Duration)> {
    vec![
        (Job::Rewards, Duration::from_secs(schedule.rewards_seconds)),
        (Job::Payouts, Duration::from_secs(schedule.payouts_seconds)),
        (
            Job::Validators,
            Duration::from_secs(schedule.validators_seconds),
        ),
        (Job::Decay, Duration::from_secs(schedule.decay_seconds)),
    ]
}

/// Runs each job every interval (the first run at once) until the context's stop; a run under
/// way then finishes the step it is in and begins no other.
pub fn spawn_schedule(context: Context) -> Vec<JoinHandle<()>> {
    intervals(&context.config.schedule)
        .into_iter()
        .map(|(job, every)| {
            let context = context.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = ticks.tick() => {}
                        _ = context.stop.cancelled() => break,
                    }
                    match run_once(job, &context).await {
                        // Blocked is a state of the world (a fee not yet covered, a chain below
                        // the start height), not a fault: one warning a run, tried again at the
                        // next interval like any run.
                        Ok(summary) if matches!(summary.outcome, RunOutcome::Blocked(_)) => {
                            tracing::warn!(job = %job, summary = %summary.to_json(), "job run blocked; next try at the next interval")
                        }
                        Ok(summary) => tracing::info!(job = %job, summary = %summary.to_json(), "job run"),
                        Err(e) if e.is_stopped() => {
                            tracing::warn!(job = %job, error = %e, "job run stopped at shutdown");
                            break;
                        }
                        Err(e) => tracing::error!(job = %job, error = %e, "job run failed; next try at the next interval"),
                    }
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheduled_job_runs_on_its_own_interval() {
        let schedule = ScheduleConfig {
            rewards_seconds: 1,
            payouts_seconds: 2,
            validators_seconds: 3,
            decay_seconds: 4,
        };
        let mut planned: Vec<(&str, u64)> = intervals(&schedule)
            .into_iter()
            .map(|(job, every)| (job.name(), every.as_secs()))
            .collect();
        planned.sort();
        assert_eq!(
            planned,
            vec![
                ("decay", 4),
                ("payouts", 2),
                ("rewards", 1),
                ("validators", 3)
            ]
        );
    }
}
