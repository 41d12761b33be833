//! minerpool's domain: configuration, money, the MongoDB store, the scoring rules and the uPow
//! chain API client. The node, the jobs and the operator are thin shells over this crate.

pub mod address;
pub mod chain;
pub mod config;
pub mod faults;
pub mod job;
pub mod layout;
pub mod logging;
pub mod money;
pub mod payouts;
pub mod rewards;
pub mod scoring;
pub mod signed;
pub mod spends;
pub mod store;
#[doc(hidden)]
pub mod testing;
pub mod upow;
