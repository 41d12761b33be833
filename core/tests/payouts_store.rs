//! Payout batches against the real test server: money leaves pending once, comes back once when
//! nothing was signed or an abandon is proven, becomes paid once on confirmation, and never moves
//! for a run that lost its lock.

use std::time::Duration;

use bson::doc;
use futures::TryStreamExt;
use minerpool_core::store::ledger::Balance;
use minerpool_core::store::payouts::{Abandonment, BatchKind, BatchState, NewBatch, SpentInput};
use minerpool_core::store::runs::Fence;
use minerpool_core::store::{Store, StoreError};
use minerpool_core::testing::fresh_store;

/// Pending balances, credited as an import would (so the audit sees where they came from).
async fn seed(store: &Store, balances: &[(&str, i64)]) {
    let lines: Vec<bson::Document> = balances
        .iter()
        .map(|(a, p)| doc! { "address": *a, "units": *p })
        .collect();
    store
        .collection::<bson::Document>(minerpool_core::store::names::IMPORTS)
        .insert_one(doc! { "_id": "seed", "imported_at": bson::DateTime::now(), "lines": lines })
        .await
        .unwrap();
    store
        .balances()
        .insert_many(balances.iter().map(|(a, p)| Balance {
            address: (*a).into(),
            pending: *p,
            paid: 0,
            updated_at: None,
        }))
        .await
        .unwrap();
}

async fn balance(store: &Store, address: &str) -> (i64, i64) {
    let b = store
        .balances()
        .find_one(doc! { "address": address })
        .await
        .unwrap()
        .unwrap();
    (b.pending, b.paid)
}

/// Takes the payouts lock (as the next run would, once any earlier holder's lease has expired):
/// the fence every money move must carry.
async fn fence(store: &Store) -> Fence {
    store
        .job_locks()
        .update_one(
            doc! { "_id": "payouts" },
            doc! { "$set": { "expires_at": bson::DateTime::from_millis(0) } },
        )
        .await
        .unwrap();
    store
        .try_lock_job("payouts", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("the lock is free")
}

fn plan(recipients: &[(&str, i64)]) -> NewBatch {
    NewBatch {
        kind: BatchKind::Payout,
        recipients: recipients
            .iter()
            .map(|(a, u)| ((*a).to_owned(), *u))
            .collect(),
        fee: 0,
        fee_payer: "fee-payer".into(),
    }
}

fn input() -> SpentInput {
    SpentInput {
        tx_hash: "aa".repeat(32),
        index: 0,
        units: 1_000,
    }
}

async fn assert_books_agree(store: &Store) {
    let report = store.audit().await.unwrap();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
}

#[tokio::test]
async fn a_batch_moves_due_amounts_out_of_pending_and_confirmation_pays_them() {
    let store = fresh_store("payout_batch").await;
    seed(&store, &[("a", 500), ("b", 90), ("c", 300)]).await;
    let fence = fence(&store).await;
    let due = store.payable_balances(100, 10).await.unwrap();
    assert_eq!(
        due,
        vec![("a".to_string(), 500), ("c".to_string(), 300)],
        "b is under the minimum"
    );
    let batch = store
        .create_payout_batch(&fence, &plan(&[("a", 500), ("c", 300)]))
        .await
        .unwrap()
        .expect("a batch");
    assert_eq!(batch.state, BatchState::Created);
    assert_eq!(batch.total, 800);
    assert_eq!(balance(&store, "a").await, (0, 0));
    assert_eq!(balance(&store, "b").await, (90, 0), "untouched");
    assert!(
        store
            .create_payout_batch(&fence, &plan(&[("a", 500)]))
            .await
            .unwrap()
            .is_none(),
        "a debit the balance no longer covers creates nothing"
    );
    assert_eq!(balance(&store, "a").await, (0, 0));

    assert!(
        store
            .record_signed_batch(&fence, &batch.id, "00", "hash", &[input()])
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_signed_batch(&fence, &batch.id, "00", "hash", &[input()])
            .await
            .unwrap(),
        "only from created"
    );
    assert!(
        !store
            .fail_unsigned_batch(&fence, &batch, "refused")
            .await
            .unwrap(),
        "a signed batch is never refunded on an answer"
    );
    assert_eq!(balance(&store, "a").await, (0, 0));
    assert!(
        store
            .record_submitted_batch(&fence, &batch.id)
            .await
            .unwrap()
    );
    assert_books_agree(&store).await;
    assert!(store.confirm_batch(&fence, &batch, 7).await.unwrap());
    assert!(
        !store.confirm_batch(&fence, &batch, 7).await.unwrap(),
        "a second confirmation pays nothing"
    );
    assert_eq!(balance(&store, "a").await, (0, 500));
    assert_eq!(balance(&store, "c").await, (0, 300));
    let stored = store.payout_batch(&batch.id).await.unwrap().unwrap();
    assert_eq!(
        (stored.state, stored.proof_block),
        (BatchState::Confirmed, Some(7))
    );
    assert_eq!(stored.inputs, vec![input()]);
}

#[tokio::test]
async fn an_unsigned_batch_goes_back_to_pending_once() {
    let store = fresh_store("payout_refund").await;
    seed(&store, &[("a", 500)]).await;
    let fence = fence(&store).await;
    let batch = store
        .create_payout_batch(&fence, &plan(&[("a", 500)]))
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .fail_unsigned_batch(&fence, &batch, "no coins")
            .await
            .unwrap()
    );
    assert!(
        !store
            .fail_unsigned_batch(&fence, &batch, "again")
            .await
            .unwrap()
    );
    assert_eq!(balance(&store, "a").await, (500, 0));
    let stored = store.payout_batch(&batch.id).await.unwrap().unwrap();
    assert_eq!(stored.state, BatchState::Failed);
    assert_eq!(stored.error.as_deref(), Some("no coins"));
    assert_books_agree(&store).await;
}

