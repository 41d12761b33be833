//! The dashboard's history against the real test server: hourly scores recorded by the decay
//! job's step and kept for their retention, hourly income and earnings summed by the server
//! exactly, and the credit lines and payout batches of the public reads.

use std::time::Duration;

use bson::{DateTime, Document, doc};
use minerpool_core::store::StoreError;
use minerpool_core::store::history::{HOUR_MS, Hours, ScoreKind};
use minerpool_core::store::ledger::CreditLine;
use minerpool_core::store::ledger::rewards::RewardsRecord;
use minerpool_core::store::ledger::{Basis, BlockIncome, LedgerKind, LedgerLine};
use minerpool_core::store::names;
use minerpool_core::store::paging::NewestFirst;
use minerpool_core::testing::fresh_store;

const DAY_MS: i64 = 24 * HOUR_MS;

fn at(ms: i64) -> DateTime {
    DateTime::from_millis(ms)
}

/// Noon (UTC) of today, so that a test's hours never cross midnight by accident, and its
/// documents are not past their retention by the real clock (the server's TTL monitor would
/// remove them first).
fn noon() -> i64 {
    let now = DateTime::now().timestamp_millis();
    now - now.rem_euclid(DAY_MS) + 12 * HOUR_MS
}

#[tokio::test]
async fn scores_are_kept_per_hour_at_their_highest_until_their_retention() {
    let store = fresh_store("score-history").await;
    let noon = noon();
    let insert = |collection: &'static str, document: Document| {
        let store = store.clone();
        async move {
            store
                .collection::<Document>(collection)
                .insert_one(document)
                .await
                .unwrap();
        }
    };
    insert(
        names::MINER_POOL,
        doc! { "pool_address": "pool-a", "score": 40_i64 },
    )
    .await;
    // A legacy string score is read as the number it holds.
    insert(
        names::MINER_POOL,
        doc! { "pool_address": "pool-b", "score": "7" },
    )
    .await;
    insert(
        names::VALIDATORS,
        doc! { "wallet_address": "val-a", "score": 1_i64 },
    )
    .await;
    insert(
        names::VALIDATORS,
        doc! { "wallet_address": "val-b", "score": 0_i64 },
    )
    .await;

    // Two records in one hour: the higher stays. One the next hour, after a decay.
    let recorded = store.record_scores(at(noon + 60_000), 30).await.unwrap();
    assert_eq!((recorded.pools, recorded.validators), (2, 2));
    store.decay_scores().await.unwrap();
    store.record_scores(at(noon + 120_000), 30).await.unwrap();
    store.decay_scores().await.unwrap();
    store.record_scores(at(noon + HOUR_MS), 30).await.unwrap();

    let hours = Hours::ending_at(at(noon + HOUR_MS + 5), 3);
    let pool = |address: &'static str| {
        let store = store.clone();
        async move {
            store
                .score_per_hour(ScoreKind::Pool, address, hours)
                .await
                .unwrap()
        }
    };
    assert_eq!(pool("pool-a").await, vec![None, Some(40), Some(32)]);
    assert_eq!(pool("pool-b").await, vec![None, Some(7), Some(5)]);
    assert_eq!(pool("nobody").await, vec![None, None, None]);
    let validator = |address: &'static str| {
        let store = store.clone();
        async move {
            store
                .score_per_hour(ScoreKind::Validator, address, hours)
                .await
                .unwrap()
        }
    };
    assert_eq!(validator("val-a").await, vec![None, Some(1), Some(0)]);
    assert_eq!(validator("val-b").await, vec![None, Some(0), Some(0)]);
    // A pool's history is not a validator's, even under one address.
    assert_eq!(
        store
            .score_per_hour(ScoreKind::Validator, "pool-a", hours)
            .await
            .unwrap(),
        vec![None, None, None]
    );

    // One document per address and day: the history stays compact whatever the decay schedule.
    let documents = store
        .collection::<Document>(names::SCORE_HISTORY)
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(documents, 4);

    // The next day spans two documents per address and reads back across midnight.
    store.decay_scores().await.unwrap();
    store
        .record_scores(at(noon + 12 * HOUR_MS), 30)
        .await
        .unwrap();
    let across = Hours::ending_at(at(noon + 12 * HOUR_MS), 12);
    let scores = store
        .score_per_hour(ScoreKind::Pool, "pool-a", across)
        .await
        .unwrap();
    assert_eq!(scores.first(), Some(&Some(32)));
    assert_eq!(scores.last(), Some(&Some(28)));

    // Kept for 1 day before today: two days on, the first day goes at the next record.
    let later = store
        .record_scores(at(noon + DAY_MS + 12 * HOUR_MS), 1)
        .await
        .unwrap();
    assert_eq!(later.expired, 4, "the first day's documents");
    let left: Vec<String> = store
        .collection::<Document>(names::SCORE_HISTORY)
        .distinct("_id", doc! {})
        .await
        .unwrap()
        .into_iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    let first_day = &at(noon).try_to_rfc3339_string().unwrap()[..10];
    assert!(left.iter().all(|id| !id.ends_with(first_day)), "{left:?}");
    assert_eq!(left.len(), 8, "{left:?}");
    // A TTL index removes days past the longest retention even when the decay job stops.
    let indexes = store
        .collection::<Document>(names::SCORE_HISTORY)
        .list_index_names()
        .await
        .unwrap();
    assert!(indexes.iter().any(|i| i.starts_with("day")), "{indexes:?}");
}

