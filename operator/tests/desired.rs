//! The pure parts of a reconcile: validation, the children a MinerPool wants, and its status.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus};
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Container, EnvVar, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use minerpool_core::config::{Config, Protocol, Sender};
use minerpool_core::job::Job;
use minerpool_operator::crd::{DisruptionBudget, JobSpec, MinerPool, PodOverrides, SecretKeyRef};
use minerpool_operator::defaults::{DEFAULT_METRICS_PORT, DEFAULT_SHUTDOWN_DELAY_SECONDS};
use minerpool_operator::desired::{self, Desired};
use minerpool_operator::fixtures::{self, INODE_WALLET, MONGODB_SECRET, REWARD_ADDRESS};
use minerpool_operator::names::{self, APPLIED_HASH, CONFIG_HASH};
use minerpool_operator::pods::NODE_EXIT_SECONDS;
use minerpool_operator::problem::Problem;
use minerpool_operator::served_api::ObservedCronJob;
use minerpool_operator::status::{self, Observation};
use minerpool_operator::validate::secrets::FoundSecrets;
use minerpool_operator::validate::validate;
use serde_json::json;

fn from_json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap()
}

fn secrets(list: &[(&str, &[&str])]) -> FoundSecrets {
    list.iter()
        .map(|(name, keys)| {
            (
                name.to_string(),
                keys.iter().map(|k| k.to_string()).collect::<BTreeSet<_>>(),
            )
        })
        .collect()
}

fn mongodb_only() -> FoundSecrets {
    secrets(&[(MONGODB_SECRET, &["uri"])])
}

fn build(mp: &MinerPool, found: &FoundSecrets) -> (Config, Desired) {
    let pool = validate(mp, found).unwrap_or_else(|p| panic!("invalid: {p:?}"));
    let desired = desired::desired(&pool);
    (pool.config, desired)
}

fn pod(spec: &Option<PodSpec>) -> &PodSpec {
    spec.as_ref().unwrap()
}

fn node_container(d: &Deployment) -> &Container {
    &pod(&d.spec.as_ref().unwrap().template.spec).containers[0]
}

fn job_pod(c: &CronJob) -> &PodSpec {
    pod(&c
        .spec
        .as_ref()
        .unwrap()
        .job_template
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec)
}

fn env<'a>(container: &'a Container, name: &str) -> Option<&'a EnvVar> {
    container.env.iter().flatten().find(|e| e.name == name)
}

fn secret_of(var: &EnvVar) -> (String, String) {
    let s = var
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    (s.name.clone(), s.key.clone())
}

fn cron(d: &Desired, kind: Job) -> &CronJob {
    &d.cron_jobs.iter().find(|(k, _)| *k == kind).unwrap().1
}

/// Through a node port the default `Cluster` policy would give every validator a cluster node's
/// address, and the per-client limits would throttle them together: `Local` keeps the address.
#[test]
fn a_load_balancer_or_node_port_keeps_the_client_address_by_default() {
    for service_type in ["LoadBalancer", "NodePort"] {
        let mut mp = fixtures::minerpool("pool", "ns");
        mp.spec.node.service_type = Some(service_type.into());
        let (config, d) = build(&mp, &mongodb_only());
        let svc = d.service.spec.as_ref().unwrap();
        assert_eq!(svc.type_.as_deref(), Some(service_type));
        assert_eq!(
            svc.external_traffic_policy.as_deref(),
            Some("Local"),
            "{service_type}"
        );
        assert!(!config.node.proxy_protocol, "off unless asked for");
    }
}

