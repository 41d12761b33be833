//! The scoring rules, each as a pure function and, next to it, the MongoDB update expression that
//! applies the same rule server-side (so a rule lives in exactly one place; tests check that the
//! two agree against a real server).

use bson::{Document, doc};

/// A pool's score never exceeds this.
pub const MAX_POOL_SCORE: i64 = 100;

/// A validator below this percentage may not report work (SPEC §4.1).
pub const MIN_VALIDATOR_HUNDREDTHS: i64 = 100;

/// A percentage as stored (a double with 2 decimals) in exact hundredths: `5.01` → 501.
pub fn percentage_hundredths(percentage: f64) -> i64 {
    if percentage.is_finite() {
        (percentage * 100.0).round() as i64
    } else {
        0
    }
}

/// What one accepted TASK adds to a pool's score: `max(1, ceil(percentage / 100 × 20))`,
/// computed in hundredths so that `5.00` gives 1 and `5.01` gives 2 exactly.
pub fn pool_score_increment(percentage_hundredths: i64) -> i64 {
    let hundredths = percentage_hundredths.max(0);
    // percentage / 100 × 20 = hundredths / 500
    ceil_div(hundredths, 500).max(1)
}

/// The pool score after a TASK: capped at [`MAX_POOL_SCORE`].
pub fn pool_score_after_task(score: i64, increment: i64) -> i64 {
    (score.max(0) + increment).min(MAX_POOL_SCORE)
}

/// Server-side form of [`pool_score_after_task`] for an update pipeline: reads the current
/// `score` (absent for a new pool) and never lets concurrent TASKs lose an increment.
pub fn pool_score_after_task_expr(increment: i64) -> Document {
    doc! {
        "$min": [
            MAX_POOL_SCORE,
            { "$add": [ { "$max": [ { "$ifNull": ["$score", 0_i64] }, 0_i64 ] }, increment ] }
        ]
    }
}

/// One decay step: `score − ceil(score / 10)`, never below 0 (100 → 90 → 81 → 72 …).
pub fn decayed_pool_score(score: i64) -> i64 {
    let score = score.max(0);
    score - ceil_div(score, 10)
}

/// Server-side form of [`decayed_pool_score`] for an update pipeline over all pools at once.
pub fn decayed_pool_score_expr() -> Document {
    let score = doc! { "$max": [ { "$ifNull": [ { "$toLong": "$score" }, 0_i64 ] }, 0_i64 ] };
    doc! {
        "$toLong": {
            "$subtract": [
                score.clone(),
                { "$ceil": { "$divide": [ score, 10_i64 ] } }
            ]
        }
    }
}

/// `⌈n / d⌉` for `n ≥ 0`, `d > 0`.
fn ceil_div(n: i64, d: i64) -> i64 {
    (n + d - 1) / d
}

/// A validator's score after decay: activity is re-earned every period.
pub const DECAYED_VALIDATOR_SCORE: i64 = 0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn increment_follows_the_percentage() {
        let cases = [
            (0.5, 1),
            (1.0, 1),
            (5.0, 1),
            (5.01, 2),
            (10.0, 2),
            (50.0, 10),
            (100.0, 20),
            (0.0, 1),
            (-3.0, 1),
        ];
        for (percentage, expected) in cases {
            assert_eq!(
                pool_score_increment(percentage_hundredths(percentage)),
                expected,
                "percentage {percentage}"
            );
        }
    }

    #[test]
    fn task_score_is_capped_at_100() {
        assert_eq!(pool_score_after_task(0, 20), 20);
        assert_eq!(pool_score_after_task(95, 10), 100);
        assert_eq!(pool_score_after_task(100, 1), 100);
    }

    #[test]
    fn decay_sequence_from_100() {
        let mut score = 100;
        let mut seen = vec![score];
        while score > 0 {
            score = decayed_pool_score(score);
            seen.push(score);
        }
        assert_eq!(&seen[..5], &[100, 90, 81, 72, 64]);
        assert_eq!(decayed_pool_score(1), 0);
        assert_eq!(decayed_pool_score(0), 0);
        assert_eq!(decayed_pool_score(-5), 0);
        assert!(
            seen.len() < 60,
            "decays to zero in a bounded number of steps"
        );
    }

    #[test]
    fn non_finite_percentages_count_as_zero() {
        assert_eq!(percentage_hundredths(f64::NAN), 0);
        assert_eq!(percentage_hundredths(f64::INFINITY), 0);
    }
}
