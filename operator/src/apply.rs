//! The apply: server-side applies of what the build wants, only where the live object is not
//! already what was applied, and deletes of children no longer wanted. The operator changes only
//! objects it controls.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crd::MinerPool;
use crate::desired::Desired;
use crate::error::Error;
use crate::names::{self, APPLIED_HASH, FIELD_MANAGER};
use crate::served_api::{ServedApis, VersionedKind};

/// The namespace's objects of a kind, in the version the cluster serves.
pub fn versioned_api(
    client: &Client,
    apis: &ServedApis,
    namespace: &str,
    kind: VersionedKind,
) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &apis.api_resource(kind))
}

/// The optional children that exist by the operator's hand, by name, as the status records them.
#[derive(Debug, Clone, Default)]
pub struct Optionals {
    pub service_monitor: Option<String>,
    pub disruption_budget: Option<String>,
    pub network_policies: Vec<String>,
}

impl Optionals {
    pub fn recorded(mp: &MinerPool) -> Optionals {
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
pub async fn apply_children(
    client: &Client,
    apis: &ServedApis,
    namespace: &str,
    uid: &str,
    wanted: &Desired,
    live_jobs: &[DynamicObject],
    previous: &Optionals,
) -> Result<(Deployment, Vec<DynamicObject>, Optionals), Error> {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let cron_job_api = versioned_api(client, apis, namespace, VersionedKind::CronJob);
    apply_unless_current(&config_maps, &wanted.config_map, None, uid).await?;
    let deployment = apply_unless_current(&deployments, &wanted.deployment, None, uid).await?;
    apply_unless_current(&services, &wanted.service, None, uid).await?;
    let mut kept = Vec::new();
    for (_, cron_job) in &wanted.cron_jobs {
        let object = apis.convert(VersionedKind::CronJob, cron_job);
        // Listed by this MinerPool's labels; one of the same name without them is read by name,
        // so that a foreign CronJob is found and refused rather than taken over.
        let live = live_jobs
            .iter()
            .find(|j| j.metadata.name == object.metadata.name);
        kept.push(apply_unless_current(&cron_job_api, &object, live.map(Some), uid).await?);
    }
    // CronJobs of this MinerPool it no longer wants (a disabled job).
    for unwanted in live_jobs.iter().filter(|live| {
        controlled_by(&live.metadata, uid)
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
        client.clone(),
        namespace,
        &names::service_monitor_resource(),
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
        &versioned_api(client, apis, namespace, budget_kind),
        wanted
            .disruption_budget
            .as_ref()
            .map(|b| apis.convert(budget_kind, b))
            .as_ref(),
        previous.disruption_budget.as_deref(),
        uid,
    )
    .await?;
    let policies: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
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
fn service_monitor_error(error: Error, wanted: &Desired) -> Error {
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
                && controlled_by(&live.metadata, uid)
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
        if !controlled_by(live.meta(), uid) {
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
            match drift(wanted, live) {
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

/// Whether this MinerPool (by uid) is the controller of an object. The operator changes only
/// objects it controls: one of the same name that someone else made is a conflict, never
/// adopted (adopting would also let the MinerPool's deletion collect it).
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    meta.owner_references
        .iter()
        .flatten()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// The first field the operator applies that `live` no longer carries as applied (a
/// `kubectl set image`, an edited ConfigMap), as a JSON path; `None` when nothing drifted.
/// Compared: every field of `wanted` outside metadata, and its labels and annotations. What the
/// server or another controller added (defaults, a cluster IP, replicas when unset) is not drift.
pub fn drift<K: Serialize>(wanted: &K, live: &K) -> Option<String> {
    let (Ok(wanted), Ok(live)) = (serde_json::to_value(wanted), serde_json::to_value(live)) else {
        return Some("(unserialisable)".into());
    };
    let wanted_fields = wanted.as_object()?;
    for (key, value) in wanted_fields {
        let path = key.as_str();
        let found = match path {
            "apiVersion" | "kind" | "status" => continue,
            "metadata" => {
                for part in ["labels", "annotations"] {
                    let path = format!("metadata.{part}");
                    if let Some(drifted) =
                        subset_drift(&value[part], live["metadata"].get(part), &path)
                    {
                        return Some(drifted);
                    }
                }
                continue;
            }
            _ => subset_drift(value, live.get(path), path),
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// Where `wanted` is not contained in `live`: objects by key (extra live keys are fine), arrays
/// element by element with equal length, scalars by equality. An empty or null wanted value
/// matches a missing one (the server drops empty fields).
fn subset_drift(
    wanted: &serde_json::Value,
    live: Option<&serde_json::Value>,
    path: &str,
) -> Option<String> {
    use serde_json::Value;
    let empty = match wanted {
        Value::Null => true,
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    };
    let Some(live) = live.filter(|v| !v.is_null()) else {
        return (!empty).then(|| path.to_owned());
    };
    match (wanted, live) {
        (Value::Object(w), Value::Object(l)) => w
            .iter()
            .find_map(|(key, value)| subset_drift(value, l.get(key), &format!("{path}.{key}"))),
        (Value::Array(w), Value::Array(l)) if w.len() == l.len() => w
            .iter()
            .zip(l)
            .enumerate()
            .find_map(|(i, (w, l))| subset_drift(w, Some(l), &format!("{path}[{i}]"))),
        (w, l) if w == l => None,
        (w, _) if empty && matches!(w, Value::Null) => None,
        _ => Some(path.to_owned()),
    }
}

/// The digest a live object was applied with, if the operator applied it.
pub fn applied_hash(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()?
        .get(APPLIED_HASH)
        .map(String::as_str)
}
