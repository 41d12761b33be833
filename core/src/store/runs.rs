//! Job locks and job-run records: two runs of one job never overlap, every run leaves a record,
//! and a run that lost its lock can move no money.
//!
//! A lock is a lease by the database server's clock (its `hello.localTime`), so no job process's
//! clock decides when it expires. Each acquisition increases the lock's `generation`; that number is the run's
//! [`Fence`], and every store method that moves money checks it in the same transaction
//! ([`Store::check_fence`]). A run whose lock expired and was taken by another run is refused there,
//! whatever its own clock or its renewal task believed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bson::{DateTime, Document, doc, oid::ObjectId};
use mongodb::ClientSession;
use mongodb::options::ReturnDocument;

use mongodb::Collection;
use serde::{Deserialize, Serialize};

use crate::store::db::{Result, Store, StoreError, is_duplicate_key};
use crate::store::names;
use crate::store::paging::{Before, NewestFirst, PublicPage};

/// How a job run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    Running,
    Succeeded,
    Failed,
    /// The run could not do its work for a reason it names (`reason`): the fee not covered while
    /// payouts are due, a wallet that cannot cover them, a start height above the chain's tip.
    /// Not a failure (it will pass once the reason is gone), not a success either.
    Blocked,
}

/// `jobRuns`: one run of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRun {
    #[serde(rename = "_id")]
    pub id: String,
    pub job: String,
    pub started_at: DateTime,
    #[serde(default)]
    pub ended_at: Option<DateTime>,
    pub outcome: JobOutcome,
    #[serde(default)]
    pub summary: Document,
    #[serde(default)]
    pub error: Option<String>,
    /// Why a blocked run could not do its work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Seconds the run waited out the chain's rate limits (HTTP 429), whatever their number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited_seconds: Option<f64>,
}

/// `jobLocks`: who runs a job now, until when (by the server's clock), and the generation that
/// fences every money move of the holder. The document is never deleted, so generations only grow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobLock {
    #[serde(rename = "_id")]
    pub job: String,
    pub holder: String,
    pub expires_at: DateTime,
    #[serde(default)]
    pub generation: i64,
}

impl NewestFirst for JobRun {
    type Key = String;
    fn cursor(&self) -> Option<Before<String>> {
        Before::row(Some(self.started_at), self.id.clone())
    }
}

impl Store {
    pub fn job_runs(&self) -> Collection<JobRun> {
        self.collection(names::JOB_RUNS)
    }

    pub fn job_locks(&self) -> Collection<JobLock> {
        self.collection(names::JOB_LOCKS)
    }

    /// Job runs, newest first, at most `limit`, of one job or all, after `before`.
    pub async fn recent_job_runs(
        &self,
        job: Option<&str>,
        limit: i64,
        before: Option<&Before<String>>,
    ) -> Result<Vec<JobRun>> {
        self.find_page(&PublicPage::job_runs(job, limit, before))
            .await
    }
}

impl PublicPage {
    /// Job runs, newest first, of one job or all, after `before` (keyed by `_id`).
    pub fn job_runs(job: Option<&str>, limit: i64, before: Option<&Before<String>>) -> PublicPage {
        let filter = job.map_or_else(Document::new, |job| doc! { "job": job });
        PublicPage::newest_first(
            names::JOB_RUNS,
            filter,
            ("started_at", "_id"),
            limit,
            before,
            None,
        )
    }
}

/// The proof of holding a job's lock: its generation. Cheap to clone; clones share the `lost`
/// flag that the renewal task raises.
#[derive(Debug, Clone)]
pub struct Fence {
    pub job: String,
    pub holder: String,
    pub generation: i64,
    lost: Arc<AtomicBool>,
    stopping: Arc<AtomicBool>,
}

