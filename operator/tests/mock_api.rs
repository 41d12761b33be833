//! The exact API requests of a reconcile, against a mocked API server (tower-test): the client's
//! requests are answered by a small in-memory object store, and each test asserts the whole
//! sequence the reconciler sent.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use k8s_openapi::api::core::v1::Pod;
use kube::client::Body;
use kube::{Client, Resource};
use minerpool_operator::crd::{JobSpec, MinerPool, PodOverrides};
use minerpool_operator::desired;
use minerpool_operator::fixtures::{self, MONGODB_SECRET};
use minerpool_operator::metrics::Metrics;
use minerpool_operator::names;
use minerpool_operator::reconcile::{self, Context};
use minerpool_operator::served_api::{ObservedCronJob, ServedApis, VersionedKind};
use minerpool_operator::status::{self, Observation};
use minerpool_operator::validate::{self, secrets::FoundSecrets};
use serde_json::{Value, json};

const NS: &str = "pools";

/// One request as the API server received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    body: Value,
}

impl Seen {
    fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Objects by path (`/api/v1/namespaces/pools/secrets/mongodb-uri`), answered to GET and LIST.
#[derive(Default)]
struct World {
    objects: BTreeMap<String, Value>,
    /// Requests (`PATCH /path`) the server refuses with this Status (422 Invalid, say).
    refused: BTreeMap<String, Value>,
}

fn path_of(api_version: &str, plural: &str, name: &str) -> String {
    let base = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    format!("{base}/namespaces/{NS}/{plural}/{name}")
}

/// The lists the reconciler asks for, by the path's last segment: their apiVersion and kind.
fn list_kind(path: &str) -> Option<(&'static str, &'static str)> {
    match path.rsplit('/').next()? {
        "cronjobs" => Some(("batch/v1beta1", "CronJobList")),
        "pods" => Some(("v1", "PodList")),
        _ => None,
    }
}

impl World {
    fn put(&mut self, path: String, object: Value) {
        self.objects.insert(path, object);
    }

    fn answer(&self, seen: &Seen) -> (StatusCode, Value) {
        match seen.method.as_str() {
            _ if self.refused.contains_key(&seen.line()) => {
                let status = self.refused[&seen.line()].clone();
                let code = status["code"].as_u64().unwrap() as u16;
                (StatusCode::from_u16(code).unwrap(), status)
            }
            "GET" => {
                if let Some(object) = self.objects.get(&seen.path) {
                    return (StatusCode::OK, object.clone());
                }
                if let Some((api_version, kind)) = list_kind(&seen.path) {
                    let items: Vec<Value> = self
                        .objects
                        .iter()
                        .filter(|(p, _)| p.starts_with(&format!("{}/", seen.path)))
                        .map(|(_, o)| o.clone())
                        .collect();
                    return (
                        StatusCode::OK,
                        json!({"apiVersion": api_version, "kind": kind,
                               "metadata": {"resourceVersion": "7"}, "items": items}),
                    );
                }
                (
                    StatusCode::NOT_FOUND,
                    json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                           "reason": "NotFound", "code": 404, "message": "not found"}),
                )
            }
            "PATCH" if seen.path.ends_with("/status") => {
                let path = seen.path.trim_end_matches("/status");
                let mut object = self.objects[path].clone();
                minerpool_operator::testing::merge_patch(&mut object, &seen.body);
                (StatusCode::OK, object)
            }
            "PATCH" => (StatusCode::OK, seen.body.clone()),
            "POST" => (StatusCode::CREATED, seen.body.clone()),
            "DELETE" => (
                StatusCode::OK,
                json!({"apiVersion": "v1", "kind": "Status", "status": "Success", "code": 200}),
            ),
            other => panic!("unexpected method {other}"),
        }
    }
}

/// Runs one reconcile against `world` and returns every request it made, in order.
async fn reconcile_against(world: World, mp: &MinerPool) -> (Result<(), String>, Vec<Seen>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = seen.clone();
    let server = tokio::spawn(async move {
        while let Some((request, reply)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let seen = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_string(),
                query: parts.uri.query().unwrap_or_default().to_string(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (status, answer) = world.answer(&seen);
            recorder.lock().unwrap().push(seen);
            reply.send_response(
                Response::builder()
                    .status(status)
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap(),
            );
        }
    });
    let client = Client::new(service, NS);
    let ctx = Arc::new(Context::new(
        client,
        ServedApis::V1BETA1,
        Metrics::default(),
        None,
    ));
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        reconcile::reconcile(Arc::new(mp.clone()), ctx),
    )
    .await
    .expect("reconcile finished");
    // The context held the last client: the server loop ends once every request is answered.
    server.await.unwrap();
    let seen = seen.lock().unwrap().clone();
    (outcome.map(|_| ()).map_err(|e| e.to_string()), seen)
}