#[test]
fn defaults_give_a_complete_pool() {
    let mp = fixtures::minerpool("pool", "ns");
    let (config, d) = build(&mp, &mongodb_only());
    let mut expected = Config::with_wallets(INODE_WALLET, REWARD_ADDRESS);
    // The defaults that differ in a cluster: a node pod drains before it stops, and serves its
    // metrics apart from the API (so that a network policy can tell them apart).
    expected.node.shutdown_delay_seconds = DEFAULT_SHUTDOWN_DELAY_SECONDS;
    expected.node.metrics_address = Some(std::net::SocketAddr::from((
        [0, 0, 0, 0],
        DEFAULT_METRICS_PORT,
    )));
    assert_eq!(config, expected);

    let cm = &d.config_map;
    assert_eq!(cm.metadata.name.as_deref(), Some("pool-config"));
    let yaml = &cm.data.as_ref().unwrap()["minerpool.yaml"];
    assert_eq!(Config::from_yaml_str(yaml).unwrap(), config);

    let dep = &d.deployment;
    assert_eq!(dep.metadata.name.as_deref(), Some("pool-node"));
    assert_eq!(dep.metadata.namespace.as_deref(), Some("ns"));
    let spec = dep.spec.as_ref().unwrap();
    assert_eq!(
        spec.replicas, None,
        "unset replicas are left to whoever scales"
    );
    let json = serde_json::to_value(dep).unwrap();
    assert!(
        json["spec"].get("replicas").is_none(),
        "replicas must not be sent at all"
    );
    let c = node_container(dep);
    assert_eq!(c.image.as_deref(), Some("minerpool/minerpool-node:0.1.0"));
    assert_eq!(
        c.args.as_deref().unwrap(),
        ["serve", "--config", "/etc/minerpool/minerpool.yaml"]
    );
    let ports: Vec<(Option<&str>, i32)> = c
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        [
            (Some("http"), 8001),
            (Some("websocket"), 5501),
            (Some("metrics"), 9090)
        ]
    );
    assert_eq!(
        secret_of(env(c, "MONGODB_URI").unwrap()),
        (MONGODB_SECRET.into(), "uri".into())
    );
    assert!(env(c, "MINERPOOL_ADMIN_TOKEN").is_none());
    assert!(c.resources.is_none());
    let security = c.security_context.as_ref().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(
        pod(&spec.template.spec)
            .security_context
            .as_ref()
            .unwrap()
            .run_as_non_root,
        Some(true)
    );
    assert_eq!(
        c.readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/readyz")
    );

    let svc = d.service.spec.as_ref().unwrap();
    assert_eq!(svc.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(
        svc.external_traffic_policy, None,
        "a ClusterIP Service has no external traffic policy"
    );
    assert_eq!(
        svc.ports
            .iter()
            .flatten()
            .map(|p| p.port)
            .collect::<Vec<_>>(),
        [8001, 5501, 9090]
    );
    assert_eq!(svc.selector, spec.selector.match_labels);

    assert_eq!(d.cron_jobs.len(), 4, "every job is enabled by default");
    for (kind, schedule) in [
        (Job::Rewards, "* * * * *"),
        (Job::Validators, "*/10 * * * *"),
        (Job::Payouts, "* * * * *"),
        (Job::Decay, "*/10 * * * *"),
    ] {
        let cj = cron(&d, kind);
        assert_eq!(
            cj.metadata.name.as_deref(),
            Some(format!("pool-{}", kind.name()).as_str())
        );
        let s = cj.spec.as_ref().unwrap();
        assert_eq!(s.schedule, schedule);
        assert_eq!(s.concurrency_policy.as_deref(), Some("Forbid"));
        assert_eq!(
            s.starting_deadline_seconds,
            Some(desired::STARTING_DEADLINE_SECONDS)
        );
        assert_eq!(s.suspend, Some(false));
        assert_eq!(s.successful_jobs_history_limit, Some(3));
        assert_eq!(s.failed_jobs_history_limit, Some(3));
        let job = s.job_template.spec.as_ref().unwrap();
        assert_eq!(job.active_deadline_seconds, Some(600));
        let p = job_pod(cj);
        assert_eq!(p.restart_policy.as_deref(), Some("Never"));
        assert_eq!(
            p.containers[0].image.as_deref(),
            Some("minerpool/minerpool-jobs:0.1.0")
        );
        assert_eq!(
            p.containers[0].args.as_deref().unwrap(),
            [kind.name(), "--config", "/etc/minerpool/minerpool.yaml"]
        );
        assert!(env(&p.containers[0], "MINERPOOL_WALLET_KEY").is_none());
        // A blocked run's reason reaches the status through the termination message.
        assert_eq!(
            p.containers[0].termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
        assert_eq!(
            s.job_template
                .spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .as_ref()
                .unwrap()
                .labels,
            Some(names::labels("pool", kind.name())),
            "the pods carry the labels that find them"
        );
    }
    assert_eq!(
        names::job_pods_selector(Job::Payouts, Some("pool")),
        "app.kubernetes.io/managed-by=minerpool-operator,app.kubernetes.io/component=payouts,app.kubernetes.io/instance=pool"
    );
}

/// A MinerPool with every spec field set, none to its default.
fn every_field_set() -> MinerPool {
    let mut mp = fixtures::minerpool("pool", "ns");
    let s = &mut mp.spec;
    s.images.node = "registry.example/node:2".into();
    s.images.jobs = "registry.example/jobs:2".into();
    s.chain.api_url = Some("http://chain.example:3006".into());
    s.chain.validators_url = Some("http://validators.example/v?inode=".into());
    s.chain.allow_insecure_http = Some(true);
    s.chain.start_height = Some(5000);
    s.mongodb.database = Some("pools".into());
    s.rewards.fee_percent = 10;
    s.rewards.pools_percent = 50;
    s.rewards.validators_percent = 40;
    s.rewards.blocks_per_run = Some(25);
    s.rewards.confirmations = Some(4);
    s.node.replicas = Some(3);
    s.node.shutdown_delay_seconds = Some(12);
    s.node.shutdown_timeout_seconds = Some(25);
    s.node.http_port = Some(9001);
    s.node.websocket_port = Some(9501);
    s.node.metrics_port = Some(9091);
    s.node.service_type = Some("LoadBalancer".into());
    s.node.max_connections = Some(4000);
    s.node.resources = Some(from_json(json!({"limits": {"memory": "256Mi"}})));
    s.node.pod_overrides = Some(PodOverrides(
        json!({"spec": {"priorityClassName": "pools"}}),
    ));
    s.node.disruption_budget = Some(DisruptionBudget {
        enabled: Some(true),
        max_unavailable: Some(IntOrString::String("50%".into())),
    });
    s.network_policy.enabled = true;
    s.network_policy.metrics_from_namespaces = Some(vec!["monitoring".into()]);
    s.jobs.pod_overrides = Some(PodOverrides(
        json!({"spec": {"nodeSelector": {"pool": "jobs"}}}),
    ));
    s.node.admin_token_secret_ref = Some(SecretKeyRef {
        name: "admin".into(),
        key: "token".into(),
    });
    s.node.admin_rsa_key_secret_ref = Some(SecretKeyRef {
        name: "admin".into(),
        key: "rsa".into(),
    });
    s.jobs.rewards = Some(JobSpec {
        schedule: Some("*/2 * * * *".into()),
        suspend: Some(true),
        successful_jobs_history_limit: Some(5),
        failed_jobs_history_limit: Some(7),
        active_deadline_seconds: Some(120),
        enabled: None,
        resources: Some(from_json(json!({"requests": {"cpu": "1"}}))),
        pod_overrides: Some(PodOverrides(
            json!({"metadata": {"annotations": {"team": "pools"}}}),
        )),
    });
    s.jobs.decay = Some(JobSpec {
        enabled: Some(false),
        ..JobSpec::default()
    });
    s.payouts.wallet_key_secret_ref = Some(SecretKeyRef {
        name: "wallet".into(),
        key: "hex".into(),
    });
    s.payouts.minimum_payout = Some("2.5".into());
    s.payouts.max_outputs_per_tx = Some(100);
    s.payouts.sender = Some("upow".into());
    s.payouts.fee = Some("0.001".into());
    s.payouts.abandon_after_seconds = Some(900);
    s.history.score_retention_days = Some(90);
    s.chain.request_timeout_seconds = Some(40);
    s.chain.rate_limit_wait_seconds = Some(300);
    s.validators.limit = Some(80);
    s.node.max_http_connections = Some(512);
    s.node.max_connections_per_client = Some(16);
    s.node.http_idle_timeout_seconds = Some(45);
    s.node.http_request_timeout_seconds = Some(20);
    s.node.admin_requests_per_minute_per_client = Some(3);
    s.node.admin_requests_per_minute = Some(30);
    s.node.protocol = Some("signed".into());
    s.node.signed_window_seconds = Some(90);
    s.node.max_group_size = Some(64);
    s.node.registry_cache = Some(false);
    s.node.registry_reload_seconds = Some(120);
    s.node.proxy_protocol = Some(true);
    s.node.external_traffic_policy = Some("Cluster".into());
    mp
}

fn every_secret() -> FoundSecrets {
    secrets(&[
        (MONGODB_SECRET, &["uri"]),
        ("admin", &["token", "rsa"]),
        ("wallet", &["hex"]),
    ])
}

#[test]
fn every_spec_field_lands_where_it_should() {
    let mp = every_field_set();
    let found = every_secret();
    let (config, d) = build(&mp, &found);

    assert_eq!(config.chain.api_url, "http://chain.example:3006");
    assert!(config.chain.allow_insecure_http);
    assert_eq!(
        config.chain.validators_url.as_deref(),
        Some("http://validators.example/v?inode=")
    );
    assert_eq!(config.rewards.start_height, 5000);
    assert_eq!(config.mongodb.database, "pools");
    assert_eq!(
        (
            config.rewards.fee_percent,
            config.rewards.pools_percent,
            config.rewards.validators_percent
        ),
        (10, 50, 40)
    );
    assert_eq!(config.rewards.blocks_per_run, 25);
    assert_eq!(config.rewards.confirmations, 4);
    assert_eq!(config.node.shutdown_delay_seconds, 12);
    assert_eq!(config.payouts.fee.to_string(), "0.00100000");
    assert_eq!(config.payouts.abandon_after_seconds, 900);
    assert_eq!(config.history.score_retention_days, 90);
    assert_eq!(
        (
            config.chain.request_timeout_seconds,
            config.chain.rate_limit_wait_seconds
        ),
        (40, 300)
    );
    assert_eq!(config.validators.limit, 80);
    let n = &config.node;
    assert_eq!(
        (
            n.max_http_connections,
            n.max_connections_per_client,
            n.http_idle_timeout_seconds,
            n.http_request_timeout_seconds,
        ),
        (512, 16, 45, 20)
    );
    assert_eq!(
        (
            n.admin_requests_per_minute_per_client,
            n.admin_requests_per_minute
        ),
        (3, 30)
    );
    assert_eq!(
        (
            n.protocol,
            n.signed_window_seconds,
            n.max_group_size,
            n.registry_cache,
            n.registry_reload_seconds,
            n.proxy_protocol
        ),
        (Protocol::Signed, 90, 64, false, 120, true)
    );
    assert_eq!(config.node.http_address.port(), 9001);
    assert_eq!(config.node.websocket_address.port(), 9501);
    assert_eq!(config.node.max_connections, 4000);
    assert_eq!(config.payouts.sender, Sender::Upow);
    assert_eq!(config.payouts.minimum_payout.to_string(), "2.50000000");
    assert_eq!(config.payouts.max_outputs_per_tx, 100);
    let yaml = &d.config_map.data.as_ref().unwrap()["minerpool.yaml"];
    assert_eq!(&Config::from_yaml_str(yaml).unwrap(), &config);

    let dep = &d.deployment;
    assert_eq!(dep.spec.as_ref().unwrap().replicas, Some(3));
    let c = node_container(dep);
    assert_eq!(c.image.as_deref(), Some("registry.example/node:2"));
    assert_eq!(
        c.ports
            .iter()
            .flatten()
            .map(|p| p.container_port)
            .collect::<Vec<_>>(),
        [9001, 9501, 9091]
    );
    assert_eq!(
        c.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
        "256Mi"
    );
    assert_eq!(
        secret_of(env(c, "MINERPOOL_ADMIN_TOKEN").unwrap()),
        ("admin".into(), "token".into())
    );
    assert_eq!(
        secret_of(env(c, "MINERPOOL_ADMIN_RSA_KEY").unwrap()),
        ("admin".into(), "rsa".into())
    );
    assert!(
        env(c, "MINERPOOL_WALLET_KEY").is_none(),
        "the node never sees the wallet key"
    );

    let svc = d.service.spec.as_ref().unwrap();
    assert_eq!(svc.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(
        svc.external_traffic_policy.as_deref(),
        Some("Cluster"),
        "the admin's choice stands"
    );
    assert_eq!(
        svc.ports
            .iter()
            .flatten()
            .map(|p| p.port)
            .collect::<Vec<_>>(),
        [9001, 9501, 9091]
    );

    let rewards = cron(&d, Job::Rewards).spec.as_ref().unwrap();
    assert_eq!(rewards.schedule, "*/2 * * * *");
    assert_eq!(rewards.suspend, Some(true));
    assert_eq!(rewards.successful_jobs_history_limit, Some(5));
    assert_eq!(rewards.failed_jobs_history_limit, Some(7));
    assert_eq!(
        rewards
            .job_template
            .spec
            .as_ref()
            .unwrap()
            .active_deadline_seconds,
        Some(120)
    );
    assert_eq!(d.cron_jobs.len(), 3);
    assert!(d.cron_jobs.iter().all(|(k, _)| *k != Job::Decay));
    let rewards_template = &rewards.job_template.spec.as_ref().unwrap().template;
    assert_eq!(
        rewards_template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()["team"],
        "pools"
    );
    let rewards_container = &job_pod(cron(&d, Job::Rewards)).containers[0];
    assert_eq!(
        serde_json::to_value(&rewards_container.resources).unwrap(),
        json!({"requests": {"cpu": "1"}}),
        "a job's resources replace the default whole"
    );
    for (kind, cron_job) in &d.cron_jobs {
        assert_eq!(
            job_pod(cron_job).node_selector.as_ref().unwrap()["pool"],
            "jobs",
            "{kind:?}: spec.jobs.podOverrides reaches every job"
        );
    }
    assert_eq!(
        pod(&d.deployment.spec.as_ref().unwrap().template.spec)
            .priority_class_name
            .as_deref(),
        Some("pools")
    );
    let budget = d.disruption_budget.as_ref().unwrap().spec.as_ref().unwrap();
    assert_eq!(
        budget.max_unavailable,
        Some(IntOrString::String("50%".into()))
    );
    let [node_policy, _] = d.network_policies.clone().unwrap();
    let metrics_rule = &node_policy.spec.unwrap().ingress.unwrap()[1];
    assert_eq!(
        serde_json::to_value(metrics_rule).unwrap(),
        json!({"ports": [{"port": 9091, "protocol": "TCP"}], "from": [{"namespaceSelector": {
            "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In",
                                  "values": ["monitoring"]}]}}]})
    );
    assert_eq!(config.node.metrics_address.unwrap().port(), 9091);
    let payouts = &job_pod(cron(&d, Job::Payouts)).containers[0];
    assert_eq!(payouts.image.as_deref(), Some("registry.example/jobs:2"));
    assert_eq!(
        secret_of(env(payouts, "MINERPOOL_WALLET_KEY").unwrap()),
        ("wallet".into(), "hex".into())
    );
    let rewards_pod = &job_pod(cron(&d, Job::Rewards)).containers[0];
    assert!(
        env(rewards_pod, "MINERPOOL_WALLET_KEY").is_none(),
        "only payouts signs"
    );
}

