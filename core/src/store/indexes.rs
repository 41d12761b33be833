//! Every index minerpool relies on, and every public read they must serve: the two lists the
//! explain test holds against each other. Above every subject, since it names them all.

use std::time::Duration;

use bson::{DateTime, Document, doc};
use mongodb::IndexModel;
use mongodb::options::IndexOptions;

use crate::store::db::{Result, Store, StoreError};
use crate::store::intake::TASK_RECEIPT_TTL;
use crate::store::names;
use crate::store::paging::{Before, PublicFind, PublicPage};

impl Store {
    /// Creates every index minerpool relies on and drops the ones a newer index replaced (each
    /// index costs every write). Idempotent: run at every start.
    pub async fn ensure_indexes(&self) -> Result<()> {
        for (collection, keys, options) in index_specs() {
            let model = IndexModel::builder().keys(keys).options(options).build();
            self.db
                .collection::<Document>(collection)
                .create_index(model)
                .await
                .map_err(StoreError::mongo(format!("create index on {collection}")))?;
        }
        for (collection, name) in SUPERSEDED_INDEXES {
            let existing = self
                .db
                .collection::<Document>(collection)
                .list_index_names()
                .await
                .map_err(StoreError::mongo(format!(
                    "list the indexes of {collection}"
                )))?;
            if existing.iter().any(|n| n == name) {
                self.db
                    .collection::<Document>(collection)
                    .drop_index(*name)
                    .await
                    .map_err(StoreError::mongo(format!(
                        "drop index {name} of {collection}"
                    )))?;
            }
        }
        Ok(())
    }
}

/// Indexes of earlier versions that an index of [`index_specs`] replaced: (collection, name).
pub const SUPERSEDED_INDEXES: &[(&str, &str)] = &[
    // Job runs page by (time, `_id`) now.
    (names::JOB_RUNS, "job_1_started_at_-1"),
    (names::JOB_RUNS, "started_at_-1"),
];

/// Every index: (collection, keys, options). Each uniqueness assumption of the code is one of
/// these rows.
fn index_specs() -> Vec<(&'static str, Document, IndexOptions)> {
    let unique = || IndexOptions::builder().unique(true).build();
    let plain = IndexOptions::default;
    vec![
        (names::POOL_LIST, doc! { "pool_address": 1 }, unique()),
        (names::MINER_POOL, doc! { "pool_address": 1 }, unique()),
        (names::VALIDATORS, doc! { "wallet_address": 1 }, unique()),
        (names::BLOCK_TRANSACTIONS, doc! { "hash": 1 }, unique()),
        (names::BALANCES, doc! { "address": 1 }, unique()),
        (names::BALANCES, doc! { "pending": -1 }, plain()),
        (
            names::TASK_RECEIPTS,
            doc! { "validator_wallet": 1, "val_id": 1 },
            unique(),
        ),
        (
            names::TASK_RECEIPTS,
            doc! { "accepted_at": 1 },
            IndexOptions::builder()
                .expire_after(TASK_RECEIPT_TTL)
                .build(),
        ),
        (
            names::SIGNED_NONCES,
            doc! { "expires_at": 1 },
            IndexOptions::builder()
                .expire_after(Duration::from_secs(0))
                .build(),
        ),
        // The public reads (store/reads.rs): newest first, by (time, key) so that a page ends
        // between two rows of the same millisecond; and the payouts of one address.
        (
            names::JOB_RUNS,
            doc! { "job": 1, "started_at": -1, "_id": -1 },
            plain(),
        ),
        (
            names::JOB_RUNS,
            doc! { "started_at": -1, "_id": -1 },
            plain(),
        ),
        (
            names::REWARD_DISTRIBUTIONS,
            doc! { "created_at": -1, "last_block": -1 },
            plain(),
        ),
        (
            names::PAYOUT_BATCHES,
            doc! { "recipients.address": 1, "created_at": -1, "_id": -1 },
            plain(),
        ),
        (names::PAYOUT_BATCHES, doc! { "state": 1 }, plain()),
        (
            names::PAYOUT_BATCHES,
            doc! { "created_at": -1, "_id": -1 },
            plain(),
        ),
        // Every credit line of an address, newest first (the address page and its chart).
        (
            names::REWARD_DISTRIBUTIONS,
            doc! { "lines.address": 1, "created_at": -1, "last_block": -1 },
            plain(),
        ),
        (
            names::SCORE_HISTORY,
            doc! { "day": 1 },
            IndexOptions::builder()
                .expire_after(std::time::Duration::from_secs(
                    (u64::from(crate::config::MAX_SCORE_RETENTION_DAYS) + 1) * 24 * 60 * 60,
                ))
                .build(),
        ),
        (
            names::PAYOUT_BATCHES,
            doc! { "recipients.address": 1 },
            plain(),
        ),
        (names::PAYOUT_BATCHES, doc! { "inputs.tx_hash": 1 }, plain()),
        (
            names::PAYOUT_BATCHES,
            doc! { "abandon.inputs.tx_hash": 1 },
            plain(),
        ),
        // Matching a spend of the wallet to the batch whose transaction it is.
        (names::PAYOUT_BATCHES, doc! { "tx_hash": 1 }, plain()),
        (
            names::PAYOUT_BATCHES,
            doc! { "abandon.tx_hash": 1 },
            plain(),
        ),
        // The spends a block range holds (replaced when it is read again), and the unresolved
        // foreign ones that hold payouts.
        (names::WALLET_SPENDS, doc! { "block": 1 }, plain()),
        (
            names::WALLET_SPENDS,
            doc! { "origin": 1, "resolution": 1, "first_seen_at": 1 },
            plain(),
        ),
        (
            names::WALLET_SPENDS,
            doc! { "first_seen_at": -1, "_id": -1 },
            plain(),
        ),
    ]
}

