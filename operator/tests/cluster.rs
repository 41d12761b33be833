//! The operator against a real kube-apiserver 1.20.2 with etcd and kube-controller-manager
//! (started by `scripts/with-test-servers.sh` with MINERPOOL_TEST_KUBE=1). Each test runs the
//! controller in-process, limited to a namespace of its own.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use minerpool_operator::crd::{JobSpec, MinerPool, MinerPoolStatus};
use minerpool_operator::fixtures;
use minerpool_operator::metrics::Metrics;
use minerpool_operator::reconcile::{self, Context, Scope};
use minerpool_operator::served_api::{ServedApis, VersionedKind};
use minerpool_operator::testing;
use minerpool_tests::wait::{self, DEADLINE, Shown};
use serde_json::json;

/// The controller, running until dropped.
struct Operator {
    ctx: Arc<Context>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Operator {
    async fn start(client: Client, namespace: &str) -> Operator {
        let version = ServedApis::discover(&client).await.unwrap();
        let ctx = Arc::new(Context::new(client, version, Metrics::default(), None));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(reconcile::run(
            ctx.clone(),
            Scope::Namespaces(vec![namespace.to_string()]),
            async move {
                let _ = stopped.await;
            },
        ));
        Operator {
            ctx,
            stop: Some(stop),
            task: Some(task),
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }

    /// Returns once no reconcile has run for 3 s, so that what a test does next is not put
    /// right by a reconcile already on its way but by the watch it is about.
    async fn wait_idle(&self) {
        let reconciles = || self.ctx.metrics.reconciles.get();
        let give_up = std::time::Instant::now() + DEADLINE;
        loop {
            let before = reconciles();
            tokio::time::sleep(Duration::from_secs(3)).await;
            if reconciles() == before {
                return;
            }
            assert!(
                std::time::Instant::now() < give_up,
                "the controller was never idle for 3 s"
            );
        }
    }
}

async fn setup(prefix: &str) -> (Client, String) {
    let client = testing::admin_client().await;
    testing::ensure_crd(&client).await;
    let ns = testing::namespace_with_mongodb_secret(&client, prefix).await;
    (client, ns)
}

/// A merge patch of the MinerPool `pool`, as an admin edits it.
async fn patch_pool(client: &Client, ns: &str, patch: serde_json::Value) {
    let pools: Api<MinerPool> = Api::namespaced(client.clone(), ns);
    pools
        .patch("pool", &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

/// Waits for a status that describes the current generation and satisfies `check`.
async fn wait_status(
    client: &Client,
    ns: &str,
    name: &str,
    what: &str,
    check: impl Fn(&MinerPoolStatus) -> bool,
) -> MinerPool {
    let api: Api<MinerPool> = Api::namespaced(client.clone(), ns);
    let check = &check;
    wait::until_ok(what, DEADLINE, || {
        let api = api.clone();
        async move {
            let mp = api
                .get(name)
                .await
                .map_err(|e| Shown(format!("reading MinerPool {name}: {e}")))?;
            let current = mp.status.as_ref().is_some_and(|status| {
                status.observed_generation == mp.metadata.generation && check(status)
            });
            if current {
                Ok(mp)
            } else {
                Err(Shown(format!(
                    "generation {:?}, status {:?}",
                    mp.metadata.generation, mp.status
                )))
            }
        }
    })
    .await
}

/// The reasons of the Events about the MinerPool `name`, oldest first. The operator records an
/// Event after it writes the status, so a test that has seen the status waits for these.
async fn event_reasons(client: &Client, ns: &str, name: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let mut events = events.list(&ListParams::default()).await.unwrap().items;
    events.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
    });
    events
        .into_iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("MinerPool") && r.name.as_deref() == Some(name)
            })
        })
        .filter_map(|e| e.reason)
        .collect()
}

fn condition<'a>(
    status: &'a MinerPoolStatus,
    type_: &str,
) -> Option<&'a minerpool_operator::crd::Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

/// The test server is Kubernetes 1.20: PodDisruptionBudgets are `policy/v1beta1` (checked by
/// `budget_policies_and_pod_overrides_on_the_real_api_server`).
fn budgets(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &ServedApis::V1BETA1.api_resource(VersionedKind::PodDisruptionBudget),
    )
}

fn cron_jobs(client: &Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &ServedApis::V1BETA1.api_resource(VersionedKind::CronJob),
    )
}

async fn cron_job_names(client: &Client, ns: &str) -> Vec<String> {
    let mut names: Vec<String> = cron_jobs(client, ns)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|c| c.name_any())
        .collect();
    names.sort();
    names
}

