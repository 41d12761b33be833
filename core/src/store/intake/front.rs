//! How the node checks and records TASKs and PINGs: the checks read the cached registry or the
//! database, as `node.registryCache` says, and every write goes through the group writer (a lone
//! message is a group of one), so that receipts, nonces and the no-downgrade rule live in one
//! place.

use std::sync::Arc;
use std::time::Duration;

use crate::config::NodeConfig;
use crate::store::db::{Result, Store};
use crate::store::intake::TaskWrites;
use crate::store::intake::groups::{ActivityGroups, GroupTotals};
use crate::store::intake::plan::{Activity, Recorded};
use crate::store::registry::Parties;
use crate::store::registry::cache::RegistryCache;

/// The switches of [`Intake`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntakeOptions {
    /// Most messages in one group write; 1 writes each message in its own transaction.
    pub max_group_size: usize,
    pub registry_cache: bool,
    pub registry_reload: Duration,
}

impl IntakeOptions {
    pub fn from_config(node: &NodeConfig) -> IntakeOptions {
        IntakeOptions {
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
    groups: ActivityGroups,
}

#[derive(Debug, Clone)]
enum Checks {
    Database,
    Cache(Arc<RegistryCache>),
}

impl Intake {
    /// Asks the server whether it has the multi-collection `bulkWrite`, loads the registry if it
    /// is cached, and starts the group writer.
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
        let groups = ActivityGroups::start(store.clone(), writes, options.max_group_size);
        Ok(Intake {
            store,
            checks,
            groups,
        })
    }

    /// The cached registry, when the checks read one.
    pub fn registry(&self) -> Option<&RegistryCache> {
        match &self.checks {
            Checks::Cache(cache) => Some(cache),
            Checks::Database => None,
        }
    }

    /// What the group writer did so far.
    pub fn group_totals(&self) -> GroupTotals {
        self.groups.totals()
    }

    /// The validator's percentage, whether it signs, and the pool's registration.
    pub async fn parties(&self, validator: Option<&str>, pool: Option<&str>) -> Result<Parties> {
        match &self.checks {
            Checks::Cache(cache) => Ok(cache.parties(validator, pool)),
            Checks::Database => self.store.parties(validator, pool).await,
        }
    }

    /// Writes a message in the next group and returns what it did. The validator's `_id` is
    /// filled in from the cached registry when it knows it.
    pub async fn record(&self, mut activity: Activity) -> Result<Recorded> {
        if activity.validator_id.is_none() {
            activity.validator_id = self
                .registry()
                .and_then(|r| r.validator_id(&activity.validator));
        }
        self.groups.record(activity).await
    }

    /// At shutdown, once no connection is left to send: the group writer writes and answers
    /// what it holds and ends (for at most `timeout`). Returns whether everything held was
    /// written.
    pub async fn close(&self, timeout: Duration) -> bool {
        self.groups.close(timeout).await
    }

    /// How the checks read and the writes reach the server, for reports.
    pub fn describe(&self) -> String {
        let checks = match self.checks {
            Checks::Cache(_) => "cached registry",
            Checks::Database => "registry read per message",
        };
        format!("{checks}, group commit")
    }
}