impl Fence {
    /// Marks the lock as lost (renewal failed or found another holder): the run must stop before
    /// its next network call.
    pub fn mark_lost(&self) {
        self.lost.store(true, Ordering::SeqCst);
    }

    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// Marks the run as told to stop (its process got SIGTERM): the step under way finishes,
    /// and the next one is not begun.
    pub fn request_stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    pub fn stop_requested(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// `Err(Fenced)` once the lock is known lost, `Err(Stopped)` once the run was told to stop;
    /// call before anything that leaves the process. Every money-moving transaction calls it
    /// first ([`Store::check_fence`]), so a stop either finds a transaction already past that
    /// point, which then commits, or prevents it whole.
    pub fn ensure_held(&self) -> Result<()> {
        if self.is_lost() {
            Err(self.refused("the lock was lost"))
        } else if self.stop_requested() {
            Err(StoreError::Stopped(format!(
                "job {} was told to stop before its next step; nothing of that step was written, every earlier step of the run is committed",
                self.job
            )))
        } else {
            Ok(())
        }
    }

    fn refused(&self, why: &str) -> StoreError {
        StoreError::Fenced(format!(
            "job {} lock generation {} ({why}); this run moves nothing more",
            self.job, self.generation
        ))
    }
}

/// `ttl` after `now`.
fn later(now: DateTime, ttl: Duration) -> DateTime {
    let millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    DateTime::from_millis(now.timestamp_millis().saturating_add(millis))
}

impl Store {
    /// The database server's clock: the one clock every job process shares. Its offset from
    /// this process's clock is read once (`hello.localTime`, half the round trip added), so a
    /// lock costs no extra round trip after the first.
    pub async fn server_time(&self) -> Result<DateTime> {
        let offset = self
            .clock_offset
            .get_or_try_init(|| async {
                let sent = DateTime::now().timestamp_millis();
                let hello = self
                    .database()
                    .run_command(doc! { "hello": 1 })
                    .await
                    .map_err(StoreError::mongo("read the server's time"))?;
                let received = DateTime::now().timestamp_millis();
                let server = hello.get_datetime("localTime").map_err(|_| {
                    StoreError::Invalid("the server's hello has no localTime".into())
                })?;
                Ok::<i64, StoreError>(server.timestamp_millis() - (sent + received) / 2)
            })
            .await?;
        Ok(DateTime::from_millis(
            DateTime::now().timestamp_millis() + offset,
        ))
    }

