//! `audit`: recomputes the books from the database and fails, naming every discrepancy, when
//! received ≠ credited or credited ≠ pending + in flight + paid.

use serde_json::{Value, json};

use crate::{Context, JobError};

pub async fn run(context: &Context) -> Result<Value, JobError> {
    let report = context.store.audit().await?;
    if !report.discrepancies.is_empty() {
        let listed: Vec<String> = report.discrepancies.iter().map(|d| d.to_string()).collect();
        return Err(JobError::Invalid(format!(
            "the books do not agree in {} place(s): {}",
            listed.len(),
            listed.join("; ")
        )));
    }
    Ok(json!({
        "received": report.received,
        "credited": report.credited,
        "pending": report.pending,
        "inFlight": report.in_flight,
        "paid": report.paid,
        "addresses": report.addresses,
        "importHeld": report.import_held,
    }))
}
