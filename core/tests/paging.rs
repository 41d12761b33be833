//! Paging of the newest-first lists against the real test server: a page may end between two
//! rows of the same millisecond (one payouts run writes several batches, one scheduler tick
//! starts several jobs), and the next page goes on from there, losing and repeating nothing.

use bson::{DateTime, Document, doc};
use minerpool_core::store::ledger::CreditLine;
use minerpool_core::store::paging::{Before, CursorError, next_before};
use minerpool_core::store::{SUPERSEDED_INDEXES, Store, names};
use minerpool_core::testing::fresh_store;

/// The rows' times: three share one millisecond, three another, so that pages of 1, 2 and 3
/// rows end inside each group.
const TIMES_MS: [i64; 7] = [1_000, 2_000, 2_000, 2_000, 3_000, 3_000, 3_000];

/// The row keys in the order every list must show them: newest first, then by key, highest
/// first.
fn expected(keys: &[String]) -> Vec<String> {
    let mut rows: Vec<(i64, String)> = TIMES_MS
        .iter()
        .zip(keys)
        .map(|(t, k)| (*t, k.clone()))
        .collect();
    rows.sort_by(|a, b| b.cmp(a));
    rows.into_iter().map(|(_, k)| k).collect()
}

async fn filled_store() -> Store {
    let store = fresh_store("same-millisecond-paging").await;
    let base = DateTime::now().timestamp_millis();
    let at = |i: usize| DateTime::from_millis(base + TIMES_MS[i]);
    let insert = |collection: &'static str, documents: Vec<Document>| {
        let store = store.clone();
        async move {
            store
                .collection::<Document>(collection)
                .insert_many(documents)
                .await
                .unwrap();
        }
    };
    insert(
        names::REWARD_DISTRIBUTIONS,
        (0..7)
            .map(|i| {
                // Last blocks not in insertion order: the key orders, not the insertion.
                let last = 100 + (i as i64 * 3) % 7;
                doc! {
                    "_id": format!("{last}-{last}"), "first_block": last, "last_block": last,
                    "received": 10_i64, "hashes": [],
                    "lines": [
                        { "address": "pool-a", "kind": "pool", "units": 6_i64, "basis": "remainder" },
                        { "address": "pool-a", "kind": "fee", "units": 1_i64, "basis": "remainder" },
                        { "address": "val-a", "kind": "validator", "units": 3_i64, "basis": "remainder" },
                    ],
                    "created_at": at(i),
                }
            })
            .collect(),
    )
    .await;
    insert(
        names::PAYOUT_BATCHES,
        (0..7)
            .map(|i| {
                doc! {
                    "_id": format!("batch-{}", (i * 5) % 7), "state": "confirmed", "kind": "payout",
                    "recipients": [{ "address": "pool-a", "units": 1_i64 }],
                    "total": 1_i64, "fee": 0_i64, "created_at": at(i),
                }
            })
            .collect(),
    )
    .await;
    insert(
        names::JOB_RUNS,
        (0..7)
            .map(|i| {
                doc! {
                    "_id": format!("run-{}", (i * 2) % 7), "job": "rewards",
                    "started_at": at(i), "outcome": "succeeded",
                }
            })
            .collect(),
    )
    .await;
    store
}

fn distribution_keys() -> Vec<String> {
    (0..7)
        .map(|i| format!("{}-{}", 100 + (i * 3) % 7, 100 + (i * 3) % 7))
        .collect()
}

fn batch_keys() -> Vec<String> {
    (0..7).map(|i| format!("batch-{}", (i * 5) % 7)).collect()
}

/// Walks a list page by page, each page read with the cursor its predecessor ends with (`next`,
/// none after the last page), as the API and the pages do (`next_before`, the rows' own
/// cursors); returns every row's key in the order seen.
async fn walk<R, K, F, Fut>(
    read: F,
    key: impl Fn(&R) -> String,
    next: impl Fn(&[R]) -> Option<Before<K>>,
) -> Vec<String>
where
    F: Fn(Option<Before<K>>) -> Fut,
    Fut: std::future::Future<Output = Vec<R>>,
{
    let mut seen = Vec::new();
    let mut before = None;
    for _ in 0..20 {
        let rows = read(before.take()).await;
        seen.extend(rows.iter().map(&key));
        match next(&rows) {
            Some(cursor) => before = Some(cursor),
            None => return seen,
        }
    }
    panic!("paging did not end: {seen:?}");
}

