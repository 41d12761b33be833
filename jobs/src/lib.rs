//! The periodic jobs of minerpool (SPEC §5). Each is one pass over the database and the chain;
//! [`run_once`] adds what every job shares: a lock so two runs never overlap, and a `jobRuns`
//! record. The `minerpool-job` binary and the node's standalone mode both call [`run_once`].

pub mod audit;
pub mod decay;
pub mod payouts;
pub mod rewards;
pub mod validators;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use minerpool_core::chain::{ChainClient, ChainError};
use minerpool_core::config::Config;
use minerpool_core::rewards::RewardsError;
use minerpool_core::store::documents::JobOutcome;
use minerpool_core::store::runs::Fence;
use minerpool_core::store::{Store, StoreError};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// A job minerpool runs on a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

    pub fn name(self) -> &'static str {
        match self {
            Job::Rewards => "rewards",
            Job::Validators => "validators",
            Job::Payouts => "payouts",
            Job::Audit => "audit",
            Job::Decay => "decay",
        }
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
            .ok_or_else(|| format!("unknown job {s:?}"))
    }
}

/// Why a job pass failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error(transparent)]
    Rewards(#[from] RewardsError),
    #[error("{0}")]
    Invalid(String),
}

impl JobError {
    /// Whether the run ended because it was told to stop, before a step it had not begun.
    pub fn is_stopped(&self) -> bool {
        matches!(self, JobError::Store(StoreError::Stopped(_)))
    }
}

/// What a job needs: configuration, the database and the chain.
#[derive(Clone)]
pub struct Context {
    pub config: Config,
    pub store: Store,
    pub chain: ChainClient,
    /// How long a run's lock lasts without renewal; a crashed run's lock expires after it.
    pub lock_ttl: Duration,
    /// The iNode wallet's private key (hex), needed by the `upow` payout sender.
    pub wallet_key: Option<String>,
    /// Raised when the process is told to stop (SIGTERM, Ctrl-C): a run under way finishes the
    /// step it is in and begins no other (see [`Fence::request_stop`]).
    pub stop: CancellationToken,
}

/// Default lifetime of a job lock; a running job renews it every third of it.
pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(60);

/// How a run ended, as printed on the last stdout line and stored in `jobRuns`.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub job: Job,
    /// `None` when the run did not take the lock.
    pub run_id: Option<String>,
    pub outcome: RunOutcome,
    /// Job-specific figures.
    pub details: Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Succeeded,
    /// Another run of the same job holds the lock: nothing was done, and that is fine.
    AlreadyRunning,
}

impl Summary {
    pub fn to_json(&self) -> Value {
        let outcome = match self.outcome {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::AlreadyRunning => "already-running",
        };
        json!({
            "job": self.job.name(),
            "runId": self.run_id,
            "outcome": outcome,
            "details": self.details,
        })
    }
}

/// Runs one pass of `job` under its lock, recording the run. A run that finds the lock held
/// returns `AlreadyRunning` without doing anything.
pub async fn run_once(job: Job, context: &Context) -> Result<Summary, JobError> {
    run_with(job, context, &payouts::PayoutsRequest::default()).await
}

/// [`run_once`], with what a payouts run was asked to do by hand.
pub async fn run_with(
    job: Job,
    context: &Context,
    request: &payouts::PayoutsRequest,
) -> Result<Summary, JobError> {
    let store = &context.store;
    if context.stop.is_cancelled() {
        return Err(StoreError::Stopped(format!(
            "job {job} was told to stop before it began; nothing was written"
        ))
        .into());
    }
    let Some(fence) = store.try_lock_job(job.name(), context.lock_ttl).await? else {
        return Ok(Summary {
            job,
            run_id: None,
            outcome: RunOutcome::AlreadyRunning,
            details: json!({ "reason": format!("another {job} run holds the lock") }),
        });
    };
    let run_id = store.start_job_run(job.name()).await?;
    let (stop_renewing, stopped) = tokio::sync::oneshot::channel();
    let keep_alive = tokio::spawn(keep_lock(
        store.clone(),
        fence.clone(),
        context.lock_ttl,
        stopped,
        context.stop.clone(),
    ));
    let result = match job {
        Job::Rewards => rewards::run(context, &fence).await,
        Job::Validators => validators::run(context).await,
        Job::Payouts => payouts::run(context, &fence, request).await,
        Job::Audit => audit::run(context).await,
        Job::Decay => decay::run(context).await,
    };
    // Stopped and awaited, not aborted: a renewal still in flight could otherwise land after the
    // release below and hold the lock against the next run.
    let _ = stop_renewing.send(());
    let _ = keep_alive.await;
    let (outcome, details, error) = match &result {
        Ok(details) => (JobOutcome::Succeeded, details.clone(), None),
        Err(e) => (JobOutcome::Failed, Value::Null, Some(e.to_string())),
    };
    let summary_doc = bson::to_document(&json!({ "details": details }))
        .map_err(|e| JobError::Invalid(format!("summary is not storable: {e}")))?;
    // The record and the lock are best effort once the pass is decided: failing to write them
    // must not turn a committed pass into a reported failure.
    if let Err(e) = store
        .finish_job_run(&run_id, outcome, summary_doc, error)
        .await
    {
        tracing::warn!(error = %e, "recording the end of the run failed");
    }
    if let Err(e) = store.unlock_job(&fence).await {
        tracing::warn!(error = %e, "releasing the job lock failed; it expires by itself");
    }
    // The totals /api/v1/stats shows, after every run that may have moved money (even a failed
    // one may have committed part of its work): computed here, so no public read sums.
    if matches!(job, Job::Rewards | Job::Payouts)
        && let Err(e) = store.refresh_totals().await
    {
        tracing::warn!(error = %e, "refreshing the totals failed; the next run does it");
    }
    result.map(|details| Summary {
        job,
        run_id: Some(run_id),
        outcome: RunOutcome::Succeeded,
        details,
    })
}

/// Renews the lock every third of its lifetime. When renewal finds another holder, or keeps
/// failing for half the lifetime (by this process's monotonic clock, so the lock may be about to
/// expire on the server), the fence is marked lost: the run then stops before its next network
/// call, and the store refuses its moves anyway once the generation has changed.
async fn keep_lock(
    store: Store,
    fence: Fence,
    ttl: Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
    told_to_stop: CancellationToken,
) {
    let mut last_renewed = tokio::time::Instant::now();
    let mut wait = ttl / 3;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut stop => return,
            // The lock stays renewed while the step under way finishes.
            _ = told_to_stop.cancelled(), if !fence.stop_requested() => {
                tracing::warn!(job = %fence.job, "told to stop: finishing the step under way, beginning no other");
                fence.request_stop();
                continue;
            }
        }
        match store.renew_job_lock(&fence, ttl).await {
            Ok(true) => {
                last_renewed = tokio::time::Instant::now();
                wait = ttl / 3;
            }
            Ok(false) => {
                tracing::error!(job = %fence.job, generation = fence.generation, "job lock lost to another run");
                fence.mark_lost();
                return;
            }
            Err(e) if last_renewed.elapsed() >= ttl / 2 => {
                tracing::error!(job = %fence.job, error = %e, "job lock could not be renewed in time; stopping");
                fence.mark_lost();
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing the job lock failed; retrying");
                wait = ttl / 10;
            }
        }
    }
}