fn kubectl(args: &[&str]) -> String {
    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(testing::kubeconfig_path())
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(
        output.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

async fn replicas(client: &Client, ns: &str, name: &str) -> Option<i32> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    api.get(name).await.ok()?.spec?.replicas
}

#[tokio::test]
async fn the_crd_is_served_and_its_schema_and_cel_rule_are_enforced() {
    let (client, ns) = setup("mp-crd").await;
    let api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &kube::api::ApiResource::erase::<MinerPool>(&()),
    );
    let good = serde_json::to_value(fixtures::minerpool("x", &ns)).unwrap();
    for (label, mutate, says) in [
        (
            "missing images",
            json!({"spec": {"images": null}}),
            "spec.images",
        ),
        (
            "a string percentage",
            json!({"spec": {"rewards": {"feePercent": "lots"}}}),
            "spec.rewards.feePercent",
        ),
        (
            "a percentage out of range",
            json!({"spec": {"rewards": {"feePercent": 300}}}),
            "spec.rewards.feePercent",
        ),
        (
            "replicas as text",
            json!({"spec": {"node": {"replicas": "three"}}}),
            "spec.node.replicas",
        ),
    ] {
        let mut object = good.clone();
        testing::merge_patch(&mut object, &mutate);
        object["metadata"] = json!({"name": "bad", "namespace": ns});
        let object: DynamicObject = serde_json::from_value(object).unwrap();
        match api.create(&PostParams::default(), &object).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{label}: {status:?}");
                assert!(status.message.contains(says), "{label}: {}", status.message);
            }
            other => panic!("{label}: expected a 422, got {other:?}"),
        }
    }

    // The CEL rule, evaluated client-side (Kubernetes 1.20 ignores it)...
    let mut bad_sum = fixtures::minerpool("bad-sum", &ns);
    bad_sum.spec.rewards.fee_percent = 20;
    let cel = kube::core::cel::validate_cel(&bad_sum).expect_err("the CEL rule rejects 20+41+41");
    let rule_message = "feePercent + poolsPercent + validatorsPercent must be 100";
    assert!(cel.to_string().contains(rule_message), "{cel}");
    kube::core::cel::validate_cel(&fixtures::minerpool("ok", &ns)).expect("18+41+41 passes");

    // ...and the operator's validation reports the same violation on any cluster.
    let operator = Operator::start(client.clone(), &ns).await;
    testing::create_pool(&client, &ns, &bad_sum).await;
    let mp = wait_status(&client, &ns, "bad-sum", "an InvalidSpec condition", |s| {
        condition(s, "Ready").is_some_and(|c| c.reason == "InvalidSpec")
    })
    .await;
    let ready = condition(mp.status.as_ref().unwrap(), "Ready").unwrap();
    assert!(ready.message.contains(rule_message), "{}", ready.message);
    assert!(
        cron_job_names(&client, &ns).await.is_empty(),
        "an invalid spec creates nothing"
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    assert!(deployments.get_opt("bad-sum-node").await.unwrap().is_none());
    operator.stop().await;
}

#[tokio::test]
async fn a_reconcile_creates_owned_children_status_events_and_printer_columns() {
    let (client, ns) = setup("mp-reconcile").await;
    let operator = Operator::start(client.clone(), &ns).await;
    let created = testing::create_pool(&client, &ns, &fixtures::minerpool("pool", &ns)).await;
    let uid = created.uid().unwrap();
    let mp = wait_status(&client, &ns, "pool", "the first status", |s| {
        condition(s, "JobsScheduled").is_some_and(|c| c.status == "True")
    })
    .await;
    let status = mp.status.unwrap();
    // No scheduler or kubelet here: the node's pods stay Pending.
    assert_eq!(
        condition(&status, "Ready").unwrap().reason,
        "NodeUnavailable"
    );
    assert_eq!(
        condition(&status, "NodeAvailable").unwrap().reason,
        "NoReplicasAvailable"
    );
    assert!(status.node.selector.is_some());

    let owned_by_pool =
        |owners: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>| {
            owners.is_some_and(|o| o.len() == 1 && o[0].uid == uid && o[0].controller == Some(true))
        };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let deployment = deployments.get("pool-node").await.unwrap();
    assert!(owned_by_pool(deployment.metadata.owner_references.as_ref()));
    assert_eq!(
        deployment.spec.as_ref().unwrap().replicas,
        Some(1),
        "unset replicas: the API server's default"
    );
    assert!(owned_by_pool(
        services
            .get("pool-node")
            .await
            .unwrap()
            .metadata
            .owner_references
            .as_ref()
    ));
    let config = config_maps.get("pool-config").await.unwrap();
    assert!(owned_by_pool(config.metadata.owner_references.as_ref()));
    assert!(config.data.unwrap()["minerpool.yaml"].contains(fixtures::INODE_WALLET));
    assert_eq!(
        cron_job_names(&client, &ns).await,
        [
            "pool-decay",
            "pool-payouts",
            "pool-rewards",
            "pool-validators"
        ]
    );
    for cron_job in cron_jobs(&client, &ns)
        .list(&ListParams::default())
        .await
        .unwrap()
    {
        assert!(owned_by_pool(cron_job.metadata.owner_references.as_ref()));
        assert_eq!(cron_job.data["spec"]["concurrencyPolicy"], "Forbid");
    }

    let reasons = wait::until(
        "the Event of the first status",
        DEADLINE,
        || event_reasons(&client, &ns, "pool"),
        |reasons| !reasons.is_empty(),
    )
    .await;
    assert_eq!(
        reasons,
        ["NodeUnavailable"],
        "one Event for the one transition"
    );

    let table = kubectl(&["get", "mp", "pool", "-n", &ns]);
    let mut rows = table.lines();
    let header: Vec<&str> = rows.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "READY",
            "REPLICAS",
            "REWARDS",
            "SCHEDULED",
            "LAST",
            "REWARDS",
            "PAYOUTS",
            "AGE"
        ]
    );
    let row: Vec<&str> = rows.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..3], ["pool", "False", "0"]);
    assert_eq!(row[row.len() - 2], "ok", "no payouts run has ended blocked");

    // Disabling a job deletes its CronJob; the rest stay.
    patch_pool(
        &client,
        &ns,
        json!({"spec": {"jobs": {"decay": {"enabled": false}}}}),
    )
    .await;
    wait::until(
        "the decay CronJob to go",
        DEADLINE,
        || cron_job_names(&client, &ns),
        |names| names == &["pool-payouts", "pool-rewards", "pool-validators"],
    )
    .await;

    // An invalid edit becomes a condition and leaves the running children as they were.
    patch_pool(
        &client,
        &ns,
        json!({"spec": {"jobs": {"rewards": {"schedule": "61 * * * *"}}}}),
    )
    .await;
    let mp = wait_status(&client, &ns, "pool", "InvalidSpec", |s| {
        condition(s, "Ready").is_some_and(|c| c.reason == "InvalidSpec")
    })
    .await;
    assert_eq!(
        condition(mp.status.as_ref().unwrap(), "Ready")
            .unwrap()
            .message,
        "spec.jobs.rewards.schedule: minute field \"61\": 61 is outside 0-59"
    );
    let rewards = cron_jobs(&client, &ns).get("pool-rewards").await.unwrap();
    assert_eq!(rewards.data["spec"]["schedule"], "* * * * *");
    operator.stop().await;
}