fn secret() -> (String, Value) {
    (
        path_of("v1", "secrets", MONGODB_SECRET),
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": MONGODB_SECRET, "namespace": NS},
               "data": {"uri": "bW9uZ29kYjovL3g="}}),
    )
}

fn pool_path(name: &str) -> String {
    path_of("minerpool.io/v1alpha1", "minerpools", name)
}

fn base_world(mp: &MinerPool) -> World {
    let mut world = World::default();
    let (path, object) = secret();
    world.put(path, object);
    world.put(
        pool_path(&mp.meta().name.clone().unwrap()),
        serde_json::to_value(mp).unwrap(),
    );
    world
}

/// The world after a reconcile of `applied`: every child as the operator applied it, and
/// `applied`'s status as the reconcile would have written it.
fn settled_world(applied: &MinerPool) -> (World, MinerPool) {
    settled_world_with_runs(applied, &[])
}

/// [`settled_world`] where `runs` are the pods of the payouts job's runs.
fn settled_world_with_runs(applied: &MinerPool, runs: &[Pod]) -> (World, MinerPool) {
    let mut world = base_world(applied);
    for pod in runs {
        world.put(
            path_of("v1", "pods", pod.metadata.name.as_deref().unwrap()),
            serde_json::to_value(pod).unwrap(),
        );
    }
    let pool = validate::validate(
        applied,
        &FoundSecrets::from([(MONGODB_SECRET.to_string(), ["uri".to_string()].into())]),
    )
    .unwrap();
    let d = desired::desired(&pool);
    world.put(
        path_of("v1", "configmaps", "pool-config"),
        serde_json::to_value(&d.config_map).unwrap(),
    );
    world.put(
        path_of("apps/v1", "deployments", "pool-node"),
        serde_json::to_value(&d.deployment).unwrap(),
    );
    world.put(
        path_of("v1", "services", "pool-node"),
        serde_json::to_value(&d.service).unwrap(),
    );
    let mut observed = Vec::new();
    for (kind, cron_job) in &d.cron_jobs {
        let object = ServedApis::V1BETA1.convert(VersionedKind::CronJob, cron_job);
        observed.push(ObservedCronJob::from_dynamic(&object));
        world.put(
            path_of(
                "batch/v1beta1",
                "cronjobs",
                &format!("pool-{}", kind.name()),
            ),
            serde_json::to_value(&object).unwrap(),
        );
    }
    if let Some(budget) = &d.disruption_budget {
        world.put(
            BUDGET.into(),
            serde_json::to_value(
                ServedApis::V1BETA1.convert(VersionedKind::PodDisruptionBudget, budget),
            )
            .unwrap(),
        );
    }
    let mut policy_names = Vec::new();
    for policy in d.network_policies.iter().flatten() {
        let name = policy.metadata.name.clone().unwrap();
        world.put(
            path_of("networking.k8s.io/v1", "networkpolicies", &name),
            serde_json::to_value(policy).unwrap(),
        );
        policy_names.push(name);
    }
    let mut settled = applied.clone();
    settled.status = Some(status::compute(
        applied,
        &Observation {
            problems: &[],
            deployment: Some(&d.deployment),
            cron_jobs: &observed,
            apply_failure: None,
            service_monitor: d.service_monitor.as_ref().map(|_| "pool-node"),
            disruption_budget: d.disruption_budget.as_ref().map(|_| "pool-node"),
            network_policies: &policy_names,
            payouts_pods: Ok(runs),
        },
        "2026-11-29T00:00:00Z",
    ));
    if let Some(monitor) = &d.service_monitor {
        world.put(
            SERVICE_MONITOR.into(),
            serde_json::to_value(monitor).unwrap(),
        );
    }
    world.put(pool_path("pool"), serde_json::to_value(&settled).unwrap());
    (world, settled)
}

fn lines(seen: &[Seen]) -> Vec<String> {
    seen.iter().map(Seen::line).collect()
}

const SECRET: &str = "GET /api/v1/namespaces/pools/secrets/mongodb-uri";
const LIST_CRONJOBS: &str = "GET /apis/batch/v1beta1/namespaces/pools/cronjobs";
/// The payouts job's pods, read for the status (a blocked run holds payouts).
const LIST_PODS: &str = "GET /api/v1/namespaces/pools/pods";
const CONFIG_MAP: &str = "/api/v1/namespaces/pools/configmaps/pool-config";
const DEPLOYMENT: &str = "/apis/apps/v1/namespaces/pools/deployments/pool-node";
const SERVICE: &str = "/api/v1/namespaces/pools/services/pool-node";
const STATUS: &str = "PATCH /apis/minerpool.io/v1alpha1/namespaces/pools/minerpools/pool/status";
const EVENT: &str = "POST /apis/events.k8s.io/v1/namespaces/pools/events";
const SERVICE_MONITOR: &str =
    "/apis/monitoring.coreos.com/v1/namespaces/pools/servicemonitors/pool-node";
