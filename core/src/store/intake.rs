//! How the node checks and records TASKs and PINGs: the checks read the cached registry or the
//! database, and the writes go in groups or one transaction each, as `node.registryCache` and
//! `node.groupCommit` say. The one-at-a-time paths are the reference the grouped ones are
//! measured and tested against.

use std::sync::Arc;
use std::time::Duration;

use bson::DateTime;

use super::activity::{Parties, TaskRecorded, TaskRecorder, TaskWrites};
use super::groups::{Activity, ActivityGroups, GroupTotals, Recorded};
use super::registry::RegistryCache;
use super::{Result, Store, StoreError};
use crate::config::NodeConfig;

/// The switches of [`Intake`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntakeOptions {
    pub group_commit: bool,
    pub max_group_size: usize,
    pub registry_cache: bool,
    pub registry_reload: Duration,
}

impl IntakeOptions {
    pub fn from_config(node: &NodeConfig) -> IntakeOptions {
        IntakeOptions {
            group_commit: node.group_commit,
            max_group_size: node.max_group_size as usize,
            registry_cache: node.registry_cache,
            registry_reload: Duration::from_secs(node.registry_reload_seconds.into()),
        }
    }
}

/// Checks and records the node's messages; cheap to clone.
#[derive(Debug, Clone)]
pub struct Intake {
    store: Store,
    checks: Checks,
    writes: Writes,
}

#[derive(Debug, Clone)]
enum Checks {
    Database,
    Cache(Arc<RegistryCache>),
}

#[derive(Debug, Clone)]
enum Writes {
    OneAtATime(TaskRecorder),
    Grouped(ActivityGroups),
}

impl Intake {
    /// Asks the server whether it has the multi-collection `bulkWrite`, loads the registry if it
    /// is cached, and starts the group writer if groups are on.
    pub async fn start(store: Store, options: IntakeOptions) -> Result<Intake> {
        let writes = if store.has_client_bulk_write().await? {
            TaskWrites::ClientBulkWrite
        } else {
            TaskWrites::Separate
        };
        Intake::start_with(store, options, writes).await
    }

    /// Like [`Intake::start`], writing the given way whatever the server supports.
    pub async fn start_with(
        store: Store,
        options: IntakeOptions,
        writes: TaskWrites,
    ) -> Result<Intake> {
        let checks = if options.registry_cache {
            Checks::Cache(Arc::new(
                RegistryCache::start(store.clone(), options.registry_reload).await?,
            ))
        } else {
            Checks::Database
        };
        let writes = if options.group_commit {
            Writes::Grouped(ActivityGroups::start(
                store.clone(),
                writes,
                options.max_group_size,
            ))
        } else {
            Writes::OneAtATime(TaskRecorder::with_writes(store.clone(), writes))
        };
        Ok(Intake {
            store,
            checks,
            writes,
        })
    }

    /// The cached registry, when the checks read one.
    pub fn registry(&self) -> Option<&RegistryCache> {
        match &self.checks {
            Checks::Cache(cache) => Some(cache),
            Checks::Database => None,
        }
    }

    /// What the group writer did so far, when groups are on.
    pub fn group_totals(&self) -> Option<GroupTotals> {
        match &self.writes {
            Writes::Grouped(groups) => Some(groups.totals()),
            Writes::OneAtATime(_) => None,
        }
    }

    /// The validator's percentage and the pool's registration.
    pub async fn parties(&self, validator: Option<&str>, pool: Option<&str>) -> Result<Parties> {
        match &self.checks {
            Checks::Cache(cache) => Ok(cache.parties(validator, pool)),
            Checks::Database => self.store.parties(validator, pool).await,
        }
    }

    /// Records an accepted TASK (see [`TaskRecorder::record_task`] for what must hold).
    pub async fn record_task(
        &self,
        validator: &str,
        pool: &str,
        val_id: &str,
        increment: i64,
        at: DateTime,
    ) -> Result<TaskRecorded> {
        match &self.writes {
            Writes::OneAtATime(recorder) => {
                recorder
                    .record_task(validator, pool, val_id, increment, at)
                    .await
            }
            Writes::Grouped(groups) => match groups
                .record(Activity::Task {
                    validator: validator.to_owned(),
                    validator_id: self.registry().and_then(|r| r.validator_id(validator)),
                    pool: pool.to_owned(),
                    val_id: val_id.to_owned(),
                    increment,
                    at,
                })
                .await?
            {
                Recorded::Task(recorded) => Ok(recorded),
                Recorded::Ping => Err(unexpected()),
            },
        }
    }

    /// Stores where a validator listens and when it pinged.
    pub async fn record_ping(
        &self,
        validator: &str,
        ip: &str,
        port: u16,
        at: DateTime,
    ) -> Result<()> {
        match &self.writes {
            Writes::OneAtATime(_) => self.store.record_ping(validator, ip, port, at).await,
            Writes::Grouped(groups) => match groups
                .record(Activity::Ping {
                    validator: validator.to_owned(),
                    ip: ip.to_owned(),
                    port,
                    at,
                })
                .await?
            {
                Recorded::Ping => Ok(()),
                Recorded::Task(_) => Err(unexpected()),
            },
        }
    }

    /// At shutdown, once no connection is left to send: the group writer writes and answers
    /// what it holds and ends (for at most `timeout`). One-at-a-time writes are each awaited by
    /// their own connection, so there is nothing to flush. Returns whether everything held was
    /// written.
    pub async fn close(&self, timeout: Duration) -> bool {
        match &self.writes {
            Writes::Grouped(groups) => groups.close(timeout).await,
            Writes::OneAtATime(_) => true,
        }
    }

    /// How the writes reach the server, for reports.
    pub fn describe(&self) -> String {
        let checks = match self.checks {
            Checks::Cache(_) => "cached registry",
            Checks::Database => "registry read per message",
        };
        let writes = match &self.writes {
            Writes::OneAtATime(recorder) => {
                format!("one transaction per TASK ({:?})", recorder.writes())
            }
            Writes::Grouped(_) => "group commit".to_owned(),
        };
        format!("{checks}, {writes}")
    }
}

fn unexpected() -> StoreError {
    StoreError::Invalid("the group writer answered a message with another's outcome".into())
}
