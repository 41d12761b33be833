//! The dereference: what the spec names that lives elsewhere in the cluster, read before
//! validation.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;

use crate::crd::MinerPoolSpec;
use crate::error::Error;
use crate::validate::secrets::{FoundSecrets, secret_refs};

/// Reads each Secret the spec names (a missing one is simply absent from the result).
pub async fn found_secrets(
    client: &Client,
    namespace: &str,
    spec: &MinerPoolSpec,
) -> Result<FoundSecrets, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let wanted: BTreeSet<&str> = secret_refs(spec)
        .into_iter()
        .map(|(_, r)| r.name.as_str())
        .collect();
    let mut found = BTreeMap::new();
    for name in wanted {
        if name.is_empty() {
            continue;
        }
        let secret = api
            .get_opt(name)
            .await
            .map_err(Error::kube(format!("reading Secret {name}")))?;
        if let Some(secret) = secret {
            let keys = secret
                .data
                .iter()
                .flat_map(|d| d.keys())
                .chain(secret.string_data.iter().flat_map(|d| d.keys()))
                .cloned()
                .collect();
            found.insert(name.to_string(), keys);
        }
    }
    Ok(found)
}
