//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several operator replicas only
//! one reconciles, by client-go's rules:
//!
//! - the holder renews every [`LeaseSettings::retry_period`] and stops leading once it has not
//!   renewed for [`LeaseSettings::renew_deadline`], which is shorter than the lease duration;
//! - a candidate counts a Lease held by another as expired only after it has seen the Lease
//!   record unchanged for the lease duration on its own clock (never by comparing the holder's
//!   `renewTime` with its own clock: the two clocks may differ);
//! - every API call has a timeout, so a stalled API server cannot hold a renewal past the
//!   deadline;
//! - every write carries the resourceVersion it read, so two candidates never both win.
//!
//! A holder cut off from the API server stops at the renew deadline, while any other replica
//! waits the full lease duration from the last change it saw: the two never lead at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use tokio::time::Instant;

use crate::error::Error;

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub name: String,
    pub identity: String,
    /// How long a Lease lasts unrenewed, written into the Lease for every candidate to use.
    pub duration: Duration,
    /// The holder stops leading when it has not renewed for this long; shorter than `duration`.
    pub renew_deadline: Duration,
    /// Between two attempts, to acquire or to renew.
    pub retry_period: Duration,
    /// Each API call's limit.
    pub call_timeout: Duration,
}

impl LeaseSettings {
    /// client-go's defaults: 15 s, 10 s, 2 s.
    pub fn new(name: impl Into<String>, identity: impl Into<String>) -> LeaseSettings {
        LeaseSettings::with_duration(name, identity, Duration::from_secs(15))
    }

    /// The same proportions for another lease duration (tests use short ones).
    pub fn with_duration(
        name: impl Into<String>,
        identity: impl Into<String>,
        duration: Duration,
    ) -> LeaseSettings {
        LeaseSettings {
            name: name.into(),
            identity: identity.into(),
            duration,
            renew_deadline: duration * 2 / 3,
            retry_period: duration * 2 / 15,
            call_timeout: duration / 3,
        }
    }
}

/// What to do about a Lease as read, decided without I/O.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Nobody holds it, it lapsed, or it is ours: write ourselves in.
    Take { transition: bool },
    /// Another replica holds it.
    HeldBy(String),
}

/// `unchanged_for`: how long this candidate has seen the Lease record as it is now, on its own
/// clock (zero when it has just changed or is seen for the first time).
pub fn claim(spec: Option<&LeaseSpec>, identity: &str, unchanged_for: Duration) -> Claim {
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
    let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
    if unchanged_for < duration {
        Claim::HeldBy(holder)
    } else {
        Claim::Take { transition: true }
    }
}

/// The parts of a Lease record whose change shows the holder is alive.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    holder: Option<String>,
    renew_time: Option<Timestamp>,
    acquire_time: Option<Timestamp>,
    transitions: Option<i32>,
    duration: Option<i32>,
}

impl Record {
    fn of(spec: Option<&LeaseSpec>) -> Option<Record> {
        spec.map(|s| Record {
            holder: s.holder_identity.clone(),
            renew_time: s.renew_time.as_ref().map(|t| t.0),
            acquire_time: s.acquire_time.as_ref().map(|t| t.0),
            transitions: s.lease_transitions,
            duration: s.lease_duration_seconds,
        })
    }
}

/// One candidate: its Lease API, settings, and the record it last saw and since when.
pub struct Elector {
    api: Api<Lease>,
    pub settings: LeaseSettings,
    observed: Option<(Option<Record>, Instant)>,
}

impl Elector {
    pub fn new(api: Api<Lease>, settings: LeaseSettings) -> Elector {
        Elector {
            api,
            settings,
            observed: None,
        }
    }

    /// How long the record has been as it is now, on this candidate's clock.
    fn observe(&mut self, record: Option<Record>) -> Duration {
        match &self.observed {
            Some((seen, since)) if *seen == record => since.elapsed(),
            _ => {
                self.observed = Some((record, Instant::now()));
                Duration::ZERO
            }
        }
    }

    async fn call<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Result<Result<T, kube::Error>, Error> {
        tokio::time::timeout(self.settings.call_timeout, call)
            .await
            .map_err(|_| {
                Error::Lease(format!(
                    "{what} Lease {}: no answer within {:?}",
                    self.settings.name, self.settings.call_timeout
                ))
            })
    }

