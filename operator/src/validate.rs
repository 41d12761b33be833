//! Validation of a MinerPool before anything is applied: every rule the API server cannot check
//! (cron syntax, addresses, Secrets that must exist, the rendered config's own rules) and the CEL
//! rule, which Kubernetes before 1.25 does not evaluate. A spec that fails here creates nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;

use kube::ResourceExt;
use minerpool_core::config::{Config, Protocol, Sender};
use minerpool_core::money::Amount;

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::crd::{MinerPool, MinerPoolSpec, SecretKeyRef};
use crate::desired::JobKind;
use crate::overrides;

/// The keys each Secret in the namespace holds, for the Secrets the spec names; a Secret that does
/// not exist is absent.
pub type FoundSecrets = BTreeMap<String, BTreeSet<String>>;

/// One thing wrong with a spec, with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path from the resource root, such as `spec.jobs.rewards.schedule`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// All problems, joined for a condition message.
pub fn describe(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// CronJob names get an 11-character suffix for their Jobs and must stay within 63.
const MAX_NAME_LEN: usize = 52 - "-validators".len();

/// A node pod's drain when the spec names none: kube-proxy drops a deleted pod within a second
/// or two of its deletion.
pub const DEFAULT_SHUTDOWN_DELAY_SECONDS: u32 = 5;
/// The node's metrics port when the spec names none: a cluster always serves them apart from the
/// API.
pub const DEFAULT_METRICS_PORT: u16 = 9090;
const SERVICE_TYPES: [&str; 3] = ["ClusterIP", "NodePort", "LoadBalancer"];
const TRAFFIC_POLICIES: [&str; 2] = ["Local", "Cluster"];

/// The Secrets the spec refers to, with the field that names each.
pub fn secret_refs(spec: &MinerPoolSpec) -> Vec<(&'static str, &SecretKeyRef)> {
    let mut refs = vec![("spec.mongodb.uriSecretRef", &spec.mongodb.uri_secret_ref)];
    if let Some(r) = &spec.payouts.wallet_key_secret_ref {
        refs.push(("spec.payouts.walletKeySecretRef", r));
    }
    if let Some(r) = &spec.node.admin_token_secret_ref {
        refs.push(("spec.node.adminTokenSecretRef", r));
    }
    if let Some(r) = &spec.node.admin_rsa_key_secret_ref {
        refs.push(("spec.node.adminRsaKeySecretRef", r));
    }
    refs
}

/// Checks the MinerPool and renders the config file the node and jobs read.
pub fn validate(mp: &MinerPool, secrets: &FoundSecrets) -> Result<Config, Vec<Problem>> {
    let spec = &mp.spec;
    let mut problems = Vec::new();
    let mut problem = |field: &str, message: String| {
        problems.push(Problem {
            field: field.to_string(),
            message,
        })
    };

    let name = mp.name_any();
    if !is_dns_label(&name) {
        problem(
            "metadata.name",
            format!(
                "{name:?} must start with a lowercase letter and hold only lowercase letters, digits and '-' (the node's Service is named after it, and Service names are DNS-1035 labels)"
            ),
        );
    }
    if name.len() > MAX_NAME_LEN {
        problem(
            "metadata.name",
            format!(
                "{name:?} is {} characters; at most {MAX_NAME_LEN} leave room for the CronJob names",
                name.len()
            ),
        );
    }
    for (field, image) in [
        ("spec.images.node", &spec.images.node),
        ("spec.images.jobs", &spec.images.jobs),
    ] {
        if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
            problem(field, format!("{image:?} is not an image reference"));
        }
    }
    for (field, reference) in secret_refs(spec) {
        match secrets.get(&reference.name) {
            None => problem(field, format!("Secret {:?} does not exist", reference.name)),
            Some(keys) if !keys.contains(&reference.key) => problem(
                field,
                format!("Secret {:?} has no key {:?}", reference.name, reference.key),
            ),
            Some(_) => {}
        }
    }
    let protocol = match spec.node.protocol.as_deref() {
        None | Some("both") => Protocol::Both,
        Some("legacy") => Protocol::Legacy,
        Some("signed") => Protocol::Signed,
        Some(other) => {
            problem(
                "spec.node.protocol",
                format!("{other:?} is not a protocol (legacy, both or signed)"),
            );
            Protocol::Both
        }
    };
    let sender = match spec.payouts.sender.as_deref() {
        None | Some("dry-run") => Sender::DryRun,
        Some("upow") => Sender::Upow,
        Some(other) => {
            problem(
                "spec.payouts.sender",
                format!("{other:?} is not a sender (dry-run or upow)"),
            );
            Sender::DryRun
        }
    };
    if sender == Sender::Upow && spec.payouts.wallet_key_secret_ref.is_none() {
        problem(
            "spec.payouts.walletKeySecretRef",
            "is required when sender is upow".into(),
        );
    }
    let node = &spec.node;
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
    let mut resources = vec![("spec.node.resources".to_owned(), node.resources.clone())];
    resources.extend(JobKind::ALL.into_iter().map(|kind| {
        (
            format!("spec.jobs.{}.resources", kind.name()),
            kind.spec(spec).resources,
        )
    }));
    for (field, requirements) in resources {
        let Some(requirements) = requirements else {
            continue;
        };
        for (kind, values) in [
            ("limits", &requirements.limits),
            ("requests", &requirements.requests),
        ] {
            for (resource, quantity) in values.iter().flatten() {
                if !is_quantity(&quantity.0) {
                    problem(
                        &format!("{field}.{kind}.{resource}"),
                        format!(
                            "{:?} is not a quantity (a number with an optional suffix: 500m, 256Mi, 2, 1e3)",
                            quantity.0
                        ),
                    );
                }
            }
        }
    }
    for name in spec.network_policy.metrics_from_namespaces.iter().flatten() {
        if !is_namespace_name(name) {
            problem(
                "spec.networkPolicy.metricsFromNamespaces",
                format!("{name:?} is not a namespace name"),
            );
        }
    }
    if let Some(max) = node
        .disruption_budget
        .as_ref()
        .and_then(|b| b.max_unavailable.as_ref())
        && let Err(why) = check_max_unavailable(max)
    {
        problem("spec.node.disruptionBudget.maxUnavailable", why);
    }
    for kind in JobKind::ALL {
        let job = kind.spec(spec);
        let field = format!("spec.jobs.{}", kind.name());
        if let Some(schedule) = &job.schedule
            && let Err(why) = crate::cron::check_schedule(schedule)
        {
            problem(&format!("{field}.schedule"), why);
        }
        for (key, value) in [
            (
                "successfulJobsHistoryLimit",
                job.successful_jobs_history_limit,
            ),
            ("failedJobsHistoryLimit", job.failed_jobs_history_limit),
        ] {
            if let Some(v) = value
                && v < 0
            {
                problem(&format!("{field}.{key}"), format!("{v} is negative"));
            }
        }
        if let Some(v) = job.active_deadline_seconds
            && v < 1
        {
            problem(
                &format!("{field}.activeDeadlineSeconds"),
                format!("{v} must be at least 1"),
            );
        }
    }

    let mut config = Config::with_wallets(&spec.chain.inode_wallet, &spec.chain.reward_address);
    let chain = &spec.chain;
    set(&mut config.chain.api_url, chain.api_url.clone());
    config.chain.validators_url = chain.validators_url.clone();
    set(
        &mut config.chain.allow_insecure_http,
        chain.allow_insecure_http,
    );
    set(
        &mut config.chain.request_timeout_seconds,
        chain.request_timeout_seconds,
    );
    set(
        &mut config.chain.rate_limit_wait_seconds,
        chain.rate_limit_wait_seconds,
    );
    set(&mut config.rewards.start_height, chain.start_height);
    set(&mut config.mongodb.database, spec.mongodb.database.clone());
    config.rewards.fee_percent = spec.rewards.fee_percent;
    config.rewards.pools_percent = spec.rewards.pools_percent;
    config.rewards.validators_percent = spec.rewards.validators_percent;
    set(
        &mut config.rewards.blocks_per_run,
        spec.rewards.blocks_per_run,
    );
    set(
        &mut config.rewards.confirmations,
        spec.rewards.confirmations,
    );
    set(&mut config.validators.limit, spec.validators.limit);
    let n = &mut config.node;
    set(
        &mut n.http_address,
        node.http_port
            .map(|port| SocketAddr::from(([0, 0, 0, 0], port))),
    );
    set(
        &mut n.websocket_address,
        node.websocket_port
            .map(|port| SocketAddr::from(([0, 0, 0, 0], port))),
    );
    n.metrics_address = Some(SocketAddr::from((
        [0, 0, 0, 0],
        node.metrics_port.unwrap_or(DEFAULT_METRICS_PORT),
    )));
    set(&mut n.max_connections, node.max_connections);
    n.shutdown_delay_seconds = node
        .shutdown_delay_seconds
        .unwrap_or(DEFAULT_SHUTDOWN_DELAY_SECONDS);
    set(
        &mut n.shutdown_timeout_seconds,
        node.shutdown_timeout_seconds,
    );
    set(&mut n.max_http_connections, node.max_http_connections);
    set(
        &mut n.max_connections_per_client,
        node.max_connections_per_client,
    );
    set(
        &mut n.http_idle_timeout_seconds,
        node.http_idle_timeout_seconds,
    );
    set(
        &mut n.http_request_timeout_seconds,
        node.http_request_timeout_seconds,
    );
    set(
        &mut n.admin_requests_per_minute_per_client,
        node.admin_requests_per_minute_per_client,
    );
    set(
        &mut n.admin_requests_per_minute,
        node.admin_requests_per_minute,
    );
    set(&mut n.signed_window_seconds, node.signed_window_seconds);
    n.protocol = protocol;
    set(&mut n.max_group_size, node.max_group_size);
    set(&mut n.registry_cache, node.registry_cache);
    set(&mut n.registry_reload_seconds, node.registry_reload_seconds);
    set(&mut n.proxy_protocol, node.proxy_protocol);
    config.payouts.sender = sender;
    let mut amount = |field: &str, text: &Option<String>| {
        let text = text.as_ref()?;
        Amount::parse(text)
            .map_err(|e| problem(field, format!("{text:?} is not an amount: {e}")))
            .ok()
    };
    set(
        &mut config.payouts.minimum_payout,
        amount("spec.payouts.minimumPayout", &spec.payouts.minimum_payout),
    );
    set(
        &mut config.payouts.fee,
        amount("spec.payouts.fee", &spec.payouts.fee),
    );
    set(
        &mut config.payouts.max_outputs_per_tx,
        spec.payouts.max_outputs_per_tx,
    );
    set(
        &mut config.payouts.abandon_after_seconds,
        spec.payouts.abandon_after_seconds,
    );
    set(
        &mut config.history.score_retention_days,
        spec.history.score_retention_days,
    );
    // The config's own rules (addresses, URLs, the percentage sum, ranges) live in core; its
    // keys are the spec's keys without the `spec.` prefix, apart from the two mapped above.
    if let Err(e) = config.validate() {
        problems.push(config_problem(e));
    }

    // The overrides are checked against the pods the operator builds, which need a valid config.
    if problems.is_empty() {
        problems.extend(pod_override_problems(mp, &config));
    }

    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

/// Every problem of every pod override, each checked against the pod it is merged over.
fn pod_override_problems(mp: &MinerPool, config: &Config) -> Vec<Problem> {
    let spec = &mp.spec;
    let mut problems = Vec::new();
    if let Some(over) = &spec.node.pod_overrides {
        let built = crate::desired::node_pod(mp, config, "");
        problems.extend(overrides::check("spec.node.podOverrides", &over.0, &built));
    }
    // The shared override is checked against one job's pod: every job's is built alike.
    if let Some(over) = &spec.jobs.pod_overrides {
        let built = crate::desired::job_pod(mp, JobKind::Rewards);
        problems.extend(overrides::check("spec.jobs.podOverrides", &over.0, &built));
    }
    for kind in JobKind::ALL {
        if let Some(over) = &kind.spec(spec).pod_overrides {
            let built = crate::desired::job_pod(mp, kind);
            let field = format!("spec.jobs.{}.podOverrides", kind.name());
            problems.extend(overrides::check(&field, &over.0, &built));
        }
    }
    problems
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

/// A spec field that is set replaces the config's default.
fn set<T>(config_value: &mut T, spec_value: Option<T>) {
    if let Some(value) = spec_value {
        *config_value = value;
    }
}

/// A DNS-1035 label, what a Service name must be: `[a-z]([-a-z0-9]*[a-z0-9])?`.
fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.first().is_some_and(u8::is_ascii_lowercase)
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// A namespace name, a DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
fn is_namespace_name(name: &str) -> bool {
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = name.as_bytes();
    bytes.len() <= 63
        && bytes.first().is_some_and(alphanumeric)
        && bytes.last().is_some_and(alphanumeric)
        && bytes.iter().all(|b| alphanumeric(b) || *b == b'-')
}

/// A Kubernetes resource quantity: a decimal number (optional sign), then nothing, a binary
/// (Ki..Ei) or decimal (n, u, m, k, M..E) suffix, or a decimal exponent (e3, E-2).
pub fn is_quantity(text: &str) -> bool {
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let digits = number.replace('.', "");
    let number_ok = !digits.is_empty() && number.matches('.').count() <= 1;
    let suffix_ok = match suffix {
        "" | "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" | "n" | "u" | "m" | "k" | "M" | "G" | "T"
        | "P" | "E" => true,
        exponent => exponent
            .strip_prefix(['e', 'E'])
            .map(|e| e.strip_prefix(['+', '-']).unwrap_or(e))
            .is_some_and(|e| !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())),
    };
    number_ok && suffix_ok
}

/// A Prometheus duration: one or more `<number><unit>` in the order y w d h m s ms, or `0`.
fn is_prometheus_duration(text: &str) -> bool {
    if text == "0" {
        return true;
    }
    let units = ["y", "w", "d", "h", "ms", "m", "s"];
    let order = ["y", "w", "d", "h", "m", "s", "ms"];
    let mut rest = text;
    let mut last = None;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return false;
        }
        rest = &rest[digits..];
        let Some(unit) = units.into_iter().find(|u| rest.starts_with(u)) else {
            return false;
        };
        let position = order.iter().position(|o| *o == unit);
        if position <= last {
            return false;
        }
        last = position;
        rest = &rest[unit.len()..];
    }
    last.is_some()
}