    /// Takes the lock of `job` for `ttl`, or returns `None` if another holder has it unexpired.
    /// A lock left by a crashed run is taken over once it expires, by the server's clock.
    pub async fn try_lock_job(&self, job: &str, ttl: Duration) -> Result<Option<Fence>> {
        let holder = format!("{}:{}", hostname(), ObjectId::new().to_hex());
        // The document is never deleted, so generations only grow. An unexpired lock makes the
        // upsert collide with the existing `_id` (E11000): another run holds it.
        let now = self.server_time().await?;
        let taken = match self
            .job_locks()
            .find_one_and_update(
                doc! { "_id": job, "expires_at": { "$lte": now } },
                doc! {
                    "$set": { "holder": &holder, "expires_at": later(now, ttl) },
                    "$inc": { "generation": 1_i64 },
                },
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await
        {
            Ok(taken) => taken,
            Err(e) if is_duplicate_key(&e) => None,
            Err(e) => return Err(StoreError::mongo(format!("take the lock of job {job}"))(e)),
        };
        Ok(match taken {
            Some(lock) if lock.holder == holder => Some(Fence {
                job: job.to_owned(),
                holder,
                generation: lock.generation,
                lost: Arc::default(),
                stopping: Arc::default(),
            }),
            _ => None,
        })
    }

    /// Extends a held lock by `ttl` from the server's now; `false` if it was lost (expired and
    /// taken by another run).
    pub async fn renew_job_lock(&self, fence: &Fence, ttl: Duration) -> Result<bool> {
        let now = self.server_time().await?;
        let renewed = self
            .job_locks()
            .update_one(
                doc! { "_id": &fence.job, "holder": &fence.holder, "generation": fence.generation },
                doc! { "$set": { "expires_at": later(now, ttl) } },
            )
            .await
            .map_err(StoreError::mongo(format!(
                "renew the lock of job {}",
                fence.job
            )))?;
        Ok(renewed.matched_count == 1)
    }

    /// Releases a held lock: it expires now (a lock that was lost is left to its new holder).
    /// The document stays, so the next generation is still larger.
    pub async fn unlock_job(&self, fence: &Fence) -> Result<()> {
        self.job_locks()
            .update_one(
                doc! { "_id": &fence.job, "holder": &fence.holder, "generation": fence.generation },
                doc! { "$set": { "expires_at": DateTime::from_millis(0) } },
            )
            .await
            .map_err(StoreError::mongo(format!(
                "release the lock of job {}",
                fence.job
            )))?;
        Ok(())
    }

    /// Checks, inside `session`'s transaction, that `fence` is still the lock's generation, by
    /// writing to the lock document: a concurrent take-over then conflicts with this transaction
    /// instead of slipping past it. Every money move calls this first.
    pub async fn check_fence(&self, session: &mut ClientSession, fence: &Fence) -> Result<()> {
        fence.ensure_held()?;
        let checked = self
            .job_locks()
            .update_one(
                doc! { "_id": &fence.job, "generation": fence.generation },
                doc! { "$set": { "fenced_at": DateTime::now() } },
            )
            .session(session)
            .await
            .map_err(StoreError::mongo(format!(
                "check the lock of job {}",
                fence.job
            )))?;
        if checked.matched_count == 1 {
            Ok(())
        } else {
            fence.mark_lost();
            Err(fence.refused("another run took the lock"))
        }
    }

    /// Records the start of a run; returns its id.
    pub async fn start_job_run(&self, job: &str) -> Result<String> {
        let id = ObjectId::new().to_hex();
        self.job_runs()
            .insert_one(JobRun {
                id: id.clone(),
                job: job.to_owned(),
                started_at: DateTime::now(),
                ended_at: None,
                outcome: JobOutcome::Running,
                summary: Document::new(),
                error: None,
                reason: None,
                rate_limited_seconds: None,
            })
            .await
            .map_err(StoreError::mongo("record the job run"))?;
        Ok(id)
    }

    /// Records how a run ended.
    pub async fn finish_job_run(&self, id: &str, end: RunEnd) -> Result<()> {
        let outcome =
            bson::to_bson(&end.outcome).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.job_runs()
            .update_one(
                doc! { "_id": id },
                doc! { "$set": {
                    "ended_at": DateTime::now(),
                    "outcome": outcome,
                    "summary": end.summary,
                    "error": end.error,
                    "reason": end.reason,
                    "rate_limited_seconds": end.rate_limited_seconds,
                } },
            )
            .await
            .map_err(StoreError::mongo("record the end of the job run"))?;
        Ok(())
    }
}

/// How a run ended, as [`Store::finish_job_run`] records it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    pub outcome: JobOutcome,
    pub summary: Document,
    /// What failed, for a failed run.
    pub error: Option<String>,
    /// Why a blocked run could not do its work.
    pub reason: Option<String>,
    pub rate_limited_seconds: f64,
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("pid{}", std::process::id()))
}

/// What `/metrics` shows of one job, from its newest runs.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobHealth {
    /// Start of the newest run, finished or not.
    pub last_start: Option<DateTime>,
    /// How long the newest finished run took.
    pub last_duration: Option<Duration>,
    /// The newest finished run failed.
    pub last_failed: bool,
    /// The newest finished run was blocked (it names why in `jobRuns.reason`).
    pub last_blocked: bool,
    /// Seconds the newest finished run waited out the chain's rate limits.
    pub last_rate_limited_seconds: Option<f64>,
    /// Finished runs that failed since the newest success (at most the runs read); blocked runs
    /// are not failures and are passed over.
    pub consecutive_failures: u64,
    /// End of the newest successful run among those read.
    pub last_success: Option<DateTime>,
}