#[tokio::test]
async fn scaling_goes_through_the_minerpool_and_a_direct_scale_is_not_fought() {
    let (client, ns) = setup("mp-scale").await;
    let operator = Operator::start(client.clone(), &ns).await;
    testing::create_pool(&client, &ns, &fixtures::minerpool("pool", &ns)).await;
    wait_status(&client, &ns, "pool", "the first status", |_| true).await;

    // spec.node.replicas unset: a direct scale stands through later reconciles. An edit of a
    // CronJob's schedule is reconciled (its status names the new generation once it is) without
    // re-applying the Deployment.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let config_hash = |d: Deployment| {
        d.spec
            .unwrap()
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap()[minerpool_operator::names::CONFIG_HASH]
            .clone()
    };
    let before = config_hash(deployments.get("pool-node").await.unwrap());
    kubectl(&["scale", "deployment/pool-node", "--replicas=4", "-n", &ns]);
    patch_pool(
        &client,
        &ns,
        json!({"spec": {"jobs": {"decay": {"schedule": "*/7 * * * *"}}}}),
    )
    .await;
    wait_status(&client, &ns, "pool", "generation 2 reconciled", |_| true).await;
    assert_eq!(
        config_hash(deployments.get("pool-node").await.unwrap()),
        before,
        "a schedule edit leaves the Deployment as it was"
    );
    assert_eq!(replicas(&client, &ns, "pool-node").await, Some(4));
    // Even a spec change that re-applies the Deployment leaves the count alone.
    patch_pool(
        &client,
        &ns,
        json!({"spec": {"rewards": {"blocksPerRun": 20}}}),
    )
    .await;
    wait_status(&client, &ns, "pool", "generation 3 reconciled", |_| true).await;
    let after = config_hash(deployments.get("pool-node").await.unwrap());
    assert_ne!(
        before, after,
        "the Deployment was re-applied with the new config"
    );
    assert_eq!(replicas(&client, &ns, "pool-node").await, Some(4));

    // The scale subresource of the MinerPool sets spec.node.replicas, which the operator owns.
    kubectl(&["scale", "mp/pool", "--replicas=3", "-n", &ns]);
    wait::until(
        "the Deployment to follow the MinerPool",
        DEADLINE,
        || replicas(&client, &ns, "pool-node"),
        |replicas| *replicas == Some(3),
    )
    .await;
    let scale = kubectl(&[
        "get",
        "--raw",
        &format!("/apis/minerpool.io/v1alpha1/namespaces/{ns}/minerpools/pool/scale"),
    ]);
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(scale["spec"]["replicas"], 3);
    // The status reports the Deployment's own count (pods of a stuck rollout included).
    let pools: Api<MinerPool> = Api::namespaced(client.clone(), &ns);
    wait::until(
        "status replicas to match the Deployment's",
        DEADLINE,
        || async {
            let live = deployments
                .get("pool-node")
                .await
                .ok()
                .and_then(|d| d.status?.replicas);
            let reported = pools
                .get("pool")
                .await
                .ok()
                .and_then(|mp| mp.status?.node.replicas);
            (live, reported)
        },
        |(live, reported)| live == reported && live.is_some_and(|n| n >= 3),
    )
    .await;
    operator.stop().await;
}

#[tokio::test]
async fn deleting_the_minerpool_garbage_collects_its_children() {
    let (client, ns) = setup("mp-delete").await;
    let operator = Operator::start(client.clone(), &ns).await;
    testing::create_pool(&client, &ns, &fixtures::minerpool("pool", &ns)).await;
    wait_status(&client, &ns, "pool", "all jobs scheduled", |s| {
        condition(s, "JobsScheduled").is_some_and(|c| c.status == "True")
    })
    .await;
    let pools: Api<MinerPool> = Api::namespaced(client.clone(), &ns);
    pools
        .delete("pool", &DeleteParams::default())
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    wait::until(
        "the children to be collected",
        Duration::from_secs(150),
        || async {
            let mut left = cron_job_names(&client, &ns).await;
            for (kind, there) in [
                (
                    "Deployment",
                    deployments.get_opt("pool-node").await.map(|o| o.is_some()),
                ),
                (
                    "Service",
                    services.get_opt("pool-node").await.map(|o| o.is_some()),
                ),
                (
                    "ConfigMap",
                    config_maps
                        .get_opt("pool-config")
                        .await
                        .map(|o| o.is_some()),
                ),
            ] {
                match there {
                    Ok(false) => {}
                    Ok(true) => left.push(kind.to_string()),
                    Err(e) => left.push(format!("{kind}: {e}")),
                }
            }
            left
        },
        Vec::is_empty,
    )
    .await;
    operator.stop().await;
}

