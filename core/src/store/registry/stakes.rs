//! The validators job's database side (SPEC §5.2): stake shares written with field-limited
//! upserts, so the score, ip, port and ping that the node writes are never overwritten.

use bson::{DateTime, Document, doc};

use crate::chain::ValidatorInfo;
use crate::money::{Amount, UNITS_PER_COIN};
use crate::store::db::{Result, Store, StoreError, update_many_by_key};
use crate::store::names;

/// A validator's stake share as the validators job computes it.
#[derive(Debug, Clone, PartialEq)]
pub struct StakeShare {
    pub wallet_address: String,
    /// Percent of the listed stake, rounded half up to 2 decimals, in hundredths.
    pub hundredths: i64,
    pub total_stake: Amount,
    pub votes: Amount,
}

/// The top `limit` validators by stake (ties by address) and their shares of the total stake of
/// that list: `round(stake / total × 100, 2)`, computed in integers.
pub fn stake_shares(mut validators: Vec<ValidatorInfo>, limit: usize) -> Vec<StakeShare> {
    validators.sort_by(|a, b| {
        b.total_stake
            .cmp(&a.total_stake)
            .then_with(|| a.validator.cmp(&b.validator))
    });
    // A validator listed twice counts once, with its larger stake (the first after sorting).
    let mut seen = std::collections::HashSet::new();
    validators.retain(|v| seen.insert(v.validator.clone()));
    validators.truncate(limit);
    let total: i128 = validators
        .iter()
        .map(|v| i128::from(v.total_stake.units()))
        .sum();
    validators
        .into_iter()
        .map(|v| {
            let stake = i128::from(v.total_stake.units());
            let hundredths = if total == 0 {
                0
            } else {
                ((stake * 10_000 * 2 + total) / (total * 2)) as i64
            };
            let votes = v
                .vote
                .iter()
                .map(|vote| vote.vote_count)
                .try_fold(Amount::ZERO, |sum, count| sum.checked_add(count))
                .unwrap_or(Amount::ZERO);
            StakeShare {
                wallet_address: v.validator,
                hundredths,
                total_stake: v.total_stake,
                votes,
            }
        })
        .collect()
}

/// A validator address from the chain that is not a P-256 point, left out of the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedValidator {
    pub address: String,
    pub reason: crate::address::AddressError,
}

/// Keeps the validators whose address is payable; the rest are skipped, never stored, and take no
/// share of the stake (they could never be paid).
pub fn payable_validators(
    validators: Vec<ValidatorInfo>,
) -> (Vec<ValidatorInfo>, Vec<SkippedValidator>) {
    let mut skipped = Vec::new();
    let payable = validators
        .into_iter()
        .filter(|v| match crate::address::check_format(&v.validator) {
            Ok(()) => true,
            Err(reason) => {
                skipped.push(SkippedValidator {
                    address: v.validator.clone(),
                    reason,
                });
                false
            }
        })
        .collect();
    (payable, skipped)
}

/// Units as the plain number the original stored (`totalStake`, `vote` are not money here).
fn as_number(amount: Amount) -> f64 {
    amount.units() as f64 / UNITS_PER_COIN as f64
}

/// What a validators sync changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidatorsSynced {
    pub listed: usize,
    pub dropped: u64,
}

