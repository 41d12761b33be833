//! The reconciler: dereference ([`crate::dereference`]: the Secrets the spec names) → validate
//! ([`crate::validate`]) → build (pure, [`crate::desired`]) → apply ([`crate::apply`]:
//! server-side apply, only what changed) → status ([`crate::status`]).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use minerpool_core::job::Job;

use crate::apply::{self, Optionals, apply_children, controlled_by};
use crate::crd::MinerPool;
use crate::dereference::found_secrets;
use crate::desired;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::names::{self, FIELD_MANAGER};
use crate::served_api::{ObservedCronJob, ServedApis, VersionedKind};
use crate::status::{self, Observation};
use crate::validate;

/// A valid MinerPool is looked at again after this even if nothing changed (a deleted child
/// whose watch event was missed comes back).
pub const RESYNC: Duration = Duration::from_secs(600);
/// An invalid one sooner: the Secrets it waits for are not watched.
pub const INVALID_RETRY: Duration = Duration::from_secs(60);
const BACKOFF_FIRST: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub apis: ServedApis,
    pub recorder: Recorder,
    pub metrics: Metrics,
    /// Consecutive failures per MinerPool (namespace/name), for the backoff.
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        apis: ServedApis,
        metrics: Metrics,
        instance: Option<String>,
    ) -> Context {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.into(),
                instance,
            },
        );
        Context {
            client,
            apis,
            recorder,
            metrics,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The namespace's objects of a kind, in the version the cluster serves.
    fn versioned_api(&self, namespace: &str, kind: VersionedKind) -> Api<DynamicObject> {
        apply::versioned_api(&self.client, &self.apis, namespace, kind)
    }
}

fn key(mp: &MinerPool) -> String {
    format!("{}/{}", mp.namespace().unwrap_or_default(), mp.name_any())
}

/// One reconcile of one MinerPool, measured.
pub async fn reconcile(mp: Arc<MinerPool>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_pool(&mp, &ctx).await;
    ctx.metrics
        .observe(started.elapsed(), result.as_ref().err().map(Error::reason));
    if result.is_ok() {
        ctx.failures.lock().expect("not poisoned").remove(&key(&mp));
    }
    result
}

