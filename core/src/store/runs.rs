//! Job locks and job-run records: two runs of one job never overlap, and every run leaves a record.

use std::time::Duration;

use bson::{DateTime, Document, doc, oid::ObjectId};
use mongodb::options::ReturnDocument;

use super::documents::{JobLock, JobOutcome, JobRun};
use super::{Result, Store, StoreError};

/// Held while a job runs; released on drop of the run or when it expires.
#[derive(Debug, Clone)]
pub struct LockGuard {
    pub job: String,
    pub holder: String,
}

impl Store {
    /// Takes the lock of `job` for `ttl`, or returns `None` if another holder has it unexpired.
    /// A lock left by a crashed run is taken over once it expires.
    pub async fn try_lock_job(&self, job: &str, ttl: Duration) -> Result<Option<LockGuard>> {
        let holder = format!("{}:{}", hostname(), ObjectId::new().to_hex());
        let now = DateTime::now();
        let expires_at = DateTime::from_millis(now.timestamp_millis() + ttl.as_millis() as i64);
        let taken = self
            .job_locks()
            .find_one_and_update(
                doc! { "_id": job, "expires_at": { "$lte": now } },
                doc! { "$set": { "holder": &holder, "expires_at": expires_at } },
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await;
        match taken {
            Ok(Some(JobLock { holder: h, .. })) if h == holder => Ok(Some(LockGuard {
                job: job.to_owned(),
                holder,
            })),
            Ok(_) => Ok(None),
            // The upsert met the unexpired lock under the unique `_id`.
            Err(e) if super::is_duplicate_key(&e) => Ok(None),
            Err(e) => Err(StoreError::mongo(format!("take the lock of job {job}"))(e)),
        }
    }

    /// Extends a held lock; `false` if it was lost (expired and taken by another run).
    pub async fn renew_job_lock(&self, lock: &LockGuard, ttl: Duration) -> Result<bool> {
        let expires_at =
            DateTime::from_millis(DateTime::now().timestamp_millis() + ttl.as_millis() as i64);
        let renewed = self
            .job_locks()
            .update_one(
                doc! { "_id": &lock.job, "holder": &lock.holder },
                doc! { "$set": { "expires_at": expires_at } },
            )
            .await
            .map_err(StoreError::mongo(format!(
                "renew the lock of job {}",
                lock.job
            )))?;
        Ok(renewed.matched_count == 1)
    }

    /// Releases a held lock (a lock that was lost is left to its new holder).
    pub async fn unlock_job(&self, lock: &LockGuard) -> Result<()> {
        self.job_locks()
            .delete_one(doc! { "_id": &lock.job, "holder": &lock.holder })
            .await
            .map_err(StoreError::mongo(format!(
                "release the lock of job {}",
                lock.job
            )))?;
        Ok(())
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
            })
            .await
            .map_err(StoreError::mongo("record the job run"))?;
        Ok(id)
    }

    /// Records how a run ended.
    pub async fn finish_job_run(
        &self,
        id: &str,
        outcome: JobOutcome,
        summary: Document,
        error: Option<String>,
    ) -> Result<()> {
        let outcome = bson::to_bson(&outcome).map_err(|e| StoreError::Invalid(e.to_string()))?;
        self.job_runs()
            .update_one(
                doc! { "_id": id },
                doc! { "$set": {
                    "ended_at": DateTime::now(),
                    "outcome": outcome,
                    "summary": summary,
                    "error": error,
                } },
            )
            .await
            .map_err(StoreError::mongo("record the end of the job run"))?;
        Ok(())
    }
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("pid{}", std::process::id()))
}
