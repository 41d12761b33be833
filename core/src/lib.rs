//! minerpool's domain: configuration, money, the MongoDB store, the scoring rules and the uPow
//! chain API client. The node, the jobs and the operator are thin shells over this crate.
//!
//! A module uses only the modules listed before it here, lowest first (the store's subjects are
//! ordered in `store/mod.rs`); `core/tests/module_order.rs` checks this order and every other
//! crate's.
//!
//! 1. `money`: exact amounts in smallest units, and splits that add up.
//! 2. `address`: the one rule for a uPow address.
//! 3. `faults`: crash points for the tests of exactly-once behaviour.
//! 4. `job`: the names of the jobs.
//! 5. `logging`: the JSON log lines of every binary.
//! 6. `upow`: native uPow keys and transactions.
//! 7. `signed`: the bytes a validator signs, and the check of its signature.
//! 8. `config`: the configuration file and the secrets from the environment.
//! 9. `chain::types`: the chain API's answers.
//! 10. `chain::client`: the chain API client.
//! 11. `chain::payer`: the payer's calls to the chain.
//! 12. `chain`: the chain API, as one module.
//! 13. `scoring`: the scoring rules.
//! 14. `acceptance`: what the node accepts from a validator.
//! 15. `message`: the WebSocket message format, both ways.
//! 16. `rewards`: the rewards rules.
//! 17. `payouts`: the payout rules.
//! 18. `spends`: the wallet's spends.
//! 19. `layout`: the original iNode's `layout.json`, converted.
//! 20. `store`: the MongoDB store.
//! 21. `testing`: the test servers' databases, for tests and benchmarks (feature `testing`).

pub mod acceptance;
pub mod address;
pub mod chain;
pub mod config;
pub mod faults;
pub mod job;
pub mod layout;
pub mod logging;
pub mod message;
pub mod money;
pub mod payouts;
pub mod rewards;
pub mod scoring;
pub mod signed;
pub mod spends;
pub mod store;
#[cfg(feature = "testing")]
#[doc(hidden)]
pub mod testing;
pub mod upow;
