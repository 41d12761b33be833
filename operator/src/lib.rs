//! The MinerPool operator: the CRD, and a reconciler shaped dereference → validate → build
//! (pure, [`desired`]) → apply → status ([`status`]).

pub mod crd;
pub mod cron;
pub mod cronjob_api;
pub mod desired;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod server;
pub mod status;
pub mod validate;

/// What can stop a reconcile; invalid specs are not errors (they become a condition).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: kube::Error,
    },
    #[error("MinerPool {0} has no namespace or uid (it was not read from the API server)")]
    Incomplete(String),
    #[error("leader election: {0}")]
    Lease(String),
}

impl Error {
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source }
    }

    /// A short label for the failures metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Kube {
                source: kube::Error::Api(status),
                ..
            } if status.code == 409 => "conflict",
            Error::Kube {
                source: kube::Error::Api(status),
                ..
            } if status.code == 403 => "forbidden",
            Error::Kube {
                source: kube::Error::Api(_),
                ..
            } => "api_error",
            Error::Kube { .. } => "transport",
            Error::Incomplete(_) => "incomplete_object",
            Error::Lease(_) => "lease",
        }
    }
}

/// Chooses rustls' crypto provider for the process: the Kubernetes client and the HTTP client
/// bring in two, and rustls will not guess. Call before the first client is built.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
