//! The periodic jobs of minerpool (SPEC §5). Each is one pass over the database and the chain;
//! [`run_once`] adds what every job shares: a lock so two runs never overlap, and a `jobRuns`
//! record. The `minerpool-job` binary and the node's standalone mode both call [`run_once`].
//!
//! Each job is a module of its own; they use this root's shared items and none of each other:
//!
//! 1. `rewards`: credits the iNode's new income and shares it out.
//! 2. `validators`: the top validators by stake.
//! 3. `payouts`: pays pending balances on chain, exactly once.
//! 4. `decay`: pool scores lose a tenth, validator scores reset.
//! 5. `spends`: the wallet's spends, and the resolution of a foreign one.
//! 6. `audit`: the books recomputed and checked against the chain.

pub mod audit;
pub mod decay;
pub mod payouts;
pub mod rewards;
pub mod spends;
pub mod validators;

use std::time::Duration;

use minerpool_core::chain::{ChainClient, ChainError};
use minerpool_core::config::Config;
use minerpool_core::rewards::RewardsError;
use minerpool_core::store::runs::JobOutcome;
use minerpool_core::store::runs::{Fence, RunEnd};
use minerpool_core::store::{Store, StoreError};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

pub use minerpool_core::job::Job;

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

/// Exit code of `minerpool-job` for a blocked run (see [`RunOutcome::Blocked`]): neither 0 (it
/// did not do its work) nor 1 (nothing failed; it passes once the reason is gone).
pub const BLOCKED_EXIT_CODE: u8 = 3;

/// Waiting on the chain's rate limits for at least this long in one run is shown in its summary
/// (`rateLimitedSeconds`); shorter waits are routine and only logged. Every wait is stored in
/// `jobRuns.rate_limited_seconds` for the metrics.
pub const RATE_LIMITED_SHOWN_FROM: Duration = Duration::from_secs(5);

/// What one pass of a job did: its figures, and, when it could not do its work, why.
#[derive(Debug, Clone, PartialEq)]
pub struct Pass {
    pub details: Value,
    pub blocked: Option<String>,
}

impl Pass {
    pub fn done(details: Value) -> Pass {
        Pass {
            details,
            blocked: None,
        }
    }

    pub fn blocked(details: Value, reason: impl Into<String>) -> Pass {
        Pass {
            details,
            blocked: Some(reason.into()),
        }
    }
}

/// How a run ended, as printed on the last stdout line and stored in `jobRuns`.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub job: Job,
    /// `None` when the run did not take the lock.
    pub run_id: Option<String>,
    pub outcome: RunOutcome,
    /// Job-specific figures. Amounts are decimal coin strings with 8 decimals.
    pub details: Value,
    /// Time spent waiting out the chain's rate limits, when at least
    /// [`RATE_LIMITED_SHOWN_FROM`].
    pub rate_limited: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    Succeeded,
    /// Another run of the same job holds the lock: nothing was done, and that is fine.
    AlreadyRunning,
    /// The run could not do its work, for this reason; what it did do is in the details.
    Blocked(String),
}

impl RunOutcome {
    pub fn name(&self) -> &'static str {
        match self {
            RunOutcome::Succeeded => "succeeded",
            RunOutcome::AlreadyRunning => "already-running",
            RunOutcome::Blocked(_) => "blocked",
        }
    }
}

impl Summary {
    pub fn to_json(&self) -> Value {
        let mut line = json!({
            "job": self.job.name(),
            "runId": self.run_id,
            "outcome": self.outcome.name(),
        });
        if let RunOutcome::Blocked(reason) = &self.outcome {
            line["reason"] = json!(reason);
        }
        if let Some(waited) = self.rate_limited {
            line["rateLimitedSeconds"] = json!(seconds(waited));
        }
        line["details"] = self.details.clone();
        line
    }
}

/// Seconds with one decimal, as summaries show a duration.
fn seconds(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10.0).round() / 10.0
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
            rate_limited: None,
        });
    };
    // This run's own rate-limit meter, even when runs of other jobs share the client.
    let context = &Context {
        chain: context.chain.metered(),
        ..context.clone()
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
        Job::Validators => validators::run(context).await.map(Pass::done),
        Job::Payouts => payouts::run(context, &fence, request).await,
        Job::Audit => audit::run(context).await.map(Pass::done),
        Job::Decay => decay::run(context).await.map(Pass::done),
    };
    // Stopped and awaited, not aborted: a renewal still in flight could otherwise land after the
    // release below and hold the lock against the next run.
    let _ = stop_renewing.send(());
    let _ = keep_alive.await;
    let waited = context.chain.rate_limited();
    let shown_wait = (waited >= RATE_LIMITED_SHOWN_FROM).then_some(waited);
    let result = result.map(|pass| Summary {
        job,
        run_id: Some(run_id.clone()),
        outcome: match pass.blocked {
            Some(reason) => RunOutcome::Blocked(reason),
            None => RunOutcome::Succeeded,
        },
        details: pass.details,
        rate_limited: shown_wait,
    });
    // The record and the lock are best effort once the pass is decided: failing to write them
    // must not turn a committed pass into a reported failure.
    if let Err(e) = store
        .finish_job_run(&run_id, run_end(&result, waited))
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
    result
}

/// The `jobRuns` record of a run that ended with `result`, having waited `waited` on rate
/// limits. Its `summary` holds what the printed summary shows beside job and outcome.
fn run_end(result: &Result<Summary, JobError>, waited: Duration) -> RunEnd {
    let (outcome, reason) = match result.as_ref().map(|s| &s.outcome) {
        Ok(RunOutcome::Blocked(reason)) => (JobOutcome::Blocked, Some(reason.clone())),
        Ok(_) => (JobOutcome::Succeeded, None),
        Err(_) => (JobOutcome::Failed, None),
    };
    let mut stored = json!({ "details": result.as_ref().ok().map(|s| &s.details) });
    if let Some(shown) = result.as_ref().ok().and_then(|s| s.rate_limited) {
        stored["rateLimitedSeconds"] = json!(seconds(shown));
    }
    RunEnd {
        outcome,
        summary: bson::to_document(&stored).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "the summary is not storable; the run is recorded without it");
            bson::Document::new()
        }),
        error: result.as_ref().err().map(ToString::to_string),
        reason,
        rate_limited_seconds: seconds(waited),
    }
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