/// A label value: at most 63 characters, alphanumerics with `-`, `_`, `.` inside.
fn is_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric())
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
}

/// A label key: an optional DNS subdomain prefix and `/`, then a name like a label value.
fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && part.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
    });
    prefix_ok && !name.is_empty() && is_label_value(name)
}

fn config_problem(error: minerpool_core::config::ConfigError) -> Problem {
    use minerpool_core::config::ConfigError;
    match error {
        ConfigError::Invalid { key, message } => Problem {
            field: format!("spec.{}", spec_key(key)),
            message,
        },
        other => Problem {
            field: "spec".into(),
            message: other.to_string(),
        },
    }
}

/// The spec field a config key comes from.
fn spec_key(config_key: &str) -> String {
    match config_key {
        "rewards.startHeight" => "chain.startHeight".into(),
        "node.httpAddress" => "node.httpPort".into(),
        "node.websocketAddress" => "node.websocketPort".into(),
        "node.metricsAddress" => "node.metricsPort".into(),
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_as_kubernetes_reads_them() {
        for ok in [
            "1", "0.5", ".5", "500m", "256Mi", "1Gi", "2k", "1e3", "1E-2", "+1", "100M",
        ] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in [
            "", "lots", "1.2.3", "Mi", "1mi", "1 Gi", "1e", "1ee3", "--1", "1KiB",
        ] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn service_names_are_dns_labels() {
        for ok in ["pool", "p", "pool-2", "a1"] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in ["", "1pool", "Pool", "pool-", "-pool", "pool.v2", "pool_2"] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }
}