/// Retries a failed MinerPool with a backoff of its own (2 s doubling to 5 min), so one broken
/// object neither spins nor delays the others.
pub fn error_policy(mp: Arc<MinerPool>, error: &Error, ctx: Arc<Context>) -> Action {
    let mut failures = ctx.failures.lock().expect("not poisoned");
    let count = failures.entry(key(&mp)).or_insert(0);
    *count = count.saturating_add(1);
    let delay = backoff(*count);
    tracing::warn!(minerpool = %key(&mp), %error, failures = *count, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// The delay after `failures` consecutive failures.
pub fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (BACKOFF_FIRST * 2u32.pow(doublings)).min(BACKOFF_MAX)
}

async fn reconcile_pool(mp: &MinerPool, ctx: &Context) -> Result<Action, Error> {
    let name = mp.name_any();
    let (Some(namespace), Some(uid)) = (mp.namespace(), mp.uid()) else {
        return Err(Error::Incomplete(name));
    };

    // Dereference.
    let secrets = found_secrets(&ctx.client, &namespace, &mp.spec).await?;

    // Validate, build and apply; an invalid spec applies nothing.
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let cron_job_api = ctx.versioned_api(&namespace, VersionedKind::CronJob);
    let node_name = names::node(&name);
    let mut live_jobs: Vec<DynamicObject> = cron_job_api
        .list(&ListParams::default().labels(&names::pool_selector(&name)))
        .await
        .map_err(Error::kube(format!("listing the CronJobs of {name}")))?
        .items;
    let mut apply_error = None;
    let previous = Optionals::recorded(mp);
    let mut optionals = previous.clone();
    let (deployment, problems) = match validate::validate(mp, &secrets) {
        Ok(pool) => {
            let wanted = desired::desired(&pool);
            let applied = apply_children(
                &ctx.client,
                &ctx.apis,
                &namespace,
                &uid,
                &wanted,
                &live_jobs,
                &previous,
            )
            .await;
            match applied {
                Ok((deployment, kept, applied_optionals)) => {
                    live_jobs = kept;
                    optionals = applied_optionals;
                    (Some(deployment), Vec::new())
                }
                Err(error) => {
                    // Status still tells what went wrong; the Deployment as it is, if any.
                    let deployment = deployments.get_opt(&node_name).await.ok().flatten();
                    live_jobs.retain(|j| controlled_by(&j.metadata, &uid));
                    apply_error = Some(error);
                    (deployment, Vec::new())
                }
            }
        }
        Err(problems) => {
            ctx.metrics.invalid_specs.inc();
            let deployment = deployments
                .get_opt(&node_name)
                .await
                .map_err(Error::kube(format!("reading Deployment {node_name}")))?;
            (deployment, problems)
        }
    };
    let apply_failure = match &apply_error {
        None => None,
        Some(conflict @ Error::Conflict { .. }) => {
            Some(("Conflict".to_owned(), conflict.to_string()))
        }
        Some(
            refused @ Error::Kube {
                source: kube::Error::Api(status),
                ..
            },
        ) => Some((
            if status.reason.is_empty() {
                "ApplyFailed".to_owned()
            } else {
                status.reason.clone()
            },
            refused.to_string(),
        )),
        // The API server could not be reached: there is no status to write either.
        Some(_) => return Err(apply_error.expect("matched Some")),
    };

    // Status.
    let payouts_pods = payouts_pods(&ctx.client, &namespace, mp).await;
    let observed: Vec<ObservedCronJob> = live_jobs
        .iter()
        .map(ObservedCronJob::from_dynamic)
        .collect();
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let new_status = status::compute(
        mp,
        &Observation {
            problems: &problems,
            deployment: deployment.as_ref(),
            cron_jobs: &observed,
            apply_failure,
            service_monitor: optionals.service_monitor.as_deref(),
            disruption_budget: optionals.disruption_budget.as_deref(),
            network_policies: &optionals.network_policies,
            payouts_pods: payouts_pods.as_deref().map_err(String::as_str),
        },
        &now,
    );
    if mp.status.as_ref() != Some(&new_status) {
        write_status(ctx, mp, &namespace, &new_status).await?;
        if let Some((warning, reason, message)) =
            status::ready_transition(mp.status.as_ref(), &new_status)
        {
            let event = Event {
                type_: if warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason,
                note: Some(status::truncate(&message, status::MESSAGE_MAX)),
                action: "Reconcile".into(),
                secondary: None,
            };
            if let Err(e) = ctx.recorder.publish(&event, &mp.object_ref(&())).await {
                tracing::warn!(minerpool = %key(mp), error = %e, "could not record an Event");
            }
        }
    }
    if let Some(error) = apply_error {
        // Retried with the error policy's backoff.
        return Err(error);
    }
    Ok(Action::requeue(if problems.is_empty() {
        RESYNC
    } else {
        INVALID_RETRY
    }))
}

/// The pods of the payouts job's runs, for the PayoutsHeld condition (none while the job is
/// disabled). Pods that cannot be read (a role without them) make that condition Unknown rather
/// than fail the reconcile: they are only reported.
async fn payouts_pods(
    client: &Client,
    namespace: &str,
    mp: &MinerPool,
) -> Result<Vec<Pod>, String> {
    if !mp.spec.jobs.enabled(Job::Payouts) {
        return Ok(Vec::new());
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = names::job_pods_selector(Job::Payouts, Some(&mp.name_any()));
    match pods.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => Ok(list.items),
        Err(error) => {
            tracing::warn!(minerpool = %key(mp), %error, "could not read the payouts job's pods");
            Err(format!("the payouts job's pods could not be read: {error}"))
        }
    }
}

/// The MinerPool a payouts pod ran for, once its run has ended: a pod starting or running
/// changes nothing the status shows.
fn pool_of_finished_run(pod: Pod) -> Option<ObjectRef<MinerPool>> {
    status::job_termination(&pod)?;
    let pool = pod.labels().get("app.kubernetes.io/instance")?;
    Some(ObjectRef::new(pool).within(&pod.namespace()?))
}

/// A merge patch of the status subresource; job entries that went away are removed with null.
async fn write_status(
    ctx: &Context,
    mp: &MinerPool,
    namespace: &str,
    new_status: &crate::crd::MinerPoolStatus,
) -> Result<(), Error> {
    let mut patch = serde_json::json!({ "status": new_status });
    if let Some(old) = &mp.status {
        // A merge patch leaves out what is gone: each optional child no longer there is nulled.
        for (key, was, is) in [
            (
                "serviceMonitor",
                old.service_monitor.is_some(),
                new_status.service_monitor.is_some(),
            ),
            (
                "disruptionBudget",
                old.disruption_budget.is_some(),
                new_status.disruption_budget.is_some(),
            ),
            (
                "networkPolicies",
                !old.network_policies.is_empty(),
                !new_status.network_policies.is_empty(),
            ),
        ] {
            if was && !is {
                patch["status"][key] = serde_json::Value::Null;
            }
        }
        for job in old
            .jobs
            .keys()
            .filter(|k| !new_status.jobs.contains_key(*k))
        {
            patch["status"]["jobs"][job] = serde_json::Value::Null;
        }
    }
    let api: Api<MinerPool> = Api::namespaced(ctx.client.clone(), namespace);
    api.patch_status(
        &mp.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(Error::kube(format!(
        "writing the status of {}",
        mp.name_any()
    )))?;
    Ok(())
}

/// Where the operator looks for MinerPools.
#[derive(Debug, Clone)]
pub enum Scope {
    AllNamespaces,
    Namespaces(Vec<String>),
}

/// Runs the controller until `shutdown` resolves: one controller per watched namespace (the
/// operator may hold only namespaced permissions), or one for the whole cluster.
pub async fn run(
    ctx: Arc<Context>,
    scope: Scope,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let shutdown = futures::FutureExt::shared(Box::pin(shutdown));
    let namespaces: Vec<Option<String>> = match scope {
        Scope::AllNamespaces => vec![None],
        Scope::Namespaces(list) => list.into_iter().map(Some).collect(),
    };
    let controllers = namespaces.into_iter().map(|namespace| {
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        async move {
            let client = ctx.client.clone();
            let api = |c: Client| -> Api<MinerPool> {
                match &namespace {
                    Some(ns) => Api::namespaced(c, ns),
                    None => Api::all(c),
                }
            };
            let versioned = |kind| {
                let ar = ctx.apis.api_resource(kind);
                let api: Api<DynamicObject> = match &namespace {
                    Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
                    None => Api::all_with(client.clone(), &ar),
                };
                (api, ar)
            };
            let (cron_jobs, cron_job_resource) = versioned(VersionedKind::CronJob);
            let (budgets, budget_resource) = versioned(VersionedKind::PodDisruptionBudget);
            // The budget and the policies are watched like the other children: one deleted or
            // changed by hand is put back at once rather than at the next resync. The
            // ServiceMonitor is not: its CRD may be missing, and a watch on it would fail.
            let children = watcher::Config::default()
                .labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
            Controller::new(api(client.clone()), watcher::Config::default())
                .owns(
                    child_api::<Deployment>(&client, &namespace),
                    children.clone(),
                )
                .owns(child_api::<Service>(&client, &namespace), children.clone())
                .owns(
                    child_api::<ConfigMap>(&client, &namespace),
                    children.clone(),
                )
                .owns(
                    child_api::<NetworkPolicy>(&client, &namespace),
                    children.clone(),
                )
                .owns_with(budgets, budget_resource, children.clone())
                .owns_with(cron_jobs, cron_job_resource, children)
                // A payouts run that ended blocked is reported at once, not at the next change.
                .watches(
                    child_api::<Pod>(&client, &namespace),
                    watcher::Config::default()
                        .labels(&names::job_pods_selector(Job::Payouts, None)),
                    pool_of_finished_run,
                )
                .graceful_shutdown_on(shutdown)
                .run(reconcile, error_policy, ctx)
                .for_each(|result| async move {
                    match result {
                        Ok((object, _)) => tracing::debug!(minerpool = %object, "reconciled"),
                        Err(error) => tracing::debug!(%error, "controller"),
                    }
                })
                .await;
        }
    });
    futures::future::join_all(controllers).await;
}

fn child_api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}
