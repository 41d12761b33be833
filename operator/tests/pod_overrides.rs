//! What an admin can shape without forking the operator (pod overrides, resources), and what
//! guards the node (its disruption budget, its spread, the network policies): the pure build.

use std::collections::BTreeSet;

use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use minerpool_core::job::Job;
use minerpool_operator::crd::{DisruptionBudget, JobSpec, MinerPool, PodOverrides};
use minerpool_operator::desired::{self, Desired};
use minerpool_operator::fixtures::{self, MONGODB_SECRET};
use minerpool_operator::names;
use minerpool_operator::problem::Problem;
use minerpool_operator::validate::secrets::FoundSecrets;
use minerpool_operator::validate::validate;
use serde_json::{Value, json};

fn found() -> FoundSecrets {
    FoundSecrets::from([(MONGODB_SECRET.to_string(), BTreeSet::from(["uri".into()]))])
}

fn build(mp: &MinerPool) -> Desired {
    let pool = validate(mp, &found()).unwrap_or_else(|p| panic!("invalid: {p:?}"));
    desired::desired(&pool)
}

fn problems(mp: &MinerPool) -> Vec<Problem> {
    match validate(mp, &found()) {
        Ok(_) => panic!("accepted: {:?}", mp.spec),
        Err(problems) => problems,
    }
}

fn node_template(d: &Desired) -> &PodTemplateSpec {
    &d.deployment.spec.as_ref().unwrap().template
}

fn job_template(cron: &CronJob) -> &PodTemplateSpec {
    &cron
        .spec
        .as_ref()
        .unwrap()
        .job_template
        .spec
        .as_ref()
        .unwrap()
        .template
}

fn spec_of(template: &PodTemplateSpec) -> &PodSpec {
    template.spec.as_ref().unwrap()
}

fn container<'a>(template: &'a PodTemplateSpec, name: &str) -> &'a Container {
    spec_of(template)
        .containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

fn env_value(container: &Container, name: &str) -> Option<String> {
    container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .and_then(|e| e.value.clone())
}

fn cron(d: &Desired, kind: Job) -> &CronJob {
    &d.cron_jobs.iter().find(|(k, _)| *k == kind).unwrap().1
}

fn pool() -> MinerPool {
    fixtures::minerpool("pool", "ns")
}

