//! `decay` (SPEC §5.4): pool scores lose a tenth (rounded up), validator scores reset. Each score
//! is first recorded in the hourly score history the dashboard charts.

use bson::DateTime;
use serde_json::{Value, json};

use crate::{Context, JobError};

pub async fn run(context: &Context) -> Result<Value, JobError> {
    let retention = context.config.history.score_retention_days;
    // The history only feeds charts: failing to write it must not hold back the decay, which
    // decides the next split.
    let history = match context
        .store
        .record_scores(DateTime::now(), retention)
        .await
    {
        Ok(recorded) => json!({
            "scoresRecorded": recorded.pools + recorded.validators,
            "daysExpired": recorded.expired,
        }),
        Err(error) => {
            tracing::warn!(%error, "score history not recorded; decaying anyway");
            json!({ "error": error.to_string() })
        }
    };
    let decayed = context.store.decay_scores().await?;
    Ok(json!({
        "poolsChanged": decayed.pools,
        "validatorsReset": decayed.validators,
        "history": history,
    }))
}
