//! The crate's one error type: what can stop a reconcile.

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
    /// An object the MinerPool would own exists and is not controlled by it.
    #[error(
        "{object} exists and is not controlled by this MinerPool ({controller}); it is left as it is"
    )]
    Conflict { object: String, controller: String },
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
            Error::Conflict { .. } => "foreign_object",
            Error::Lease(_) => "lease",
        }
    }
}
