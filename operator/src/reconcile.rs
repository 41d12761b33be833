//! The reconciler: dereference (the Secrets the spec names) → validate → build (pure,
//! [`crate::desired`]) → apply (server-side apply, only what changed) → status.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;
use crate::crd::{MinerPool, MinerPoolSpec};
use crate::desired::{self, FIELD_MANAGER, JobKind, applied_hash, names};
use crate::metrics::Metrics;
use crate::served_api::{ObservedCronJob, ServedApis, VersionedKind};
use crate::status::{self, Observation};
use crate::validate::{self, FoundSecrets};

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
        Api::namespaced_with(
            self.client.clone(),
            namespace,
            &self.apis.api_resource(kind),
        )
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
        .list(&ListParams::default().labels(&desired::pool_selector(&name)))
        .await
        .map_err(Error::kube(format!("listing the CronJobs of {name}")))?
        .items;
    let mut apply_error = None;
    let previous = Optionals::recorded(mp);
    let mut optionals = previous.clone();
    let (deployment, problems) = match validate::validate(mp, &secrets) {
        Ok(config) => {
            let wanted = desired::desired(mp, &config);
            let applied =
                apply_children(ctx, &namespace, &uid, &wanted, &live_jobs, &previous).await;
            match applied {
                Ok((deployment, kept, applied_optionals)) => {
                    live_jobs = kept;
                    optionals = applied_optionals;
                    (Some(deployment), Vec::new())
                }
                Err(error) => {
                    // Status still tells what went wrong; the Deployment as it is, if any.
                    let deployment = deployments.get_opt(&node_name).await.ok().flatten();
                    live_jobs.retain(|j| desired::controlled_by(&j.metadata, &uid));
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

/// The optional children that exist by the operator's hand, by name, as the status records them.
#[derive(Debug, Clone, Default)]
struct Optionals {
    service_monitor: Option<String>,
    disruption_budget: Option<String>,
    network_policies: Vec<String>,
}

impl Optionals {
    fn recorded(mp: &MinerPool) -> Optionals {
        let status = mp.status.clone().unwrap_or_default();
        Optionals {
            service_monitor: status.service_monitor,
            disruption_budget: status.disruption_budget,
            network_policies: status.network_policies,
        }
    }
}

/// Applies every child of a valid MinerPool (those whose applied digest and fields are current
/// are left alone), and deletes the CronJobs of jobs it no longer wants and the optional
/// children no longer wanted. Returns the Deployment and the CronJobs as they are now, and the
/// optional children that exist.
async fn apply_children(
    ctx: &Context,
    namespace: &str,
    uid: &str,
    wanted: &desired::Desired,
    live_jobs: &[DynamicObject],
    previous: &Optionals,
) -> Result<(Deployment, Vec<DynamicObject>, Optionals), Error> {
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
    let services: Api<Service> = Api::namespaced(ctx.client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), namespace);
    let cron_job_api = ctx.versioned_api(namespace, VersionedKind::CronJob);
    apply_unless_current(&config_maps, &wanted.config_map, None, uid).await?;
    let deployment = apply_unless_current(&deployments, &wanted.deployment, None, uid).await?;
    apply_unless_current(&services, &wanted.service, None, uid).await?;
    let mut kept = Vec::new();
    for (_, cron_job) in &wanted.cron_jobs {
        let object = ctx.apis.convert(VersionedKind::CronJob, cron_job);
        // Listed by this MinerPool's labels; one of the same name without them is read by name,
        // so that a foreign CronJob is found and refused rather than taken over.
        let live = live_jobs
            .iter()
            .find(|j| j.metadata.name == object.metadata.name);
        kept.push(apply_unless_current(&cron_job_api, &object, live.map(Some), uid).await?);
    }
    // CronJobs of this MinerPool it no longer wants (a disabled job).
    for unwanted in live_jobs.iter().filter(|live| {
        desired::controlled_by(&live.metadata, uid)
            && !kept.iter().any(|k| k.metadata.name == live.metadata.name)
    }) {
        let job = unwanted.name_any();
        cron_job_api
            .delete(&job, &DeleteParams::background())
            .await
            .map_err(Error::kube(format!("deleting CronJob {job}")))?;
        tracing::info!(namespace, cronjob = %job, "deleted a CronJob no longer wanted");
    }
    let monitors: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        namespace,
        &desired::service_monitor_resource(),
    );
    let service_monitor = apply_optional(
        &monitors,
        wanted.service_monitor.as_ref(),
        previous.service_monitor.as_deref(),
        uid,
    )
    .await
    .map_err(|error| service_monitor_error(error, wanted))?;
    let budget_kind = VersionedKind::PodDisruptionBudget;
    let disruption_budget = apply_optional(
        &ctx.versioned_api(namespace, budget_kind),
        wanted
            .disruption_budget
            .as_ref()
            .map(|b| ctx.apis.convert(budget_kind, b))
            .as_ref(),
        previous.disruption_budget.as_deref(),
        uid,
    )
    .await?;
    let policies: Api<DynamicObject> = Api::namespaced_with(
        ctx.client.clone(),
        namespace,
        &kube::api::ApiResource::erase::<k8s_openapi::api::networking::v1::NetworkPolicy>(&()),
    );
    let mut network_policies = Vec::new();
    let wanted_policies: Vec<DynamicObject> = wanted
        .network_policies
        .iter()
        .flatten()
        .map(dynamic)
        .collect();
    // Each wanted one, then any applied before that is no longer wanted.
    let mut names: Vec<String> = wanted_policies.iter().map(ResourceExt::name_any).collect();
    for name in &previous.network_policies {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    for name in &names {
        let wanted = wanted_policies.iter().find(|p| p.name_any() == *name);
        let before = previous
            .network_policies
            .contains(name)
            .then_some(name.as_str());
        if let Some(applied) = apply_optional(&policies, wanted, before, uid).await? {
            network_policies.push(applied);
        }
    }
    let optionals = Optionals {
        service_monitor,
        disruption_budget,
        network_policies,
    };
    Ok((deployment, kept, optionals))
}

/// A typed object as a dynamic one, its apiVersion and kind kept.
fn dynamic<K: Serialize>(object: &K) -> DynamicObject {
    serde_json::from_value(serde_json::to_value(object).expect("Kubernetes objects serialise"))
        .expect("a Kubernetes object is a dynamic object")
}

/// A ServiceMonitor refused because its kind is not served says what the cluster lacks.
fn service_monitor_error(error: Error, wanted: &desired::Desired) -> Error {
    let name = wanted
        .service_monitor
        .as_ref()
        .map(ResourceExt::name_any)
        .unwrap_or_default();
    match error {
        Error::Kube {
            source: source @ kube::Error::Api(_),
            action,
        } if action.starts_with("applying")
            && matches!(&source, kube::Error::Api(s) if s.code == 404) =>
        {
            Error::Kube {
                action: format!(
                    "applying ServiceMonitor {name} (spec.node.serviceMonitor needs the Prometheus Operator's monitoring.coreos.com/v1 CRDs in the cluster)"
                ),
                source,
            }
        }
        other => other,
    }
}

/// A child that exists only while the spec wants it: applied when `wanted`; once no longer
/// wanted, the one the status names (`previous`) is deleted if this MinerPool controls it. One
/// not wanted that the status does not name costs no request, so a MinerPool that wants no
/// ServiceMonitor never touches the Prometheus Operator's API (which may not exist). Returns the
/// name of the one that exists now.
async fn apply_optional(
    api: &Api<DynamicObject>,
    wanted: Option<&DynamicObject>,
    previous: Option<&str>,
    uid: &str,
) -> Result<Option<String>, Error> {
    match (wanted, previous) {
        (Some(object), _) => {
            apply_unless_current(api, object, None, uid).await?;
            Ok(Some(object.name_any()))
        }
        (None, Some(name)) => {
            let kind = &api
                .resource_url()
                .rsplit('/')
                .next()
                .unwrap_or("object")
                .to_owned();
            // Not found, or its kind no longer served (every object of it gone too): None.
            let live = api
                .get_opt(name)
                .await
                .map_err(Error::kube(format!("reading {kind} {name}")))?;
            if let Some(live) = live
                && desired::controlled_by(&live.metadata, uid)
            {
                api.delete(name, &DeleteParams::background())
                    .await
                    .map_err(Error::kube(format!("deleting {kind} {name}")))?;
                tracing::info!(%kind, %name, "deleted a child no longer wanted");
            }
            Ok(None)
        }
        (None, None) => Ok(None),
    }
}

/// The pods of the payouts job's runs, for the PayoutsHeld condition (none while the job is
/// disabled). Pods that cannot be read (a role without them) make that condition Unknown rather
/// than fail the reconcile: they are only reported.
async fn payouts_pods(
    client: &Client,
    namespace: &str,
    mp: &MinerPool,
) -> Result<Vec<Pod>, String> {
    if !JobKind::Payouts.enabled(&mp.spec) {
        return Ok(Vec::new());
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = desired::job_pods_selector(JobKind::Payouts, Some(&mp.name_any()));
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

/// Reads each Secret the spec names (a missing one is simply absent from the result).
async fn found_secrets(
    client: &Client,
    namespace: &str,
    spec: &MinerPoolSpec,
) -> Result<FoundSecrets, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let wanted: BTreeSet<&str> = validate::secret_refs(spec)
        .into_iter()
        .map(|(_, r)| r.name.as_str())
        .collect();
    let mut found = BTreeMap::new();
    for name in wanted {
        if name.is_empty() {
            continue;
        }
        let secret = api
            .get_opt(name)
            .await
            .map_err(Error::kube(format!("reading Secret {name}")))?;
        if let Some(secret) = secret {
            let keys = secret
                .data
                .iter()
                .flat_map(|d| d.keys())
                .chain(secret.string_data.iter().flat_map(|d| d.keys()))
                .cloned()
                .collect();
            found.insert(name.to_string(), keys);
        }
    }
    Ok(found)
}

/// Server-side applies `wanted` unless the live object was applied from the same digest. `live`
/// is `None` when it must be read first, `Some(None)` when it is known not to exist.
async fn apply_unless_current<K>(
    api: &Api<K>,
    wanted: &K,
    live: Option<Option<&K>>,
    uid: &str,
) -> Result<K, Error>
where
    K: Resource + Clone + Serialize + DeserializeOwned + Debug,
{
    let name = wanted.meta().name.clone().unwrap_or_default();
    let kind = serde_json::to_value(wanted)
        .ok()
        .and_then(|v| v["kind"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "object".into());
    let read;
    let live = match live {
        Some(live) => live,
        None => {
            read = api
                .get_opt(&name)
                .await
                .map_err(Error::kube(format!("reading {name}")))?;
            read.as_ref()
        }
    };
    if let Some(live) = live {
        if !desired::controlled_by(live.meta(), uid) {
            let controller = live
                .meta()
                .owner_references
                .iter()
                .flatten()
                .find(|o| o.controller == Some(true))
                .map(|o| format!("its controller is {} {}", o.kind, o.name))
                .unwrap_or_else(|| "it has no controller".into());
            return Err(Error::Conflict {
                object: format!("{kind} {name}"),
                controller,
            });
        }
        if applied_hash(live.meta()).is_some()
            && applied_hash(live.meta()) == applied_hash(wanted.meta())
        {
            match desired::drift(wanted, live) {
                None => return Ok(live.clone()),
                Some(path) => {
                    tracing::info!(object = %format!("{kind} {name}"), field = %path, "drifted from what was applied: applying again");
                }
            }
        }
    }
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(wanted),
    )
    .await
    .map_err(Error::kube(format!("applying {name}")))
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
                        .labels(&desired::job_pods_selector(JobKind::Payouts, None)),
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