#[test]
fn a_node_override_merges_by_kubernetes_rules_and_keeps_what_the_operator_built() {
    let mut mp = pool();
    mp.spec.node.pod_overrides = Some(PodOverrides(json!({
        "metadata": {"labels": {"team": "pools"}, "annotations": {"scrape": "yes"}},
        "spec": {
            "nodeSelector": {"disk": "ssd"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "pools", "effect": "NoSchedule"}],
            "priorityClassName": "pools-high",
            "imagePullSecrets": [{"name": "registry"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}},
            "topologySpreadConstraints": [{"topologyKey": "kubernetes.io/hostname", "maxSkew": 2, "whenUnsatisfiable": "DoNotSchedule"}],
            "containers": [
                {"name": "node", "env": [{"name": "RUST_LOG", "value": "debug"}],
                 "resources": {"limits": {"cpu": "2"}},
                 "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                 "readinessProbe": {"periodSeconds": 3}},
                {"name": "sidecar", "image": "registry.example/sidecar:1"}
            ],
            "volumes": [{"name": "scratch", "emptyDir": {}}]
        }
    })));
    mp.spec.node.resources = Some(
        serde_json::from_value(
            json!({"requests": {"memory": "128Mi"}, "limits": {"memory": "1Gi"}}),
        )
        .unwrap(),
    );
    let d = build(&mp);
    let template = node_template(&d);
    let meta = template.metadata.as_ref().unwrap();
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels["team"], "pools");
    assert_eq!(
        labels["app.kubernetes.io/component"], "node",
        "selector labels kept"
    );
    let annotations = meta.annotations.as_ref().unwrap();
    assert_eq!(annotations["scrape"], "yes");
    assert!(
        annotations.contains_key(names::CONFIG_HASH),
        "config digest kept"
    );

    let spec = spec_of(template);
    assert_eq!(spec.node_selector.as_ref().unwrap()["disk"], "ssd");
    assert_eq!(
        spec.tolerations.as_ref().unwrap()[0].key.as_deref(),
        Some("dedicated")
    );
    assert_eq!(spec.priority_class_name.as_deref(), Some("pools-high"));
    assert_eq!(
        spec.image_pull_secrets.as_ref().unwrap()[0].name,
        "registry"
    );
    assert!(spec.affinity.as_ref().unwrap().node_affinity.is_some());
    assert_eq!(spec.automount_service_account_token, Some(false));
    // Merged by topologyKey: the admin's constraint replaces the default's fields.
    let spread = spec.topology_spread_constraints.as_ref().unwrap();
    assert_eq!(spread.len(), 1);
    assert_eq!(
        (spread[0].max_skew, spread[0].when_unsatisfiable.as_str()),
        (2, "DoNotSchedule")
    );
    assert!(
        spread[0].label_selector.is_some(),
        "the default's selector kept"
    );
    // Volumes by name: the config volume and the added one.
    let volumes: Vec<&str> = spec
        .volumes
        .iter()
        .flatten()
        .map(|v| v.name.as_str())
        .collect();
    assert_eq!(volumes, ["config", "scratch"]);

    // Containers by name: the node's own is merged into, the sidecar appended.
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["node", "sidecar"]);
    let node = container(template, "node");
    assert_eq!(node.args.as_ref().unwrap()[0], "serve", "args kept");
    assert_eq!(
        node.image.as_deref(),
        Some("minerpool/minerpool-node:0.1.0")
    );
    assert_eq!(env_value(node, "RUST_LOG").as_deref(), Some("debug"));
    assert!(
        node.env.iter().flatten().any(|e| e.name == "MONGODB_URI"),
        "env by name"
    );
    let resources = serde_json::to_value(node.resources.as_ref().unwrap()).unwrap();
    assert_eq!(
        resources,
        json!({"requests": {"memory": "128Mi"}, "limits": {"memory": "1Gi", "cpu": "2"}}),
        "resources merged key by key over spec.node.resources"
    );
    let mounts: Vec<&str> = node
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(mounts, ["config", "scratch"]);
    let readiness = node.readiness_probe.as_ref().unwrap();
    assert_eq!(readiness.period_seconds, Some(3));
    assert!(readiness.http_get.is_some(), "the probe's endpoint kept");
    assert_eq!(
        node.security_context
            .as_ref()
            .unwrap()
            .read_only_root_filesystem,
        Some(true)
    );
}

#[test]
fn job_overrides_apply_shared_then_per_job_and_tolerations_add_up() {
    let mut mp = pool();
    mp.spec.jobs.pod_overrides = Some(PodOverrides(json!({"spec": {
        "tolerations": [{"key": "batch", "operator": "Exists"}],
        "nodeSelector": {"pool": "batch"},
        "containers": [{"name": "job", "env": [
            {"name": "RUST_LOG", "value": "info"}, {"name": "TZ", "value": "UTC"}]}]
    }})));
    mp.spec.jobs.payouts = Some(JobSpec {
        pod_overrides: Some(PodOverrides(json!({"spec": {
            "tolerations": [{"key": "payouts", "operator": "Exists"}],
            "containers": [{"name": "job", "env": [{"name": "RUST_LOG", "value": "debug"}]}]
        }}))),
        ..JobSpec::default()
    });
    let d = build(&mp);
    let keys = |kind| -> Vec<String> {
        spec_of(job_template(cron(&d, kind)))
            .tolerations
            .iter()
            .flatten()
            .filter_map(|t| t.key.clone())
            .collect()
    };
    assert_eq!(
        keys(Job::Payouts),
        ["batch", "payouts"],
        "appended, not replaced"
    );
    assert_eq!(keys(Job::Rewards), ["batch"]);
    for kind in Job::SCHEDULED {
        let template = job_template(cron(&d, kind));
        let job = container(template, names::JOB_CONTAINER);
        assert_eq!(
            spec_of(template).node_selector.as_ref().unwrap()["pool"],
            "batch"
        );
        assert_eq!(env_value(job, "TZ").as_deref(), Some("UTC"), "{kind:?}");
        assert_eq!(job.args.as_ref().unwrap()[0], kind.name(), "{kind:?}");
        assert_eq!(spec_of(template).restart_policy.as_deref(), Some("Never"));
    }
    let payouts = container(job_template(cron(&d, Job::Payouts)), "job");
    assert_eq!(
        env_value(payouts, "RUST_LOG").as_deref(),
        Some("debug"),
        "per job wins"
    );
    let rewards = container(job_template(cron(&d, Job::Rewards)), "job");
    assert_eq!(env_value(rewards, "RUST_LOG").as_deref(), Some("info"));
}