/// Config keys a MinerPool has no field for: the standalone mode's own schedules (a cluster
/// schedules the jobs' CronJobs through `spec.jobs`).
const STANDALONE_ONLY: [&str; 4] = [
    "schedule.rewardsSeconds",
    "schedule.payoutsSeconds",
    "schedule.validatorsSeconds",
    "schedule.decaySeconds",
];

/// The leaves of a config as `a.b` paths and their values.
fn leaves(value: &serde_json::Value, path: &str, out: &mut BTreeMap<String, serde_json::Value>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                leaves(value, &path, out);
            }
        }
        other => {
            out.insert(path.to_owned(), other.clone());
        }
    }
}

/// A config key added without a MinerPool field would be one a cluster can never set: every key
/// of the rendered config must move when every spec field is set.
#[test]
fn every_config_key_can_be_set_through_a_minerpool() {
    let (config, _) = build(&every_field_set(), &every_secret());
    let (mut set, mut defaults) = (BTreeMap::new(), BTreeMap::new());
    leaves(&serde_json::to_value(&config).unwrap(), "", &mut set);
    leaves(
        &serde_json::to_value(Config::with_wallets("", "")).unwrap(),
        "",
        &mut defaults,
    );
    assert_eq!(
        set.keys().collect::<Vec<_>>(),
        defaults.keys().collect::<Vec<_>>()
    );
    let unreachable: Vec<&String> = set
        .iter()
        .filter(|(key, value)| defaults.get(*key) == Some(value))
        .map(|(key, _)| key)
        .filter(|key| !STANDALONE_ONLY.contains(&key.as_str()))
        .collect();
    assert!(
        unreachable.is_empty(),
        "config keys no MinerPool field sets: {unreachable:?}"
    );
    assert!(set.len() > 30, "the config flattened to its keys: {set:?}");
}

