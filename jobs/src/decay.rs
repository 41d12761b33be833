//! `decay` (SPEC §5.4): pool scores lose a tenth (rounded up), validator scores reset.

use serde_json::{Value, json};

use crate::{Context, JobError};

pub async fn run(context: &Context) -> Result<Value, JobError> {
    let decayed = context.store.decay_scores().await?;
    Ok(json!({ "poolsChanged": decayed.pools, "validatorsReset": decayed.validators }))
}