#[test]
fn jobs_have_default_resources_that_a_jobs_own_replace() {
    let mut mp = pool();
    mp.spec.jobs.rewards = Some(JobSpec {
        resources: Some(serde_json::from_value(json!({"limits": {"memory": "2Gi"}})).unwrap()),
        ..JobSpec::default()
    });
    let d = build(&mp);
    let resources = |kind| {
        serde_json::to_value(
            container(job_template(cron(&d, kind)), "job")
                .resources
                .as_ref()
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(
        resources(Job::Payouts),
        json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}})
    );
    assert_eq!(
        resources(Job::Rewards),
        json!({"limits": {"memory": "2Gi"}})
    );
    // The node has none unless asked: its load is the validators'.
    assert!(container(node_template(&d), "node").resources.is_none());
}

/// Each refused override, with the path of the field that is refused.
#[test]
fn overrides_of_what_the_operator_owns_or_not_of_a_pod_are_refused_by_path() {
    let cases: [(&str, Value, &str, &str); 17] = [
        (
            "node",
            json!({"spec": {"containers": [{"name": "node", "args": ["sh"]}]}}),
            "spec.node.podOverrides.spec.containers[0].args",
            "set by the operator",
        ),
        (
            "node",
            json!({"spec": {"containers": [{"name": "node", "command": ["/bin/sh"]}]}}),
            "spec.node.podOverrides.spec.containers[0].command",
            "set by the operator",
        ),
        (
            "node",
            json!({"spec": {"containers": [{"name": "node", "image": "evil:1"}]}}),
            "spec.node.podOverrides.spec.containers[0].image",
            "spec.images",
        ),
        (
            "node",
            json!({"spec": {"containers": [{"name": "node", "env": [{"name": "MONGODB_URI", "value": "mongodb://elsewhere"}]}]}}),
            "spec.node.podOverrides.spec.containers[0].env[0]",
            "Secret",
        ),
        (
            "node",
            json!({"spec": {"containers": [{"name": "node", "volumeMounts": [{"name": "other", "mountPath": "/etc/minerpool"}]}]}}),
            "spec.node.podOverrides.spec.containers[0].volumeMounts[0]",
            "config",
        ),
        (
            "node",
            json!({"spec": {"containers": [{"name": "node", "ports": [{"name": "http", "containerPort": 80}]}]}}),
            "spec.node.podOverrides.spec.containers[0].ports[0]",
            "probes",
        ),
        (
            "node",
            json!({"spec": {"containers": [{"name": "node", "livenessProbe": {"httpGet": {"path": "/", "port": 80}}}]}}),
            "spec.node.podOverrides.spec.containers[0].livenessProbe.httpGet",
            "health",
        ),
        (
            "node",
            json!({"spec": {"containers": [{"name": "node", "securityContext": {"readOnlyRootFilesystem": false}}]}}),
            "spec.node.podOverrides.spec.containers[0].securityContext.readOnlyRootFilesystem",
            "read-only",
        ),
        (
            "node",
            json!({"spec": {"automountServiceAccountToken": true}}),
            "spec.node.podOverrides.spec.automountServiceAccountToken",
            "Kubernetes API",
        ),
        (
            "node",
            json!({"spec": {"volumes": [{"name": "config", "emptyDir": {}}]}}),
            "spec.node.podOverrides.spec.volumes[0]",
            "config",
        ),
        (
            "node",
            json!({"metadata": {"labels": {"app.kubernetes.io/instance": "other"}}}),
            "spec.node.podOverrides.metadata.labels.app.kubernetes.io/instance",
            "select",
        ),
        (
            "node",
            json!({"spec": {"terminationGracePeriodSeconds": 1}}),
            "spec.node.podOverrides.spec.terminationGracePeriodSeconds",
            "shutdownDelaySeconds",
        ),
        (
            "jobs",
            json!({"spec": {"restartPolicy": "OnFailure"}}),
            "spec.jobs.podOverrides.spec.restartPolicy",
            "next schedule",
        ),
        (
            "payouts",
            json!({"spec": {"containers": [{"name": "job", "env": [{"name": "MINERPOOL_WALLET_KEY", "value": "00"}]}]}}),
            "spec.jobs.payouts.podOverrides.spec.containers[0].env[0]",
            "Secret",
        ),
        // Not a pod template: an unknown field, a wrong type, a container without its name.
        (
            "node",
            json!({"spec": {"nodeSelectr": {"disk": "ssd"}}}),
            "spec.node.podOverrides.spec.nodeSelectr",
            "not a field of a pod template",
        ),
        (
            "node",
            json!({"spec": {"tolerations": "all"}}),
            "spec.node.podOverrides.spec.tolerations",
            "invalid type",
        ),
        (
            "jobs",
            json!({"spec": {"containers": [{"env": [{"name": "A", "value": "1"}]}]}}),
            "spec.jobs.podOverrides.spec.containers[0].name",
            "merged by name",
        ),
    ];
    for (target, over, field, says) in cases {
        let mut mp = pool();
        let over = Some(PodOverrides(over));
        match target {
            "node" => mp.spec.node.pod_overrides = over,
            "jobs" => mp.spec.jobs.pod_overrides = over,
            _ => {
                mp.spec.jobs.payouts = Some(JobSpec {
                    pod_overrides: over,
                    ..JobSpec::default()
                })
            }
        }
        let found = problems(&mp);
        assert!(
            found
                .iter()
                .any(|p| p.field == field && p.message.contains(says)),
            "{field}: expected a problem saying {says:?}, got {found:?}"
        );
        assert_eq!(found.len(), 1, "only the one field: {found:?}");
    }
}

