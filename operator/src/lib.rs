//! The MinerPool operator: the CRD, and a reconciler shaped dereference → validate → build
//! (pure) → apply → status.
//!
//! A module uses only the modules listed before it here, lowest first (a folder's files come
//! before its `mod.rs`, which runs them); there is no import circle anywhere in the crate.
//!
//! 1. `error`: the crate's one error type.
//! 2. `tls`: the process's TLS crypto provider.
//! 3. `problem`: one thing wrong with a spec, named by its field.
//! 4. `crd`: the MinerPool custom resource, its spec and status, and a job's entry in the spec.
//! 5. `names`: the names, labels and selectors of a MinerPool's children, its annotations, its
//!    field manager and its containers.
//! 6. `env`: the environment variables filled from the Secrets the spec names.
//! 7. `defaults`: what a field left unset becomes where the operator decides (ports, drain,
//!    Service, budget, job schedules, history limits, deadlines, job resources).
//! 8. `cron`: the cron schedule syntax.
//! 9. `overrides`: a pod override read as a pod template, checked against a pod and merged.
//! 10. `validated`: the validated MinerPool, the build's only input.
//! 11. `pods`: the node's and the jobs' pods before any override.
//! 12. `validate::syntax`: the syntax of names, labels, durations and quantities.
//! 13. `validate::secrets`: the Secrets the spec names, which must exist.
//! 14. `validate::config`: the config file rendered from the spec, and core's rules over it.
//! 15. `validate::node`: the node's replicas, ports, Service, budget, monitor and NetworkPolicy.
//! 16. `validate::jobs`: the scheduled jobs' CronJob settings.
//! 17. `validate::overrides`: every pod override, checked against the pod it is merged over.
//! 18. `validate`: validation of a MinerPool, every problem at once.
//! 19. `desired`: the build, the children a validated MinerPool wants (pure).
//! 20. `dereference`: the Secrets the spec names, read from the cluster.
//! 21. `served_api`: which CronJob and PodDisruptionBudget versions the cluster serves.
//! 22. `apply`: server-side applies of what changed, and deletes of what is no longer wanted.
//! 23. `status`: the MinerPool's status as a pure function of what was seen.
//! 24. `metrics`: the operator's Prometheus metrics.
//! 25. `reconcile`: the controller, running each step in turn.
//! 26. `leader`: leader election through a Lease.
//! 27. `server`: `/healthz`, `/readyz` and `/metrics`.
//! 28. `fixtures`: MinerPools for tests and benchmarks (feature `testing`).
//! 29. `testing`: the test cluster's clients and helpers (feature `testing`).

pub mod apply;
pub mod crd;
pub mod cron;
pub mod defaults;
pub mod dereference;
pub mod desired;
pub mod env;
pub mod error;
#[cfg(feature = "testing")]
pub mod fixtures;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod overrides;
pub mod pods;
pub mod problem;
pub mod reconcile;
pub mod served_api;
pub mod server;
pub mod status;
#[cfg(feature = "testing")]
pub mod testing;
pub mod tls;
pub mod validate;
pub mod validated;