/// Node and job pods never call the Kubernetes API: a token mounted in them would only be
/// something to steal.
#[test]
fn generated_pods_mount_no_service_account_token() {
    let (_, d) = build(&fixtures::minerpool("pool", "ns"), &mongodb_only());
    let node = pod(&d.deployment.spec.as_ref().unwrap().template.spec);
    assert_eq!(node.automount_service_account_token, Some(false));
    for (kind, cron) in &d.cron_jobs {
        assert_eq!(
            job_pod(cron).automount_service_account_token,
            Some(false),
            "{kind:?}"
        );
    }
}

/// A node pod told to stop keeps serving for its drain delay, then gives open connections its
/// shutdown timeout, then writes its last group: its grace period covers all three, or the
/// kubelet kills it mid-TASK.
#[test]
fn the_node_drains_within_its_grace_period() {
    let grace = |d: &Desired| {
        pod(&d.deployment.spec.as_ref().unwrap().template.spec).termination_grace_period_seconds
    };
    let mut mp = fixtures::minerpool("pool", "ns");
    let (config, d) = build(&mp, &mongodb_only());
    assert_eq!(
        config.node.shutdown_delay_seconds,
        DEFAULT_SHUTDOWN_DELAY_SECONDS
    );
    assert_eq!(config.node.shutdown_timeout_seconds, 20);
    assert_eq!(
        grace(&d),
        Some(i64::from(config.node.shutdown_delay_seconds) + 20 + NODE_EXIT_SECONDS)
    );
    mp.spec.node.shutdown_delay_seconds = Some(0);
    mp.spec.node.shutdown_timeout_seconds = Some(45);
    let (_, d) = build(&mp, &mongodb_only());
    assert_eq!(grace(&d), Some(45 + NODE_EXIT_SECONDS));
    mp.spec.node.shutdown_delay_seconds = Some(301);
    assert_problem(
        &mp,
        &mongodb_only(),
        "spec.node.shutdownDelaySeconds",
        "must be 0 to 300",
    );
    mp.spec.node.shutdown_delay_seconds = None;
    for bad in [0, 301] {
        mp.spec.node.shutdown_timeout_seconds = Some(bad);
        assert_problem(
            &mp,
            &mongodb_only(),
            "spec.node.shutdownTimeoutSeconds",
            "must be 1 to 300",
        );
    }
}

