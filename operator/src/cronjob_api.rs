//! Which CronJob API the cluster serves: `batch/v1` where it exists (Kubernetes 1.21+), else
//! `batch/v1beta1` (Kubernetes 1.20). Both carry the same fields apart from v1's `timeZone` and
//! `status.lastSuccessfulTime`, so the operator builds v1 objects and sends them as either.

use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList;
use kube::Client;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CronJobVersion {
    V1,
    V1Beta1,
}

impl CronJobVersion {
    /// Picks the version from the resources the cluster lists for `batch/v1`.
    pub fn choose(batch_v1: &APIResourceList) -> CronJobVersion {
        if batch_v1.resources.iter().any(|r| r.name == "cronjobs") {
            CronJobVersion::V1
        } else {
            CronJobVersion::V1Beta1
        }
    }

    /// Asks the API server (one request).
    pub async fn discover(client: &Client) -> Result<CronJobVersion, kube::Error> {
        let batch_v1 = client.list_api_group_resources("batch/v1").await?;
        Ok(CronJobVersion::choose(&batch_v1))
    }

    pub fn api_version(self) -> &'static str {
        match self {
            CronJobVersion::V1 => "batch/v1",
            CronJobVersion::V1Beta1 => "batch/v1beta1",
        }
    }

    pub fn api_resource(self) -> ApiResource {
        let version = match self {
            CronJobVersion::V1 => "v1",
            CronJobVersion::V1Beta1 => "v1beta1",
        };
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("batch", version, "CronJob"),
            "cronjobs",
        )
    }

    /// The v1 object as this version's object, for server-side apply.
    pub fn convert(self, cron_job: &CronJob) -> DynamicObject {
        let mut value = serde_json::to_value(cron_job).expect("Kubernetes objects serialise");
        value["apiVersion"] = self.api_version().into();
        serde_json::from_value(value).expect("a CronJob is a dynamic object")
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
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResource;

    fn resources(names: &[&str]) -> APIResourceList {
        APIResourceList {
            group_version: "batch/v1".into(),
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
    fn batch_v1_cronjobs_where_served_else_v1beta1() {
        assert_eq!(
            CronJobVersion::choose(&resources(&["jobs", "jobs/status", "cronjobs"])),
            CronJobVersion::V1
        );
        // Kubernetes 1.20 lists only Jobs under batch/v1.
        assert_eq!(
            CronJobVersion::choose(&resources(&["jobs", "jobs/status"])),
            CronJobVersion::V1Beta1
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
        let dynamic = CronJobVersion::V1Beta1.convert(&cron_job);
        let types = dynamic.types.clone().unwrap();
        assert_eq!(types.api_version, "batch/v1beta1");
        assert_eq!(types.kind, "CronJob");
        assert_eq!(dynamic.data["spec"]["schedule"], "* * * * *");
        assert_eq!(
            CronJobVersion::V1Beta1.api_resource().api_version,
            "batch/v1beta1"
        );
    }
}