#[test]
fn what_may_be_changed_in_the_operators_container_is_accepted() {
    let mut mp = pool();
    mp.spec.node.pod_overrides = Some(PodOverrides(json!({"spec": {
        "automountServiceAccountToken": false,
        "containers": [{"name": "node",
            "securityContext": {"readOnlyRootFilesystem": true, "runAsUser": 1000},
            "ports": [{"name": "debug", "containerPort": 6060}],
            "livenessProbe": {"failureThreshold": 5},
            "env": [{"name": "RUST_BACKTRACE", "value": "1"}]}]
    }})));
    let d = build(&mp);
    let node = container(node_template(&d), "node");
    let plain = build(&pool());
    let plain_ports = container(node_template(&plain), "node")
        .ports
        .clone()
        .unwrap();
    let ports = node.ports.as_ref().unwrap();
    assert_eq!(ports.len(), plain_ports.len() + 1, "{ports:?}");
    assert!(
        ports
            .iter()
            .any(|p| p.name.as_deref() == Some("debug") && p.container_port == 6060),
        "{ports:?}"
    );
    assert!(plain_ports.iter().all(|p| ports.contains(p)), "{ports:?}");
    assert_eq!(
        node.liveness_probe.as_ref().unwrap().failure_threshold,
        Some(5)
    );
}

#[test]
fn the_node_is_spread_over_machines_by_default() {
    let d = build(&pool());
    let spread = spec_of(node_template(&d))
        .topology_spread_constraints
        .as_ref()
        .unwrap();
    assert_eq!(spread.len(), 1);
    assert_eq!(
        spread[0].topology_key,
        minerpool_operator::pods::SPREAD_TOPOLOGY_KEY
    );
    // A one-machine cluster still schedules every replica.
    assert_eq!(spread[0].when_unsatisfiable, "ScheduleAnyway");
    assert_eq!(
        spread[0].label_selector.as_ref().unwrap().match_labels,
        Some(names::node_selector_labels("pool"))
    );
}