/// How many of a job's newest runs [`Store::job_health`] reads.
pub const JOB_HEALTH_RUNS: i64 = 20;

/// The health of a job from its runs, newest first. A run still going counts for its start only.
pub fn job_health(newest_first: &[JobRun]) -> JobHealth {
    let mut health = JobHealth {
        last_start: newest_first.first().map(|run| run.started_at),
        ..JobHealth::default()
    };
    let mut finished = newest_first
        .iter()
        .filter(|run| run.outcome != JobOutcome::Running)
        .peekable();
    if let Some(newest) = finished.peek() {
        health.last_failed = newest.outcome == JobOutcome::Failed;
        health.last_blocked = newest.outcome == JobOutcome::Blocked;
        health.last_rate_limited_seconds = newest.rate_limited_seconds;
        health.last_duration = newest.ended_at.map(|ended| {
            Duration::from_millis(
                (ended.timestamp_millis() - newest.started_at.timestamp_millis()).max(0) as u64,
            )
        });
    }
    for run in finished {
        match run.outcome {
            JobOutcome::Succeeded => {
                health.last_success = run.ended_at.or(Some(run.started_at));
                break;
            }
            JobOutcome::Failed => health.consecutive_failures += 1,
            JobOutcome::Blocked | JobOutcome::Running => {}
        }
    }
    health
}

impl Store {
    /// The health of `job` from its newest [`JOB_HEALTH_RUNS`] runs (one indexed read).
    pub async fn job_health(&self, job: &str) -> Result<JobHealth> {
        let runs: Vec<JobRun> = self
            .recent_job_runs(Some(job), JOB_HEALTH_RUNS, None)
            .await?;
        Ok(job_health(&runs))
    }
}

#[cfg(test)]
mod health_tests {
    use super::*;

    fn run(outcome: JobOutcome, started: i64, ended: Option<i64>) -> JobRun {
        JobRun {
            id: format!("r{started}"),
            job: "rewards".into(),
            started_at: DateTime::from_millis(started),
            ended_at: ended.map(DateTime::from_millis),
            outcome,
            summary: Document::new(),
            error: None,
            reason: None,
            rate_limited_seconds: None,
        }
    }

    #[test]
    fn failures_since_the_newest_success_are_counted_and_a_running_run_only_starts() {
        use JobOutcome::*;
        let runs = [
            run(Running, 9_000, None),
            run(Failed, 8_000, Some(8_500)),
            run(Failed, 7_000, Some(7_200)),
            run(Succeeded, 6_000, Some(6_100)),
            run(Failed, 5_000, Some(5_100)),
        ];
        let health = job_health(&runs);
        assert_eq!(health.last_start, Some(DateTime::from_millis(9_000)));
        assert!(health.last_failed);
        assert_eq!(health.last_duration, Some(Duration::from_millis(500)));
        assert_eq!(health.consecutive_failures, 2);
        assert_eq!(health.last_success, Some(DateTime::from_millis(6_100)));
        assert_eq!(job_health(&[]), JobHealth::default());
        let fine = job_health(&[run(Succeeded, 1_000, Some(3_000))]);
        assert!(!fine.last_failed);
        assert_eq!(fine.consecutive_failures, 0);
    }

    #[test]
    fn a_blocked_run_is_neither_a_failure_nor_a_success() {
        use JobOutcome::*;
        let mut blocked = run(Blocked, 9_000, Some(9_400));
        blocked.rate_limited_seconds = Some(31.5);
        let runs = [
            blocked,
            run(Failed, 8_000, Some(8_500)),
            run(Blocked, 7_000, Some(7_200)),
            run(Succeeded, 6_000, Some(6_100)),
        ];
        let health = job_health(&runs);
        assert!(health.last_blocked);
        assert!(!health.last_failed);
        assert_eq!(health.last_rate_limited_seconds, Some(31.5));
        assert_eq!(health.consecutive_failures, 1);
        assert_eq!(health.last_success, Some(DateTime::from_millis(6_100)));
    }
}
