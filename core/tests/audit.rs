//! The audit's check of credited transaction hashes, against the real test server: every
//! `blockTransactions` entry belongs to exactly one distribution and every distribution's hash
//! has its entry. The two lists are walked side by side in hash order; these tests hold that walk
//! to counting by sets.

use std::collections::{BTreeMap, BTreeSet};

use bson::{Bson, Document, doc};
use minerpool_core::store::audit::{Discrepancy, Measure};
use minerpool_core::store::{Store, names};
use minerpool_core::testing::fresh_store;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Books holding `recorded` in `blockTransactions` and one distribution per list of
/// `distributions` (receiving nothing, so that only the hash checks can disagree).
async fn books(store: &Store, recorded: &[Bson], distributions: &[Vec<&str>]) {
    for collection in [names::BLOCK_TRANSACTIONS, names::REWARD_DISTRIBUTIONS] {
        store
            .collection::<Document>(collection)
            .delete_many(doc! {})
            .await
            .unwrap();
    }
    if !recorded.is_empty() {
        store
            .collection::<Document>(names::BLOCK_TRANSACTIONS)
            .insert_many(recorded.iter().map(|hash| doc! { "hash": hash.clone() }))
            .await
            .unwrap();
    }
    if !distributions.is_empty() {
        store
            .collection::<Document>(names::REWARD_DISTRIBUTIONS)
            .insert_many(distributions.iter().enumerate().map(|(n, hashes)| {
                doc! {
                    "_id": format!("{n}-{n}"), "first_block": n as i64, "last_block": n as i64,
                    "received": 0_i64, "hashes": hashes.clone(), "lines": [],
                    "created_at": bson::DateTime::now(),
                }
            }))
            .await
            .unwrap();
    }
}

/// The audit's transaction discrepancies as (hash, what, found).
async fn hash_findings(store: &Store) -> BTreeSet<(String, String, i64)> {
    let report = store.audit().await.unwrap();
    report
        .discrepancies
        .iter()
        .map(|d: &Discrepancy| {
            assert_eq!(d.measure, Measure::Count, "{d}");
            assert_eq!(d.expected, 1, "{d}");
            let hash = d
                .subject
                .strip_prefix("transaction ")
                .unwrap_or_else(|| panic!("only transactions disagree: {d}"));
            (hash.to_owned(), d.what.clone(), d.found)
        })
        .collect()
}

const NOT_CREDITED: &str = "distributions crediting this blockTransactions entry";
const NOT_RECORDED: &str = "blockTransactions entries for this credited transaction";
const TWICE: &str = "distributions crediting it";

fn finding(hash: &str, what: &str, found: i64) -> (String, String, i64) {
    (hash.to_owned(), what.to_owned(), found)
}

#[tokio::test]
async fn every_credited_hash_out_of_place_is_named() {
    let store = fresh_store("audit_hashes_named").await;
    books(
        &store,
        &[
            Bson::from("h1"),
            Bson::from("h2"),
            Bson::from("h4"),
            Bson::Int64(7),
        ],
        &[vec!["h1", "h2"], vec!["h2", "h3"]],
    )
    .await;
    assert_eq!(
        hash_findings(&store).await,
        BTreeSet::from([
            finding("h2", TWICE, 2),
            finding("h3", NOT_RECORDED, 0),
            finding("h4", NOT_CREDITED, 0),
            finding("7", NOT_CREDITED, 0),
        ])
    );

    books(
        &store,
        &[Bson::from("h1"), Bson::from("h2")],
        &[vec!["h1", "h2"]],
    )
    .await;
    assert_eq!(
        hash_findings(&store).await,
        BTreeSet::new(),
        "books that agree"
    );
}

/// Any recorded set and any distributions: the walk finds what counting by sets finds.
#[tokio::test(flavor = "multi_thread")]
async fn the_walk_finds_what_counting_by_sets_finds() {
    let store = fresh_store("audit_hashes_sets").await;
    let hash = (0..12_u8).prop_map(|n| format!("h{n:02}"));
    let strategy = (
        prop::collection::btree_set(hash.clone(), 0..10),
        prop::collection::vec(prop::collection::btree_set(hash, 0..5), 0..5),
    );
    let mut runner = TestRunner::new(Config {
        cases: 32,
        ..Config::default()
    });
    runner
        .run(&strategy, |(recorded, distributions)| {
            let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
            for hash in distributions.iter().flatten() {
                *counts.entry(hash.as_str()).or_insert(0) += 1;
            }
            let mut expected = BTreeSet::new();
            for hash in &recorded {
                if !counts.contains_key(hash.as_str()) {
                    expected.insert(finding(hash, NOT_CREDITED, 0));
                }
            }
            for (hash, count) in &counts {
                if !recorded.contains(*hash) {
                    expected.insert(finding(hash, NOT_RECORDED, 0));
                }
                if *count > 1 {
                    expected.insert(finding(hash, TWICE, *count));
                }
            }
            let recorded: Vec<Bson> = recorded.iter().map(Bson::from).collect();
            let distributions: Vec<Vec<&str>> = distributions
                .iter()
                .map(|d| d.iter().map(String::as_str).collect())
                .collect();
            let found = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(async {
                    books(&store, &recorded, &distributions).await;
                    hash_findings(&store).await
                })
            });
            prop_assert_eq!(found, expected);
            Ok(())
        })
        .unwrap();
}