const BUDGET: &str = "/apis/policy/v1beta1/namespaces/pools/poddisruptionbudgets/pool-node";
const NODE_POLICY: &str = "/apis/networking.k8s.io/v1/namespaces/pools/networkpolicies/pool-node";
const JOBS_POLICY: &str = "/apis/networking.k8s.io/v1/namespaces/pools/networkpolicies/pool-jobs";

/// The reads of a reconcile whose ConfigMap, Deployment and Service are current.
fn reads_of_current_children() -> Vec<String> {
    vec![
        SECRET.to_string(),
        LIST_CRONJOBS.into(),
        format!("GET {CONFIG_MAP}"),
        format!("GET {DEPLOYMENT}"),
        format!("GET {SERVICE}"),
    ]
}

fn cron_job_path(job: &str) -> String {
    format!("/apis/batch/v1beta1/namespaces/pools/cronjobs/pool-{job}")
}

#[tokio::test]
async fn first_reconcile_creates_every_child_then_writes_status_and_an_event() {
    let mp = fixtures::minerpool("pool", NS);
    let (outcome, seen) = reconcile_against(base_world(&mp), &mp).await;
    outcome.unwrap();
    assert_eq!(
        lines(&seen),
        [
            SECRET.to_string(),
            LIST_CRONJOBS.into(),
            format!("GET {CONFIG_MAP}"),
            format!("PATCH {CONFIG_MAP}"),
            format!("GET {DEPLOYMENT}"),
            format!("PATCH {DEPLOYMENT}"),
            format!("GET {SERVICE}"),
            format!("PATCH {SERVICE}"),
            // Not in the labelled list: read by name, so a foreign one would be found.
            format!("GET {}", cron_job_path("rewards")),
            format!("PATCH {}", cron_job_path("rewards")),
            format!("GET {}", cron_job_path("validators")),
            format!("PATCH {}", cron_job_path("validators")),
            format!("GET {}", cron_job_path("payouts")),
            format!("PATCH {}", cron_job_path("payouts")),
            format!("GET {}", cron_job_path("decay")),
            format!("PATCH {}", cron_job_path("decay")),
            LIST_PODS.into(),
            STATUS.into(),
            EVENT.into(),
        ]
    );
    assert!(
        seen[1]
            .query
            .contains("labelSelector=app.kubernetes.io%2Finstance%3Dpool")
    );
    assert!(
        seen[16].query.contains(
            "app.kubernetes.io%2Fcomponent%3Dpayouts%2Capp.kubernetes.io%2Finstance%3Dpool"
        ),
        "{}",
        seen[16].query
    );
    // Every apply is a forced server-side apply with the one field manager.
    for apply in seen
        .iter()
        .filter(|s| s.method == "PATCH" && !s.path.ends_with("/status"))
    {
        assert_eq!(
            apply.query, "&force=true&fieldManager=minerpool-operator",
            "{}",
            apply.path
        );
        assert_eq!(
            apply.body["metadata"]["ownerReferences"][0]["uid"],
            "uid-of-pool"
        );
    }
    let deployment = &seen[5].body;
    assert!(
        deployment["spec"].get("replicas").is_none(),
        "unset replicas are not claimed"
    );
    let cron_job = &seen[9].body;
    assert_eq!(cron_job["apiVersion"], "batch/v1beta1");
    assert_eq!(cron_job["spec"]["concurrencyPolicy"], "Forbid");
    let status = &seen[17].body["status"];
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["reason"], "NodeUnavailable");
    assert_eq!(status["conditions"][2]["status"], "True");
    assert_eq!(status["conditions"][3]["type"], "PayoutsHeld");
    assert_eq!(status["conditions"][3]["reason"], "NotHeld");
    assert_eq!(status["payouts"], "ok");
    let event = &seen[18].body;
    assert_eq!(event["reason"], "NodeUnavailable");
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["regarding"]["name"], "pool");
}

#[tokio::test]
async fn a_steady_state_reads_and_writes_nothing() {
    let (world, settled) = settled_world(&fixtures::minerpool("pool", NS));
    let (outcome, seen) = reconcile_against(world, &settled).await;
    outcome.unwrap();
    assert_eq!(
        lines(&seen),
        [
            SECRET.to_string(),
            LIST_CRONJOBS.into(),
            format!("GET {CONFIG_MAP}"),
            format!("GET {DEPLOYMENT}"),
            format!("GET {SERVICE}"),
            LIST_PODS.into(),
        ]
    );
    assert!(seen.iter().all(|s| s.method == "GET"));
}

