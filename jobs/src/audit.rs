//! `audit`: recomputes the books from one database snapshot, then checks them against the chain,
//! and fails naming every discrepancy:
//! - received = credited, and per address credited = pending + in flight + paid + fees;
//! - no transaction hash credited twice, no `blockTransactions` entry without its distribution;
//! - no failed or abandoned batch whose transaction the chain knows (it would be paid twice);
//! - the wallet is solvent: what it holds on chain covers everything owed and in flight.

use std::collections::HashSet;

use minerpool_core::chain::{OutputKey, TransactionStatus};
use minerpool_core::money::coins_text;
use minerpool_core::store::audit::{Discrepancy, Measure};
use minerpool_core::store::payouts::{BatchState, PayoutBatch};
use serde_json::{Value, json};

use crate::{Context, JobError};

pub async fn run(context: &Context) -> Result<Value, JobError> {
    let mut report = context.store.audit().await?;
    let chain = &context.chain;
    for batch in &report.refunded_with_transaction {
        let Some(hash) = &batch.tx_hash else { continue };
        let status = chain.transaction_status(hash).await?;
        if status != TransactionStatus::NotFound {
            report.discrepancies.push(Discrepancy {
                subject: format!("batch {}", batch.id),
                what: format!(
                    "was refunded ({:?}) but its transaction {hash} is on chain ({status:?}): its recipients may be paid twice; amount refunded",
                    batch.state
                ),
                measure: Measure::Units,
                expected: 0,
                found: batch.total,
            });
        }
    }

    // Solvency: the wallet's confirmed unspent outputs, plus what signed batches already spent
    // in a block but are not yet settled, cover pending and in flight.
    let info = chain
        .address_info(&context.config.chain.inode_wallet)
        .await?;
    let unspent = info.unspent();
    let held_on_chain: i64 = info
        .spendable_outputs
        .iter()
        .map(|o| o.amount.units())
        .sum();
    let mut spent_unsettled = 0;
    for batch in &report.open_batches {
        if spent_before_settled(context, batch, &unspent).await? {
            spent_unsettled += batch.total + batch.fee;
        }
    }
    let owed = report.pending + report.in_flight + report.fees_in_flight;
    if held_on_chain + spent_unsettled < owed {
        report.discrepancies.push(Discrepancy {
            subject: format!("wallet {}", context.config.chain.inode_wallet),
            what: "spendable on chain (plus spent by batches not yet settled), at least pending + in flight".into(),
            measure: Measure::Units,
                expected: owed,
            found: held_on_chain + spent_unsettled,
        });
    }

    let held: Vec<Value> = report
        .held
        .iter()
        .map(|(address, units)| json!({ "address": address, "amount": coins_text(*units) }))
        .collect();
    if !report.discrepancies.is_empty() {
        let listed: Vec<String> = report.discrepancies.iter().map(|d| d.to_string()).collect();
        return Err(JobError::Invalid(format!(
            "the books do not agree in {} place(s): {}",
            listed.len(),
            listed.join("; ")
        )));
    }
    Ok(json!({
        "received": coins_text(report.received),
        "credited": coins_text(report.credited),
        "pending": coins_text(report.pending),
        "inFlight": coins_text(report.in_flight),
        "paid": coins_text(report.paid),
        "feesPaid": coins_text(report.fees_paid),
        "feesInFlight": coins_text(report.fees_in_flight),
        "wallet": coins_text(held_on_chain),
        "addresses": report.addresses,
        "held": held,
        "checkedRefunds": report.refunded_with_transaction.len(),
        "importHeld": report.import_held,
    }))
}

/// Whether an open batch's money already left the wallet in a block while the batch is not yet
/// settled: its inputs are gone from the unspent outputs and it was not our abandoning
/// transaction that spent them (that one's output is back in the wallet).
async fn spent_before_settled(
    context: &Context,
    batch: &PayoutBatch,
    unspent: &HashSet<OutputKey>,
) -> Result<bool, JobError> {
    let gone = batch.inputs.iter().any(|i| {
        u8::try_from(i.index).map_or(true, |index| !unspent.contains(&(i.tx_hash.clone(), index)))
    });
    if !gone {
        return Ok(false);
    }
    if batch.state != BatchState::Abandoning {
        return Ok(true);
    }
    let Some(hash) = batch.abandon.as_ref().and_then(|a| a.tx_hash.as_ref()) else {
        return Ok(true);
    };
    Ok(!matches!(
        context.chain.transaction_status(hash).await?,
        TransactionStatus::Confirmed { .. }
    ))
}