/// `spec.node.serviceMonitor`: turned on, a ServiceMonitor owned by the MinerPool selects the
/// node Service; turned off, it is deleted and the status forgets it.
#[tokio::test]
async fn the_node_service_monitor_follows_the_spec() {
    let (client, ns) = setup("mp-monitor").await;
    testing::ensure_service_monitor_crd(&client).await;
    let operator = Operator::start(client.clone(), &ns).await;
    let mut mp = fixtures::minerpool("pool", &ns);
    mp.spec.node.service_monitor = Some(minerpool_operator::crd::ServiceMonitor {
        enabled: true,
        interval: Some("30s".into()),
        labels: Some([("release".to_string(), "prometheus".to_string())].into()),
    });
    testing::create_pool(&client, &ns, &mp).await;
    let created = wait_status(&client, &ns, "pool", "the ServiceMonitor applied", |s| {
        s.service_monitor.as_deref() == Some("pool-node")
    })
    .await;
    let monitors: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &minerpool_operator::names::service_monitor_resource(),
    );
    let monitor = monitors.get("pool-node").await.unwrap();
    let service = Api::<Service>::namespaced(client.clone(), &ns)
        .get("pool-node")
        .await
        .unwrap();
    assert_eq!(
        monitor.data["spec"]["selector"]["matchLabels"],
        serde_json::to_value(service.metadata.labels.clone().unwrap()).unwrap(),
        "it selects the node Service"
    );
    assert_eq!(
        monitor.data["spec"]["endpoints"],
        json!([{ "port": "metrics", "path": "/metrics", "interval": "30s" }])
    );
    assert_eq!(
        monitor.labels().get("release").map(String::as_str),
        Some("prometheus")
    );
    let owner = &monitor.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(Some(&owner.uid), created.metadata.uid.as_ref());
    assert_eq!(owner.controller, Some(true));

    patch_pool(
        &client,
        &ns,
        json!({ "spec": { "node": { "serviceMonitor": { "enabled": false } } } }),
    )
    .await;
    wait_status(&client, &ns, "pool", "the ServiceMonitor forgotten", |s| {
        s.service_monitor.is_none()
    })
    .await;
    assert!(monitors.get_opt("pool-node").await.unwrap().is_none());
    operator.stop().await;
}