#[tokio::test]
async fn a_signed_batch_is_refunded_only_through_a_proven_abandon() {
    let store = fresh_store("payout_abandon").await;
    seed(&store, &[("a", 500), ("fee-payer", 40)]).await;
    let fence = fence(&store).await;
    let mut with_fee = plan(&[("a", 500)]);
    with_fee.fee = 30;
    let batch = store
        .create_payout_batch(&fence, &with_fee)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        balance(&store, "fee-payer").await,
        (10, 0),
        "the fee leaves its payer's pending"
    );
    assert_books_agree(&store).await;
    store
        .record_signed_batch(&fence, &batch.id, "00", "h", &[input()])
        .await
        .unwrap();
    let requested = store
        .request_abandon(&fence, &batch.id, "by hand")
        .await
        .unwrap();
    assert_eq!(
        requested.state,
        BatchState::Signed,
        "a request alone refunds nothing"
    );
    assert_eq!(
        requested.abandon.as_ref().map(|a| a.reason.as_str()),
        Some("by hand")
    );
    assert!(
        !store.finish_abandon(&fence, &requested, 9).await.unwrap(),
        "no refund before the abandoning transaction is recorded"
    );
    let abandonment = Abandonment {
        reason: "by hand".into(),
        requested_at: bson::DateTime::now(),
        tx_hex: Some("01".into()),
        tx_hash: Some("a".repeat(64)),
        inputs: vec![input()],
    };
    assert!(
        store
            .record_abandoning_batch(&fence, &requested, &abandonment)
            .await
            .unwrap()
    );
    assert_eq!(balance(&store, "a").await, (0, 0));
    assert_books_agree(&store).await;
    assert!(store.finish_abandon(&fence, &requested, 9).await.unwrap());
    assert!(
        !store.finish_abandon(&fence, &requested, 9).await.unwrap(),
        "refunded once"
    );
    assert!(
        !store.confirm_batch(&fence, &requested, 9).await.unwrap(),
        "abandoned is final"
    );
    assert_eq!(balance(&store, "a").await, (500, 0));
    assert_eq!(
        balance(&store, "fee-payer").await,
        (40, 0),
        "the fee comes back too"
    );
    assert_books_agree(&store).await;
    let err = store
        .request_abandon(&fence, &batch.id, "again")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("nothing to abandon"), "{err}");
    let err = store
        .request_abandon(&fence, "no-such-batch", "x")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("no payout batch no-such-batch"),
        "{err}"
    );
}

#[tokio::test]
async fn a_confirmed_fee_is_spent_and_the_books_still_agree() {
    let store = fresh_store("payout_fee").await;
    seed(&store, &[("a", 500), ("fee-payer", 40)]).await;
    let fence = fence(&store).await;
    let mut with_fee = plan(&[("a", 500)]);
    with_fee.fee = 30;
    let batch = store
        .create_payout_batch(&fence, &with_fee)
        .await
        .unwrap()
        .unwrap();
    store
        .record_signed_batch(&fence, &batch.id, "00", "h", &[input()])
        .await
        .unwrap();
    assert!(store.confirm_batch(&fence, &batch, 3).await.unwrap());
    assert_eq!(balance(&store, "a").await, (0, 500));
    assert_eq!(
        balance(&store, "fee-payer").await,
        (10, 0),
        "paid by nobody else"
    );
    let report = store.audit().await.unwrap();
    assert_eq!((report.fees_paid, report.fees_in_flight), (30, 0));
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
}