fn distribution(
    id: &str,
    created_ms: i64,
    received: i64,
    lines: Vec<(&str, &str, i64)>,
) -> Document {
    let lines: Vec<Document> = lines
        .into_iter()
        .map(|(address, kind, units)| {
            doc! { "address": address, "kind": kind, "units": units, "basis": "remainder" }
        })
        .collect();
    let (first, last) = id.split_once('-').unwrap();
    doc! {
        "_id": id,
        "first_block": first.parse::<i64>().unwrap(),
        "last_block": last.parse::<i64>().unwrap(),
        "received": received,
        "hashes": [],
        "lines": lines,
        "created_at": at(created_ms),
    }
}

#[tokio::test]
async fn income_earnings_and_credit_lines_come_from_the_distributions_exactly() {
    let store = fresh_store("earnings-history").await;
    let noon = noon();
    let big = (1_i64 << 53) + 1;
    let documents = vec![
        distribution("1-1", noon - 2 * HOUR_MS, 10, vec![("pool-a", "pool", 10)]),
        distribution(
            "2-2",
            noon + 60_000,
            big,
            vec![
                ("pool-a", "pool", big - 3),
                ("val-a", "validator", 1),
                ("pool-a", "fee", 2),
            ],
        ),
        distribution(
            "3-3",
            noon + 120_000,
            big,
            vec![("val-a", "validator", big)],
        ),
        distribution("4-4", noon + HOUR_MS, 5, vec![("pool-a", "pool", 5)]),
    ];
    store
        .collection::<Document>(names::REWARD_DISTRIBUTIONS)
        .insert_many(documents)
        .await
        .unwrap();
    let hours = Hours::ending_at(at(noon + HOUR_MS + 1), 2);
    assert_eq!(
        store.income_per_hour(hours).await.unwrap(),
        vec![2 * big, 5],
        "sums above 2^53 stay exact"
    );
    assert_eq!(
        store.earnings_per_hour("pool-a", hours).await.unwrap(),
        vec![big - 1, 5],
        "both of its lines in one distribution count"
    );
    assert_eq!(
        store.earnings_per_hour("val-a", hours).await.unwrap(),
        vec![big + 1, 0]
    );
    assert_eq!(
        store.earnings_per_hour("nobody", hours).await.unwrap(),
        vec![0, 0]
    );

    let credits = store.credits_of("pool-a", 2, None).await.unwrap();
    let seen: Vec<(&str, i64)> = credits
        .iter()
        .map(|c| (c.distribution.as_str(), c.line.units))
        .collect();
    assert_eq!(seen, vec![("4-4", 5), ("2-2", big - 3), ("2-2", 2)]);
    assert!(credits.iter().all(|c| c.line.address == "pool-a"));
    let older = store
        .credits_of("pool-a", 2, CreditLine::next_page(&credits, 2).as_ref())
        .await
        .unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].distribution, "1-1");
    assert!(
        store
            .credits_of("nobody", 20, None)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A pass over `blocks` (one transaction each) paying `paid` (block, time, units), credited to
/// `lines` (address, units).
fn pass(
    previous: Option<i64>,
    blocks: std::ops::RangeInclusive<i64>,
    paid: &[(i64, i64, i64)],
    lines: &[(&str, i64)],
) -> (RewardsRecord, Vec<BlockIncome>) {
    let record = RewardsRecord {
        previous_height: previous,
        first_block: *blocks.start(),
        last_block: *blocks.end(),
        blocks: blocks.clone().map(|b| (b, format!("hash{b}"))).collect(),
        received: paid.iter().map(|(_, _, units)| units).sum(),
        transactions: blocks.map(|b| (format!("tx{b}"), b)).collect(),
        lines: lines
            .iter()
            .map(|(address, units)| LedgerLine {
                address: (*address).into(),
                kind: LedgerKind::Pool,
                units: *units,
                basis: Basis::Score { score: 1 },
            })
            .collect(),
    };
    let paid = paid
        .iter()
        .map(|&(block, ms, units)| BlockIncome {
            block,
            time: at(ms),
            units,
        })
        .collect();
    (record, paid)
}

#[tokio::test]
async fn income_and_earnings_fall_in_the_hours_of_their_blocks() {
    let store = fresh_store("block-time-history").await;
    let fence = store
        .try_lock_job("rewards", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("the rewards lock");
    let now = DateTime::now().timestamp_millis();
    let turn = now - now.rem_euclid(HOUR_MS);
    let big = (1_i64 << 53) + 1;
    // Blocks before and after the hour turns, credited together (now, after both); then a
    // block above 2^53 units; then blocks three hours old, credited only now: not in the last
    // two hours.
    let passes: [(Option<i64>, std::ops::RangeInclusive<i64>, &[_], &[_]); 3] = [
        (
            None,
            100..=102,
            &[
                (100, turn - 120_000, 3),
                (101, turn - 1, 4),
                (102, turn + 30_000, 3),
            ],
            &[("pool-a", 7), ("reward", 3)],
        ),
        (
            Some(102),
            103..=103,
            &[(103, turn + 60_000, big)],
            &[("pool-a", big)],
        ),
        (
            Some(103),
            104..=104,
            &[(104, turn - 3 * HOUR_MS, 11)],
            &[("pool-a", 11)],
        ),
    ];
    for (previous, blocks, paid, lines) in passes {
        let (record, paid) = pass(previous, blocks, paid, lines);
        store
            .record_rewards_by_block(&fence, &record, &paid)
            .await
            .unwrap();
    }
    // Per-block income that does not add up to what was received is refused, nothing written.
    let (mut record, paid) = pass(Some(104), 105..=105, &[(105, turn, 2)], &[("pool-a", 2)]);
    record.received = 3;
    let refused = store.record_rewards_by_block(&fence, &record, &paid).await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );
    assert_eq!(store.last_scanned_height().await.unwrap(), Some(104));
    // A distribution recorded before block times were kept counts when it was credited.
    store
        .collection::<Document>(names::REWARD_DISTRIBUTIONS)
        .insert_one(distribution(
            "90-99",
            turn + 1000,
            5,
            vec![("pool-a", "pool", 5)],
        ))
        .await
        .unwrap();

    let hours = Hours::ending_at(at(turn), 2);
    assert_eq!(
        store.income_per_hour(hours).await.unwrap(),
        vec![7, 3 + big + 5]
    );
    // pool-a's 7 over 7:3 is 4.9 and 2.1, the reward address's 3 is 2.1 and 0.9: largest
    // remainder makes them 5 + 2 and 2 + 1, so both hours still add up to the income.
    assert_eq!(
        store.earnings_per_hour("pool-a", hours).await.unwrap(),
        vec![5, 2 + big + 5]
    );
    assert_eq!(
        store.earnings_per_hour("reward", hours).await.unwrap(),
        vec![2, 1]
    );
    let wider = Hours::ending_at(at(turn), 4);
    assert_eq!(
        store.income_per_hour(wider).await.unwrap(),
        vec![11, 0, 7, 3 + big + 5]
    );
    assert_eq!(
        store.earnings_per_hour("pool-a", wider).await.unwrap(),
        vec![11, 0, 5, 2 + big + 5]
    );
}

#[tokio::test]
async fn payout_batches_list_newest_first_in_pages() {
    let store = fresh_store("batch-list").await;
    let noon = noon();
    for i in 0..5_i64 {
        store
            .collection::<Document>(names::PAYOUT_BATCHES)
            .insert_one(doc! {
                "_id": format!("batch-{i}"),
                "state": if i == 4 { "submitted" } else { "confirmed" },
                "kind": "payout",
                "recipients": [{ "address": "a", "units": i }, { "address": "b", "units": 1_i64 }],
                "total": i + 1,
                "fee": 3_i64,
                "tx_hash": format!("hash-{i}"),
                "created_at": at(noon + i * 1000),
            })
            .await
            .unwrap();
    }
    let first = store.recent_payout_batches(3, None).await.unwrap();
    let ids: Vec<&str> = first.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, vec!["batch-4", "batch-3", "batch-2"]);
    assert_eq!(first[0].state, "submitted");
    assert_eq!(
        (first[0].recipients, first[0].total, first[0].fee),
        (2, 5, 3)
    );
    assert_eq!(first[0].tx_hash.as_deref(), Some("hash-4"));
    let last = first.last().unwrap();
    let rest = store
        .recent_payout_batches(3, last.cursor().as_ref())
        .await
        .unwrap();
    let ids: Vec<&str> = rest.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(ids, vec!["batch-1", "batch-0"]);
}