impl PublicFind {
    /// Every public read, as run with these arguments: what the explain test checks (each
    /// `find` of a page on its own).
    pub fn every_public_read(address: &str, cursor_time: DateTime) -> Vec<(String, PublicFind)> {
        let numbered = Before {
            at: cursor_time,
            key: Some(20_000_i64),
        };
        let by_id = Before {
            at: cursor_time,
            key: Some("65a1b2c3d4e5f60718293a4b".to_owned()),
        };
        let (numbered_bare, by_id_bare) = (
            Before::<i64> {
                at: cursor_time,
                key: None,
            },
            Before::<String> {
                at: cursor_time,
                key: None,
            },
        );
        let pages = [
            ("distributions", PublicPage::distributions(20, None)),
            (
                "distributions, next page",
                PublicPage::distributions(20, Some(&numbered)),
            ),
            (
                "distributions, bare cursor",
                PublicPage::distributions(20, Some(&numbered_bare)),
            ),
            ("job runs", PublicPage::job_runs(None, 20, None)),
            (
                "job runs, next page",
                PublicPage::job_runs(None, 20, Some(&by_id)),
            ),
            (
                "job runs of one job",
                PublicPage::job_runs(Some("rewards"), 20, Some(&by_id)),
            ),
            (
                "payouts of an address",
                PublicPage::payouts_of(address, 20, None),
            ),
            (
                "payouts of an address, next page",
                PublicPage::payouts_of(address, 20, Some(&by_id)),
            ),
            (
                "credits of an address",
                PublicPage::credits_of(address, 20, None),
            ),
            (
                "credits of an address, next page",
                PublicPage::credits_of(address, 20, Some(&numbered)),
            ),
            ("payout batches", PublicPage::payout_batches(20, None)),
            (
                "payout batches, next page",
                PublicPage::payout_batches(20, Some(&by_id)),
            ),
            (
                "payout batches, bare cursor",
                PublicPage::payout_batches(20, Some(&by_id_bare)),
            ),
        ];
        let mut reads = Vec::new();
        for (what, page) in pages {
            let count = page.finds.len();
            for (n, find) in page.finds.into_iter().enumerate() {
                let part = match (count, n) {
                    (1, _) => String::new(),
                    (_, 0) => " (same millisecond)".to_owned(),
                    _ => " (older)".to_owned(),
                };
                reads.push((format!("{what}{part}"), find));
            }
        }
        reads.extend([
            ("validators".to_owned(), PublicFind::validators(None, 20)),
            (
                "validators, next page".to_owned(),
                PublicFind::validators(Some(address), 20),
            ),
            (
                "legacy /validators".to_owned(),
                PublicFind::legacy_validators(),
            ),
            ("one validator".to_owned(), PublicFind::validator(address)),
            ("a balance".to_owned(), PublicFind::balance(address)),
            (
                "balances of a page".to_owned(),
                PublicFind::balances(&[address.to_owned(), "address-001".to_owned()]),
            ),
            ("stats".to_owned(), PublicFind::totals()),
        ]);
        for collection in [names::POOL_LIST, names::MINER_POOL] {
            reads.push((
                format!("{collection} pools"),
                PublicFind::pools(collection, None, 20),
            ));
            reads.push((
                format!("{collection} pools, next page"),
                PublicFind::pools(collection, Some(address), 20),
            ));
            reads.push((
                format!("{collection} one pool"),
                PublicFind::pool(collection, address),
            ));
        }
        reads
    }
}