#[tokio::test]
async fn a_run_that_lost_its_lock_moves_nothing() {
    let store = fresh_store("payout_fence").await;
    seed(&store, &[("a", 500), ("b", 300)]).await;
    let stale = fence(&store).await;
    let batch = store
        .create_payout_batch(&stale, &plan(&[("a", 500)]))
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .try_lock_job("payouts", Duration::from_secs(60))
            .await
            .unwrap()
            .is_none(),
        "held and unexpired"
    );
    // The stale run stalls past its lock's expiry (by the server's clock); another run takes over.
    store
        .job_locks()
        .update_one(
            doc! { "_id": "payouts" },
            doc! { "$set": { "expires_at": bson::DateTime::from_millis(0) } },
        )
        .await
        .unwrap();
    let current = fence(&store).await;
    assert!(current.generation > stale.generation);
    let refused = [
        store
            .create_payout_batch(&stale, &plan(&[("b", 300)]))
            .await
            .map(|b| b.is_some()),
        store
            .record_signed_batch(&stale, &batch.id, "00", "h", &[input()])
            .await,
        store.fail_unsigned_batch(&stale, &batch, "x").await,
        store.confirm_batch(&stale, &batch, 1).await,
    ];
    for result in refused {
        assert!(matches!(result, Err(StoreError::Fenced(_))), "{result:?}");
    }
    assert!(stale.is_lost(), "a refused move marks the fence lost");
    assert_eq!(balance(&store, "b").await, (300, 0), "nothing moved");
    let stored = store.payout_batch(&batch.id).await.unwrap().unwrap();
    assert_eq!(stored.state, BatchState::Created);
    // The current holder carries on.
    assert!(
        store
            .record_signed_batch(&current, &batch.id, "00", "h", &[input()])
            .await
            .unwrap()
    );
    // Releasing keeps the generation growing: the next holder's is larger still.
    store.unlock_job(&current).await.unwrap();
    assert!(fence(&store).await.generation > current.generation);
}

#[tokio::test]
async fn concurrent_batch_creation_moves_each_unit_once() {
    let store = fresh_store("payout_race").await;
    let balances: Vec<(String, i64)> = (0..40).map(|i| (format!("r{i:02}"), 1000 + i)).collect();
    seed(
        &store,
        &balances
            .iter()
            .map(|(a, p)| (a.as_str(), *p))
            .collect::<Vec<_>>(),
    )
    .await;
    let fence = fence(&store).await;
    let total: i64 = balances.iter().map(|(_, p)| p).sum();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (store, fence) = (store.clone(), fence.clone());
        tasks.push(tokio::spawn(async move {
            let due = store.payable_balances(1, 15).await?;
            let plan = NewBatch {
                kind: BatchKind::Payout,
                recipients: due,
                fee: 0,
                fee_payer: String::new(),
            };
            store.create_payout_batch(&fence, &plan).await
        }));
    }
    let mut batched = 0;
    for t in tasks {
        if let Some(batch) = t.await.unwrap().unwrap() {
            batched += batch.total;
        }
    }
    let pending: i64 = store
        .balances()
        .find(doc! {})
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .iter()
        .map(|b| b.pending)
        .sum();
    assert_eq!(
        pending + batched,
        total,
        "every unit is either pending or in exactly one batch"
    );
    assert!(pending >= 0);
}

#[tokio::test]
async fn a_dry_run_records_what_would_be_paid_and_moves_nothing() {
    let store = fresh_store("payout_dry").await;
    seed(&store, &[("a", 500)]).await;
    let batch = store.simulate_payout_batch(1, 10).await.unwrap().unwrap();
    assert_eq!(batch.state, BatchState::Simulated);
    assert_eq!(balance(&store, "a").await, (500, 0));
    assert!(store.open_payout_batches().await.unwrap().is_empty());
}

/// One `tempWithdrawals` document exactly as the original iNode writes it.
fn temp_withdrawal(id: &str, wallet: &str, new_balance: f64, kind: &str) -> bson::Document {
    doc! {
        "id": id,
        "wallet_address": wallet,
        "new_balance": new_balance,
        "timestamp": bson::DateTime::from_millis(1_732_900_000_000),
        "type": kind,
    }
}

