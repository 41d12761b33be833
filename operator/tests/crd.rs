//! The generated MinerPool CRD: the checked-in copies never drift from the Rust types, and the
//! CRD has what `kubectl` users rely on.
//!
//! After changing the types, regenerate both copies:
//! `cargo run -p minerpool-operator -- crd > crds/minerpool.yaml && cp crds/minerpool.yaml charts/minerpool-operator/crds/`

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResourceExt;
use minerpool_core::config::{self, Config};
use minerpool_core::job::Job;
use minerpool_core::money::Amount;
use minerpool_operator::crd::{MinerPool, NetworkPolicy, ServiceMonitor};
use minerpool_operator::defaults;
use minerpool_operator::fixtures;
use minerpool_operator::validate::secrets::FoundSecrets;
use minerpool_operator::validate::validate;
use serde_json::Value;

fn generated() -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_minerpool-operator"))
        .arg("crd")
        .output()
        .expect("run minerpool-operator crd");
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn checked_in_copies_match_the_generated_crd() {
    let generated = generated();
    for copy in [
        "crds/minerpool.yaml",
        "charts/minerpool-operator/crds/minerpool.yaml",
    ] {
        let path = format!("{}/../{copy}", env!("CARGO_MANIFEST_DIR"));
        let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            on_disk == generated,
            "{copy} drifted from the Rust types: regenerate it (see the top of this file)"
        );
    }
}

fn version(crd: &Value) -> &Value {
    &crd["spec"]["versions"][0]
}

/// Every property of every object in the schema has a description (`kubectl explain` works).
fn undocumented(schema: &Value, path: &str, missing: &mut Vec<String>) {
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            let here = format!("{path}.{name}");
            if property.get("description").is_none() {
                missing.push(here.clone());
            }
            undocumented(property, &here, missing);
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(inner) = schema.get(key) {
            undocumented(inner, path, missing);
        }
    }
}

#[test]
fn the_crd_has_what_users_rely_on() {
    let crd: Value = serde_yaml::from_str(&generated()).unwrap();
    assert_eq!(crd["spec"]["group"], "minerpool.io");
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "mp");
    let v = version(&crd);
    assert_eq!(v["name"], "v1alpha1");
    assert!(v["subresources"]["status"].is_object());
    assert_eq!(
        v["subresources"]["scale"]["specReplicasPath"],
        ".spec.node.replicas"
    );
    assert_eq!(
        v["subresources"]["scale"]["statusReplicasPath"],
        ".status.node.replicas"
    );
    let columns: Vec<(&str, &str)> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].as_str().unwrap(), c["jsonPath"].as_str().unwrap()))
        .collect();
    // Kubernetes before 1.21 serves CronJobs as batch/v1beta1, whose status has no last
    // success: the schedule column is what `kubectl get mp` can show there.
    assert_eq!(
        columns,
        [
            ("Ready", ".status.conditions[?(@.type==\"Ready\")].status"),
            ("Replicas", ".status.node.readyReplicas"),
            ("Rewards scheduled", ".status.jobs.rewards.lastScheduleTime"),
            ("Last rewards", ".status.jobs.rewards.lastSuccessfulTime"),
            ("Payouts", ".status.payouts"),
            ("Age", ".metadata.creationTimestamp"),
        ]
    );
    let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let rule = &spec["properties"]["rewards"]["x-kubernetes-validations"][0];
    assert_eq!(
        rule["rule"],
        "self.feePercent + self.poolsPercent + self.validatorsPercent == 100"
    );
    let mut missing = Vec::new();
    undocumented(spec, "spec", &mut missing);
    assert!(
        missing.is_empty(),
        "fields without a description: {missing:?}"
    );
}

