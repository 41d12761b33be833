//! `decay` (SPEC §5.4): pool scores lose a tenth (rounded up), validator scores reset. Each score
//! is first recorded in the hourly score history the dashboard charts.

use bson::DateTime;
use serde_json::{Value, json};

use crate::{Context, JobError};

pub async fn run(context: &Context) -> Result<Value, JobError> {
    let retention = context.config.history.score_retention_days;
    let recorded = context
        .store
        .record_scores(DateTime::now(), retention)
        .await?;
    let decayed = context.store.decay_scores().await?;
    Ok(json!({
        "poolsChanged": decayed.pools,
        "validatorsReset": decayed.validators,
        "scoresRecorded": recorded.pools + recorded.validators,
        "historyDaysExpired": recorded.expired,
    }))
}
