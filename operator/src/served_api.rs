//! Which version of a kind the cluster serves, for the two kinds whose v1 came with Kubernetes
//! 1.21: CronJob (`batch/v1`, else `batch/v1beta1`) and PodDisruptionBudget (`policy/v1`, else
//! `policy/v1beta1`). Each pair carries the same fields the operator sets, so the operator builds
//! v1 objects and sends them as the version served.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::Client;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde::Serialize;

/// A kind whose served version the operator finds out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionedKind {
    CronJob,
    PodDisruptionBudget,
}

impl VersionedKind {
    fn group(self) -> &'static str {
        match self {
            VersionedKind::CronJob => "batch",
            VersionedKind::PodDisruptionBudget => "policy",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            VersionedKind::CronJob => "CronJob",
            VersionedKind::PodDisruptionBudget => "PodDisruptionBudget",
        }
    }

    fn plural(self) -> &'static str {
        match self {
            VersionedKind::CronJob => "cronjobs",
            VersionedKind::PodDisruptionBudget => "poddisruptionbudgets",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V1Beta1,
}

/// The versions the cluster serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServedApis {
    pub cron_job: Version,
    pub disruption_budget: Version,
}

impl ServedApis {
    /// Kubernetes 1.21 and later.
    pub const V1: ServedApis = ServedApis {
        cron_job: Version::V1,
        disruption_budget: Version::V1,
    };
    /// Kubernetes 1.20.
    pub const V1BETA1: ServedApis = ServedApis {
        cron_job: Version::V1Beta1,
        disruption_budget: Version::V1Beta1,
    };

    /// Picks each version from the resources the cluster lists for `batch/v1` and `policy/v1`
    /// (`None`: the group version is not served at all).
    pub fn choose(batch_v1: &APIResourceList, policy_v1: Option<&APIResourceList>) -> ServedApis {
        let lists = |list: Option<&APIResourceList>, plural: &str| {
            if list.is_some_and(|l| l.resources.iter().any(|r| r.name == plural)) {
                Version::V1
            } else {
                Version::V1Beta1
            }
        };
        ServedApis {
            cron_job: lists(Some(batch_v1), VersionedKind::CronJob.plural()),
            disruption_budget: lists(policy_v1, VersionedKind::PodDisruptionBudget.plural()),
        }
    }

    /// Asks the API server (two requests).
    pub async fn discover(client: &Client) -> Result<ServedApis, kube::Error> {
        let batch_v1 = client.list_api_group_resources("batch/v1").await?;
        let policy_v1 = match client.list_api_group_resources("policy/v1").await {
            Ok(list) => Some(list),
            Err(kube::Error::Api(status)) if status.code == 404 => None,
            Err(other) => return Err(other),
        };
        Ok(ServedApis::choose(&batch_v1, policy_v1.as_ref()))
    }

    pub fn version(self, kind: VersionedKind) -> Version {
        match kind {
            VersionedKind::CronJob => self.cron_job,
            VersionedKind::PodDisruptionBudget => self.disruption_budget,
        }
    }

    pub fn api_version(self, kind: VersionedKind) -> String {
        let version = match self.version(kind) {
            Version::V1 => "v1",
            Version::V1Beta1 => "v1beta1",
        };
        format!("{}/{version}", kind.group())
    }

    pub fn api_resource(self, kind: VersionedKind) -> ApiResource {
        let api_version = self.api_version(kind);
        let (group, version) = api_version.split_once('/').expect("group/version");
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, kind.kind()),
            kind.plural(),
        )
    }

    /// The v1 object as the served version's object, for server-side apply.
    pub fn convert<K: Serialize>(self, kind: VersionedKind, object: &K) -> DynamicObject {
        let mut value = serde_json::to_value(object).expect("Kubernetes objects serialise");
        value["apiVersion"] = self.api_version(kind).into();
        value["kind"] = kind.kind().into();
        serde_json::from_value(value).expect("a Kubernetes object is a dynamic object")
    }
}

/// What the operator reads back from a live CronJob of either version.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ObservedCronJob {
    pub name: String,
    pub suspended: bool,
    pub last_schedule_time: Option<String>,
    pub last_successful_time: Option<String>,
}

impl ObservedCronJob {
    pub fn from_dynamic(object: &DynamicObject) -> ObservedCronJob {
        let text = |pointer: &str| {
            object
                .data
                .pointer(pointer)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        ObservedCronJob {
            name: object.metadata.name.clone().unwrap_or_default(),
            suspended: object
                .data
                .pointer("/spec/suspend")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            last_schedule_time: text("/status/lastScheduleTime"),
            last_successful_time: text("/status/lastSuccessfulTime"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::CronJob;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;

    fn resources(group_version: &str, names: &[&str]) -> APIResourceList {
        APIResourceList {
            group_version: group_version.into(),
            resources: names
                .iter()
                .map(|name| APIResource {
                    name: (*name).into(),
                    kind: "x".into(),
                    namespaced: true,
                    singular_name: String::new(),
                    verbs: vec![],
                    ..APIResource::default()
                })
                .collect(),
        }
    }

    #[test]
    fn each_kind_at_v1_where_served_else_v1beta1() {
        let batch = resources("batch/v1", &["jobs", "jobs/status", "cronjobs"]);
        let policy = resources("policy/v1", &["poddisruptionbudgets", "evictions"]);
        assert_eq!(ServedApis::choose(&batch, Some(&policy)), ServedApis::V1);
        // Kubernetes 1.20 lists only Jobs under batch/v1, and serves no policy/v1.
        let batch_1_20 = resources("batch/v1", &["jobs", "jobs/status"]);
        assert_eq!(ServedApis::choose(&batch_1_20, None), ServedApis::V1BETA1);
        // Each kind is asked about on its own.
        assert_eq!(
            ServedApis::choose(&batch, None),
            ServedApis {
                cron_job: Version::V1,
                disruption_budget: Version::V1Beta1
            }
        );
        assert_eq!(
            ServedApis::choose(&batch_1_20, Some(&policy)).cron_job,
            Version::V1Beta1
        );
    }

    #[test]
    fn converts_keep_every_field_but_the_version() {
        let cron_job = CronJob {
            metadata: kube::api::ObjectMeta {
                name: Some("p-rewards".into()),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::batch::v1::CronJobSpec {
                schedule: "* * * * *".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let dynamic = ServedApis::V1BETA1.convert(VersionedKind::CronJob, &cron_job);
        let types = dynamic.types.clone().unwrap();
        assert_eq!(types.api_version, "batch/v1beta1");
        assert_eq!(types.kind, "CronJob");
        assert_eq!(dynamic.data["spec"]["schedule"], "* * * * *");
        assert_eq!(
            ServedApis::V1BETA1
                .api_resource(VersionedKind::CronJob)
                .api_version,
            "batch/v1beta1"
        );
        let budget = ServedApis::V1BETA1.api_resource(VersionedKind::PodDisruptionBudget);
        assert_eq!(
            (budget.api_version.as_str(), budget.plural.as_str()),
            ("policy/v1beta1", "poddisruptionbudgets")
        );
    }
}