#[test]
fn the_example_minerpool_reads_as_a_minerpool() {
    let path = format!("{}/../examples/minerpool.yaml", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    let first = text.split("\n---").next().unwrap();
    let example: minerpool_operator::crd::MinerPool =
        serde_yaml::from_str(first).expect("the example is a MinerPool");
    let r = &example.spec.rewards;
    assert_eq!(
        u32::from(r.fee_percent) + u32::from(r.pools_percent) + u32::from(r.validators_percent),
        100
    );
    assert_eq!(example.spec.node.replicas, Some(2));
    assert_eq!(example.spec.mongodb.uri_secret_ref.name, "mongodb-uri");
}

/// Every spec field's description on one line, by dotted path; the Kubernetes types inside (resources,
/// pod overrides) keep their own descriptions and are not walked.
fn descriptions() -> BTreeMap<String, String> {
    fn walk(schema: &Value, path: &str, out: &mut BTreeMap<String, String>) {
        for (name, property) in schema["properties"].as_object().into_iter().flatten() {
            let here = format!("{path}.{name}");
            if let Some(text) = property["description"].as_str() {
                // As one line: the doc comments' line breaks are kept in the schema.
                let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
                out.insert(here.clone(), text);
            }
            if name != "resources" && name != "podOverrides" {
                walk(property, &here, out);
            }
        }
    }
    let crd = serde_json::to_value(MinerPool::crd()).unwrap();
    let mut out = BTreeMap::new();
    walk(
        &version(&crd)["schema"]["openAPIV3Schema"]["properties"]["spec"],
        "spec",
        &mut out,
    );
    out
}

/// The default a description states as `(default VALUE)` or `(default VALUE; …)`.
fn stated_default(description: &str) -> Option<&str> {
    let rest = &description[description.find("(default ")? + "(default ".len()..];
    Some(&rest[..rest.find([';', ')'])?])
}

/// A cron schedule in the words the descriptions use.
fn in_words(schedule: &str) -> String {
    match schedule.split(' ').collect::<Vec<_>>()[..] {
        ["*", "*", "*", "*", "*"] => "every minute".into(),
        [minutes, "*", "*", "*", "*"] if minutes.starts_with("*/") => {
            format!("every {} minutes", &minutes[2..])
        }
        _ => panic!("no words for {schedule:?}"),
    }
}

/// What a description says about a default, and what is true.
enum Stated {
    /// `(default VALUE…)` names this value.
    Value(String),
    /// The description holds this text.
    Text(String),
}

/// Every default a field's description states is the one in force: core's `Config` defaults for
/// the config file's fields, the operator's own for the rest (read off a validated MinerPool
/// whose optional fields are all unset); and every description that states a default is checked.
#[test]
fn documented_defaults_are_the_real_ones() {
    let core = Config::with_wallets(fixtures::INODE_WALLET, fixtures::REWARD_ADDRESS);
    let found = FoundSecrets::from([(
        fixtures::MONGODB_SECRET.to_owned(),
        ["uri".to_owned()].into(),
    )]);
    let validated = |mp: &MinerPool| validate(mp, &found).expect("valid");
    let pool = validated(&fixtures::minerpool("pool", "ns"));
    let value = |v: &dyn std::fmt::Display| Stated::Value(v.to_string());
    let text = |t: String| Stated::Text(t);
    let (c, n, p) = (&core.chain, &core.node, &core.payouts);
    let job_resources = defaults::default_job_resources();
    let quantity = |list: &Option<BTreeMap<String, Quantity>>, key: &str| {
        list.as_ref().unwrap()[key].0.clone()
    };
    let job_resources = format!(
        "(default: requests cpu {} and memory {}, limit memory {})",
        quantity(&job_resources.requests, "cpu"),
        quantity(&job_resources.requests, "memory"),
        quantity(&job_resources.limits, "memory"),
    );
    let mut expected: Vec<(String, Stated)> = vec![
        ("chain.apiUrl".into(), value(&c.api_url)),
        (
            "chain.validatorsUrl".into(),
            text(format!(
                "unset: {}.",
                c.validators_url().replace(&c.api_url, "{apiUrl}")
            )),
        ),
        (
            "chain.startHeight".into(),
            value(&core.rewards.start_height),
        ),
        (
            "chain.allowInsecureHttp".into(),
            value(&c.allow_insecure_http),
        ),
        (
            "chain.requestTimeoutSeconds".into(),
            value(&c.request_timeout_seconds),
        ),
        (
            "chain.rateLimitWaitSeconds".into(),
            value(&c.rate_limit_wait_seconds),
        ),
        (
            "mongodb.database".into(),
            text(format!("unset: {}.", core.mongodb.database)),
        ),
        (
            "rewards.blocksPerRun".into(),
            value(&core.rewards.blocks_per_run),
        ),
        (
            "rewards.confirmations".into(),
            value(&core.rewards.confirmations),
        ),
        ("validators.limit".into(), value(&core.validators.limit)),
        (
            "history.scoreRetentionDays".into(),
            value(&core.history.score_retention_days),
        ),
        ("node.httpPort".into(), value(&n.http_address.port())),
        (
            "node.websocketPort".into(),
            value(&n.websocket_address.port()),
        ),
        ("node.metricsPort".into(), value(&pool.metrics_port())),
        ("node.maxConnections".into(), value(&n.max_connections)),
        (
            "node.shutdownDelaySeconds".into(),
            value(&pool.config.node.shutdown_delay_seconds),
        ),
        (
            "node.shutdownTimeoutSeconds".into(),
            value(&n.shutdown_timeout_seconds),
        ),
        (
            "node.maxHttpConnections".into(),
            value(&n.max_http_connections),
        ),
        (
            "node.maxConnectionsPerClient".into(),
            value(&n.max_connections_per_client),
        ),
        (
            "node.httpIdleTimeoutSeconds".into(),
            value(&n.http_idle_timeout_seconds),
        ),
        (
            "node.httpRequestTimeoutSeconds".into(),
            value(&n.http_request_timeout_seconds),
        ),
        (
            "node.adminRequestsPerMinutePerClient".into(),
            value(&n.admin_requests_per_minute_per_client),
        ),
        (
            "node.adminRequestsPerMinute".into(),
            value(&n.admin_requests_per_minute),
        ),
        (
            "node.signedWindowSeconds".into(),
            value(&n.signed_window_seconds),
        ),
        ("node.maxGroupSize".into(), value(&n.max_group_size)),
        ("node.registryCache".into(), value(&n.registry_cache)),
        (
            "node.registryReloadSeconds".into(),
            value(&n.registry_reload_seconds),
        ),
        ("node.proxyProtocol".into(), value(&n.proxy_protocol)),
        (
            "node.protocol".into(),
            text(format!("{} (default:", n.protocol.as_str())),
        ),
        ("node.serviceType".into(), value(&pool.node.service_type)),
        (
            "node.externalTrafficPolicy".into(),
            text(format!(
                "{} (default:",
                defaults::DEFAULT_EXTERNAL_TRAFFIC_POLICY
            )),
        ),
        (
            "node.replicas".into(),
            text("unset: the operator leaves replicas".into()),
        ),
        ("node.resources".into(), text("(default: none)".into())),
        (
            "node.disruptionBudget".into(),
            text(format!(
                "(default: one with maxUnavailable {} when replicas is above 1)",
                defaults::DEFAULT_MAX_UNAVAILABLE
            )),
        ),
        (
            "node.disruptionBudget.enabled".into(),
            text("unset: when replicas is above 1".into()),
        ),
        (
            "node.disruptionBudget.maxUnavailable".into(),
            value(&defaults::DEFAULT_MAX_UNAVAILABLE),
        ),
        (
            "node.serviceMonitor.enabled".into(),
            value(&ServiceMonitor::default().enabled),
        ),
        (
            "node.serviceMonitor.interval".into(),
            text("(default: Prometheus's own)".into()),
        ),
        (
            "networkPolicy.enabled".into(),
            value(&NetworkPolicy::default().enabled),
        ),
        (
            "networkPolicy.metricsFromNamespaces".into(),
            text("Unset: the MinerPool's own namespace.".into()),
        ),
        (
            "payouts.sender".into(),
            text(format!(
                "{} (default:",
                serde_json::to_value(p.sender).unwrap().as_str().unwrap()
            )),
        ),
        (
            "payouts.maxOutputsPerTx".into(),
            value(&p.max_outputs_per_tx),
        ),
        (
            "payouts.abandonAfterSeconds".into(),
            value(&p.abandon_after_seconds),
        ),
    ];
    for job in Job::SCHEDULED {
        let settings = pool.job(job).unwrap();
        let schedule = defaults::default_schedule(job).unwrap();
        assert_eq!(settings.schedule, schedule);
        let at = |field: &str| format!("jobs.{}{field}", job.name());
        expected.extend([
            (at(""), value(&in_words(schedule))),
            (at(".resources"), text(job_resources.clone())),
            (
                at(".successfulJobsHistoryLimit"),
                value(&settings.successful_jobs_history_limit),
            ),
            (
                at(".failedJobsHistoryLimit"),
                value(&settings.failed_jobs_history_limit),
            ),
            (
                at(".activeDeadlineSeconds"),
                value(&settings.active_deadline_seconds),
            ),
        ]);
        assert_eq!(settings.resources, defaults::default_job_resources());
    }

    // What the text-only statements say, as the operator does it.
    assert_eq!(pool.node.replicas, None);
    assert_eq!(pool.node.resources, None);
    assert_eq!(pool.node.max_unavailable, None, "one replica: no budget");
    let mut two = fixtures::minerpool("pool", "ns");
    two.spec.node.replicas = Some(2);
    assert_eq!(
        validated(&two).node.max_unavailable,
        Some(IntOrString::Int(defaults::DEFAULT_MAX_UNAVAILABLE))
    );
    let mut monitored = fixtures::minerpool("pool", "ns");
    monitored.spec.node.service_monitor = Some(ServiceMonitor {
        enabled: true,
        ..ServiceMonitor::default()
    });
    assert_eq!(
        validated(&monitored).node.service_monitor.unwrap().interval,
        None
    );
    let mut node_port = fixtures::minerpool("pool", "ns");
    node_port.spec.node.service_type = Some("NodePort".into());
    assert_eq!(
        validated(&node_port)
            .node
            .external_traffic_policy
            .as_deref(),
        Some(defaults::DEFAULT_EXTERNAL_TRAFFIC_POLICY)
    );
    // The amounts are decimal strings: compared as amounts.
    let descriptions = descriptions();
    for (field, default) in [
        ("payouts.minimumPayout", p.minimum_payout),
        ("payouts.fee", p.fee),
    ] {
        let stated = stated_default(&descriptions[&format!("spec.{field}")]).unwrap();
        assert_eq!(
            Amount::parse(stated.trim_matches('"')).unwrap(),
            default,
            "{field}"
        );
        expected.push((field.into(), value(&stated)));
    }

    let mut wrong = Vec::new();
    for (field, stated) in &expected {
        let path = format!("spec.{field}");
        let Some(description) = descriptions.get(&path) else {
            wrong.push(format!("{path}: no such field"));
            continue;
        };
        match stated {
            Stated::Value(v) if stated_default(description) != Some(v.as_str()) => {
                wrong.push(format!(
                    "{path}: says {:?}, the default is {v}",
                    stated_default(description)
                ))
            }
            Stated::Text(t) if !description.contains(t.as_str()) => {
                wrong.push(format!("{path}: should say {t:?}: {description:?}"))
            }
            _ => {}
        }
    }
    for (path, description) in &descriptions {
        let lower = description.to_lowercase();
        let checked = expected
            .iter()
            .any(|(field, _)| path == &format!("spec.{field}"));
        if (lower.contains("default") || lower.contains("unset")) && !checked {
            wrong.push(format!(
                "{path}: states a default no check covers: {description:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Every range a description states (`N to M`) is the one core enforces: core accepts both ends
/// and refuses the values just outside; and every description that states a range is checked.
#[test]
fn documented_bounds_are_the_ones_core_enforces() {
    type Set = fn(&mut Config, u64);
    let bounds: [(&str, u64, u64, Set); 10] = [
        (
            "chain.rateLimitWaitSeconds",
            0,
            config::MAX_RATE_LIMIT_WAIT_SECONDS,
            |c, v| c.chain.rate_limit_wait_seconds = v,
        ),
        ("rewards.blocksPerRun", 1, 1000, |c, v| {
            c.rewards.blocks_per_run = v as u32
        }),
        (
            "rewards.confirmations",
            0,
            config::MAX_CONFIRMATIONS.into(),
            |c, v| c.rewards.confirmations = v as u32,
        ),
        ("validators.limit", 1, 1000, |c, v| {
            c.validators.limit = v as u32
        }),
        (
            "node.shutdownDelaySeconds",
            0,
            config::MAX_SHUTDOWN_DELAY_SECONDS.into(),
            |c, v| c.node.shutdown_delay_seconds = v as u32,
        ),
        (
            "node.shutdownTimeoutSeconds",
            1,
            config::MAX_SHUTDOWN_TIMEOUT_SECONDS.into(),
            |c, v| c.node.shutdown_timeout_seconds = v as u32,
        ),
        (
            "node.signedWindowSeconds",
            1,
            config::MAX_SIGNED_WINDOW_SECONDS.into(),
            |c, v| c.node.signed_window_seconds = v as u32,
        ),
        (
            "node.maxGroupSize",
            1,
            config::MAX_GROUP_SIZE.into(),
            |c, v| c.node.max_group_size = v as u32,
        ),
        (
            "payouts.maxOutputsPerTx",
            1,
            config::MAX_RECIPIENTS_PER_TX.into(),
            |c, v| c.payouts.max_outputs_per_tx = v as u32,
        ),
        (
            "history.scoreRetentionDays",
            1,
            config::MAX_SCORE_RETENTION_DAYS.into(),
            |c, v| c.history.score_retention_days = v as u32,
        ),
    ];
    let accepts = |set: Set, v: u64| {
        let mut c = Config::with_wallets(fixtures::INODE_WALLET, fixtures::REWARD_ADDRESS);
        set(&mut c, v);
        c.validate().is_ok()
    };
    let descriptions = descriptions();
    let range = stated_range;
    let mut wrong = Vec::new();
    for (field, low, high, set) in bounds {
        let path = format!("spec.{field}");
        match descriptions.get(&path).and_then(|d| range(d)) {
            Some(stated) if stated == (low, high) => {}
            other => wrong.push(format!(
                "{path}: states {other:?}, core's range is {low} to {high}"
            )),
        }
        assert!(
            accepts(set, low) && accepts(set, high),
            "{field}: {low} and {high} are accepted"
        );
        assert!(!accepts(set, high + 1), "{field}: {} is refused", high + 1);
        if low > 0 {
            assert!(!accepts(set, low - 1), "{field}: {} is refused", low - 1);
        }
    }
    for (path, description) in &descriptions {
        if range(description).is_some()
            && !bounds.iter().any(|(f, ..)| path == &format!("spec.{f}"))
        {
            wrong.push(format!(
                "{path}: states a range no check covers: {description:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The first `N to M` of a description, with N and M numbers.
fn stated_range(description: &str) -> Option<(u64, u64)> {
    let words: Vec<&str> = description
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';' || c == ',')
        .collect();
    words.windows(3).find_map(|w| match w {
        [low, "to", high] => Some((
            low.parse().ok()?,
            high.trim_end_matches([')', '.']).parse().ok()?,
        )),
        _ => None,
    })
}
