//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several operator replicas only
//! one reconciles. The holder renews the Lease every [`LeaseSettings::renew_every`]; another
//! replica takes it over once it has not been renewed for its duration. Every write carries the
//! resourceVersion it read, so two candidates never both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::{ObjectMeta, PostParams};

use crate::Error;

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub name: String,
    pub identity: String,
    pub duration: Duration,
    pub renew_every: Duration,
}

impl LeaseSettings {
    pub fn new(name: impl Into<String>, identity: impl Into<String>) -> LeaseSettings {
        LeaseSettings {
            name: name.into(),
            identity: identity.into(),
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }
}

/// What to do about a Lease as read, decided without I/O.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Nobody holds it, it lapsed, or it is ours: write ourselves in.
    Take { transition: bool },
    /// Another replica holds it until then.
    HeldBy(String),
}

pub fn claim(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Claim {
    let Some(spec) = spec else {
        return Claim::Take { transition: true };
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return Claim::Take { transition: true };
    }
    if holder == identity {
        return Claim::Take { transition: false };
    }
    let renewed = spec.renew_time.as_ref().map(|t| t.0);
    let duration = SignedDuration::from_secs(spec.lease_duration_seconds.unwrap_or(15).into());
    match renewed {
        Some(renewed) if renewed + duration > now => Claim::HeldBy(holder),
        _ => Claim::Take { transition: true },
    }
}

/// Tries once to hold the Lease; `Ok(true)` when this replica now leads.
pub async fn try_acquire(api: &Api<Lease>, settings: &LeaseSettings) -> Result<bool, Error> {
    let now = Timestamp::now();
    let current = api
        .get_opt(&settings.name)
        .await
        .map_err(|e| Error::Lease(format!("reading Lease {}: {e}", settings.name)))?;
    let transition = match claim(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &settings.identity,
        now,
    ) {
        Claim::HeldBy(_) => return Ok(false),
        Claim::Take { transition } => transition,
    };
    let previous = current
        .as_ref()
        .and_then(|l| l.spec.clone())
        .unwrap_or_default();
    let spec = LeaseSpec {
        holder_identity: Some(settings.identity.clone()),
        lease_duration_seconds: Some(settings.duration.as_secs() as i32),
        renew_time: Some(MicroTime(now)),
        acquire_time: if transition {
            Some(MicroTime(now))
        } else {
            previous.acquire_time.clone()
        },
        lease_transitions: Some(
            previous.lease_transitions.unwrap_or(0) + i32::from(transition && current.is_some()),
        ),
        ..LeaseSpec::default()
    };
    let result = match current {
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(settings.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec),
            };
            api.create(&PostParams::default(), &lease).await
        }
        Some(mut lease) => {
            // Keeps the resourceVersion read above: a concurrent writer makes this a 409.
            lease.spec = Some(spec);
            api.replace(&settings.name, &PostParams::default(), &lease)
                .await
        }
    };
    match result {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(Error::Lease(format!(
            "writing Lease {}: {e}",
            settings.name
        ))),
    }
}

/// Waits until this replica holds the Lease.
pub async fn acquire(api: &Api<Lease>, settings: &LeaseSettings) -> Result<(), Error> {
    loop {
        match try_acquire(api, settings).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "leader election"),
        }
        tokio::time::sleep(settings.renew_every).await;
    }
}

/// Renews the Lease until a renewal fails for longer than the Lease lasts; then returns, and the
/// caller must stop reconciling (another replica may take over).
pub async fn hold(api: &Api<Lease>, settings: &LeaseSettings) -> Error {
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(settings.renew_every).await;
        match try_acquire(api, settings).await {
            Ok(true) => last_renewed = tokio::time::Instant::now(),
            Ok(false) => return Error::Lease(format!("Lease {} was taken over", settings.name)),
            Err(e) => {
                tracing::warn!(error = %e, "renewing the Lease");
                if last_renewed.elapsed() >= settings.duration {
                    return Error::Lease(format!(
                        "could not renew Lease {} in time",
                        settings.name
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str, renewed: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(renewed)),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_fresh_lease_held_by_another_is_left_alone() {
        let now = Timestamp::now();
        let spec = held_by("b", now - SignedDuration::from_secs(5));
        assert_eq!(claim(Some(&spec), "a", now), Claim::HeldBy("b".into()));
    }

    #[test]
    fn a_lapsed_or_empty_or_own_lease_is_taken() {
        let now = Timestamp::now();
        let lapsed = held_by("b", now - SignedDuration::from_secs(16));
        assert_eq!(
            claim(Some(&lapsed), "a", now),
            Claim::Take { transition: true }
        );
        assert_eq!(claim(None, "a", now), Claim::Take { transition: true });
        assert_eq!(
            claim(Some(&LeaseSpec::default()), "a", now),
            Claim::Take { transition: true }
        );
        let own = held_by("a", now - SignedDuration::from_secs(1));
        assert_eq!(
            claim(Some(&own), "a", now),
            Claim::Take { transition: false }
        );
    }
}
