//! The rewards rules (SPEC §5.1) as pure functions: what a transaction pays the iNode, and how a
//! received amount is shared out. Every distribution conserves the amount exactly.

use std::collections::BTreeMap;

use crate::chain::ChainTransaction;
use crate::money::{Amount, split_largest_remainder};
use crate::store::documents::{Basis, LedgerKind, LedgerLine};

/// The only transaction and output type that carries income.
pub const REGULAR: &str = "REGULAR";

/// Units `tx` pays to `wallet`: the REGULAR outputs to the wallet of a REGULAR (or untyped, like a
/// coinbase) transaction, leaving out outputs to an address that is also among the inputs (change
/// of a self-send is not income).
pub fn income_of(tx: &ChainTransaction, wallet: &str) -> Option<Amount> {
    if tx
        .transaction_type
        .as_deref()
        .is_some_and(|kind| kind != REGULAR)
    {
        return Some(Amount::ZERO);
    }
    let is_input = |address: &str| {
        tx.inputs
            .iter()
            .any(|i| i.address.as_deref() == Some(address))
    };
    Amount::checked_sum(
        tx.outputs
            .iter()
            .filter(|o| o.address == wallet && o.output_type.as_deref() == Some(REGULAR))
            .filter(|o| !is_input(&o.address))
            .map(|o| o.amount),
    )
}

/// How the whole is cut, in percent; the three sum to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentages {
    pub fee: u8,
    pub pools: u8,
    pub validators: u8,
}

/// A pool as the rewards see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolWeight {
    pub address: String,
    pub score: i64,
}

/// A validator as the rewards see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatorWeight {
    pub address: String,
    /// Stake percentage in hundredths (`12.34 %` → 1234).
    pub hundredths: i64,
    /// Only validators that reported work since the last decay (score 1) are paid.
    pub active: bool,
}

/// Why a distribution could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewardsError {
    #[error("the fee, pool and validator percentages sum to {0}, not 100")]
    PercentagesNot100(u32),
    #[error("amounts overflow")]
    Overflow,
}

/// Shares `received` out (SPEC §5.1 step 4):
/// - the fee, pool and validator parts by the percentages (largest remainder);
/// - the pool part by score among pools with score > 0;
/// - each active validator gets `percentage / max(100, Σ active percentages)` of the validator
///   part (rounded percentages can sum just above 100);
/// - what no one can receive goes to `reward_address` as one `unallocated` line.
///
/// The lines (zero-unit lines left out) always sum to `received` exactly.
pub fn distribute(
    received: Amount,
    percentages: Percentages,
    reward_address: &str,
    pools: &[PoolWeight],
    validators: &[ValidatorWeight],
) -> Result<Vec<LedgerLine>, RewardsError> {
    let Percentages {
        fee,
        pools: pools_percent,
        validators: validators_percent,
    } = percentages;
    let sum = u32::from(fee) + u32::from(pools_percent) + u32::from(validators_percent);
    if sum != 100 {
        return Err(RewardsError::PercentagesNot100(sum));
    }
    let parts = split_largest_remainder(
        received,
        &[
            u64::from(fee),
            u64::from(pools_percent),
            u64::from(validators_percent),
        ],
    )
    .map_err(|_| RewardsError::Overflow)?;
    let (fee_part, pool_part, validator_part) = (parts[0], parts[1], parts[2]);

    let mut lines = vec![LedgerLine {
        address: reward_address.to_owned(),
        kind: LedgerKind::Fee,
        units: fee_part.units(),
        basis: Basis::Fee {
            percent: i64::from(fee),
        },
    }];
    let mut unallocated = Amount::ZERO;

    let scored: Vec<&PoolWeight> = pools.iter().filter(|p| p.score > 0).collect();
    if scored.is_empty() {
        unallocated = pool_part;
    } else {
        let weights: Vec<u64> = scored.iter().map(|p| p.score as u64).collect();
        let shares =
            split_largest_remainder(pool_part, &weights).map_err(|_| RewardsError::Overflow)?;
        lines.extend(scored.iter().zip(shares).map(|(pool, share)| LedgerLine {
            address: pool.address.clone(),
            kind: LedgerKind::Pool,
            units: share.units(),
            basis: Basis::Score { score: pool.score },
        }));
    }

    let active: Vec<&ValidatorWeight> = validators
        .iter()
        .filter(|v| v.active && v.hundredths > 0)
        .collect();
    let active_hundredths: i64 = active.iter().map(|v| v.hundredths).sum();
    // The denominator is at least 100 %; what the active validators do not cover is unallocated.
    let denominator = active_hundredths.max(10_000);
    let mut weights: Vec<u64> = active.iter().map(|v| v.hundredths as u64).collect();
    weights.push((denominator - active_hundredths) as u64);
    let shares =
        split_largest_remainder(validator_part, &weights).map_err(|_| RewardsError::Overflow)?;
    lines.extend(
        active
            .iter()
            .zip(&shares)
            .map(|(validator, share)| LedgerLine {
                address: validator.address.clone(),
                kind: LedgerKind::Validator,
                units: share.units(),
                basis: Basis::Percentage {
                    hundredths: validator.hundredths,
                },
            }),
    );
    unallocated = unallocated
        .checked_add(*shares.last().expect("the remainder weight is always there"))
        .ok_or(RewardsError::Overflow)?;
    lines.push(LedgerLine {
        address: reward_address.to_owned(),
        kind: LedgerKind::Unallocated,
        units: unallocated.units(),
        basis: Basis::Remainder,
    });
    lines.retain(|line| line.units > 0);
    Ok(lines)
}