/// Against the real API server: the budget in the version it serves (policy/v1beta1 on 1.20),
/// both network policies, pod overrides in the Deployment and the CronJobs as stored, a refused
/// override reported by path with nothing applied, and each optional child deleted once no
/// longer wanted.
#[tokio::test]
async fn budget_policies_and_pod_overrides_on_the_real_api_server() {
    let (client, ns) = setup("mp-guard").await;
    let operator = Operator::start(client.clone(), &ns).await;
    let mut mp = fixtures::minerpool("pool", &ns);
    mp.spec.node.replicas = Some(3);
    mp.spec.network_policy.enabled = true;
    mp.spec.node.pod_overrides = Some(minerpool_operator::crd::PodOverrides(json!({"spec": {
        "nodeSelector": {"minerpool.io/pool": "yes"},
        "tolerations": [{"key": "minerpool.io/dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [{"name": "node", "env": [{"name": "RUST_LOG", "value": "debug"}]}]}})));
    mp.spec.jobs.pod_overrides = Some(minerpool_operator::crd::PodOverrides(
        json!({"spec": {"priorityClassName": "system-cluster-critical"}}),
    ));
    testing::create_pool(&client, &ns, &mp).await;
    let created = wait_status(
        &client,
        &ns,
        "pool",
        "the budget and policies applied",
        |s| s.disruption_budget.as_deref() == Some("pool-node") && s.network_policies.len() == 2,
    )
    .await;

    let apis = ServedApis::discover(&client).await.unwrap();
    assert_eq!(
        apis,
        ServedApis::V1BETA1,
        "Kubernetes 1.20 serves both as v1beta1"
    );
    let budgets = budgets(&client, &ns);
    let budget = budgets.get("pool-node").await.unwrap();
    assert_eq!(budget.data["spec"]["maxUnavailable"], 1);
    assert_eq!(
        budget.data["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
        "node"
    );
    let owner = &budget.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(Some(&owner.uid), created.metadata.uid.as_ref());
    let policies: Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
        Api::namespaced(client.clone(), &ns);
    let node_policy = policies.get("pool-node").await.unwrap().spec.unwrap();
    assert_eq!(
        node_policy.ingress.unwrap()[0]
            .ports
            .as_ref()
            .unwrap()
            .len(),
        2
    );
    let jobs_policy = policies.get("pool-jobs").await.unwrap().spec.unwrap();
    assert!(jobs_policy.ingress.unwrap_or_default().is_empty());

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let pod = deployments
        .get("pool-node")
        .await
        .unwrap()
        .spec
        .unwrap()
        .template
        .spec
        .unwrap();
    assert_eq!(pod.node_selector.unwrap()["minerpool.io/pool"], "yes");
    assert_eq!(
        pod.tolerations.unwrap()[0].key.as_deref(),
        Some("minerpool.io/dedicated")
    );
    assert_eq!(
        pod.topology_spread_constraints.unwrap()[0].topology_key,
        "kubernetes.io/hostname"
    );
    let node = &pod.containers[0];
    assert!(node.env.iter().flatten().any(|e| e.name == "RUST_LOG"));
    assert!(node.env.iter().flatten().any(|e| e.name == "MONGODB_URI"));
    for job in cron_job_names(&client, &ns).await {
        let cron = cron_jobs(&client, &ns).get(&job).await.unwrap();
        let pod = &cron.data["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(pod["priorityClassName"], "system-cluster-critical", "{job}");
        assert_eq!(pod["containers"][0]["name"], "job", "{job}");
        assert_eq!(
            pod["containers"][0]["resources"]["limits"]["memory"], "512Mi",
            "{job}"
        );
    }

    // Refused: the spec is invalid, the path is named, and the Deployment stays as it was.
    let before = deployments.get("pool-node").await.unwrap();
    patch_pool(
        &client,
        &ns,
        json!({"spec": {"node": {"podOverrides": {"spec": {"automountServiceAccountToken": true}}}}}),
    )
    .await;
    let refused = wait_status(&client, &ns, "pool", "the override refused", |s| {
        condition(s, "Ready").is_some_and(|c| c.reason == "InvalidSpec")
    })
    .await;
    let ready = condition(refused.status.as_ref().unwrap(), "Ready").unwrap();
    assert_eq!(
        ready.message,
        "spec.node.podOverrides.spec.automountServiceAccountToken: is set by the operator (neither the node nor a job talks to the Kubernetes API)"
    );
    let after = deployments.get("pool-node").await.unwrap();
    assert_eq!(before.metadata.generation, after.metadata.generation);

    // One replica, policies off, the override dropped: the budget and both policies are gone.
    patch_pool(
        &client,
        &ns,
        json!({"spec": {"node": {"replicas": 1, "podOverrides": null}, "networkPolicy": {"enabled": false}}}),
    )
    .await;
    wait_status(
        &client,
        &ns,
        "pool",
        "the budget and policies forgotten",
        |s| s.disruption_budget.is_none() && s.network_policies.is_empty(),
    )
    .await;
    assert!(budgets.get_opt("pool-node").await.unwrap().is_none());
    assert!(policies.get_opt("pool-node").await.unwrap().is_none());
    assert!(policies.get_opt("pool-jobs").await.unwrap().is_none());
    operator.stop().await;
}

fn helm() -> String {
    std::env::var("HELM").expect("HELM is set by scripts/with-test-servers.sh")
}

/// A kubeconfig that authenticates with `token` against the test cluster.
fn token_kubeconfig(dir: &std::path::Path, token: &str) -> std::path::PathBuf {
    let admin: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(testing::kubeconfig_path()).unwrap())
            .unwrap();
    let mut config = admin.clone();
    config["users"][0]["user"]["token"] = token.into();
    let path = dir.join("kubeconfig");
    std::fs::write(&path, serde_yaml::to_string(&config).unwrap()).unwrap();
    path
}

/// Against the real API server: the budget and a policy deleted by hand are put back within
/// the wait's deadline (60 s), far inside the 10-minute resync, because the controller watches
/// them. The pool has no jobs, so that no CronJob's status wakes the controller by chance, and
/// they are deleted once the controller has been idle for 3 s, so that no reconcile already on
/// its way puts them back.
#[tokio::test]
async fn a_budget_or_policy_deleted_by_hand_is_put_back_at_once() {
    let (admin, ns) = setup("mp-watch").await;
    let ns = ns.as_str();
    let operator = Operator::start(admin.clone(), ns).await;
    let mut mp = fixtures::minerpool("pool", ns);
    mp.spec.node.replicas = Some(2);
    mp.spec.network_policy.enabled = true;
    let disabled = Some(minerpool_operator::crd::JobSpec {
        enabled: Some(false),
        ..Default::default()
    });
    let jobs = &mut mp.spec.jobs;
    for job in [
        &mut jobs.rewards,
        &mut jobs.validators,
        &mut jobs.payouts,
        &mut jobs.decay,
    ] {
        *job = disabled.clone();
    }
    testing::create_pool(&admin, ns, &mp).await;
    wait_status(&admin, ns, "pool", "the budget and policies applied", |s| {
        s.disruption_budget.is_some() && s.network_policies.len() == 2
    })
    .await;
    assert!(cron_job_names(&admin, ns).await.is_empty());

    operator.wait_idle().await;
    let budgets = budgets(&admin, ns);
    let policies: Api<k8s_openapi::api::networking::v1::NetworkPolicy> =
        Api::namespaced(admin.clone(), ns);
    let budget_uid = budgets.get("pool-node").await.unwrap().uid();
    let policy_uid = policies.get("pool-jobs").await.unwrap().uid();
    budgets
        .delete("pool-node", &DeleteParams::default())
        .await
        .unwrap();
    policies
        .delete("pool-jobs", &DeleteParams::default())
        .await
        .unwrap();
    wait::until(
        "the budget and the jobs' policy deleted by hand applied again",
        DEADLINE,
        || async {
            let budget = budgets.get_opt("pool-node").await.unwrap().map(|b| b.uid());
            let policy = policies
                .get_opt("pool-jobs")
                .await
                .unwrap()
                .map(|p| p.uid());
            (budget, policy)
        },
        |(budget, policy)| {
            budget.as_ref().is_some_and(|uid| *uid != budget_uid)
                && policy.as_ref().is_some_and(|uid| *uid != policy_uid)
        },
    )
    .await;
    operator.stop().await;
}

#[tokio::test]
async fn the_charts_rbac_is_enough_for_a_full_reconcile() {
    let (admin, ns) = setup("mp-chart").await;
    let release = format!("op-{}", std::process::id());
    let chart = concat!(env!("CARGO_MANIFEST_DIR"), "/../charts/minerpool-operator");
    let kubeconfig = testing::kubeconfig_path();
    let install = Command::new(helm())
        .args(["install", &release, chart, "-n", &ns])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    assert!(
        install.status.success(),
        "helm install: {}",
        String::from_utf8_lossy(&install.stderr)
    );

    // The chart's ServiceAccount and the token the controller manager issues for it.
    let account = format!("{release}-minerpool-operator");
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns);
    let secret_name = wait::until(
        "the ServiceAccount token",
        DEADLINE,
        || async {
            accounts
                .get(&account)
                .await
                .ok()
                .and_then(|a| a.secrets?.first()?.name.clone())
        },
        Option::is_some,
    )
    .await
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(admin.clone(), &ns);
    let token = secrets.get(&secret_name).await.unwrap().data.unwrap()["token"].clone();
    let dir = std::env::temp_dir().join(format!("minerpool-chart-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = token_kubeconfig(&dir, std::str::from_utf8(&token.0).unwrap());
    let as_operator = testing::client_from(&path).await;

    // Everything the operator does, done as that account.
    let operator = Operator::start(as_operator.clone(), &ns).await;
    let mut mp = fixtures::minerpool("pool", &ns);
    mp.spec.node.replicas = Some(2);
    mp.spec.network_policy.enabled = true;
    testing::create_pool(&admin, &ns, &mp).await;
    wait_status(
        &admin,
        &ns,
        "pool",
        "a full reconcile as the chart's account",
        |s| {
            condition(s, "JobsScheduled").is_some_and(|c| c.status == "True")
                // Unknown if the payouts job's pods could not be read.
                && condition(s, "PayoutsHeld").is_some_and(|c| c.status == "False")
                && s.node.replicas == Some(2)
                && s.disruption_budget.is_some()
                && s.network_policies.len() == 2
        },
    )
    .await;
    patch_pool(
        &admin,
        &ns,
        json!({"spec": {"jobs": {"validators": {"enabled": false}},
                        "node": {"replicas": 1}, "networkPolicy": {"enabled": false}}}),
    )
    .await;
    wait_status(
        &admin,
        &ns,
        "pool",
        "the budget and policies deleted as the chart's account",
        |s| s.disruption_budget.is_none() && s.network_policies.is_empty(),
    )
    .await;
    wait::until(
        "the validators CronJob deleted as the chart's account",
        DEADLINE,
        || cron_job_names(&admin, &ns),
        |names| names == &["pool-decay", "pool-payouts", "pool-rewards"],
    )
    .await;
    // The Event is recorded after the status it follows; a refused one is only logged.
    wait::until(
        "an Event recorded as the chart's account",
        DEADLINE,
        || event_reasons(&admin, &ns, "pool"),
        |reasons| !reasons.is_empty(),
    )
    .await;
    // Read once the controller has stopped, so that every reconcile it ran is counted.
    let metrics = operator.ctx.metrics.clone();
    operator.stop().await;
    assert_eq!(
        metrics
            .failures
            .get_or_create(&minerpool_operator::metrics::FailureLabels {
                reason: "forbidden".into()
            })
            .get(),
        0,
        "no request was forbidden"
    );

    // And nothing more: the account cannot change a MinerPool's spec or read other namespaces'
    // Secrets beyond what the ClusterRole grants.
    let denied: Api<MinerPool> = Api::namespaced(as_operator.clone(), &ns);
    let refused = denied
        .patch(
            "pool",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"node": {"replicas": 5}}})),
        )
        .await;
    assert!(
        matches!(refused, Err(kube::Error::Api(ref s)) if s.code == 403),
        "{refused:?}"
    );

    let uninstall = Command::new(helm())
        .args(["uninstall", &release, "-n", &ns])
        .env("KUBECONFIG", &kubeconfig)
        .output()
        .unwrap();
    assert!(uninstall.status.success());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn one_of_two_candidates_leads_and_the_other_takes_over_when_the_lease_lapses() {
    use k8s_openapi::api::coordination::v1::Lease;
    use minerpool_operator::leader::{Elector, LeaseSettings};
    let (client, ns) = setup("mp-lease").await;
    let leases: Api<Lease> = Api::namespaced(client, &ns);
    let short = |identity: &str| {
        Elector::new(
            leases.clone(),
            LeaseSettings::with_duration("minerpool-operator", identity, Duration::from_secs(2)),
        )
    };
    let (mut a, mut b) = (short("replica-a"), short("replica-b"));
    assert!(
        a.try_acquire().await.unwrap(),
        "the first candidate creates the Lease"
    );
    assert!(!b.try_acquire().await.unwrap(), "the second waits");
    assert!(a.try_acquire().await.unwrap(), "the leader renews");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        !b.try_acquire().await.unwrap(),
        "the renewal is news to the second: it waits a whole lease from seeing it"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        b.try_acquire().await.unwrap(),
        "a Lease seen unchanged for its duration is taken over"
    );
    assert!(!a.try_acquire().await.unwrap(), "the old leader now waits");
    let lease = leases
        .get("minerpool-operator")
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(lease.holder_identity.as_deref(), Some("replica-b"));
    assert_eq!(lease.lease_transitions, Some(1));
}

/// Two candidates, each reaching the API server through its own proxy. The leader's proxy
/// stops answering: the leader stops at its renew deadline, the other takes over only after the
/// lease's duration, and at no moment (sampled every 10 ms) do both lead. When the old leader's
/// proxy answers again it stays a follower.
#[tokio::test]
async fn a_leader_cut_off_from_the_api_server_stops_before_another_takes_over() {
    use k8s_openapi::api::coordination::v1::Lease;
    use minerpool_operator::leader::{Elector, LeaseSettings};
    use minerpool_operator::testing::StallableProxy;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let (_, ns) = setup("mp-lease-stall").await;
    let proxies = [StallableProxy::start().await, StallableProxy::start().await];
    let leading: Arc<[AtomicBool; 2]> = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
    let both = Arc::new(AtomicU32::new(0));
    let mut candidates = Vec::new();
    for (i, proxy) in proxies.iter().enumerate() {
        let leases: Api<Lease> = Api::namespaced(proxy.client().await, &ns);
        let settings = LeaseSettings::with_duration(
            "minerpool-operator",
            format!("replica-{i}"),
            Duration::from_secs(3),
        );
        let leading = leading.clone();
        candidates.push(tokio::spawn(async move {
            let mut elector = Elector::new(leases, settings);
            loop {
                elector.acquire().await;
                leading[i].store(true, Ordering::SeqCst);
                let _lost = elector.hold().await;
                leading[i].store(false, Ordering::SeqCst);
            }
        }));
    }
    let watcher = {
        let (leading, both) = (leading.clone(), both.clone());
        tokio::spawn(async move {
            loop {
                if leading[0].load(Ordering::SeqCst) && leading[1].load(Ordering::SeqCst) {
                    both.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let leader = wait::until(
        "one candidate leads",
        DEADLINE,
        || async { leading.iter().position(|l| l.load(Ordering::SeqCst)) },
        Option::is_some,
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    proxies[leader].stall(true);
    let stalled_at = std::time::Instant::now();
    let other = 1 - leader;
    wait::until(
        "the other candidate leads",
        Duration::from_secs(20),
        || async { leading[other].load(Ordering::SeqCst) },
        |l| *l,
    )
    .await;
    let took_over_after = stalled_at.elapsed();
    assert!(
        !leading[leader].load(Ordering::SeqCst),
        "the cut-off leader still leads"
    );
    proxies[leader].stall(false);
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(leading[other].load(Ordering::SeqCst));
    assert!(
        !leading[leader].load(Ordering::SeqCst),
        "the old leader took the Lease back"
    );
    assert_eq!(both.load(Ordering::SeqCst), 0, "two candidates led at once");
    assert!(
        took_over_after >= Duration::from_secs(2),
        "taken over after {took_over_after:?}, before the old leader's renew deadline"
    );
    watcher.abort();
    for candidate in candidates {
        candidate.abort();
    }
}

/// The `run` process: probes and metrics served, a reconcile done, and a clean exit on SIGTERM.
#[tokio::test]
async fn the_operator_process_serves_probes_and_metrics_and_stops_on_sigterm() {
    let (client, ns) = setup("mp-process").await;
    let port = minerpool_tests::free_port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_minerpool-operator"))
        .arg("run")
        .env("KUBECONFIG", testing::kubeconfig_path())
        .env("MINERPOOL_METRICS_ADDRESS", format!("127.0.0.1:{port}"))
        .env("MINERPOOL_WATCH_NAMESPACES", &ns)
        .env("MINERPOOL_LEADER_ELECTION", "true")
        .env("MINERPOOL_LEASE_NAMESPACE", &ns)
        .env("RUST_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");
    wait::http_ok(&url("/readyz")).await;
    assert_eq!(
        http.get(url("/healthz"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
    testing::create_pool(&client, &ns, &fixtures::minerpool("pool", &ns)).await;
    wait_status(&client, &ns, "pool", "a reconcile by the process", |_| true).await;
    // The reconcile that wrote the status is counted after it returns: wait for the count.
    let metrics = url("/metrics");
    wait::metric(&metrics, "minerpool_operator_leader", |v| v == 1.0).await;
    wait::metric(&metrics, "minerpool_operator_reconciles_total", |n| {
        n >= 1.0
    })
    .await;
    wait::metric(
        &metrics,
        "minerpool_operator_reconcile_duration_seconds_count",
        |n| n >= 1.0,
    )
    .await;

    let pid = child.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("the operator stops within 20 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let mut logs = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut logs)
        .await
        .unwrap();
    let first: serde_json::Value =
        serde_json::from_str(logs.lines().next().unwrap()).expect("JSON logs");
    assert_eq!(first["level"], "INFO");
    assert!(logs.contains("leading; reconciling"), "{logs}");
    assert!(logs.contains("shutting down"), "{logs}");
}

/// Against the real API server: `kubectl set image` on the node is undone (the Deployment's
/// change wakes the controller, which finds the field drifted though the digest is the same),
/// and a MinerPool whose Service name is taken by someone else's Service leaves that Service
/// alone and says so.
#[tokio::test]
async fn drift_is_corrected_and_a_foreign_object_is_never_adopted() {
    let (client, ns) = setup("mp-drift").await;
    let operator = Operator::start(client.clone(), &ns).await;
    testing::create_pool(&client, &ns, &fixtures::minerpool("pool", &ns)).await;
    wait_status(&client, &ns, "pool", "the first status", |_| true).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let image = |d: Deployment| {
        d.spec.unwrap().template.spec.unwrap().containers[0]
            .image
            .clone()
            .unwrap()
    };
    let applied = image(deployments.get("pool-node").await.unwrap());
    kubectl(&[
        "set",
        "image",
        "deployment/pool-node",
        "node=evil/node:1",
        "-n",
        &ns,
    ]);
    wait::until(
        "the node's image applied again",
        DEADLINE,
        || async { image(deployments.get("pool-node").await.unwrap()) },
        |now| *now == applied,
    )
    .await;

    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let theirs: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "other-node", "labels": {"owner": "someone-else"}},
        "spec": {"ports": [{"name": "web", "port": 80}]}
    }))
    .unwrap();
    services.create(&Default::default(), &theirs).await.unwrap();
    testing::create_pool(&client, &ns, &fixtures::minerpool("other", &ns)).await;
    let mp = wait_status(&client, &ns, "other", "a conflict", |s| {
        condition(s, "Ready").is_some_and(|c| c.reason == "Conflict")
    })
    .await;
    let ready = condition(mp.status.as_ref().unwrap(), "Ready").unwrap();
    assert!(
        ready.message.contains("Service other-node"),
        "{}",
        ready.message
    );
    let service = services.get("other-node").await.unwrap();
    assert!(service.metadata.owner_references.is_none(), "adopted");
    assert_eq!(service.spec.unwrap().ports.unwrap()[0].port, 80);
    let reasons = wait::until(
        "the Conflict Event",
        DEADLINE,
        || event_reasons(&client, &ns, "other"),
        |reasons| reasons.iter().any(|r| r == "Conflict"),
    )
    .await;
    assert!(reasons.contains(&"Conflict".to_owned()));
    operator.stop().await;
}

/// Creates `pod` as a Job would, then sets its status as the kubelet does once its container
/// has ended (the test server runs no kubelet). A new namespace admits pods only once its
/// default ServiceAccount exists, so the create is retried until then.
async fn ended_pod(client: &Client, ns: &str, pod: &Pod) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut created = pod.clone();
    created.status = None;
    wait::until_ok("the pod created", DEADLINE, || {
        let (pods, created) = (pods.clone(), created.clone());
        async move {
            pods.create(&PostParams::default(), &created)
                .await
                .map_err(|e| Shown(e.to_string()))
        }
    })
    .await;
    pods.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": pod.status })),
    )
    .await
    .unwrap();
}

/// Against the real API server: a payouts pod whose job container ended with exit code 3 holds
/// payouts in the status, with the reason from its termination message (its log's tail), and
/// `kubectl get mp` shows `held`; a newer run that succeeded releases it. The other jobs are
/// disabled and payouts suspended, and the pods appear once the controller is idle, so that
/// only its watch of the payouts pods can report them within the wait (the resync is 10 minutes).
#[tokio::test]
async fn a_blocked_payouts_run_holds_payouts_in_the_status() {
    let (client, ns) = setup("mp-held").await;
    let operator = Operator::start(client.clone(), &ns).await;
    let mut mp = fixtures::minerpool("pool", &ns);
    let disabled = Some(JobSpec {
        enabled: Some(false),
        ..Default::default()
    });
    let jobs = &mut mp.spec.jobs;
    for job in [&mut jobs.rewards, &mut jobs.validators, &mut jobs.decay] {
        *job = disabled.clone();
    }
    jobs.payouts = Some(JobSpec {
        suspend: Some(true),
        ..Default::default()
    });
    testing::create_pool(&client, &ns, &mp).await;
    wait_status(&client, &ns, "pool", "payouts not held", |s| {
        s.payouts.as_deref() == Some("ok")
    })
    .await;
    operator.wait_idle().await;

    let reason = "payouts held: 2 foreign spends of the wallet are unresolved: 3f9a (in block 120, 12.50000000 to DUiK4y…), 77c1 (in block 131, 1.00000000 to DfGQ4M…); adopt or acknowledge each (minerpool-job spends …)";
    let blocked = fixtures::payouts_run(
        "pool",
        "pool-payouts-29000002-x2k4q",
        "2026-11-29T00:02:05Z",
        3,
        &fixtures::blocked_log_tail(reason),
    );
    ended_pod(&client, &ns, &blocked).await;
    let held = wait_status(&client, &ns, "pool", "payouts held", |s| {
        s.payouts.as_deref() == Some("held")
    })
    .await;
    let condition = condition(held.status.as_ref().unwrap(), "PayoutsHeld").unwrap();
    assert_eq!(
        (
            condition.status.as_str(),
            condition.reason.as_str(),
            condition.message.as_str()
        ),
        ("True", "Blocked", reason)
    );
    let table = kubectl(&["get", "mp", "pool", "-n", &ns]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[row.len() - 2], "held", "{table}");

    let succeeded = fixtures::payouts_run(
        "pool",
        "pool-payouts-29000003-h7m2p",
        "2026-11-29T00:03:05Z",
        0,
        "",
    );
    ended_pod(&client, &ns, &succeeded).await;
    wait_status(&client, &ns, "pool", "payouts released", |s| {
        s.payouts.as_deref() == Some("ok")
    })
    .await;
    operator.stop().await;
}