#[tokio::test]
async fn a_spec_change_applies_only_the_children_it_changes() {
    let (world, settled) = settled_world(&fixtures::minerpool("pool", NS));
    let mut changed = settled.clone();
    changed.metadata.generation = Some(2);
    changed.spec.node.replicas = Some(2);
    changed.spec.jobs.rewards = Some(JobSpec {
        schedule: Some("*/2 * * * *".into()),
        ..JobSpec::default()
    });
    let (outcome, seen) = reconcile_against(world, &changed).await;
    outcome.unwrap();
    assert_eq!(
        lines(&seen),
        [
            SECRET.to_string(),
            LIST_CRONJOBS.into(),
            format!("GET {CONFIG_MAP}"),
            format!("GET {DEPLOYMENT}"),
            format!("PATCH {DEPLOYMENT}"),
            format!("GET {SERVICE}"),
            format!("PATCH {}", cron_job_path("rewards")),
            // Two replicas: one may be evicted at a time.
            format!("GET {BUDGET}"),
            format!("PATCH {BUDGET}"),
            LIST_PODS.into(),
            STATUS.into(),
        ]
    );
    assert_eq!(seen[4].body["spec"]["replicas"], 2);
    assert_eq!(seen[6].body["spec"]["schedule"], "*/2 * * * *");
    assert_eq!(seen[8].body["spec"]["maxUnavailable"], 1);
    assert_eq!(seen[10].body["status"]["observedGeneration"], 2);
}

fn with_service_monitor(mut mp: MinerPool, enabled: bool) -> MinerPool {
    mp.spec.node.service_monitor = Some(minerpool_operator::crd::ServiceMonitor {
        enabled,
        interval: Some("30s".into()),
        labels: Some([("release".to_string(), "prometheus".to_string())].into()),
    });
    mp
}

#[tokio::test]
async fn a_service_monitor_is_applied_when_turned_on_and_deleted_once_turned_off() {
    let (world, settled) = settled_world(&fixtures::minerpool("pool", NS));
    let mut on = with_service_monitor(settled.clone(), true);
    on.metadata.generation = Some(2);
    let (outcome, seen) = reconcile_against(world, &on).await;
    outcome.unwrap();
    assert_eq!(
        lines(&seen),
        [
            reads_of_current_children(),
            vec![
                format!("GET {SERVICE_MONITOR}"),
                format!("PATCH {SERVICE_MONITOR}"),
                LIST_PODS.into(),
                STATUS.into(),
            ],
        ]
        .concat()
    );
    let monitor = &seen[6].body;
    assert_eq!(monitor["kind"], "ServiceMonitor");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        serde_json::to_value(names::labels("pool", "node")).unwrap(),
        "selects the node Service by its labels"
    );
    assert_eq!(
        monitor["spec"]["endpoints"],
        json!([{ "port": "metrics", "path": "/metrics", "interval": "30s" }])
    );
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(
        monitor["metadata"]["ownerReferences"][0]["uid"],
        "uid-of-pool"
    );
    assert_eq!(seen[8].body["status"]["serviceMonitor"], "pool-node");

    // Settled with it on: nothing more than a read.
    let (world, settled_on) =
        settled_world(&with_service_monitor(fixtures::minerpool("pool", NS), true));
    let (outcome, seen) = reconcile_against(world, &settled_on).await;
    outcome.unwrap();
    assert!(seen.iter().all(|s| s.method == "GET"), "{:?}", lines(&seen));

    // Turned off: the one the status names is deleted, and the status forgets it.
    let (world, _) = settled_world(&settled_on);
    let mut off = with_service_monitor(settled_on.clone(), false);
    off.metadata.generation = Some(3);
    let (outcome, seen) = reconcile_against(world, &off).await;
    outcome.unwrap();
    assert_eq!(
        lines(&seen),
        [
            reads_of_current_children(),
            vec![
                format!("GET {SERVICE_MONITOR}"),
                format!("DELETE {SERVICE_MONITOR}"),
                LIST_PODS.into(),
                STATUS.into(),
            ],
        ]
        .concat()
    );
    assert_eq!(seen[8].body["status"]["serviceMonitor"], Value::Null);
}

/// Without the Prometheus Operator's CRDs, a ServiceMonitor cannot be applied: Ready is False
/// with a message that says what is missing.
#[tokio::test]
async fn a_service_monitor_without_its_crd_sets_ready_false_saying_so() {
    let (mut world, settled) = settled_world(&fixtures::minerpool("pool", NS));
    world.refused.insert(
        format!("PATCH {SERVICE_MONITOR}"),
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "NotFound",
               "code": 404, "message": "the server could not find the requested resource"}),
    );
    let mut on = with_service_monitor(settled.clone(), true);
    on.metadata.generation = Some(2);
    let (outcome, seen) = reconcile_against(world, &on).await;
    assert!(outcome.is_err(), "retried with a backoff");
    let status = seen
        .iter()
        .find(|s| s.line() == STATUS)
        .expect("status written");
    let ready = &status.body["status"]["conditions"][0];
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "NotFound");
    let message = ready["message"].as_str().unwrap();
    assert!(
        message.contains("monitoring.coreos.com/v1 CRDs"),
        "{message}"
    );
}