#[test]
fn children_are_owned_by_the_pool_as_controller() {
    let mp = fixtures::minerpool("pool", "ns");
    let (_, d) = build(&mp, &mongodb_only());
    let metas = [
        &d.config_map.metadata,
        &d.deployment.metadata,
        &d.service.metadata,
    ]
    .into_iter()
    .chain(d.cron_jobs.iter().map(|(_, c)| &c.metadata));
    for meta in metas {
        let owners = meta.owner_references.as_ref().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "MinerPool");
        assert_eq!(owners[0].api_version, "minerpool.io/v1alpha1");
        assert_eq!(owners[0].uid, "uid-of-pool");
        assert_eq!(owners[0].controller, Some(true));
        assert!(
            minerpool_operator::apply::applied_hash(meta).is_some(),
            "{:?} has no digest",
            meta.name
        );
        assert_eq!(
            meta.labels.as_ref().unwrap()["app.kubernetes.io/instance"],
            "pool"
        );
    }
}

#[test]
fn the_digest_follows_the_spec_and_a_config_change_rolls_the_node() {
    let mp = fixtures::minerpool("pool", "ns");
    let (_, a) = build(&mp, &mongodb_only());
    let (_, again) = build(&mp, &mongodb_only());
    let hash =
        |meta: &kube::api::ObjectMeta| meta.annotations.as_ref().unwrap()[APPLIED_HASH].clone();
    assert_eq!(
        hash(&a.deployment.metadata),
        hash(&again.deployment.metadata)
    );

    let mut changed = mp.clone();
    changed.spec.rewards.blocks_per_run = Some(20);
    let (_, b) = build(&changed, &mongodb_only());
    assert_ne!(hash(&a.config_map.metadata), hash(&b.config_map.metadata));
    let rollout = |d: &Desired| {
        d.deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()[CONFIG_HASH]
            .clone()
    };
    assert_ne!(rollout(&a), rollout(&b), "pods restart on a new config");
    assert_ne!(hash(&a.deployment.metadata), hash(&b.deployment.metadata));
    assert_eq!(
        hash(&cron(&a, Job::Rewards).metadata),
        hash(&cron(&b, Job::Rewards).metadata),
        "a job reads the ConfigMap at start: its CronJob need not change"
    );
}

fn problems(mp: &MinerPool, found: &FoundSecrets) -> Vec<Problem> {
    validate(mp, found).expect_err("should be invalid")
}

fn assert_problem(mp: &MinerPool, found: &FoundSecrets, field: &str, says: &str) {
    let all = problems(mp, found);
    assert!(
        all.iter()
            .any(|p| p.field == field && p.message.contains(says)),
        "expected {field}: …{says}…, got {all:?}"
    );
}

