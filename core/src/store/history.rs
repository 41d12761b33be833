//! History for the dashboard's charts, per hour (UTC), oldest hour first.
//!
//! Income and earnings come from the distributions: income per hour of the blocks that paid it
//! (each distribution keeps what each block paid at the block's chain time), earnings likewise
//! by spreading each distribution's lines over its blocks' hours in integers. Scores are not stored over time anywhere else, so the decay job
//! records each pool's and validator's score just before it decays them: the highest score seen
//! in each hour, in one document per address and day (`scoreHistory`), kept for
//! `history.scoreRetentionDays`.

use bson::{Bson, DateTime, Document, doc};
use futures::TryStreamExt;

use crate::money::stored_units;
use crate::money::{Amount, split_largest_remainder};
use crate::store::db::{Result, Store, StoreError, update_many_matching};
use crate::store::loose::stored_score;
use crate::store::names;

pub const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// The most hours one history read covers (31 days).
pub const MAX_HOURS: usize = 31 * 24;

/// Whose score a history holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreKind {
    Pool,
    Validator,
}

impl ScoreKind {
    fn as_str(self) -> &'static str {
        match self {
            ScoreKind::Pool => "pool",
            ScoreKind::Validator => "validator",
        }
    }
}

/// `count` whole UTC hours ending with the one that holds `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hours {
    /// Start of the oldest hour, in milliseconds since the epoch.
    pub first: i64,
    pub count: usize,
}

impl Hours {
    pub fn ending_at(now: DateTime, count: usize) -> Hours {
        let count = count.clamp(1, MAX_HOURS);
        let now = now.timestamp_millis();
        let current = now - now.rem_euclid(HOUR_MS);
        Hours {
            first: current - (count as i64 - 1) * HOUR_MS,
            count,
        }
    }

    pub fn start(&self) -> DateTime {
        DateTime::from_millis(self.first)
    }

    /// The bucket holding `at_ms`, if it falls inside.
    pub fn index_of(&self, at_ms: i64) -> Option<usize> {
        if at_ms < self.first {
            return None;
        }
        let index = ((at_ms - self.first) / HOUR_MS) as usize;
        (index < self.count).then_some(index)
    }

    /// Sums `(hour start, units)` pairs into one value per hour; pairs outside are left out.
    pub fn sum(&self, points: impl IntoIterator<Item = (i64, i64)>) -> Vec<i64> {
        let mut buckets = vec![0_i64; self.count];
        for (at, value) in points {
            if let Some(i) = self.index_of(at) {
                buckets[i] = buckets[i].saturating_add(value);
            }
        }
        buckets
    }

    /// Starts of the UTC days the hours touch, oldest first.
    fn days(&self) -> Vec<i64> {
        let last = self.first + (self.count as i64 - 1) * HOUR_MS;
        let mut day = self.first - self.first.rem_euclid(DAY_MS);
        let mut days = Vec::new();
        while day <= last {
            days.push(day);
            day += DAY_MS;
        }
        days
    }
}

/// Start of the UTC day holding `time`.
fn day_of(time: DateTime) -> i64 {
    let ms = time.timestamp_millis();
    ms - ms.rem_euclid(DAY_MS)
}

/// The `_id` of the score history of `address` on the UTC day starting at `day_ms`.
fn bucket_id(kind: ScoreKind, address: &str, day_ms: i64) -> String {
    let day = DateTime::from_millis(day_ms)
        .try_to_rfc3339_string()
        .unwrap_or_default();
    format!("{}/{address}/{}", kind.as_str(), &day[..day.len().min(10)])
}

/// What [`Store::record_scores`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoresRecorded {
    pub pools: u64,
    pub validators: u64,
    /// Day documents past their retention, removed.
    pub expired: u64,
}

/// The `$group` key of the hour of the datetime at `path` (`"$created_at"`): its start in
/// milliseconds.
fn hour_of(path: &str) -> Document {
    let ms = doc! { "$toLong": path };
    doc! { "$subtract": [ ms.clone(), { "$mod": [ms, HOUR_MS] } ] }
}