fn guarded(mut mp: MinerPool, replicas: i32, policies: bool) -> MinerPool {
    mp.spec.node.replicas = Some(replicas);
    mp.spec.network_policy.enabled = policies;
    mp
}

/// Scaled above one replica with network policies on, the budget (in the version the cluster
/// serves) and both policies are applied and recorded; scaled back to one with the policies
/// off, each is deleted and the status forgets it; settled, nothing is written.
#[tokio::test]
async fn a_budget_and_network_policies_follow_the_spec_and_are_deleted_when_no_longer_wanted() {
    let (world, settled) = settled_world(&fixtures::minerpool("pool", NS));
    let mut on = guarded(settled.clone(), 3, true);
    on.metadata.generation = Some(2);
    let (outcome, seen) = reconcile_against(world, &on).await;
    outcome.unwrap();
    assert_eq!(
        lines(&seen),
        [
            vec![
                SECRET.to_string(),
                LIST_CRONJOBS.into(),
                format!("GET {CONFIG_MAP}"),
                format!("GET {DEPLOYMENT}"),
                // Replicas changed.
                format!("PATCH {DEPLOYMENT}"),
                format!("GET {SERVICE}"),
            ],
            vec![
                format!("GET {BUDGET}"),
                format!("PATCH {BUDGET}"),
                format!("GET {NODE_POLICY}"),
                format!("PATCH {NODE_POLICY}"),
                format!("GET {JOBS_POLICY}"),
                format!("PATCH {JOBS_POLICY}"),
                LIST_PODS.into(),
                STATUS.into(),
            ],
        ]
        .concat()
    );
    let budget = &seen[7].body;
    assert_eq!(budget["apiVersion"], "policy/v1beta1");
    assert_eq!(budget["kind"], "PodDisruptionBudget");
    assert_eq!(budget["spec"]["maxUnavailable"], 1);
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"],
        serde_json::to_value(names::node_selector_labels("pool")).unwrap()
    );
    assert_eq!(
        budget["metadata"]["ownerReferences"][0]["uid"],
        "uid-of-pool"
    );
    assert_eq!(seen[9].body["kind"], "NetworkPolicy");
    assert_eq!(seen[11].body["spec"]["ingress"], json!([]));
    let status = &seen[13].body["status"];
    assert_eq!(status["disruptionBudget"], "pool-node");
    assert_eq!(status["networkPolicies"], json!(["pool-node", "pool-jobs"]));

    // Settled with both: reads only.
    let (world, settled_on) = settled_world(&guarded(fixtures::minerpool("pool", NS), 3, true));
    let (outcome, seen) = reconcile_against(world, &settled_on).await;
    outcome.unwrap();
    assert!(seen.iter().all(|s| s.method == "GET"), "{:?}", lines(&seen));

    // One replica, policies off: each one the status names is read, then deleted.
    let (world, _) = settled_world(&settled_on);
    let mut off = guarded(settled_on.clone(), 1, false);
    off.metadata.generation = Some(3);
    let (outcome, seen) = reconcile_against(world, &off).await;
    outcome.unwrap();
    let mut tail = lines(&seen);
    let first_budget = tail.iter().position(|l| l.ends_with(BUDGET)).unwrap();
    let tail = tail.split_off(first_budget);
    assert_eq!(
        tail,
        [
            format!("GET {BUDGET}"),
            format!("DELETE {BUDGET}"),
            format!("GET {NODE_POLICY}"),
            format!("DELETE {NODE_POLICY}"),
            format!("GET {JOBS_POLICY}"),
            format!("DELETE {JOBS_POLICY}"),
            LIST_PODS.into(),
            STATUS.into(),
        ]
    );
    let status = &seen.last().unwrap().body["status"];
    assert_eq!(status["disruptionBudget"], Value::Null);
    assert_eq!(status["networkPolicies"], Value::Null);
}