#[test]
fn invalid_specs_name_the_field_and_what_is_wrong() {
    let base = fixtures::minerpool("pool", "ns");
    let ok = mongodb_only();

    let monitor = |interval: &str, key: &str, value: &str| {
        let mut mp = base.clone();
        mp.spec.node.service_monitor = Some(minerpool_operator::crd::ServiceMonitor {
            enabled: true,
            interval: Some(interval.into()),
            labels: Some([(key.to_string(), value.to_string())].into()),
        });
        mp
    };
    for interval in ["30", "s", "1m30", "30s1m", "1.5m", "-1s", "1h 2m", ""] {
        assert_problem(
            &monitor(interval, "release", "prometheus"),
            &ok,
            "spec.node.serviceMonitor.interval",
            "is not a Prometheus duration",
        );
    }
    for interval in ["30s", "1m30s", "2h", "500ms", "1d", "0"] {
        let mp = monitor(interval, "release", "prometheus");
        assert!(validate(&mp, &ok).is_ok(), "{interval}");
    }
    assert_problem(
        &monitor("30s", "app.kubernetes.io/instance", "other"),
        &ok,
        "spec.node.serviceMonitor.labels",
        "is set by the operator",
    );
    assert_problem(
        &monitor("30s", "Bad Key", "x"),
        &ok,
        "spec.node.serviceMonitor.labels",
        "is not a label key",
    );
    assert_problem(
        &monitor("30s", "release", "not ok!"),
        &ok,
        "spec.node.serviceMonitor.labels",
        "is not a label value",
    );
    let valid = monitor("15s", "example.com/team", "pools");
    let wanted = desired::desired(&validate(&valid, &ok).unwrap());
    let object = serde_json::to_value(wanted.service_monitor.expect("enabled")).unwrap();
    assert_eq!(object["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(object["metadata"]["name"], "pool-node");
    assert_eq!(object["metadata"]["labels"]["example.com/team"], "pools");
    assert_eq!(
        object["spec"]["selector"]["matchLabels"],
        serde_json::to_value(wanted.service.metadata.labels.unwrap()).unwrap(),
        "selects the node Service"
    );
    assert_eq!(object["spec"]["endpoints"][0]["port"], "metrics");
    let mut off = valid.clone();
    off.spec.node.service_monitor.as_mut().unwrap().enabled = false;
    let built = |mp: &MinerPool| desired::desired(&validate(mp, &ok).unwrap());
    assert!(built(&off).service_monitor.is_none());
    assert!(built(&base).service_monitor.is_none());

    let mut mp = base.clone();
    mp.spec.jobs.payouts = Some(JobSpec {
        schedule: Some("*/5 * * *".into()),
        ..JobSpec::default()
    });
    assert_problem(&mp, &ok, "spec.jobs.payouts.schedule", "expected 5 fields");

    assert_problem(
        &base,
        &FoundSecrets::new(),
        "spec.mongodb.uriSecretRef",
        "Secret \"mongodb-uri\" does not exist",
    );
    assert_problem(
        &base,
        &secrets(&[(MONGODB_SECRET, &["url"])]),
        "spec.mongodb.uriSecretRef",
        "has no key \"uri\"",
    );

    let mut mp = base.clone();
    mp.spec.chain.reward_address = "not-an-address".into();
    assert_problem(
        &mp,
        &ok,
        "spec.chain.rewardAddress",
        "is not a uPow address",
    );

    // Well-formed but not a P-256 point: the same strict rule as the config file.
    let mut mp = base.clone();
    mp.spec.chain.inode_wallet = minerpool_tests::fixtures::OFF_CURVE.into();
    assert_problem(&mp, &ok, "spec.chain.inodeWallet", "not a P-256 point");

    let mut mp = base.clone();
    mp.spec.rewards.fee_percent = 20;
    assert_problem(
        &mp,
        &ok,
        "spec.rewards",
        "feePercent + poolsPercent + validatorsPercent must be 100",
    );

    let mut mp = base.clone();
    mp.spec.payouts.sender = Some("upow".into());
    assert_problem(
        &mp,
        &ok,
        "spec.payouts.walletKeySecretRef",
        "required when sender is upow",
    );

    let mut mp = base.clone();
    mp.spec.payouts.sender = Some("bank".into());
    assert_problem(&mp, &ok, "spec.payouts.sender", "\"bank\" is not a sender");

    let mut mp = base.clone();
    mp.spec.node.protocol = Some("unsigned".into());
    assert_problem(
        &mp,
        &ok,
        "spec.node.protocol",
        "\"unsigned\" is not a protocol (legacy, both or signed)",
    );

    let mut mp = base.clone();
    mp.spec.node.signed_window_seconds = Some(0);
    assert_problem(
        &mp,
        &ok,
        "spec.node.signedWindowSeconds",
        "must be 1 to 3600, got 0",
    );

    let mut mp = base.clone();
    mp.spec.payouts.minimum_payout = Some("-1".into());
    assert_problem(&mp, &ok, "spec.payouts.minimumPayout", "not an amount");

    // What the API server would refuse at apply time is refused up front.
    let mp = fixtures::minerpool("1pool", "ns");
    assert_problem(
        &mp,
        &ok,
        "metadata.name",
        "must start with a lowercase letter",
    );
    let mp = fixtures::minerpool("pool.v2", "ns");
    assert_problem(&mp, &ok, "metadata.name", "DNS-1035");
    let mut mp = base.clone();
    mp.spec.node.resources = Some(from_json(json!({"limits": {"memory": "lots"}})));
    assert_problem(
        &mp,
        &ok,
        "spec.node.resources.limits.memory",
        "\"lots\" is not a quantity",
    );
    let mut mp = base.clone();
    mp.spec.node.metrics_port = Some(8001);
    assert_problem(
        &mp,
        &ok,
        "spec.node.metricsPort",
        "port 8001 is the HTTP port too",
    );
    let mut mp = base.clone();
    mp.spec.network_policy.metrics_from_namespaces =
        Some(vec!["monitoring".into(), "Bad_Name".into()]);
    assert_problem(
        &mp,
        &ok,
        "spec.networkPolicy.metricsFromNamespaces",
        "\"Bad_Name\" is not a namespace name",
    );
    let mut mp = base.clone();
    mp.spec.jobs.payouts = Some(JobSpec {
        resources: Some(from_json(json!({"requests": {"cpu": "1 core"}}))),
        ..JobSpec::default()
    });
    assert_problem(
        &mp,
        &ok,
        "spec.jobs.payouts.resources.requests.cpu",
        "\"1 core\" is not a quantity",
    );

    let mut mp = base.clone();
    mp.spec.payouts.fee = Some("0.000000001".into());
    assert_problem(&mp, &ok, "spec.payouts.fee", "not an amount");

    let mut mp = base.clone();
    mp.spec.rewards.confirmations = Some(999);
    assert_problem(&mp, &ok, "spec.rewards.confirmations", "must be 0 to 998");

    for days in [0, 367] {
        let mut mp = base.clone();
        mp.spec.history.score_retention_days = Some(days);
        assert_problem(
            &mp,
            &ok,
            "spec.history.scoreRetentionDays",
            &format!("must be 1 to 366, got {days}"),
        );
    }

    let mut mp = base.clone();
    mp.spec.payouts.max_outputs_per_tx = Some(255);
    assert_problem(&mp, &ok, "spec.payouts.maxOutputsPerTx", "must be 1 to 254");

    let mut mp = base.clone();
    mp.spec.node.replicas = Some(-1);
    assert_problem(&mp, &ok, "spec.node.replicas", "negative");

    let mut mp = base.clone();
    mp.spec.node.service_type = Some("ExternalName".into());
    assert_problem(&mp, &ok, "spec.node.serviceType", "not one of");

    let mut mp = base.clone();
    mp.spec.node.external_traffic_policy = Some("local".into());
    assert_problem(
        &mp,
        &ok,
        "spec.node.externalTrafficPolicy",
        "\"local\" is not one of Local, Cluster",
    );

    let mut mp = base.clone();
    mp.spec.node.http_port = Some(7000);
    mp.spec.node.websocket_port = Some(7000);
    assert_problem(&mp, &ok, "spec.node.websocketPort", "is the HTTP port too");

    // The default HTTP port counts too.
    let mut mp = base.clone();
    mp.spec.node.websocket_port = Some(8001);
    assert_problem(
        &mp,
        &ok,
        "spec.node.websocketPort",
        "port 8001 is the HTTP port too",
    );

    let mut mp = base.clone();
    mp.spec.node.max_group_size = Some(10_001);
    assert_problem(&mp, &ok, "spec.node.maxGroupSize", "must be 1 to 10000");

    let mut mp = base.clone();
    mp.spec.node.registry_reload_seconds = Some(0);
    assert_problem(&mp, &ok, "spec.node.registryReloadSeconds", "at least 1");

    let mut mp = base.clone();
    mp.spec.validators.limit = Some(0);
    assert_problem(&mp, &ok, "spec.validators.limit", "must be 1 to 1000");

    let mut mp = base.clone();
    mp.spec.chain.rate_limit_wait_seconds = Some(3601);
    assert_problem(&mp, &ok, "spec.chain.rateLimitWaitSeconds", "");

    let mut mp = base.clone();
    mp.spec.chain.api_url = Some("ftp://chain".into());
    assert_problem(&mp, &ok, "spec.chain.apiUrl", "http or https");

    let mut mp = base.clone();
    mp.spec.images.node = " ".into();
    assert_problem(&mp, &ok, "spec.images.node", "not an image reference");

    let long = "p".repeat(42);
    let mp = fixtures::minerpool(&long, "ns");
    assert_problem(&mp, &ok, "metadata.name", "at most 41");

    // Several problems are all reported at once.
    let mut mp = base.clone();
    mp.spec.node.replicas = Some(-2);
    mp.spec.payouts.sender = Some("bank".into());
    assert_eq!(problems(&mp, &FoundSecrets::new()).len(), 3);
}

fn cron_seen(name: &str, last: Option<&str>) -> ObservedCronJob {
    ObservedCronJob {
        name: name.into(),
        last_schedule_time: last.map(String::from),
        ..ObservedCronJob::default()
    }
}

fn deployment_with(wanted: i32, available: i32) -> Deployment {
    Deployment {
        spec: Some(k8s_openapi::api::apps::v1::DeploymentSpec {
            replicas: Some(wanted),
            ..Default::default()
        }),
        status: Some(DeploymentStatus {
            replicas: Some(wanted),
            ready_replicas: Some(available),
            available_replicas: Some(available),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn condition<'a>(
    s: &'a minerpool_operator::crd::MinerPoolStatus,
    t: &str,
) -> &'a minerpool_operator::crd::Condition {
    s.conditions.iter().find(|c| c.type_ == t).unwrap()
}

#[test]
fn status_reports_conditions_replicas_and_jobs() {
    let mp = fixtures::minerpool("pool", "ns");
    let all_jobs: Vec<ObservedCronJob> = Job::SCHEDULED
        .iter()
        .map(|k| cron_seen(&format!("pool-{}", k.name()), Some("2026-11-29T03:00:00Z")))
        .collect();
    let dep = deployment_with(2, 1);
    let s = status::compute(
        &mp,
        &Observation {
            problems: &[],
            deployment: Some(&dep),
            cron_jobs: &all_jobs,
            apply_failure: None,
            service_monitor: None,
            disruption_budget: None,
            network_policies: &[],
            payouts_pods: Ok(&[]),
        },
        "T1",
    );
    assert_eq!(s.observed_generation, Some(1));
    assert_eq!(condition(&s, "Ready").status, "True");
    assert_eq!(
        condition(&s, "NodeAvailable").message,
        "1 of 2 node replicas available"
    );
    assert_eq!(condition(&s, "JobsScheduled").status, "True");
    assert_eq!(s.node.replicas, Some(2));
    assert_eq!(s.node.ready_replicas, Some(1));
    assert_eq!(
        s.node.selector.as_deref(),
        Some(
            "app.kubernetes.io/component=node,app.kubernetes.io/instance=pool,app.kubernetes.io/name=minerpool"
        )
    );
    assert_eq!(
        s.jobs["rewards"].last_schedule_time.as_deref(),
        Some("2026-11-29T03:00:00Z")
    );

    // The same observation later gives the same status: nothing to write.
    let mut seen_before = mp.clone();
    seen_before.status = Some(s.clone());
    let again = status::compute(
        &seen_before,
        &Observation {
            problems: &[],
            deployment: Some(&dep),
            cron_jobs: &all_jobs,
            apply_failure: None,
            service_monitor: None,
            disruption_budget: None,
            network_policies: &[],
            payouts_pods: Ok(&[]),
        },
        "T2",
    );
    assert_eq!(again, s);
    assert_eq!(status::ready_transition(Some(&s), &again), None);

    // The node going away flips Ready with a new transition time and an Event.
    let down = deployment_with(2, 0);
    let later = status::compute(
        &seen_before,
        &Observation {
            problems: &[],
            deployment: Some(&down),
            cron_jobs: &all_jobs,
            apply_failure: None,
            service_monitor: None,
            disruption_budget: None,
            network_policies: &[],
            payouts_pods: Ok(&[]),
        },
        "T3",
    );
    let ready = condition(&later, "Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "NodeUnavailable")
    );
    assert_eq!(ready.last_transition_time.as_deref(), Some("T3"));
    assert_eq!(
        condition(&later, "JobsScheduled")
            .last_transition_time
            .as_deref(),
        Some("T1"),
        "an unchanged condition keeps its time"
    );
    assert_eq!(
        status::ready_transition(Some(&s), &later),
        Some((
            true,
            "NodeUnavailable".into(),
            "0 of 2 node replicas available".into()
        ))
    );
}

#[test]
fn status_of_an_invalid_spec_or_missing_children() {
    let mp = fixtures::minerpool("pool", "ns");
    let problem = Problem {
        field: "spec.jobs.rewards.schedule".into(),
        message: "expected 5 fields".into(),
    };
    let s = status::compute(
        &mp,
        &Observation {
            problems: std::slice::from_ref(&problem),
            deployment: None,
            cron_jobs: &[cron_seen("pool-rewards", None)],
            apply_failure: None,
            service_monitor: None,
            disruption_budget: None,
            network_policies: &[],
            payouts_pods: Ok(&[]),
        },
        "T1",
    );
    let ready = condition(&s, "Ready");
    assert_eq!(ready.reason, "InvalidSpec");
    assert_eq!(
        ready.message,
        "spec.jobs.rewards.schedule: expected 5 fields"
    );
    assert_eq!(condition(&s, "NodeAvailable").reason, "NotCreated");
    let jobs = condition(&s, "JobsScheduled");
    assert_eq!(jobs.status, "False");
    assert_eq!(jobs.message, "no CronJob for validators, payouts, decay");
    assert_eq!(s.node.replicas, Some(0));
    assert!(status::ready_transition(None, &s).unwrap().0, "a warning");
}

/// The status of a MinerPool whose payouts pods are `pods`, everything else settled.
fn status_with_payouts(
    mp: &MinerPool,
    pods: Result<&[Pod], &str>,
) -> minerpool_operator::crd::MinerPoolStatus {
    let dep = deployment_with(1, 1);
    let all_jobs: Vec<ObservedCronJob> = Job::SCHEDULED
        .iter()
        .map(|k| cron_seen(&format!("pool-{}", k.name()), None))
        .collect();
    status::compute(
        mp,
        &Observation {
            problems: &[],
            deployment: Some(&dep),
            cron_jobs: &all_jobs,
            apply_failure: None,
            service_monitor: None,
            disruption_budget: None,
            network_policies: &[],
            payouts_pods: pods,
        },
        "T1",
    )
}

const FOREIGN: &str = "payouts held: 2 foreign spends of the wallet are unresolved: 3f9a (in block 120, 12.50000000 to DUiK4y…), 77c1 (in block 131, 1.00000000 to Dx2…); adopt or acknowledge each (minerpool-job spends …)";

/// The newest finished payouts run decides: exit code 3 holds payouts with the run's reason
/// (read from the termination message), anything else or no finished run does not; a pod still
/// running is not a finished run.
#[test]
fn payouts_held_follows_the_newest_finished_payouts_run() {
    let mp = fixtures::minerpool("pool", "ns");
    let blocked = fixtures::payouts_run(
        "pool",
        "pool-payouts-2-x",
        "2026-11-29T00:02:05Z",
        3,
        &fixtures::blocked_log_tail(FOREIGN),
    );
    let s = status_with_payouts(&mp, Ok(std::slice::from_ref(&blocked)));
    let held = condition(&s, "PayoutsHeld");
    assert_eq!(
        (
            held.status.as_str(),
            held.reason.as_str(),
            held.message.as_str()
        ),
        ("True", "Blocked", FOREIGN)
    );
    assert_eq!(s.payouts.as_deref(), Some("held"));
    assert_eq!(
        condition(&s, "Ready").status,
        "True",
        "held payouts are not a broken deployment"
    );

    // An older success, and a newer run still going, change nothing.
    let older = fixtures::payouts_run("pool", "pool-payouts-1-x", "2026-11-29T00:01:05Z", 0, "");
    let mut running = older.clone();
    running.metadata.name = Some("pool-payouts-3-x".into());
    running
        .status
        .as_mut()
        .unwrap()
        .container_statuses
        .as_mut()
        .unwrap()[0]
        .state = Some(from_json(
        json!({"running": {"startedAt": "2026-11-29T00:03:01Z"}}),
    ));
    let pods = [older.clone(), blocked.clone(), running];
    assert_eq!(status_with_payouts(&mp, Ok(&pods)), s);

    // A newer run that succeeded, or one that failed otherwise, releases it.
    let newer = |exit_code| {
        fixtures::payouts_run(
            "pool",
            "pool-payouts-4-x",
            "2026-11-29T00:04:05Z",
            exit_code,
            "",
        )
    };
    for exit_code in [0, 1] {
        let s = status_with_payouts(&mp, Ok(&[blocked.clone(), newer(exit_code)]));
        let held = condition(&s, "PayoutsHeld");
        assert_eq!(
            (
                held.status.as_str(),
                held.reason.as_str(),
                held.message.as_str()
            ),
            (
                "False",
                "NotHeld",
                "the newest finished payouts run was not blocked"
            ),
            "exit code {exit_code}"
        );
        assert_eq!(s.payouts.as_deref(), Some("ok"));
    }

    // No finished run yet.
    let s = status_with_payouts(&mp, Ok(&[]));
    let held = condition(&s, "PayoutsHeld");
    assert_eq!(
        (
            held.status.as_str(),
            held.reason.as_str(),
            held.message.as_str()
        ),
        ("False", "NotHeld", "no payouts run has finished")
    );
    assert_eq!(s.payouts.as_deref(), Some("ok"));

    // A disabled job holds nothing, whatever its old pods say.
    let mut disabled = mp.clone();
    disabled.spec.jobs.payouts = Some(JobSpec {
        enabled: Some(false),
        ..JobSpec::default()
    });
    let s = status_with_payouts(&disabled, Ok(std::slice::from_ref(&blocked)));
    assert_eq!(
        condition(&s, "PayoutsHeld").message,
        "the payouts job is disabled"
    );

    // Pods that could not be read: Unknown, saying why.
    let s = status_with_payouts(&mp, Err("pods is forbidden"));
    let held = condition(&s, "PayoutsHeld");
    assert_eq!(
        (
            held.status.as_str(),
            held.reason.as_str(),
            held.message.as_str()
        ),
        ("Unknown", "PodsUnreadable", "pods is forbidden")
    );
    assert_eq!(s.payouts.as_deref(), Some("unknown"));
}

/// The reason comes from the summary's `reason`; when Kubernetes cut the summary short (it
/// keeps the log's last 2048 bytes) from the stderr line; with neither, a message that says
/// where to look. A long reason is cut to 1000 characters.
#[test]
fn a_blocked_runs_reason_is_read_from_its_log_tail() {
    assert_eq!(
        status::blocked_reason(&fixtures::blocked_log_tail(FOREIGN)).as_deref(),
        Some(FOREIGN)
    );
    // The tail begins inside the summary line.
    let whole = fixtures::blocked_log_tail(FOREIGN);
    let cut = &whole[whole.find("\"details\"").unwrap()..];
    assert_eq!(status::blocked_reason(cut).as_deref(), Some(FOREIGN));
    // Another JSON line (a log line, a summary of another outcome) is not the summary.
    let others = concat!(
        r#"{"fields":{"reason":"x"}}"#,
        "\n",
        r#"{"job":"payouts","outcome":"succeeded","reason":"x"}"#
    );
    assert_eq!(status::blocked_reason(others), None);

    let mp = fixtures::minerpool("pool", "ns");
    let silent = fixtures::payouts_run("pool", "p", "2026-11-29T00:02:05Z", 3, "");
    let s = status_with_payouts(&mp, Ok(std::slice::from_ref(&silent)));
    assert_eq!(
        condition(&s, "PayoutsHeld").message,
        "the newest payouts run was blocked (exit code 3); its log says why"
    );

    let long = "x".repeat(3000);
    let verbose = fixtures::payouts_run(
        "pool",
        "p",
        "2026-11-29T00:02:05Z",
        3,
        &fixtures::blocked_log_tail(&long),
    );
    let s = status_with_payouts(&mp, Ok(std::slice::from_ref(&verbose)));
    let message = &condition(&s, "PayoutsHeld").message;
    assert_eq!(message.chars().count(), status::MESSAGE_MAX + 1);
    assert!(message.ends_with("x…"), "{message}");
}
