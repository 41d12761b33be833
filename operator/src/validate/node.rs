//! The node's Kubernetes side: its replicas, ports, Service, resources, disruption budget,
//! ServiceMonitor and NetworkPolicy.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::crd::MinerPoolSpec;
use crate::defaults::{
    DEFAULT_EXTERNAL_TRAFFIC_POLICY, DEFAULT_MAX_UNAVAILABLE, DEFAULT_SERVICE_TYPE,
};
use crate::problem::Problem;
use crate::validate::syntax::{
    check_resources, is_label_key, is_label_value, is_namespace_name, is_prometheus_duration,
};
use crate::validated::{NetworkPolicySettings, NodeSettings, ServiceMonitorSettings};

const SERVICE_TYPES: [&str; 3] = ["ClusterIP", "NodePort", "LoadBalancer"];
const TRAFFIC_POLICIES: [&str; 2] = ["Local", "Cluster"];

/// The node's settings (its pod overrides are read later, against the pod built).
pub fn check(spec: &MinerPoolSpec, problems: &mut Vec<Problem>) -> NodeSettings {
    let node = &spec.node;
    let mut problem = |field: &str, message: String| problems.push(Problem::new(field, message));
    let service_monitor = node.service_monitor.as_ref().filter(|m| m.enabled);
    if let Some(monitor) = &node.service_monitor {
        if let Some(interval) = &monitor.interval
            && !is_prometheus_duration(interval)
        {
            problem(
                "spec.node.serviceMonitor.interval",
                format!("{interval:?} is not a Prometheus duration such as 30s or 1m30s"),
            );
        }
        for key in monitor.labels.iter().flat_map(|labels| labels.keys()) {
            if key.starts_with("app.kubernetes.io/") {
                problem(
                    "spec.node.serviceMonitor.labels",
                    format!("{key:?} is set by the operator"),
                );
            } else if !is_label_key(key) {
                problem(
                    "spec.node.serviceMonitor.labels",
                    format!("{key:?} is not a label key"),
                );
            }
        }
        for value in monitor.labels.iter().flat_map(|labels| labels.values()) {
            if !is_label_value(value) {
                problem(
                    "spec.node.serviceMonitor.labels",
                    format!("{value:?} is not a label value"),
                );
            }
        }
    }
    if let Some(replicas) = node.replicas
        && replicas < 0
    {
        problem("spec.node.replicas", format!("{replicas} is negative"));
    }
    for (field, port) in [
        ("spec.node.httpPort", node.http_port),
        ("spec.node.websocketPort", node.websocket_port),
        ("spec.node.metricsPort", node.metrics_port),
    ] {
        if port == Some(0) {
            problem(field, "0 is not a port".into());
        }
    }
    for (field, value, allowed) in [
        (
            "spec.node.serviceType",
            &node.service_type,
            &SERVICE_TYPES[..],
        ),
        (
            "spec.node.externalTrafficPolicy",
            &node.external_traffic_policy,
            &TRAFFIC_POLICIES[..],
        ),
    ] {
        if let Some(value) = value
            && !allowed.contains(&value.as_str())
        {
            problem(
                field,
                format!("{value:?} is not one of {}", allowed.join(", ")),
            );
        }
    }
    let budget = node.disruption_budget.clone().unwrap_or_default();
    if let Some(max) = &budget.max_unavailable
        && let Err(why) = check_max_unavailable(max)
    {
        problem("spec.node.disruptionBudget.maxUnavailable", why);
    }
    check_resources("spec.node.resources", node.resources.as_ref(), problems);

    let service_type = node
        .service_type
        .clone()
        .unwrap_or_else(|| DEFAULT_SERVICE_TYPE.into());
    // A ClusterIP Service has no external traffic policy.
    let external_traffic_policy = (service_type == "LoadBalancer" || service_type == "NodePort")
        .then(|| {
            node.external_traffic_policy
                .clone()
                .unwrap_or_else(|| DEFAULT_EXTERNAL_TRAFFIC_POLICY.into())
        });
    // `enabled` true or false decides; unset, there is a budget when the MinerPool asks for more
    // than one replica (at one, a budget of one changes nothing; with replicas unset, whoever
    // scales the Deployment decides and the spec says nothing).
    let budget_wanted = budget
        .enabled
        .unwrap_or_else(|| node.replicas.is_some_and(|r| r > 1));
    NodeSettings {
        replicas: node.replicas,
        resources: node.resources.clone(),
        service_type,
        external_traffic_policy,
        max_unavailable: budget_wanted.then(|| {
            budget
                .max_unavailable
                .unwrap_or(IntOrString::Int(DEFAULT_MAX_UNAVAILABLE))
        }),
        service_monitor: service_monitor.map(|monitor| ServiceMonitorSettings {
            interval: monitor.interval.clone(),
            labels: monitor.labels.clone().unwrap_or_default(),
        }),
        overrides: None,
    }
}

/// The NetworkPolicies, when `spec.networkPolicy.enabled`.
pub fn network_policy(
    spec: &MinerPoolSpec,
    problems: &mut Vec<Problem>,
) -> Option<NetworkPolicySettings> {
    let policy = &spec.network_policy;
    for name in policy.metrics_from_namespaces.iter().flatten() {
        if !is_namespace_name(name) {
            problems.push(Problem::new(
                "spec.networkPolicy.metricsFromNamespaces",
                format!("{name:?} is not a namespace name"),
            ));
        }
    }
    policy.enabled.then(|| NetworkPolicySettings {
        metrics_from_namespaces: policy.metrics_from_namespaces.clone(),
    })
}

/// A budget's maxUnavailable: a count from 1, or a percentage from 1% to 100%. Zero is refused:
/// it would block every drain of a machine the node runs on.
fn check_max_unavailable(value: &IntOrString) -> Result<(), String> {
    match value {
        IntOrString::Int(n) if *n >= 1 => Ok(()),
        IntOrString::Int(n) => Err(format!(
            "{n} would block every drain; at least 1, or enabled: false for no budget"
        )),
        IntOrString::String(text) => {
            match text.strip_suffix('%').and_then(|n| n.parse::<u8>().ok()) {
                Some(1..=100) if !text.starts_with('0') => Ok(()),
                _ => Err(format!(
                    "{text:?} is not a count from 1 or a percentage from 1% to 100%"
                )),
            }
        }
    }
}
