//! Pod overrides: a partial pod template an admin merges over the pod the operator builds
//! (`spec.node.podOverrides`, `spec.jobs.podOverrides`, `spec.jobs.<job>.podOverrides`). The
//! fields the operator owns are read off the pod it builds, so that what is refused and what is
//! built cannot drift apart.

use k8s_openapi::DeepMerge;
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use serde_json::Value;

use crate::env;
use crate::problem::Problem;

/// Reads an override as a pod template; `Err` names the first field that is not one.
pub fn parse(field: &str, raw: &Value) -> Result<PodTemplateSpec, Problem> {
    serde_path_to_error::deserialize::<_, PodTemplateSpec>(raw).map_err(|error| {
        let at = error.path().to_string();
        Problem {
            field: if at == "." {
                field.to_owned()
            } else {
                format!("{field}.{at}")
            },
            message: error.inner().to_string(),
        }
    })
}

/// Merges `over` into `pod` by Kubernetes' rules (k8s-openapi's `DeepMerge`), except that
/// tolerations are appended: the operator's and each override's all apply.
pub fn merge(pod: &mut PodTemplateSpec, mut over: PodTemplateSpec) {
    let have = pod.spec.as_ref().and_then(|s| s.tolerations.as_ref());
    if let (Some(have), Some(over_spec)) = (have, over.spec.as_mut())
        && let Some(added) = over_spec.tolerations.take()
    {
        let mut all = have.clone();
        all.extend(added.into_iter().filter(|t| !have.contains(t)));
        over_spec.tolerations = Some(all);
    }
    pod.merge_from(over);
}

/// An override of `built` (the pod the operator builds, without overrides) read as a pod
/// template, or everything wrong with it: not a pod template, fields a pod template does not
/// have, or fields the operator owns. `field` is the override's own path, such as
/// `spec.node.podOverrides`.
pub fn check(
    field: &str,
    raw: &Value,
    built: &PodTemplateSpec,
) -> Result<PodTemplateSpec, Vec<Problem>> {
    let parsed = parse(field, raw).map_err(|problem| vec![problem])?;
    let mut problems = Vec::new();
    let read_back = serde_json::to_value(&parsed).unwrap_or(Value::Null);
    unknown_fields(raw, &read_back, field, &mut problems);
    let mut owned = |path: String, why: &str| {
        problems.push(Problem {
            field: format!("{field}.{path}"),
            message: format!("is set by the operator ({why})"),
        })
    };
    if let Some(labels) = parsed.metadata.as_ref().and_then(|m| m.labels.as_ref()) {
        let built_labels = built.metadata.as_ref().and_then(|m| m.labels.as_ref());
        for key in labels.keys() {
            if built_labels.is_some_and(|b| b.contains_key(key)) {
                owned(
                    format!("metadata.labels.{key}"),
                    "the labels that select the pods",
                );
            }
        }
    }
    if let Some(annotations) = parsed
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
    {
        let built_annotations = built.metadata.as_ref().and_then(|m| m.annotations.as_ref());
        for key in annotations.keys() {
            if built_annotations.is_some_and(|b| b.contains_key(key)) {
                owned(
                    format!("metadata.annotations.{key}"),
                    "it rolls the pods when their config changes",
                );
            }
        }
    }
    let (Some(spec), Some(built_spec)) = (parsed.spec.as_ref(), built.spec.as_ref()) else {
        return verdict(parsed, problems);
    };
    let mut missing_names = Vec::new();
    for (i, container) in spec.containers.iter().enumerate() {
        let at = format!("spec.containers[{i}]");
        if container.name.is_empty() {
            missing_names.push(format!("{field}.{at}.name"));
            continue;
        }
        if let Some(ours) = built_spec
            .containers
            .iter()
            .find(|c| c.name == container.name)
        {
            owned_container_fields(container, ours, &at, &mut owned);
        }
    }
    for (i, container) in spec.init_containers.iter().flatten().enumerate() {
        if container.name.is_empty() {
            missing_names.push(format!("{field}.spec.initContainers[{i}].name"));
        }
    }
    owned_pod_fields(spec, built_spec, &mut owned);
    problems.extend(missing_names.into_iter().map(|field| Problem {
        field,
        message: "is required: containers are merged by name".into(),
    }));
    verdict(parsed, problems)
}