/// A pod override of a field the operator owns is an invalid spec: nothing is applied and the
/// Ready condition names the field's path.
#[tokio::test]
async fn a_refused_pod_override_applies_nothing_and_names_its_path() {
    let (world, settled) = settled_world(&fixtures::minerpool("pool", NS));
    let mut refused = settled.clone();
    refused.metadata.generation = Some(2);
    refused.spec.node.pod_overrides = Some(PodOverrides(json!({"spec": {"containers": [
        {"name": "node", "args": ["serve", "--config", "/tmp/mine.yaml"]}]}})));
    let (outcome, seen) = reconcile_against(world, &refused).await;
    outcome.unwrap();
    assert_eq!(
        lines(&seen),
        [
            SECRET.to_string(),
            LIST_CRONJOBS.into(),
            format!("GET {DEPLOYMENT}"),
            LIST_PODS.into(),
            STATUS.into(),
            EVENT.into(),
        ]
    );
    let ready = &seen[4].body["status"]["conditions"][0];
    assert_eq!(ready["reason"], "InvalidSpec");
    assert_eq!(
        ready["message"],
        "spec.node.podOverrides.spec.containers[0].args: is set by the operator (the subcommand and the config file)"
    );

    // An accepted one rolls the node with it and touches nothing else.
    let (world, settled) = settled_world(&fixtures::minerpool("pool", NS));
    let mut placed = settled.clone();
    placed.metadata.generation = Some(2);
    placed.spec.node.pod_overrides = Some(PodOverrides(json!({"spec": {
        "nodeSelector": {"minerpool.io/pool": "yes"},
        "tolerations": [{"key": "minerpool.io/dedicated", "operator": "Exists", "effect": "NoSchedule"}]}})));
    let (outcome, seen) = reconcile_against(world, &placed).await;
    outcome.unwrap();
    let writes: Vec<String> = seen
        .iter()
        .filter(|s| s.method != "GET")
        .map(Seen::line)
        .collect();
    assert_eq!(writes, [format!("PATCH {DEPLOYMENT}"), STATUS.into()]);
    let pod = &seen.iter().find(|s| s.method == "PATCH").unwrap().body["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"]["minerpool.io/pool"], "yes");
    assert_eq!(pod["tolerations"][0]["key"], "minerpool.io/dedicated");
}

#[tokio::test]
async fn a_disabled_job_has_its_cronjob_deleted() {
    let (world, settled) = settled_world(&fixtures::minerpool("pool", NS));
    let mut changed = settled.clone();
    changed.metadata.generation = Some(2);
    changed.spec.jobs.decay = Some(JobSpec {
        enabled: Some(false),
        ..JobSpec::default()
    });
    let (outcome, seen) = reconcile_against(world, &changed).await;
    outcome.unwrap();
    assert_eq!(
        lines(&seen),
        [
            reads_of_current_children(),
            vec![
                format!("DELETE {}", cron_job_path("decay")),
                LIST_PODS.into(),
                STATUS.into(),
            ],
        ]
        .concat()
    );
    let status = &seen[7].body["status"];
    assert_eq!(
        status["jobs"]["decay"],
        Value::Null,
        "the job's status entry is removed"
    );
    assert!(status["jobs"].get("rewards").is_some());
}

#[tokio::test]
async fn an_invalid_spec_applies_nothing_and_reports_a_condition_and_an_event() {
    let mut mp = fixtures::minerpool("pool", NS);
    mp.spec.jobs.rewards = Some(JobSpec {
        schedule: Some("every minute".into()),
        ..JobSpec::default()
    });
    let (outcome, seen) = reconcile_against(base_world(&mp), &mp).await;
    outcome.unwrap();
    assert_eq!(
        lines(&seen),
        [
            SECRET.to_string(),
            LIST_CRONJOBS.into(),
            format!("GET {DEPLOYMENT}"),
            LIST_PODS.into(),
            STATUS.into(),
            EVENT.into(),
        ]
    );
    let ready = &seen[4].body["status"]["conditions"][0];
    assert_eq!(ready["reason"], "InvalidSpec");
    assert_eq!(
        ready["message"],
        "spec.jobs.rewards.schedule: expected 5 fields (minute hour day-of-month month day-of-week), got 2"
    );
    assert_eq!(seen[5].body["type"], "Warning");
    assert_eq!(seen[5].body["reason"], "InvalidSpec");
}

#[tokio::test]
async fn a_missing_secret_is_an_invalid_spec_not_a_failure() {
    let mp = fixtures::minerpool("pool", NS);
    let mut world = World::default();
    world.put(pool_path("pool"), serde_json::to_value(&mp).unwrap());
    let (outcome, seen) = reconcile_against(world, &mp).await;
    outcome.unwrap();
    assert!(
        seen.iter()
            .all(|s| s.method != "PATCH" || s.path.ends_with("/status"))
    );
    let status = seen.iter().find(|s| s.line() == STATUS).unwrap();
    assert_eq!(
        status.body["status"]["conditions"][0]["message"],
        "spec.mongodb.uriSecretRef: Secret \"mongodb-uri\" does not exist"
    );
}