/// Start of the hour holding `ms`.
fn hour_start(ms: i64) -> i64 {
    ms - ms.rem_euclid(HOUR_MS)
}

/// Spreads `units` one distribution credited to an address over the hours of its blocks, in
/// proportion to what each hour's blocks paid (`paid`: block time in ms, units), as
/// `(hour start, units)`. Largest remainder: integers only, the parts sum to `units` exactly.
/// Without block times (`paid` empty, or paying nothing) all of it falls in the hour of
/// `fallback_ms`, the crediting time.
pub fn spread_over_block_hours(
    units: i64,
    paid: &[(i64, i64)],
    fallback_ms: i64,
) -> Vec<(i64, i64)> {
    let mut per_hour: Vec<(i64, u64)> = Vec::new();
    for &(at, weight) in paid {
        let hour = hour_start(at);
        let weight = u64::try_from(weight).unwrap_or(0);
        match per_hour.iter_mut().find(|(h, _)| *h == hour) {
            Some((_, sum)) => *sum = sum.saturating_add(weight),
            None => per_hour.push((hour, weight)),
        }
    }
    let weights: Vec<u64> = per_hour.iter().map(|(_, w)| *w).collect();
    match Amount::from_units(units).map(|total| split_largest_remainder(total, &weights)) {
        Some(Ok(parts)) => per_hour
            .iter()
            .zip(parts)
            .map(|((hour, _), part)| (*hour, part.units()))
            .collect(),
        _ => vec![(hour_start(fallback_ms), units)],
    }
}

/// A stored `received_by_block` entry as (block time in ms, units).
fn block_paid(entry: &Bson) -> Option<(i64, i64)> {
    let entry = entry.as_document()?;
    Some((
        entry.get_datetime("time").ok()?.timestamp_millis(),
        stored_units(entry.get("units"))?,
    ))
}

impl Store {
    /// Records the score of every pool and validator at `now` as the highest of its hour, and
    /// removes the days before the last `retention_days` before today's. (A TTL index removes
    /// days past the longest retention allowed, should the decay job stop running.)
    pub async fn record_scores(
        &self,
        now: DateTime,
        retention_days: u32,
    ) -> Result<ScoresRecorded> {
        let pools = self
            .record_scores_of(ScoreKind::Pool, names::MINER_POOL, "pool_address", now)
            .await?;
        let validators = self
            .record_scores_of(
                ScoreKind::Validator,
                names::VALIDATORS,
                "wallet_address",
                now,
            )
            .await?;
        let expired = self
            .collection::<Document>(names::SCORE_HISTORY)
            .delete_many(doc! { "day": { "$lt": DateTime::from_millis(
                day_of(now) - i64::from(retention_days) * DAY_MS,
            ) } })
            .await
            .map_err(StoreError::mongo("remove expired score history"))?
            .deleted_count;
        Ok(ScoresRecorded {
            pools,
            validators,
            expired,
        })
    }

    async fn record_scores_of(
        &self,
        kind: ScoreKind,
        collection: &str,
        key: &str,
        now: DateTime,
    ) -> Result<u64> {
        let context = format!("read the scores of {collection}");
        let scored: Vec<Document> = self
            .collection::<Document>(collection)
            .find(doc! {})
            .projection(doc! { "_id": 0, key: 1, "score": 1 })
            // One batch (the server caps it at 16 MiB, some 200,000 of these small documents):
            // round trips that do not grow with the number of pools.
            .batch_size(1_000_000)
            .await
            .map_err(StoreError::mongo(context.clone()))?
            .try_collect()
            .await
            .map_err(StoreError::mongo(context))?;
        let day = day_of(now);
        let hour = format!("h.{:02}", (now.timestamp_millis() - day) / HOUR_MS);
        let updates: Vec<(Document, Document)> = scored
            .iter()
            .filter_map(|d| {
                let address = d.get_str(key).ok()?;
                let score = stored_score(d);
                Some((
                    doc! { "_id": bucket_id(kind, address, day) },
                    doc! {
                        "$max": { hour.as_str(): score },
                        "$setOnInsert": {
                            "kind": kind.as_str(),
                            "address": address,
                            "day": DateTime::from_millis(day),
                        },
                    },
                ))
            })
            .collect();
        let recorded = updates.len() as u64;
        update_many_matching(self, None, names::SCORE_HISTORY, updates, true).await?;
        Ok(recorded)
    }