fn verdict(
    parsed: PodTemplateSpec,
    problems: Vec<Problem>,
) -> Result<PodTemplateSpec, Vec<Problem>> {
    if problems.is_empty() {
        Ok(parsed)
    } else {
        Err(problems)
    }
}

fn owned_container_fields(
    over: &Container,
    ours: &Container,
    at: &str,
    owned: &mut impl FnMut(String, &str),
) {
    if over.command.is_some() {
        owned(format!("{at}.command"), "the container runs its own binary");
    }
    if over.args.is_some() {
        owned(format!("{at}.args"), "the subcommand and the config file");
    }
    if over.image.is_some() {
        owned(format!("{at}.image"), "set it in spec.images");
    }
    for (i, env) in over.env.iter().flatten().enumerate() {
        if ours.env.iter().flatten().any(|e| e.name == env.name)
            || env::ALL.contains(&env.name.as_str())
        {
            owned(
                format!("{at}.env[{i}]"),
                "read from the Secret the spec names",
            );
        }
    }
    for (i, mount) in over.volume_mounts.iter().flatten().enumerate() {
        if ours
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == mount.name || m.mount_path == mount.mount_path)
        {
            owned(format!("{at}.volumeMounts[{i}]"), "the config file's mount");
        }
    }
    for (i, port) in over.ports.iter().flatten().enumerate() {
        if ours
            .ports
            .iter()
            .flatten()
            .any(|p| p.name == port.name || p.container_port == port.container_port)
        {
            owned(
                format!("{at}.ports[{i}]"),
                "the ports the probes and the Service use",
            );
        }
    }
    for (name, probe) in [
        ("readinessProbe", &over.readiness_probe),
        ("livenessProbe", &over.liveness_probe),
    ] {
        if probe.as_ref().is_some_and(|p| p.http_get.is_some()) {
            owned(
                format!("{at}.{name}.httpGet"),
                "the node's health endpoints; timings may be changed",
            );
        }
    }
    if over
        .security_context
        .as_ref()
        .and_then(|s| s.read_only_root_filesystem)
        == Some(false)
    {
        owned(
            format!("{at}.securityContext.readOnlyRootFilesystem"),
            "the root filesystem stays read-only",
        );
    }
}

fn owned_pod_fields(over: &PodSpec, ours: &PodSpec, owned: &mut impl FnMut(String, &str)) {
    if over.automount_service_account_token == Some(true) {
        owned(
            "spec.automountServiceAccountToken".into(),
            "neither the node nor a job talks to the Kubernetes API",
        );
    }
    for (i, volume) in over.volumes.iter().flatten().enumerate() {
        if ours.volumes.iter().flatten().any(|v| v.name == volume.name) {
            owned(format!("spec.volumes[{i}]"), "the config file's volume");
        }
    }
    if over.termination_grace_period_seconds.is_some()
        && ours.termination_grace_period_seconds.is_some()
    {
        owned(
            "spec.terminationGracePeriodSeconds".into(),
            "it follows spec.node.shutdownDelaySeconds and shutdownTimeoutSeconds",
        );
    }
    if over.restart_policy.is_some() {
        owned(
            "spec.restartPolicy".into(),
            "Always for the node's Deployment; Never for a job, whose failed run the next schedule retries",
        );
    }
}

/// Fields of `raw` a pod template does not have: what reading it as one dropped. Empty values
/// and nulls are not reported (they are dropped the same way on the API server).
fn unknown_fields(raw: &Value, read: &Value, path: &str, problems: &mut Vec<Problem>) {
    match (raw, read) {
        (Value::Object(raw), Value::Object(read)) => {
            for (key, value) in raw {
                let at = format!("{path}.{key}");
                match read.get(key) {
                    Some(read_value) => unknown_fields(value, read_value, &at, problems),
                    None if is_empty(value) => {}
                    None => problems.push(Problem {
                        field: at,
                        message: "is not a field of a pod template".into(),
                    }),
                }
            }
        }
        (Value::Array(raw), Value::Array(read)) => {
            for (i, (value, read_value)) in raw.iter().zip(read).enumerate() {
                unknown_fields(value, read_value, &format!("{path}[{i}]"), problems);
            }
        }
        (Value::Object(raw), _) if !raw.values().all(is_empty) => problems.push(Problem {
            field: path.to_owned(),
            message: "is not a field of a pod template".into(),
        }),
        _ => {}
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(o) => o.values().all(is_empty),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}