#[tokio::test]
async fn an_api_failure_is_an_error_with_a_backoff_per_object() {
    // The API server refuses every request.
    let mp = fixtures::minerpool("pool", NS);
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        while let Some((_, reply)) = handle.next_request().await {
            reply.send_response(
                Response::builder()
                    .status(StatusCode::FORBIDDEN)
                    .body(Body::from(
                        serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Status",
                            "status": "Failure", "reason": "Forbidden", "code": 403,
                            "message": "secrets \"mongodb-uri\" is forbidden"}))
                        .unwrap(),
                    ))
                    .unwrap(),
            );
        }
    });
    let ctx = Arc::new(Context::new(
        Client::new(service, NS),
        ServedApis::V1,
        Metrics::default(),
        None,
    ));
    let error = reconcile::reconcile(Arc::new(mp.clone()), ctx.clone())
        .await
        .unwrap_err();
    assert_eq!(error.reason(), "forbidden");
    assert!(
        error.to_string().contains("reading Secret mongodb-uri"),
        "{error}"
    );
    let first = reconcile::error_policy(Arc::new(mp.clone()), &error, ctx.clone());
    let second = reconcile::error_policy(Arc::new(mp.clone()), &error, ctx.clone());
    assert_eq!(
        first,
        kube::runtime::controller::Action::requeue(reconcile::backoff(1))
    );
    assert_eq!(
        second,
        kube::runtime::controller::Action::requeue(reconcile::backoff(2))
    );
    let other = fixtures::minerpool("other", NS);
    assert_eq!(
        reconcile::error_policy(Arc::new(other), &error, ctx.clone()),
        kube::runtime::controller::Action::requeue(reconcile::backoff(1)),
        "another MinerPool keeps its own count"
    );
    let metrics = ctx.metrics.encode();
    assert!(
        metrics.contains("minerpool_operator_reconcile_failures_total{reason=\"forbidden\"} 1"),
        "{metrics}"
    );
    drop(ctx);
    server.await.unwrap();
    assert_eq!(reconcile::backoff(1), Duration::from_secs(2));
    assert_eq!(reconcile::backoff(3), Duration::from_secs(8));
    assert_eq!(reconcile::backoff(40), Duration::from_secs(300));
}

/// The Ready condition and the Event a reconcile wrote, from its requests.
fn ready_written(seen: &[Seen]) -> (Value, Value) {
    let status = seen
        .iter()
        .find(|s| s.line() == STATUS)
        .expect("a status write");
    let event = seen.iter().find(|s| s.line() == EVENT).expect("an Event");
    (
        status.body["status"]["conditions"][0].clone(),
        event.body.clone(),
    )
}

#[tokio::test]
async fn an_object_of_the_same_name_not_controlled_by_the_pool_is_refused_not_adopted() {
    let mp = fixtures::minerpool("pool", NS);
    for (path, foreign, says) in [
        (
            SERVICE,
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "pool-node", "namespace": NS},
                   "spec": {"ports": [{"port": 80}]}}),
            "it has no controller",
        ),
        (
            CONFIG_MAP,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "pool-config", "namespace": NS, "ownerReferences": [
                       {"apiVersion": "apps/v1", "kind": "Deployment", "name": "theirs",
                        "uid": "uid-of-theirs", "controller": true}]},
                   "data": {"theirs": "yes"}}),
            "its controller is Deployment theirs",
        ),
    ] {
        let mut world = base_world(&mp);
        world.put(path.to_string(), foreign);
        let (outcome, seen) = reconcile_against(world, &mp).await;
        let error = outcome.unwrap_err();
        assert!(
            error.contains("is not controlled by this MinerPool"),
            "{error}"
        );
        assert!(
            !seen.iter().any(|s| s.line() == format!("PATCH {path}")),
            "{path} was written: {:?}",
            lines(&seen)
        );
        let (ready, event) = ready_written(&seen);
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "Conflict");
        let message = ready["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
        assert!(
            message.contains("Service pool-node") || message.contains("ConfigMap pool-config"),
            "{message}"
        );
        assert_eq!(event["reason"], "Conflict");
        assert_eq!(event["type"], "Warning");
    }
}

#[tokio::test]
async fn drift_of_an_applied_field_is_applied_again_and_nothing_else_is_written() {
    let mp = fixtures::minerpool("pool", NS);
    let (mut world, settled) = settled_world(&mp);
    // `kubectl set image` on the node: the digest annotation stays as it was.
    let path = DEPLOYMENT.to_string();
    let mut deployment = world.objects[&path].clone();
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil/node:1");
    world.put(path, deployment);
    let (outcome, seen) = reconcile_against(world, &settled).await;
    outcome.unwrap();
    let writes: Vec<String> = seen
        .iter()
        .filter(|s| s.method != "GET")
        .map(Seen::line)
        .collect();
    assert_eq!(writes, [format!("PATCH {DEPLOYMENT}")]);
    let applied = &seen.iter().find(|s| s.method == "PATCH").unwrap().body;
    assert_eq!(
        applied["spec"]["template"]["spec"]["containers"][0]["image"],
        "minerpool/minerpool-node:0.1.0"
    );
}