    /// Tries once to hold the Lease; `Ok(true)` when this replica now leads.
    pub async fn try_acquire(&mut self) -> Result<bool, Error> {
        let name = self.settings.name.clone();
        let current = self
            .call("reading", self.api.get_opt(&name))
            .await?
            .map_err(|e| Error::Lease(format!("reading Lease {name}: {e}")))?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let unchanged_for = self.observe(Record::of(spec));
        let transition = match claim(spec, &self.settings.identity, unchanged_for) {
            Claim::HeldBy(_) => return Ok(false),
            Claim::Take { transition } => transition,
        };
        let now = Timestamp::now();
        let previous = spec.cloned().unwrap_or_default();
        let spec = LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(self.settings.duration.as_secs().max(1) as i32),
            renew_time: Some(MicroTime(now)),
            acquire_time: if transition {
                Some(MicroTime(now))
            } else {
                previous.acquire_time.clone()
            },
            lease_transitions: Some(
                previous.lease_transitions.unwrap_or(0)
                    + i32::from(transition && current.is_some()),
            ),
            ..LeaseSpec::default()
        };
        let result = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.call("creating", self.api.create(&PostParams::default(), &lease))
                    .await?
            }
            Some(mut lease) => {
                // Keeps the resourceVersion read above: a concurrent writer makes this a 409.
                lease.spec = Some(spec);
                self.call(
                    "renewing",
                    self.api.replace(&name, &PostParams::default(), &lease),
                )
                .await?
            }
        };
        match result {
            Ok(written) => {
                self.observe(Record::of(written.spec.as_ref()));
                Ok(true)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(Error::Lease(format!("writing Lease {name}: {e}"))),
        }
    }

    /// Waits until this replica holds the Lease.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election"),
            }
            tokio::time::sleep(self.settings.retry_period).await;
        }
    }

    /// Renews the Lease until it is taken over or not renewed within the renew deadline; then
    /// returns, and the caller must stop reconciling at once.
    pub async fn hold(&mut self) -> Error {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.settings.retry_period).await;
            let left = self
                .settings
                .renew_deadline
                .saturating_sub(renewed.elapsed());
            let attempt = tokio::time::timeout(left, self.try_acquire()).await;
            match attempt {
                Ok(Ok(true)) => renewed = Instant::now(),
                Ok(Ok(false)) => {
                    return Error::Lease(format!("Lease {} was taken over", self.settings.name));
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "renewing the Lease"),
                Err(_) => {}
            }
            if renewed.elapsed() >= self.settings.renew_deadline {
                return Error::Lease(format!(
                    "could not renew Lease {} within {:?}",
                    self.settings.name, self.settings.renew_deadline
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(Timestamp::now())),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn a_lease_held_by_another_is_left_alone_until_seen_unchanged_for_its_duration() {
        let spec = held_by("b");
        for seen in [0, 5, 14] {
            assert_eq!(
                claim(Some(&spec), "a", Duration::from_secs(seen)),
                Claim::HeldBy("b".into()),
                "{seen} s"
            );
        }
        assert_eq!(
            claim(Some(&spec), "a", Duration::from_secs(15)),
            Claim::Take { transition: true }
        );
    }

    /// The holder's renewTime says nothing to another candidate: one written by a clock far in
    /// the past is not taken over before the candidate itself has waited.
    #[test]
    fn the_holders_clock_is_not_compared_with_ours() {
        let mut spec = held_by("b");
        spec.renew_time = Some(MicroTime(Timestamp::UNIX_EPOCH));
        assert_eq!(
            claim(Some(&spec), "a", Duration::ZERO),
            Claim::HeldBy("b".into())
        );
    }

    #[test]
    fn an_empty_or_own_lease_is_taken() {
        assert_eq!(
            claim(None, "a", Duration::ZERO),
            Claim::Take { transition: true }
        );
        assert_eq!(
            claim(Some(&LeaseSpec::default()), "a", Duration::ZERO),
            Claim::Take { transition: true }
        );
        assert_eq!(
            claim(Some(&held_by("a")), "a", Duration::ZERO),
            Claim::Take { transition: false }
        );
    }

    #[test]
    fn the_renew_deadline_is_shorter_than_the_lease() {
        let s = LeaseSettings::new("l", "a");
        assert_eq!(
            (s.duration, s.renew_deadline, s.retry_period),
            (
                Duration::from_secs(15),
                Duration::from_secs(10),
                Duration::from_secs(2)
            )
        );
        assert!(s.call_timeout < s.renew_deadline);
    }
}