    /// The highest score recorded in each hour (`None`: no record that hour).
    pub async fn score_per_hour(
        &self,
        kind: ScoreKind,
        address: &str,
        hours: Hours,
    ) -> Result<Vec<Option<i64>>> {
        let ids: Vec<String> = hours
            .days()
            .into_iter()
            .map(|day| bucket_id(kind, address, day))
            .collect();
        let context = "read the score history";
        let days: Vec<Document> = self
            .collection::<Document>(names::SCORE_HISTORY)
            .find(doc! { "_id": { "$in": ids } })
            .await
            .map_err(StoreError::mongo(context))?
            .try_collect()
            .await
            .map_err(StoreError::mongo(context))?;
        let mut scores = vec![None; hours.count];
        for day in &days {
            let (Ok(start), Ok(by_hour)) = (day.get_datetime("day"), day.get_document("h")) else {
                continue;
            };
            for (hour, score) in by_hour {
                let (Ok(hour), Some(score)) = (hour.parse::<i64>(), stored_units(Some(score)))
                else {
                    continue;
                };
                if let Some(i) = hours.index_of(start.timestamp_millis() + hour * HOUR_MS) {
                    scores[i] = Some(scores[i].map_or(score, |s: i64| s.max(score)));
                }
            }
        }
        Ok(scores)
    }

    /// Units received in each hour of the blocks that paid them, over every distribution.
    /// Distributions without block times (recorded before they were kept) count in the hour
    /// they were credited. Blocks come before their crediting, so only distributions credited
    /// since the first hour are read.
    pub async fn income_per_hour(&self, hours: Hours) -> Result<Vec<i64>> {
        let credited_then = doc! { "time": "$created_at", "units": "$received" };
        let pipeline = vec![
            doc! { "$match": { "created_at": { "$gte": hours.start() } } },
            doc! { "$project": { "_id": 0, "paid": {
                "$ifNull": ["$received_by_block", [credited_then]],
            } } },
            doc! { "$unwind": "$paid" },
            doc! { "$group": { "_id": hour_of("$paid.time"), "units": { "$sum": "$paid.units" } } },
        ];
        self.hourly_sums(pipeline, hours, "sum income per hour")
            .await
    }

    /// Units credited to `address` in each hour, over all its ledger lines: each distribution's
    /// lines spread over the hours of its blocks by [`spread_over_block_hours`] (in the hour it
    /// was credited when it has no block times).
    pub async fn earnings_per_hour(&self, address: &str, hours: Hours) -> Result<Vec<i64>> {
        let pipeline = vec![
            doc! { "$match": { "lines.address": address, "created_at": { "$gte": hours.start() } } },
            doc! { "$unwind": "$lines" },
            doc! { "$match": { "lines.address": address } },
            doc! { "$group": {
                "_id": "$_id",
                "units": { "$sum": "$lines.units" },
                "created_at": { "$first": "$created_at" },
                "paid": { "$first": "$received_by_block" },
            } },
        ];
        let context = "sum earnings per distribution";
        let credited: Vec<Document> = self
            .aggregate_all(names::REWARD_DISTRIBUTIONS, pipeline, context)
            .await?;
        Ok(hours.sum(credited.iter().flat_map(|d| {
            let paid: Vec<(i64, i64)> = d
                .get_array("paid")
                .map(|blocks| blocks.iter().filter_map(block_paid).collect())
                .unwrap_or_default();
            let created = d
                .get_datetime("created_at")
                .map_or(0, |t| t.timestamp_millis());
            spread_over_block_hours(stored_units(d.get("units")).unwrap_or(0), &paid, created)
        })))
    }