#[tokio::test]
async fn an_apply_the_server_refuses_sets_ready_false_with_its_reason() {
    let mp = fixtures::minerpool("pool", NS);
    let mut world = base_world(&mp);
    world.refused.insert(
        format!("PATCH {SERVICE}"),
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Invalid",
               "code": 422, "message": "Service \"pool-node\" is invalid: spec.ports[0].nodePort: Invalid value"}),
    );
    let (outcome, seen) = reconcile_against(world, &mp).await;
    assert!(outcome.unwrap_err().contains("applying pool-node"));
    let (ready, event) = ready_written(&seen);
    assert_eq!(ready["status"], "False");
    assert_eq!(ready["reason"], "Invalid");
    assert!(
        ready["message"]
            .as_str()
            .unwrap()
            .contains("spec.ports[0].nodePort"),
        "{ready}"
    );
    assert_eq!(event["reason"], "Invalid");
    // Nothing after the refused child was applied.
    assert!(!seen.iter().any(|s| s.path.contains("/cronjobs/")));
}

/// A payouts run that ended blocked (exit code 3) holds payouts in the status, with the reason
/// from its log's tail: one status write, no Event (Ready did not change). Settled, the pods are
/// only read again. With the payouts job disabled they are not read, and nothing is held.
#[tokio::test]
async fn a_blocked_payouts_run_holds_payouts_in_the_status() {
    let reason = "payouts held: 1 foreign spend of the wallet is unresolved: 3f9a (in block 120, 12.50000000 to DUiK4y…); adopt or acknowledge each (minerpool-job spends …)";
    let blocked = fixtures::payouts_run(
        "pool",
        "pool-payouts-29000002-x2k4q",
        "2026-11-29T00:02:05Z",
        3,
        &fixtures::blocked_log_tail(reason),
    );
    let (mut world, settled) = settled_world(&fixtures::minerpool("pool", NS));
    world.put(
        path_of("v1", "pods", "pool-payouts-29000002-x2k4q"),
        serde_json::to_value(&blocked).unwrap(),
    );
    let (outcome, seen) = reconcile_against(world, &settled).await;
    outcome.unwrap();
    assert_eq!(
        lines(&seen),
        [
            reads_of_current_children(),
            vec![LIST_PODS.into(), STATUS.into()]
        ]
        .concat()
    );
    let status = &seen[6].body["status"];
    assert_eq!(status["payouts"], "held");
    let held = &status["conditions"][3];
    assert_eq!(
        [
            &held["type"],
            &held["status"],
            &held["reason"],
            &held["message"]
        ],
        ["PayoutsHeld", "True", "Blocked", reason]
    );

    let (world, held) = settled_world_with_runs(
        &fixtures::minerpool("pool", NS),
        std::slice::from_ref(&blocked),
    );
    let (outcome, seen) = reconcile_against(world, &held).await;
    outcome.unwrap();
    assert_eq!(
        lines(&seen),
        [reads_of_current_children(), vec![LIST_PODS.into()]].concat()
    );

    let (world, _) = settled_world_with_runs(&held, std::slice::from_ref(&blocked));
    let mut disabled = held.clone();
    disabled.metadata.generation = Some(2);
    disabled.spec.jobs.payouts = Some(JobSpec {
        enabled: Some(false),
        ..JobSpec::default()
    });
    let (outcome, seen) = reconcile_against(world, &disabled).await;
    outcome.unwrap();
    assert_eq!(
        lines(&seen),
        [
            reads_of_current_children(),
            vec![
                format!("DELETE {}", cron_job_path("payouts")),
                STATUS.into()
            ],
        ]
        .concat()
    );
    let status = &seen[6].body["status"];
    assert_eq!(status["payouts"], "ok");
    assert_eq!(
        status["conditions"][3]["message"],
        "the payouts job is disabled"
    );
}

/// Pods the operator may not read (a role without them) leave PayoutsHeld Unknown, saying why;
/// the rest of the reconcile goes on and succeeds (Ready unchanged: no Event).
#[tokio::test]
async fn unreadable_payouts_pods_make_payouts_held_unknown_not_a_failure() {
    let (mut world, settled) = settled_world(&fixtures::minerpool("pool", NS));
    world.refused.insert(
        LIST_PODS.into(),
        json!({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Forbidden",
               "code": 403, "message": "pods is forbidden: User \"operator\" cannot list resource \"pods\""}),
    );
    let (outcome, seen) = reconcile_against(world, &settled).await;
    outcome.unwrap();
    assert_eq!(
        lines(&seen),
        [
            reads_of_current_children(),
            vec![LIST_PODS.into(), STATUS.into()]
        ]
        .concat()
    );
    let status = &seen[6].body["status"];
    assert_eq!(status["payouts"], "unknown");
    let held = &status["conditions"][3];
    assert_eq!(
        [&held["status"], &held["reason"]],
        ["Unknown", "PodsUnreadable"]
    );
    let message = held["message"].as_str().unwrap();
    assert!(
        message.contains("cannot list resource \"pods\""),
        "{message}"
    );
}