#[tokio::test]
async fn every_newest_first_list_pages_through_rows_of_one_millisecond() {
    let store = filled_store().await;
    let store = &store;
    for limit in [1_i64, 2, 3, 50] {
        let distributions = walk(
            |b| async move { store.recent_distributions(limit, b.as_ref()).await.unwrap() },
            |d| d.id.clone(),
            |rows| next_before(rows, limit),
        )
        .await;
        assert_eq!(
            distributions,
            expected(&distribution_keys()),
            "distributions, {limit} a page"
        );

        let credits = walk(
            |b| async move { store.credits_of("pool-a", limit, b.as_ref()).await.unwrap() },
            |c| format!("{} {:?}", c.distribution, c.line.kind),
            |rows| CreditLine::next_page(rows, limit),
        )
        .await;
        let credit_keys: Vec<String> = expected(&distribution_keys())
            .into_iter()
            .flat_map(|d| [format!("{d} Pool"), format!("{d} Fee")])
            .collect();
        assert_eq!(
            credits, credit_keys,
            "credit lines, {limit} distributions a page"
        );

        let batches = walk(
            |b| async move {
                store
                    .recent_payout_batches(limit, b.as_ref())
                    .await
                    .unwrap()
            },
            |b| b.id.clone(),
            |rows| next_before(rows, limit),
        )
        .await;
        assert_eq!(
            batches,
            expected(&batch_keys()),
            "payout batches, {limit} a page"
        );

        let payouts = walk(
            |b| async move { store.payouts_of("pool-a", limit, b.as_ref()).await.unwrap() },
            |p| p.batch_id.clone(),
            |rows| next_before(rows, limit),
        )
        .await;
        assert_eq!(
            payouts,
            expected(&batch_keys()),
            "payouts of an address, {limit} a page"
        );

        let run_keys: Vec<String> = (0..7).map(|i| format!("run-{}", (i * 2) % 7)).collect();
        for job in [None, Some("rewards")] {
            let runs = walk(
                |b| async move { store.recent_job_runs(job, limit, b.as_ref()).await.unwrap() },
                |r| r.id.clone(),
                |rows| next_before(rows, limit),
            )
            .await;
            assert_eq!(
                runs,
                expected(&run_keys),
                "job runs of {job:?}, {limit} a page"
            );
        }
    }
}

#[tokio::test]
async fn a_cursor_without_a_key_means_everything_older() {
    let store = filled_store().await;
    let newest = store.recent_payout_batches(1, None).await.unwrap();
    let bare = Before::<String> {
        at: newest[0].created_at.unwrap(),
        key: None,
    };
    let older = store.recent_payout_batches(50, Some(&bare)).await.unwrap();
    assert_eq!(
        older.len(),
        4,
        "the three batches of the newest millisecond are left out"
    );
    assert!(older.iter().all(|b| b.created_at < Some(bare.at)));
}

#[test]
fn cursors_read_back_what_they_print_and_refuse_anything_else() {
    let numbered = Before {
        at: DateTime::from_millis(1_700_000_000_123),
        key: Some(20_005_i64),
    };
    assert_eq!(numbered.to_string(), "1700000000123.20005");
    assert_eq!("1700000000123.20005".parse::<Before<i64>>(), Ok(numbered));
    let keyed: Before<String> = "5.65a1b2.c3".parse().unwrap();
    assert_eq!(
        keyed.key.as_deref(),
        Some("65a1b2.c3"),
        "a key may hold dots"
    );
    let bare: Before<i64> = "1700000000123".parse().unwrap();
    assert_eq!(
        (bare.at.timestamp_millis(), bare.key),
        (1_700_000_000_123, None)
    );
    for bad in [
        "",
        ".",
        ".5",
        "5.",
        "-5",
        "+5",
        " 5",
        "5 ",
        "yesterday",
        "1.x",
        "99999999999999999999",
        "5.1e3",
    ] {
        let error = bad.parse::<Before<i64>>().unwrap_err();
        assert_eq!(error, CursorError(bad.to_owned()));
        assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
    }
    assert!("5.".parse::<Before<String>>().is_err(), "an empty key");
}

#[tokio::test]
async fn indexes_an_earlier_version_made_for_job_runs_are_dropped() {
    let store = fresh_store("superseded-indexes").await;
    let runs = store.collection::<Document>(names::JOB_RUNS);
    for keys in [
        doc! { "job": 1, "started_at": -1 },
        doc! { "started_at": -1 },
    ] {
        runs.create_index(mongodb::IndexModel::builder().keys(keys).build())
            .await
            .unwrap();
    }
    store.ensure_indexes().await.unwrap();
    store.ensure_indexes().await.unwrap();
    let names = runs.list_index_names().await.unwrap();
    for (collection, superseded) in SUPERSEDED_INDEXES {
        assert_eq!(*collection, names::JOB_RUNS);
        assert!(
            !names.iter().any(|n| n == superseded),
            "{superseded} in {names:?}"
        );
    }
    assert!(
        names.iter().any(|n| n == "started_at_-1__id_-1"),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n == "job_1_started_at_-1__id_-1"),
        "{names:?}"
    );
}
