//! Payout batches against the real test server: money leaves pending once, comes back once when
//! nothing was signed or an abandon is proven, becomes paid once on confirmation, and never moves
//! for a run that lost its lock.

use std::time::Duration;

use bson::doc;
use futures::TryStreamExt;
use minerpool_core::store::documents::Balance;
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

/// Takes the payouts lock: the fence every money move must carry.
async fn fence(store: &Store) -> Fence {
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

#[tokio::test]
async fn unpaid_temp_withdrawals_are_imported_once_and_exactly() {
    use minerpool_core::store::documents::names;
    let store = fresh_store("temp_withdrawals").await;
    let a = "DfG98pTidMnKd8wRK7D6tEgFLZasxYr415JxQRcsADLFi";
    let b = "DtYF6VXDET3GzxXUK2JZPVjwQ7qDqzFeJrDnCtfpyWUrW";
    store
        .collection::<bson::Document>(names::TEMP_WITHDRAWALS)
        .insert_many([
            doc! { "wallet_address": a, "amount": "1.5", "timestamp": 1 },
            doc! { "wallet_address": a, "amount": 0.1, "timestamp": 2 },
            doc! { "wallet_address": b, "amount": 2_i32, "timestamp": 3 },
        ])
        .await
        .unwrap();
    assert_eq!(store.import_temp_withdrawals().await.unwrap(), 360_000_000);
    assert_eq!(
        balance(&store, a).await,
        (160_000_000, 0),
        "both entries of a wallet count"
    );
    assert_eq!(balance(&store, b).await, (200_000_000, 0));
    assert_eq!(
        store.import_temp_withdrawals().await.unwrap(),
        0,
        "a second import adds nothing"
    );
    assert_eq!(balance(&store, a).await, (160_000_000, 0));
    let report = store.audit().await.unwrap();
    assert!(
        report.discrepancies.is_empty(),
        "{:?}",
        report.discrepancies
    );
}

#[tokio::test]
async fn a_malformed_temp_withdrawal_imports_nothing() {
    use minerpool_core::store::documents::names;
    let store = fresh_store("temp_withdrawals_bad").await;
    store
        .collection::<bson::Document>(names::TEMP_WITHDRAWALS)
        .insert_many([
            doc! { "wallet_address": "DfG98pTidMnKd8wRK7D6tEgFLZasxYr415JxQRcsADLFi", "amount": "1" },
            doc! { "wallet_address": "DtYF6VXDET3GzxXUK2JZPVjwQ7qDqzFeJrDnCtfpyWUrW", "amount": "0.123456789" },
        ])
        .await
        .unwrap();
    let err = store
        .import_temp_withdrawals()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("more than 8 decimals"), "{err}");
    assert_eq!(store.balances().count_documents(doc! {}).await.unwrap(), 0);
    assert!(store.imports().find_one(doc! {}).await.unwrap().is_none());
}