const WALLET_A: &str = "DfGQ4MBdMw7bjNn56A2d4pYi8M9yfV9iFA6mMLXLizEEp";
const WALLET_B: &str = "DtY8EdhmGS6LyXRmVtWxnVxWA4orV8gwEz4sjjjHUu8yo";
const WALLET_C: &str = "DcDbHR1iD3rcpD3jg3NGXKPjor5kkWurTSHXgS2SURSAz";
const WALLET_D: &str = "E4AeWsv2tgHo4hYqHb4AYEsuvfzmWPkbMTkE2uwdjK2FV";
/// Prefix 42 and x = 1: well-formed, not a P-256 point.
const OFF_CURVE: &str = "DUiCyVdJHEpTzNA1X3siu2CS8kkbLzh4su1NYetFEQozw";

async fn insert_temp_withdrawals(store: &Store, entries: Vec<bson::Document>) {
    use minerpool_core::store::names;
    store
        .collection::<bson::Document>(names::TEMP_WITHDRAWALS)
        .insert_many(entries)
        .await
        .unwrap();
}

#[tokio::test]
async fn original_temp_withdrawals_are_imported_once_as_the_original_would_have_paid_them() {
    let store = fresh_store("temp_withdrawals").await;
    insert_temp_withdrawals(&store, vec![
        // Each float is paid as "{:.8f}".format(x): 0.30000000, 12.34567890, 0.00195312.
        temp_withdrawal("0b6f1c1e-3d52-4f7a-9a53-6a4d1f3e2b10", WALLET_A, 0.1 + 0.2, "pool_reward"),
        temp_withdrawal("5d0e8a47-2c1b-4e9d-8f6a-3b7c9e1d2a41", WALLET_A, 12.345678905, "validator_reward"),
        temp_withdrawal("a3c9e2f1-7b4d-4c8e-b1a2-9d8e7f6c5b32", WALLET_A, 1.0 / 512.0, "utxos_split_1732900000"),
        // 7.00585938 (an exact tie, to even), 0.1, 2.5.
        temp_withdrawal("e7f1d2c3-4b5a-4968-8776-a5b4c3d2e1f0", WALLET_B, 7.005859375, "iNode_reward"),
        temp_withdrawal("1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b", WALLET_B, 0.1, "url_split_1732900060"),
        temp_withdrawal("9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d", WALLET_B, 2.5, "Request-URI_1732900120"),
        temp_withdrawal("c0ffee00-1234-4abc-8def-0123456789ab", WALLET_C, 1e-8, "CatchError_64f1a2b3c4d5e6f708192a3b"),
        // Looser old data: exact ints, decimals and strings.
        doc! { "id": "d1", "wallet_address": WALLET_D, "new_balance": 3_i32, "type": "pool_reward" },
        doc! { "id": "d2", "wallet_address": WALLET_D, "new_balance": 4_i64, "type": "pool_reward" },
        doc! { "id": "d3", "wallet_address": WALLET_D,
            "new_balance": "1.23456789".parse::<bson::Decimal128>().unwrap(), "type": "pool_reward" },
        doc! { "id": "d4", "wallet_address": WALLET_D, "new_balance": "0.5", "type": "pool_reward" },
    ])
    .await;
    let a = 30_000_000 + 1_234_567_890 + 195_312;
    let b = 700_585_938 + 10_000_000 + 250_000_000;
    let d = 300_000_000 + 400_000_000 + 123_456_789 + 50_000_000;
    let done = store
        .import_temp_withdrawals(&fence(&store).await)
        .await
        .unwrap();
    assert_eq!(done.held, vec![], "every entry is payable");
    assert_eq!(done.credited, a + b + 1 + d);
    assert_eq!(
        balance(&store, WALLET_A).await,
        (a, 0),
        "a wallet's entries are summed"
    );
    assert_eq!(balance(&store, WALLET_B).await, (b, 0));
    assert_eq!(balance(&store, WALLET_C).await, (1, 0));
    assert_eq!(balance(&store, WALLET_D).await, (d, 0));

    let again = store
        .import_temp_withdrawals(&fence(&store).await)
        .await
        .unwrap();
    assert_eq!(
        (again.credited, again.lines.len()),
        (0, 0),
        "a second import adds nothing"
    );
    assert_eq!(balance(&store, WALLET_A).await, (a, 0));
    let report = store.audit().await.unwrap();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
    assert_eq!(
        report.credited,
        a + b + 1 + d,
        "the audit counts the import as credited"
    );
}

