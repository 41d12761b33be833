//! The minerpool operator. Today: the `MinerPool` custom resource and its generated CRD; the
//! reconciler (SPEC §6) is not built yet.

pub mod crd;
