//! Score decay (SPEC §5.4): one server-side update per collection, whatever their size.

use bson::{Document, doc};

use crate::scoring::{DECAYED_VALIDATOR_SCORE, decayed_pool_score_expr};
use crate::store::db::{Result, Store, StoreError};
use crate::store::names;

/// What one decay changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decayed {
    pub pools: u64,
    pub validators: u64,
}

impl Store {
    /// Applies one decay step to every pool and resets every validator's score.
    pub async fn decay_scores(&self) -> Result<Decayed> {
        let pools = self
            .collection::<Document>(names::MINER_POOL)
            .update_many(
                // `$ne` rather than `$gt`: legacy string scores decay (and are normalised) too.
                doc! { "score": { "$ne": 0_i64 } },
                vec![doc! { "$set": { "score": decayed_pool_score_expr() } }],
            )
            .await
            .map_err(StoreError::mongo("decay pool scores"))?;
        let validators = self
            .collection::<Document>(names::VALIDATORS)
            .update_many(
                doc! { "score": { "$ne": DECAYED_VALIDATOR_SCORE } },
                doc! { "$set": { "score": DECAYED_VALIDATOR_SCORE } },
            )
            .await
            .map_err(StoreError::mongo("reset validator scores"))?;
        Ok(Decayed {
            pools: pools.modified_count,
            validators: validators.modified_count,
        })
    }
}
