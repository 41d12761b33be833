//! The jobs minerpool runs (SPEC §5): one vocabulary for the `minerpool-job` subcommands, the
//! `jobRuns` records, the API's `job` parameter and the operator's CronJobs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A job of minerpool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Job {
    Rewards,
    Validators,
    Payouts,
    Decay,
    /// On demand only: checks the books.
    Audit,
}

impl Job {
    pub const ALL: [Job; 5] = [
        Job::Rewards,
        Job::Validators,
        Job::Payouts,
        Job::Decay,
        Job::Audit,
    ];

    /// The jobs that run on a schedule (a CronJob each; the standalone node's timers).
    pub const SCHEDULED: [Job; 4] = [Job::Rewards, Job::Validators, Job::Payouts, Job::Decay];

    /// The `minerpool-job` subcommand, the `job` of a `jobRuns` record, the key under a
    /// MinerPool's `spec.jobs`.
    pub fn name(self) -> &'static str {
        match self {
            Job::Rewards => "rewards",
            Job::Validators => "validators",
            Job::Payouts => "payouts",
            Job::Decay => "decay",
            Job::Audit => "audit",
        }
    }

    /// Whether the job runs on a schedule, rather than only when asked.
    pub fn is_scheduled(self) -> bool {
        Job::SCHEDULED.contains(&self)
    }
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Job {
    type Err = String;
    fn from_str(s: &str) -> Result<Job, String> {
        Job::ALL
            .into_iter()
            .find(|job| job.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown job {s:?} (one of {})",
                    Job::ALL.map(Job::name).join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_parses_back_and_serialises_as_itself() {
        for job in Job::ALL {
            assert_eq!(job.name().parse::<Job>(), Ok(job));
            assert_eq!(
                serde_json::to_value(job).unwrap(),
                serde_json::json!(job.name())
            );
            assert_eq!(
                serde_json::from_value::<Job>(serde_json::json!(job.name())).unwrap(),
                job
            );
        }
        assert_eq!(
            "payout".parse::<Job>(),
            Err(
                "unknown job \"payout\" (one of rewards, validators, payouts, decay, audit)".into()
            )
        );
        assert!(serde_json::from_value::<Job>(serde_json::json!("Rewards")).is_err());
    }

    #[test]
    fn every_job_but_the_audit_is_scheduled() {
        let scheduled: Vec<Job> = Job::ALL.into_iter().filter(|j| j.is_scheduled()).collect();
        assert_eq!(scheduled, Job::SCHEDULED);
        assert!(!Job::Audit.is_scheduled());
    }
}