    /// Runs a `$group` of the distributions by [`hour_of`] and spreads its sums over `hours`.
    async fn hourly_sums(
        &self,
        pipeline: Vec<Document>,
        hours: Hours,
        context: &str,
    ) -> Result<Vec<i64>> {
        let sums: Vec<Document> = self
            .aggregate_all(names::REWARD_DISTRIBUTIONS, pipeline, context)
            .await?;
        Ok(hours.sum(sums.iter().filter_map(|d| {
            let hour = match d.get("_id")? {
                Bson::Int64(ms) => *ms,
                Bson::Int32(ms) => i64::from(*ms),
                _ => return None,
            };
            Some((hour, stored_units(d.get("units"))?))
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_end_with_the_current_one_and_leave_out_the_rest() {
        let now = DateTime::from_millis(10 * HOUR_MS + 5);
        let hours = Hours::ending_at(now, 3);
        assert_eq!(hours.first, 8 * HOUR_MS);
        assert_eq!(
            hours.sum([
                (10 * HOUR_MS, 5),
                (10 * HOUR_MS + 10, 7),
                (9 * HOUR_MS, 3),
                (HOUR_MS, 100),
                (11 * HOUR_MS, 9),
            ]),
            vec![0, 3, 12]
        );
    }

    #[test]
    fn credits_spread_over_their_blocks_hours_in_integers_that_sum_exactly() {
        let (h1, h2) = (10 * HOUR_MS, 11 * HOUR_MS);
        // Blocks paying 1 and 2 before the hour turns, 4 after: 7 units credited split 1:2:4
        // by hour, 3 and 4.
        let paid = [(h2 - 60_000, 1), (h2 - 1, 2), (h2 + 5, 4)];
        assert_eq!(
            spread_over_block_hours(7, &paid, h2 + 600_000),
            vec![(h1, 3), (h2, 4)]
        );
        // 10 units over 3:4 is 4.29 / 5.71: largest remainder gives 4 and 6, still 10.
        let parts = spread_over_block_hours(10, &[(h1, 3), (h2, 4)], 0);
        assert_eq!(parts, vec![(h1, 4), (h2, 6)]);
        // Above 2^53 nothing is lost.
        let big = (1_i64 << 60) + 3;
        let parts = spread_over_block_hours(big, &[(h1, 1), (h2, 2)], 0);
        assert_eq!(parts.iter().map(|(_, u)| u).sum::<i64>(), big);
    }

    #[test]
    fn without_block_times_credits_stay_in_the_crediting_hour() {
        let credited = 3 * HOUR_MS + 42;
        assert_eq!(
            spread_over_block_hours(9, &[], credited),
            vec![(3 * HOUR_MS, 9)]
        );
        assert_eq!(
            spread_over_block_hours(9, &[(HOUR_MS, 0)], credited),
            vec![(3 * HOUR_MS, 9)],
            "blocks paying nothing give no weight"
        );
    }

    #[test]
    fn hours_are_capped_and_never_empty() {
        let now = DateTime::from_millis(1000 * DAY_MS);
        assert_eq!(Hours::ending_at(now, 0).count, 1);
        assert_eq!(Hours::ending_at(now, 100_000).count, MAX_HOURS);
    }

    #[test]
    fn days_cover_every_hour() {
        let now = DateTime::from_millis(3 * DAY_MS + 2 * HOUR_MS);
        assert_eq!(Hours::ending_at(now, 3).days(), vec![3 * DAY_MS]);
        assert_eq!(
            Hours::ending_at(now, 4).days(),
            vec![2 * DAY_MS, 3 * DAY_MS]
        );
        assert_eq!(Hours::ending_at(now, 51).days().len(), 3);
    }

    #[test]
    fn bucket_ids_name_kind_address_and_day() {
        assert_eq!(bucket_id(ScoreKind::Pool, "Dx", 0), "pool/Dx/1970-01-01");
        assert_eq!(
            bucket_id(ScoreKind::Validator, "Dy", 20_000 * DAY_MS),
            "validator/Dy/2024-10-04"
        );
    }
}