impl Store {
    /// Writes the listed validators' shares (upserting new ones with score 0) and sets every
    /// other validator's percentage to 0. Two round trips, whatever the number of validators.
    pub async fn sync_validators(&self, shares: &[StakeShare]) -> Result<ValidatorsSynced> {
        let now = DateTime::now();
        let updates: Vec<(String, Document)> = shares
            .iter()
            .map(|share| {
                (
                    share.wallet_address.clone(),
                    doc! {
                        "$set": {
                            "percentage": share.hundredths as f64 / 100.0,
                            "totalStake": as_number(share.total_stake),
                            "vote": as_number(share.votes),
                            "lastFetch": now,
                        },
                        "$setOnInsert": { "score": 0_i64 },
                    },
                )
            })
            .collect();
        update_many_by_key(
            self,
            None,
            names::VALIDATORS,
            "wallet_address",
            updates,
            true,
        )
        .await?;
        let listed: Vec<&str> = shares.iter().map(|s| s.wallet_address.as_str()).collect();
        let dropped = self
            .collection::<Document>(names::VALIDATORS)
            .update_many(
                doc! { "wallet_address": { "$nin": listed }, "percentage": { "$ne": 0.0 } },
                doc! { "$set": { "percentage": 0.0, "lastFetch": now } },
            )
            .await
            .map_err(StoreError::mongo(
                "zero the percentage of validators no longer listed",
            ))?;
        Ok(ValidatorsSynced {
            listed: shares.len(),
            dropped: dropped.modified_count,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ValidatorVote;

    fn info(address: &str, stake: &str, votes: &[&str]) -> ValidatorInfo {
        ValidatorInfo {
            validator: address.into(),
            vote: votes
                .iter()
                .map(|v| ValidatorVote {
                    wallet: None,
                    vote_count: Amount::parse(v).unwrap(),
                })
                .collect(),
            total_stake: Amount::parse(stake).unwrap(),
        }
    }

    #[test]
    fn shares_of_the_top_list() {
        let shares = stake_shares(
            vec![
                info("c", "1", &[]),
                info("a", "2", &["1", "2.5"]),
                info("b", "1", &[]),
                info("d", "0.5", &[]),
            ],
            3,
        );
        let got: Vec<(&str, i64)> = shares
            .iter()
            .map(|s| (s.wallet_address.as_str(), s.hundredths))
            .collect();
        // d is not in the top 3; 2/4 = 50 %, 1/4 = 25 % each.
        assert_eq!(got, vec![("a", 5000), ("b", 2500), ("c", 2500)]);
        assert_eq!(shares[0].votes, Amount::parse("3.5").unwrap());
    }

    #[test]
    fn percentages_round_half_up_to_two_decimals() {
        let shares = stake_shares(vec![info("a", "1", &[]), info("b", "2", &[])], 60);
        // 33.333… → 33.33, 66.666… → 66.67
        assert_eq!(shares[0].hundredths, 6667);
        assert_eq!(shares[1].hundredths, 3333);
        let shares = stake_shares(vec![info("a", "1", &[]), info("b", "7", &[])], 60);
        // 12.5 → 12.50 exactly; 87.5 → 87.50
        assert_eq!((shares[0].hundredths, shares[1].hundredths), (8750, 1250));
    }

    #[test]
    fn a_validator_listed_twice_counts_once() {
        let shares = stake_shares(
            vec![
                info("a", "1", &[]),
                info("b", "3", &[]),
                info("a", "2", &[]),
            ],
            60,
        );
        let got: Vec<(&str, i64)> = shares
            .iter()
            .map(|s| (s.wallet_address.as_str(), s.hundredths))
            .collect();
        assert_eq!(got, vec![("b", 6000), ("a", 4000)]);
    }

    #[test]
    fn no_stake_means_no_share() {
        let shares = stake_shares(vec![info("a", "0", &[])], 60);
        assert_eq!(shares[0].hundredths, 0);
        assert!(stake_shares(vec![], 60).is_empty());
    }

    #[test]
    fn an_off_curve_validator_is_skipped_and_named() {
        let real = "E4AeWsv2tgHo4hYqHb4AYEsuvfzmWPkbMTkE2uwdjK2FV";
        // Prefix 42 and x = 1: well-formed, not a P-256 point.
        let off_curve = "DUiCyVdJHEpTzNA1X3siu2CS8kkbLzh4su1NYetFEQozw";
        let (payable, skipped) = payable_validators(vec![
            info(off_curve, "9", &[]),
            info(real, "1", &[]),
            info("garbage", "5", &[]),
        ]);
        assert_eq!(payable, vec![info(real, "1", &[])]);
        assert_eq!(
            skipped,
            vec![
                SkippedValidator {
                    address: off_curve.into(),
                    reason: crate::address::AddressError::OffCurve,
                },
                SkippedValidator {
                    address: "garbage".into(),
                    reason: crate::address::AddressError::Length(7),
                },
            ]
        );
        let shares = stake_shares(payable, 60);
        assert_eq!(
            shares[0].hundredths, 10_000,
            "the skipped stake counts for no one"
        );
    }
}
