//! Payout batches against the real test server: money leaves pending once, comes back once on
//! failure, and becomes paid once on confirmation.

use bson::doc;
use futures::TryStreamExt;
use minerpool_core::store::Store;
use minerpool_core::store::documents::Balance;
use minerpool_core::store::payouts::BatchState;
use minerpool_core::testing::fresh_store;

async fn seed(store: &Store, balances: &[(&str, i64)]) {
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

#[tokio::test]
async fn a_batch_moves_due_amounts_out_of_pending_and_confirmation_pays_them() {
    let store = fresh_store("payout_batch").await;
    seed(&store, &[("a", 500), ("b", 90), ("c", 300)]).await;
    let batch = store
        .create_payout_batch(100, 10)
        .await
        .unwrap()
        .expect("a batch");
    assert_eq!(batch.state, BatchState::Created);
    assert_eq!(batch.total, 800);
    assert_eq!(balance(&store, "a").await, (0, 0));
    assert_eq!(
        balance(&store, "b").await,
        (90, 0),
        "under the minimum: untouched"
    );
    assert!(
        store.create_payout_batch(100, 10).await.unwrap().is_none(),
        "nothing left due"
    );

    assert!(
        store
            .record_signed_batch(&batch.id, "00", "hash")
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_signed_batch(&batch.id, "00", "hash")
            .await
            .unwrap(),
        "only from created"
    );
    assert!(store.record_submitted_batch(&batch.id).await.unwrap());
    assert!(store.confirm_batch(&batch).await.unwrap());
    assert!(
        !store.confirm_batch(&batch).await.unwrap(),
        "a second confirmation pays nothing"
    );
    assert_eq!(balance(&store, "a").await, (0, 500));
    assert_eq!(balance(&store, "c").await, (0, 300));
    assert!(
        !store.fail_and_refund_batch(&batch, "late").await.unwrap(),
        "a confirmed batch is final"
    );
    assert_eq!(balance(&store, "a").await, (0, 500));
}

#[tokio::test]
async fn a_refused_batch_goes_back_to_pending_once() {
    let store = fresh_store("payout_refund").await;
    seed(&store, &[("a", 500)]).await;
    let batch = store.create_payout_batch(1, 10).await.unwrap().unwrap();
    store
        .record_signed_batch(&batch.id, "00", "h")
        .await
        .unwrap();
    assert!(
        store
            .fail_and_refund_batch(&batch, "Transaction has not been added")
            .await
            .unwrap()
    );
    assert!(!store.fail_and_refund_batch(&batch, "again").await.unwrap());
    assert_eq!(balance(&store, "a").await, (500, 0));
    let stored = store
        .payout_batches()
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state, BatchState::Failed);
    assert_eq!(
        stored.error.as_deref(),
        Some("Transaction has not been added")
    );
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
    let total: i64 = balances.iter().map(|(_, p)| p).sum();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store.create_payout_batch(1, 15).await
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
