//! The Secrets a spec names: each must exist and hold the key named.

use std::collections::{BTreeMap, BTreeSet};

use crate::crd::{MinerPoolSpec, SecretKeyRef};
use crate::problem::Problem;
use crate::validated::SecretRefs;

/// The keys each Secret in the namespace holds, for the Secrets the spec names; a Secret that does
/// not exist is absent.
pub type FoundSecrets = BTreeMap<String, BTreeSet<String>>;

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

/// The Secret keys the pods read, once each is found.
pub fn check(
    spec: &MinerPoolSpec,
    found: &FoundSecrets,
    problems: &mut Vec<Problem>,
) -> SecretRefs {
    for (field, reference) in secret_refs(spec) {
        match found.get(&reference.name) {
            None => problems.push(Problem::new(
                field,
                format!("Secret {:?} does not exist", reference.name),
            )),
            Some(keys) if !keys.contains(&reference.key) => problems.push(Problem::new(
                field,
                format!("Secret {:?} has no key {:?}", reference.name, reference.key),
            )),
            Some(_) => {}
        }
    }
    SecretRefs {
        mongodb_uri: spec.mongodb.uri_secret_ref.clone(),
        admin_token: spec.node.admin_token_secret_ref.clone(),
        admin_rsa_key: spec.node.admin_rsa_key_secret_ref.clone(),
        wallet_key: spec.payouts.wallet_key_secret_ref.clone(),
    }
}
