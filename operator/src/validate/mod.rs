//! Validation of a MinerPool before anything is applied: every rule the API server cannot check
//! (cron syntax, addresses, Secrets that must exist, the rendered config's own rules, pod
//! overrides) and the CEL rule, which Kubernetes before 1.25 does not evaluate. Every problem is
//! reported at once; a spec that fails here creates nothing. What passes becomes the
//! [`ValidatedPool`] the build reads.

pub mod config;
pub mod jobs;
pub mod node;
pub mod overrides;
pub mod secrets;
pub mod syntax;

use kube::{Resource, ResourceExt};

use crate::crd::{MinerPool, MinerPoolSpec};
use crate::problem::Problem;
use crate::validate::secrets::FoundSecrets;
use crate::validate::syntax::is_dns_label;
use crate::validated::ValidatedPool;

/// CronJob names get an 11-character suffix for their Jobs and must stay within 63.
const MAX_NAME_LEN: usize = 52 - "-validators".len();

/// Checks the MinerPool and resolves everything its children are built from.
pub fn validate(mp: &MinerPool, found: &FoundSecrets) -> Result<ValidatedPool, Vec<Problem>> {
    let spec = &mp.spec;
    let name = mp.name_any();
    let mut problems = Vec::new();
    check_name(&name, &mut problems);
    check_images(spec, &mut problems);
    let secrets = secrets::check(spec, found, &mut problems);
    let config = config::render(spec, &mut problems);
    let node = node::check(spec, &mut problems);
    let network_policy = node::network_policy(spec, &mut problems);
    let jobs = jobs::check(spec, &mut problems);
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut pool = ValidatedPool {
        name,
        namespace: mp.namespace(),
        owner: mp.controller_owner_ref(&()),
        config,
        images: spec.images.clone(),
        secrets,
        node,
        jobs,
        network_policy,
    };
    // The overrides are checked against the pods the operator builds, which need the rest valid.
    overrides::read(spec, &mut pool)?;
    Ok(pool)
}

fn check_name(name: &str, problems: &mut Vec<Problem>) {
    if !is_dns_label(name) {
        problems.push(Problem::new(
            "metadata.name",
            format!(
                "{name:?} must start with a lowercase letter and hold only lowercase letters, digits and '-' (the node's Service is named after it, and Service names are DNS-1035 labels)"
            ),
        ));
    }
    if name.len() > MAX_NAME_LEN {
        problems.push(Problem::new(
            "metadata.name",
            format!(
                "{name:?} is {} characters; at most {MAX_NAME_LEN} leave room for the CronJob names",
                name.len()
            ),
        ));
    }
}

fn check_images(spec: &MinerPoolSpec, problems: &mut Vec<Problem>) {
    for (field, image) in [
        ("spec.images.node", &spec.images.node),
        ("spec.images.jobs", &spec.images.jobs),
    ] {
        if image.trim().is_empty() || image.chars().any(char::is_whitespace) {
            problems.push(Problem::new(
                field,
                format!("{image:?} is not an image reference"),
            ));
        }
    }
}