#[test]
fn a_budget_guards_the_node_when_it_has_replicas_to_spare() {
    let budget_of = |replicas: Option<i32>, budget: Option<DisruptionBudget>| {
        let mut mp = pool();
        mp.spec.node.replicas = replicas;
        mp.spec.node.disruption_budget = budget;
        build(&mp).disruption_budget
    };
    assert!(
        budget_of(None, None).is_none(),
        "replicas left to whoever scales"
    );
    assert!(budget_of(Some(1), None).is_none());
    let two = budget_of(Some(2), None).expect("a budget at 2 replicas");
    let spec = two.spec.as_ref().unwrap();
    assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
    assert!(spec.min_available.is_none());
    assert_eq!(
        spec.selector.as_ref().unwrap().match_labels,
        Some(names::node_selector_labels("pool"))
    );
    assert_eq!(two.metadata.name.as_deref(), Some("pool-node"));
    assert_eq!(
        two.metadata.owner_references.as_ref().unwrap()[0].controller,
        Some(true)
    );
    let off = DisruptionBudget {
        enabled: Some(false),
        max_unavailable: None,
    };
    assert!(budget_of(Some(5), Some(off)).is_none());
    let forced = DisruptionBudget {
        enabled: Some(true),
        max_unavailable: Some(IntOrString::String("25%".into())),
    };
    let one = budget_of(Some(1), Some(forced)).expect("asked for");
    assert_eq!(
        one.spec.unwrap().max_unavailable,
        Some(IntOrString::String("25%".into()))
    );

    for (bad, says) in [
        (IntOrString::Int(0), "would block every drain"),
        (IntOrString::Int(-1), "would block every drain"),
        (IntOrString::String("0%".into()), "not a count from 1"),
        (IntOrString::String("150%".into()), "not a count from 1"),
        (IntOrString::String("half".into()), "not a count from 1"),
    ] {
        let mut mp = pool();
        mp.spec.node.disruption_budget = Some(DisruptionBudget {
            enabled: None,
            max_unavailable: Some(bad.clone()),
        });
        let found = problems(&mp);
        assert!(
            found
                .iter()
                .any(|p| p.field == "spec.node.disruptionBudget.maxUnavailable"
                    && p.message.contains(says)),
            "{bad:?}: {found:?}"
        );
    }
}

#[test]
fn network_policies_open_the_node_ports_and_close_the_jobs_only_when_enabled() {
    assert!(build(&pool()).network_policies.is_none(), "off by default");
    let mut mp = pool();
    mp.spec.network_policy.enabled = true;
    mp.spec.node.http_port = Some(9001);
    let d = build(&mp);
    let [node, jobs] = d.network_policies.clone().unwrap();
    let node_spec = node.spec.unwrap();
    assert_eq!(node_spec.policy_types, Some(vec!["Ingress".to_string()]));
    let rules = node_spec.ingress.unwrap();
    assert_eq!(rules.len(), 2);
    assert!(rules[0].from.is_none(), "from anywhere");
    // The metrics port: by default from the MinerPool's own namespace only.
    assert_eq!(
        serde_json::to_value(&rules[1]).unwrap(),
        json!({"ports": [{"port": 9090, "protocol": "TCP"}], "from": [{"podSelector": {}}]})
    );
    let ports: Vec<IntOrString> = rules[0]
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.port.clone())
        .collect();
    assert_eq!(ports, [IntOrString::Int(9001), IntOrString::Int(5501)]);
    assert!(node_spec.egress.is_none(), "egress is the cluster's choice");

    // Each policy selects exactly its pods, by the labels the operator puts on them.
    let selects = |selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
                   template: &PodTemplateSpec| {
        let labels = template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
        selector
            .match_labels
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v))
            && selector.match_expressions.iter().flatten().all(|e| {
                e.operator == "In"
                    && labels
                        .get(&e.key)
                        .is_some_and(|v| e.values.iter().flatten().any(|w| w == v))
            })
    };
    let node_selector = node_spec.pod_selector.unwrap();
    let jobs_spec = jobs.spec.unwrap();
    let jobs_selector = jobs_spec.pod_selector.unwrap();
    assert!(selects(&node_selector, node_template(&d)));
    assert!(!selects(&jobs_selector, node_template(&d)));
    for (kind, cron_job) in &d.cron_jobs {
        assert!(selects(&jobs_selector, job_template(cron_job)), "{kind:?}");
        assert!(!selects(&node_selector, job_template(cron_job)), "{kind:?}");
    }
    assert_eq!(jobs_spec.ingress, Some(vec![]), "the jobs take nothing");
    assert_eq!(jobs.metadata.name.as_deref(), Some("pool-jobs"));
}
