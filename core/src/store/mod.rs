//! The MongoDB store, one module per subject: each holds its subject's documents, writes and
//! reads. A module uses only the modules listed before it here, lowest first (a folder's
//! `mod.rs` holds the subject's documents and comes before its files);
//! `core/tests/module_order.rs` reads every `use` and fails on a use that goes up this list or
//! on any import circle in `core`.
//!
//! 1. `db`: the handle, the error type, transactions and batched updates; knows no collection.
//! 2. `names`: the collection names.
//! 3. `loose`: readers of the original iNode's loosely typed fields.
//! 4. `paging`: the form of a public read, cursors and newest-first pages.
//! 5. `runs`: job locks, fences and run records.
//! 6. `registry`: pools, pool scores and validators; who a message names; admin requests.
//! 7. `registry::cache`: the registry kept in memory by a change stream.
//! 8. `registry::stakes`: the validators job's stake shares.
//! 9. `registry::decay`: score decay.
//! 10. `intake`: TASK receipts and how a TASK's writes reach the server.
//! 11. `intake::plan`: what a group of messages does, decided as one at a time (pure).
//! 12. `intake::groups`: the group writer of TASKs and PINGs.
//! 13. `intake::front`: the checks before a message is written, then its group write.
//! 14. `ledger`: scanned blocks, credited transactions, distributions, credit lines, balances.
//! 15. `ledger::rewards`: the rewards run's one transaction, and pruning what reorg checks no
//!     longer need.
//! 16. `payouts`: payout batches and their states; what leaves the balances.
//! 17. `ledger::totals`: the money totals of `/api/v1/stats`, which count the batches in flight.
//! 18. `spends`: every spend of the wallet the chain shows, foreign ones and their resolution.
//! 19. `history`: the charts' hours.
//! 20. `imports`: the one-time import of the original's unpaid payouts.
//! 21. `audit`: the books recomputed from one snapshot.
//! 22. `indexes`: every index, and every public read they must serve.

pub mod audit;
pub mod db;
pub mod history;
pub mod imports;
pub mod indexes;
pub mod intake;
pub mod ledger;
pub mod loose;
pub mod names;
pub mod paging;
pub mod payouts;
pub mod registry;
pub mod runs;
pub mod spends;

pub use db::{CommandCounter, Result, Store, StoreError, TASK_GIVE_UP_AFTER, is_duplicate_key};
pub use indexes::SUPERSEDED_INDEXES;
pub use intake::TASK_RECEIPT_TTL;