#[tokio::test]
async fn an_unpayable_temp_withdrawal_is_held_aside_and_the_rest_imported() {
    let store = fresh_store("temp_withdrawals_held").await;
    insert_temp_withdrawals(
        &store,
        vec![
            temp_withdrawal(
                "11111111-1111-4111-8111-111111111111",
                WALLET_A,
                1.5,
                "pool_reward",
            ),
            temp_withdrawal(
                "22222222-2222-4222-8222-222222222222",
                OFF_CURVE,
                2.0,
                "pool_reward",
            ),
            temp_withdrawal(
                "33333333-3333-4333-8333-333333333333",
                WALLET_A,
                f64::NAN,
                "validator_reward",
            ),
            temp_withdrawal(
                "44444444-4444-4444-8444-444444444444",
                WALLET_B,
                -1.0,
                "iNode_reward",
            ),
            temp_withdrawal(
                "55555555-5555-4555-8555-555555555555",
                WALLET_B,
                0.0,
                "url_split_1",
            ),
            temp_withdrawal(
                "66666666-6666-4666-8666-666666666666",
                WALLET_B,
                f64::INFINITY,
                "url_split_2",
            ),
            temp_withdrawal(
                "77777777-7777-4777-8777-777777777777",
                WALLET_B,
                2e7,
                "Request-URI_3",
            ),
            doc! { "id": "88888888-8888-4888-8888-888888888888", "wallet_address": WALLET_B,
            "new_balance": "0.123456789", "type": "CatchError_9" },
            // The original never wrote `amount`; without `new_balance` nothing is owed that we know of.
            doc! { "id": "99999999-9999-4999-8999-999999999999", "wallet_address": WALLET_B,
            "amount": "5", "type": "pool_reward" },
            temp_withdrawal(
                "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa",
                WALLET_B,
                0.25,
                "pool_reward",
            ),
        ],
    )
    .await;
    let done = store
        .import_temp_withdrawals(&fence(&store).await)
        .await
        .unwrap();
    assert_eq!(done.credited, 150_000_000 + 25_000_000);
    assert_eq!(balance(&store, WALLET_A).await, (150_000_000, 0));
    assert_eq!(balance(&store, WALLET_B).await, (25_000_000, 0));
    assert_eq!(store.balances().count_documents(doc! {}).await.unwrap(), 2);
    let held: Vec<(&str, &str)> = done
        .held
        .iter()
        .map(|h| (h.id.as_str(), h.reason.as_str()))
        .collect();
    let expect = [
        (
            "22222222-2222-4222-8222-222222222222",
            "wallet_address: address is not a P-256 point",
        ),
        (
            "33333333-3333-4333-8333-333333333333",
            "new_balance: amount \"NaN\" is not a decimal number",
        ),
        (
            "44444444-4444-4444-8444-444444444444",
            "new_balance: amount \"-1.00000000\" is negative",
        ),
        (
            "55555555-5555-4555-8555-555555555555",
            "new_balance is zero",
        ),
        (
            "66666666-6666-4666-8666-666666666666",
            "new_balance: amount \"inf\" is not a decimal number",
        ),
        (
            "77777777-7777-4777-8777-777777777777",
            "more than the whole supply",
        ),
        (
            "88888888-8888-4888-8888-888888888888",
            "more than 8 decimals",
        ),
        (
            "99999999-9999-4999-8999-999999999999",
            "new_balance is missing",
        ),
    ];
    assert_eq!(held.len(), expect.len(), "{held:?}");
    for ((id, reason), (want_id, want_reason)) in held.iter().zip(expect) {
        assert_eq!(*id, want_id);
        assert!(reason.contains(want_reason), "{id}: {reason}");
    }
    assert_eq!(done.held[0].address, OFF_CURVE);
    assert_eq!(done.held[0].raw, "2.0");

    let marker = store.imports().find_one(doc! {}).await.unwrap().unwrap();
    assert_eq!(marker.held, done.held, "the marker records what was held");
    let again = store
        .import_temp_withdrawals(&fence(&store).await)
        .await
        .unwrap();
    assert_eq!(
        (again.credited, again.held.len()),
        (0, 0),
        "held entries stay held"
    );
    let report = store.audit().await.unwrap();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
    assert_eq!(report.credited, 175_000_000);
    assert_eq!(
        report.import_held, done.held,
        "the audit lists what was held"
    );
}