/// What each address is owed by `lines`, summed per address (an address can be both a pool and
/// a validator, and the reward address takes the fee and the remainder).
pub fn credits_by_address(lines: &[LedgerLine]) -> BTreeMap<&str, i64> {
    let mut credits = BTreeMap::new();
    for line in lines {
        *credits.entry(line.address.as_str()).or_insert(0) += line.units;
    }
    credits
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::{TransactionInput, TransactionOutput};
    use proptest::prelude::*;

    const SPLIT: Percentages = Percentages {
        fee: 18,
        pools: 41,
        validators: 41,
    };

    fn units(n: i64) -> Amount {
        Amount::from_units(n).unwrap()
    }

    fn output(address: &str, amount: i64, kind: Option<&str>) -> TransactionOutput {
        TransactionOutput {
            address: address.into(),
            amount: units(amount),
            output_type: kind.map(str::to_owned),
        }
    }

    fn tx(
        kind: Option<&str>,
        inputs: &[&str],
        outputs: Vec<TransactionOutput>,
    ) -> ChainTransaction {
        ChainTransaction {
            hash: "h".into(),
            is_coinbase: false,
            transaction_type: kind.map(str::to_owned),
            inputs: inputs
                .iter()
                .map(|a| TransactionInput {
                    address: Some((*a).into()),
                    tx_hash: None,
                    index: None,
                })
                .collect(),
            outputs,
        }
    }

    #[test]
    fn income_counts_regular_outputs_to_the_wallet() {
        let t = tx(
            Some("REGULAR"),
            &["payer"],
            vec![
                output("inode", 100, Some("REGULAR")),
                output("payer", 7, Some("REGULAR")),
                output("inode", 5, Some("STAKE")),
                output("inode", 3, Some("REGULAR")),
            ],
        );
        assert_eq!(income_of(&t, "inode"), Some(units(103)));
    }

    #[test]
    fn untyped_transactions_count_and_other_types_do_not() {
        let coinbase = tx(None, &[], vec![output("inode", 50, Some("REGULAR"))]);
        assert_eq!(income_of(&coinbase, "inode"), Some(units(50)));
        let stake = tx(
            Some("STAKE"),
            &["x"],
            vec![output("inode", 50, Some("REGULAR"))],
        );
        assert_eq!(income_of(&stake, "inode"), Some(Amount::ZERO));
    }

    #[test]
    fn self_sends_are_not_income() {
        let t = tx(
            Some("REGULAR"),
            &["inode"],
            vec![
                output("inode", 90, Some("REGULAR")),
                output("pool", 10, Some("REGULAR")),
            ],
        );
        assert_eq!(income_of(&t, "inode"), Some(Amount::ZERO));
    }

    fn pool(address: &str, score: i64) -> PoolWeight {
        PoolWeight {
            address: address.into(),
            score,
        }
    }

    fn validator(address: &str, hundredths: i64, active: bool) -> ValidatorWeight {
        ValidatorWeight {
            address: address.into(),
            hundredths,
            active,
        }
    }

    fn units_of(lines: &[LedgerLine], kind: LedgerKind, address: &str) -> i64 {
        lines
            .iter()
            .filter(|l| l.kind == kind && l.address == address)
            .map(|l| l.units)
            .sum()
    }

    #[test]
    fn a_hand_computed_distribution() {
        // 1000 units: fee 180, pools 410, validators 410.
        let lines = distribute(
            units(1000),
            SPLIT,
            "reward",
            &[pool("p1", 3), pool("p2", 1), pool("p0", 0)],
            &[
                validator("v1", 6000, true),
                validator("v2", 2000, true),
                validator("v3", 2000, false),
            ],
        )
        .unwrap();
        assert_eq!(units_of(&lines, LedgerKind::Fee, "reward"), 180);
        // 410 × 3/4 = 307.5 → 307 + the left-over unit (tie on .5: earlier index) = 308; 102.
        assert_eq!(units_of(&lines, LedgerKind::Pool, "p1"), 308);
        assert_eq!(units_of(&lines, LedgerKind::Pool, "p2"), 102);
        assert!(!lines.iter().any(|l| l.address == "p0"));
        // 410 × 60 % = 246, × 20 % = 82, the inactive 20 % (82) unallocated.
        assert_eq!(units_of(&lines, LedgerKind::Validator, "v1"), 246);
        assert_eq!(units_of(&lines, LedgerKind::Validator, "v2"), 82);
        assert_eq!(units_of(&lines, LedgerKind::Unallocated, "reward"), 82);
        assert_eq!(lines.iter().map(|l| l.units).sum::<i64>(), 1000);
    }

    #[test]
    fn percentages_above_100_are_scaled_down() {
        // Rounded percentages summing to 100.02 %: the whole validator part is shared.
        let lines = distribute(
            units(10_000),
            Percentages {
                fee: 0,
                pools: 0,
                validators: 100,
            },
            "reward",
            &[],
            &[
                validator("a", 3334, true),
                validator("b", 3334, true),
                validator("c", 3334, true),
            ],
        )
        .unwrap();
        assert_eq!(units_of(&lines, LedgerKind::Unallocated, "reward"), 0);
        let paid: Vec<i64> = ["a", "b", "c"]
            .iter()
            .map(|a| units_of(&lines, LedgerKind::Validator, a))
            .collect();
        assert_eq!(paid, vec![3334, 3333, 3333]);
    }

    #[test]
    fn with_no_one_to_pay_everything_is_unallocated() {
        let lines = distribute(units(999), SPLIT, "reward", &[], &[]).unwrap();
        assert_eq!(units_of(&lines, LedgerKind::Fee, "reward"), 180);
        assert_eq!(units_of(&lines, LedgerKind::Unallocated, "reward"), 819);
        assert_eq!(lines.len(), 2);
    }

    #[test]
    fn bad_percentages_are_refused() {
        let bad = Percentages {
            fee: 50,
            pools: 50,
            validators: 1,
        };
        assert_eq!(
            distribute(units(1), bad, "r", &[], &[]),
            Err(RewardsError::PercentagesNot100(101))
        );
    }

    #[test]
    fn credits_are_summed_per_address() {
        let lines = distribute(
            units(100),
            SPLIT,
            "reward",
            &[pool("both", 1)],
            &[validator("both", 10_000, true)],
        )
        .unwrap();
        let credits = credits_by_address(&lines);
        assert_eq!(credits["both"], 41 + 41);
        assert_eq!(credits["reward"], 18);
    }

    fn arbitrary_percentages() -> impl Strategy<Value = Percentages> {
        (0u8..=100, 0u8..=100).prop_filter_map("sum to 100", |(a, b)| {
            (u32::from(a) + u32::from(b) <= 100).then(|| Percentages {
                fee: a,
                pools: b,
                validators: 100 - a - b,
            })
        })
    }

    proptest! {
        #[test]
        fn every_distribution_conserves_the_amount(
            received in 0i64..=2_000_000_000_000_000,
            percentages in arbitrary_percentages(),
            scores in proptest::collection::vec(0i64..=100, 0..40),
            validators in proptest::collection::vec((0i64..=10_000, any::<bool>()), 0..70),
        ) {
            let pools: Vec<PoolWeight> = scores
                .iter()
                .enumerate()
                .map(|(i, &s)| pool(&format!("p{i}"), s))
                .collect();
            let validators: Vec<ValidatorWeight> = validators
                .iter()
                .enumerate()
                .map(|(i, &(h, a))| validator(&format!("v{i}"), h, a))
                .collect();
            let lines = distribute(units(received), percentages, "reward", &pools, &validators)
                .unwrap();
            prop_assert_eq!(lines.iter().map(|l| l.units).sum::<i64>(), received);
            prop_assert!(lines.iter().all(|l| l.units > 0));
            let credits = credits_by_address(&lines);
            prop_assert_eq!(credits.values().sum::<i64>(), received);
        }
    }
}
