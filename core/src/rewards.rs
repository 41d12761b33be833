//! The rewards rules (SPEC §5.1) as pure functions: which blocks a pass may credit, what a
//! transaction pays the iNode, and how a received amount is shared out. Every distribution
//! conserves the amount exactly.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::chain::{BlockDetails, ChainTransaction};
use crate::money::{Amount, split_largest_remainder};
use bson::DateTime;
use serde::{Deserialize, Serialize};

/// Who a ledger line pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LedgerKind {
    Fee,
    Pool,
    Validator,
    Unallocated,
}

/// Why a ledger line has its size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// The fee percentage of the whole.
    Fee { percent: i64 },
    /// The pool's score when the distribution was made.
    Score { score: i64 },
    /// The validator's stake percentage, in hundredths.
    Percentage { hundredths: i64 },
    /// Whatever no one else could receive.
    Remainder,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerLine {
    pub address: String,
    pub kind: LedgerKind,
    /// Smallest units.
    pub units: i64,
    pub basis: Basis,
}

/// Units one block paid the iNode, at the block's time on the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockIncome {
    pub block: i64,
    pub time: DateTime,
    /// Smallest units.
    pub units: i64,
}

/// The only transaction and output type that carries income.
pub const REGULAR: &str = "REGULAR";

/// Units `tx` pays to `wallet`: the REGULAR outputs to the wallet of a REGULAR (or untyped, like a
/// coinbase) transaction, leaving out outputs to an address that is also among the inputs (change
/// of a self-send is not income). An output that could not be read and may be the wallet's (it
/// names the wallet, or no address) makes the income unknown: an error naming it, since
/// crediting without it could lose income for good. Overflow is an error too.
pub fn income_of(tx: &ChainTransaction, wallet: &str) -> Result<Amount, String> {
    if tx
        .transaction_type
        .as_deref()
        .is_some_and(|kind| kind != REGULAR)
    {
        return Ok(Amount::ZERO);
    }
    let is_input = |address: &str| {
        tx.inputs
            .iter()
            .any(|i| i.address.as_deref() == Some(address))
    };
    if is_input(wallet) {
        return Ok(Amount::ZERO);
    }
    if let Some(unread) = tx
        .unreadable_outputs
        .iter()
        .find(|o| o.address.as_deref().is_none_or(|a| a == wallet))
    {
        return Err(format!(
            "transaction {} has an output (#{}) to {} that cannot be read: {}",
            tx.hash,
            unread.index,
            unread
                .address
                .as_deref()
                .unwrap_or("an address that cannot be read"),
            unread.error
        ));
    }
    Amount::checked_sum(
        tx.outputs
            .iter()
            .filter(|o| o.address == wallet && o.output_type.as_deref() == Some(REGULAR))
            .map(|o| o.amount),
    )
    .ok_or_else(|| format!("transaction {} pays an amount that overflows", tx.hash))
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

/// Why a pass could not credit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewardsError {
    #[error("the fee, pool and validator percentages sum to {0}, not 100")]
    PercentagesNot100(u32),
    #[error("amounts overflow")]
    Overflow,
    /// The chain's answer left out block ids (the API can skip a block): crediting past them
    /// would lose their income for good.
    #[error(
        "the chain's get_blocks_details answer skips {}: nothing is credited past {} until the chain serves {1}",
        ids_text(*first, *last), if first == last { "it" } else { "them" }
    )]
    SkippedBlocks { first: u64, last: u64 },
    /// The last block credited is no longer on the chain: income of an orphaned block may have
    /// been credited. Only an operator can decide what to do (README, "When the chain
    /// reorganises"); until then every pass stops here.
    #[error(
        "block {height} was credited with hash {stored} but the chain now has hash {chain} at height {height}: the chain reorganised at or below height {height} after that block was credited; nothing more is credited until an operator resolves it (README: \"When the chain reorganises\")"
    )]
    Reorganised {
        height: u64,
        stored: String,
        chain: String,
    },
    /// The chain has no block at or above the last one credited.
    #[error(
        "the chain has no block {height}, the last one credited: the node is behind or the chain reorganised below height {height}; nothing more is credited until it serves block {height} (README: \"When the chain reorganises\")"
    )]
    StoredBlockMissing { height: u64 },
}

fn ids_text(first: u64, last: u64) -> String {
    if first == last {
        format!("block {first}")
    } else {
        format!("blocks {first} to {last}")
    }
}

/// The last block a pass recorded: its height, and its hash unless the database predates stored
/// hashes (an original iNode's has only the height).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastScanned {
    pub height: u64,
    pub hash: Option<String>,
}

/// The one `get_blocks_details` call of a pass: from the last scanned block (to check it is
/// still on chain) or `start_height`, for the new blocks plus the `confirmations` above them, so
/// the answer also shows how far the chain reaches (at most 1000 blocks, the chain's limit).
pub fn scan_request(
    last: Option<&LastScanned>,
    start_height: u64,
    blocks_per_run: u32,
    confirmations: u32,
) -> (u64, u32) {
    let (offset, extra) = match last {
        Some(last) => (last.height, 1),
        None => (start_height, 0),
    };
    let limit = (u64::from(blocks_per_run) + u64::from(confirmations) + extra).min(1000);
    (offset, limit as u32)
}

/// What a pass may credit, decided from the chain's answer to [`scan_request`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPlan {
    /// Indices into the answer of the blocks credited now: settled (at least `confirmations`
    /// below the highest block seen, which is at most the tip), new, at most `blocks_per_run`.
    pub credit: Range<usize>,
    /// The chain's (id, hash) of the last scanned block when no hash was stored for it: taken as
    /// is, since an original iNode database never stored one.
    pub adopt: Option<(u64, String)>,
}

/// Checks the answer and picks the settled blocks:
/// - ids must run on without a gap from the offset asked (a skipped id is an error naming it);
/// - the last scanned block must be there with the stored hash (a different hash means it was
///   orphaned after being credited: [`RewardsError::Reorganised`]). Block hashes chain, so a
///   reorganisation anywhere below changes this hash too;
/// - only blocks with `id + confirmations ≤` the highest id seen are credited.
pub fn plan_scan(
    last: Option<&LastScanned>,
    offset: u64,
    answer: &[BlockDetails],
    blocks_per_run: u32,
    confirmations: u32,
) -> Result<ScanPlan, RewardsError> {
    let Some(highest) = answer.last().map(|b| b.block.id) else {
        return match last {
            Some(last) => Err(RewardsError::StoredBlockMissing {
                height: last.height,
            }),
            None => Ok(ScanPlan {
                credit: 0..0,
                adopt: None,
            }),
        };
    };
    let mut expected = offset;
    for block in answer {
        let id = block.block.id;
        if id != expected {
            return Err(RewardsError::SkippedBlocks {
                first: expected,
                last: id.saturating_sub(1).max(expected),
            });
        }
        expected = id + 1;
    }
    let (first_new, adopt) = match last {
        None => (0, None),
        Some(last) => {
            let chain = &answer[0].block.hash;
            match &last.hash {
                Some(stored) if stored != chain => {
                    return Err(RewardsError::Reorganised {
                        height: last.height,
                        stored: stored.clone(),
                        chain: chain.clone(),
                    });
                }
                Some(_) => (1, None),
                None => (1, Some((last.height, chain.clone()))),
            }
        }
    };
    let settled = answer[first_new..]
        .iter()
        .take(blocks_per_run as usize)
        .take_while(|b| b.block.id.saturating_add(u64::from(confirmations)) <= highest)
        .count();
    Ok(ScanPlan {
        credit: first_new..first_new + settled,
        adopt,
    })
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

/// What each block paid, in block order, for a distribution's `received_by_block`: the credited
/// `(block id, amount)` pairs summed per block, each at `time_of(block)` (the chain's block
/// time). `None` when a block's time is not known or a sum overflows: a distribution is charted
/// by block time whole or not at all, so its blocks always sum to what it received.
pub fn income_by_block(
    credited: impl IntoIterator<Item = (i64, Amount)>,
    time_of: impl Fn(i64) -> Option<DateTime>,
) -> Option<Vec<BlockIncome>> {
    let mut per_block: BTreeMap<i64, Amount> = BTreeMap::new();
    for (block, amount) in credited {
        let sum = per_block.entry(block).or_insert(Amount::ZERO);
        *sum = sum.checked_add(amount)?;
    }
    per_block
        .into_iter()
        .filter(|(_, amount)| *amount > Amount::ZERO)
        .map(|(block, amount)| {
            Some(BlockIncome {
                block,
                time: time_of(block)?,
                units: amount.units(),
            })
        })
        .collect()
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
            unreadable_outputs: vec![],
        }
    }

    #[test]
    fn an_unreadable_output_that_may_be_the_wallets_makes_income_unknown() {
        let mut t = tx(
            Some("REGULAR"),
            &["payer"],
            vec![output("inode", 100, Some("REGULAR"))],
        );
        t.unreadable_outputs.push(crate::chain::UnreadableOutput {
            index: 1,
            address: Some("elsewhere".into()),
            error: "bad amount".into(),
        });
        assert_eq!(income_of(&t, "inode"), Ok(units(100)), "not the wallet's");
        for address in [Some("inode"), None] {
            t.unreadable_outputs[0].address = address.map(str::to_owned);
            let error = income_of(&t, "inode").unwrap_err();
            assert!(
                error.contains("output (#1)") && error.contains("bad amount"),
                "{error}"
            );
        }
        // A spend of the wallet pays it only change: not income, whatever its outputs.
        let mut spend = tx(Some("REGULAR"), &["inode"], vec![]);
        spend.unreadable_outputs = t.unreadable_outputs.clone();
        assert_eq!(income_of(&spend, "inode"), Ok(Amount::ZERO));
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
        assert_eq!(income_of(&t, "inode"), Ok(units(103)));
    }

    #[test]
    fn untyped_transactions_count_and_other_types_do_not() {
        let coinbase = tx(None, &[], vec![output("inode", 50, Some("REGULAR"))]);
        assert_eq!(income_of(&coinbase, "inode"), Ok(units(50)));
        let stake = tx(
            Some("STAKE"),
            &["x"],
            vec![output("inode", 50, Some("REGULAR"))],
        );
        assert_eq!(income_of(&stake, "inode"), Ok(Amount::ZERO));
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
        assert_eq!(income_of(&t, "inode"), Ok(Amount::ZERO));
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

    #[test]
    fn income_by_block_sums_each_block_at_its_time_or_gives_up() {
        let time = |block: i64| Some(DateTime::from_millis(block * 1000));
        let credited = [
            (7, units(5)),
            (5, units(2)),
            (7, units(1)),
            (6, Amount::ZERO),
        ];
        assert_eq!(
            income_by_block(credited, time),
            Some(vec![
                BlockIncome {
                    block: 5,
                    time: DateTime::from_millis(5000),
                    units: 2
                },
                BlockIncome {
                    block: 7,
                    time: DateTime::from_millis(7000),
                    units: 6
                },
            ]),
            "per block, in block order, blocks that paid nothing left out"
        );
        let unknown = |block: i64| (block != 7).then(|| DateTime::from_millis(0));
        assert_eq!(income_by_block(credited, unknown), None);
        assert_eq!(income_by_block([(6, Amount::ZERO)], unknown), Some(vec![]));
        let max = Amount::from_units(i64::MAX).unwrap();
        assert_eq!(income_by_block([(1, max), (1, units(1))], time), None);
    }

    fn chain(ids: impl IntoIterator<Item = u64>) -> Vec<BlockDetails> {
        ids.into_iter()
            .map(|id| BlockDetails {
                block: crate::chain::BlockHeader {
                    id,
                    hash: format!("h{id}"),
                    timestamp: None,
                },
                transactions: vec![],
            })
            .collect()
    }

    fn scanned(height: u64, hash: Option<&str>) -> LastScanned {
        LastScanned {
            height,
            hash: hash.map(str::to_owned),
        }
    }

    #[test]
    fn the_request_covers_the_last_block_the_new_ones_and_the_confirmations() {
        assert_eq!(scan_request(None, 100, 6, 10), (100, 16));
        let last = scanned(120, Some("h120"));
        assert_eq!(scan_request(Some(&last), 100, 6, 10), (120, 17));
        assert_eq!(scan_request(Some(&last), 100, 1000, 10), (120, 1000));
    }

    #[test]
    fn only_blocks_confirmations_deep_are_credited() {
        // Highest seen 115, 10 confirmations: 100..=105 are settled, at most 4 per run.
        let answer = chain(100..=115);
        let plan = plan_scan(None, 100, &answer, 4, 10).unwrap();
        assert_eq!(plan.credit, 0..4);
        let plan = plan_scan(None, 100, &answer, 50, 10).unwrap();
        assert_eq!(plan.credit, 0..6);
        let plan = plan_scan(None, 100, &chain(100..=105), 50, 10).unwrap();
        assert_eq!(plan.credit, 0..0, "nothing is settled yet");
        let plan = plan_scan(None, 100, &chain(100..=105), 50, 0).unwrap();
        assert_eq!(plan.credit, 0..6, "0 confirmations credits to the tip");
    }

    #[test]
    fn the_last_scanned_block_is_checked_and_not_credited_again() {
        let answer = chain(105..=120);
        let last = scanned(105, Some("h105"));
        let plan = plan_scan(Some(&last), 105, &answer, 50, 10).unwrap();
        assert_eq!((plan.credit, plan.adopt), (1..6, None));

        let moved = scanned(105, Some("old105"));
        let err = plan_scan(Some(&moved), 105, &answer, 50, 10).unwrap_err();
        assert_eq!(
            err,
            RewardsError::Reorganised {
                height: 105,
                stored: "old105".into(),
                chain: "h105".into()
            }
        );
        let text = err.to_string();
        assert!(text.contains("block 105") && text.contains("old105") && text.contains("h105"));
    }

    #[test]
    fn a_database_without_hashes_adopts_the_chains() {
        let last = scanned(105, None);
        let plan = plan_scan(Some(&last), 105, &chain(105..=120), 50, 10).unwrap();
        assert_eq!(plan.credit, 1..6);
        assert_eq!(plan.adopt, Some((105, "h105".into())));
    }

    #[test]
    fn skipped_ids_are_named_and_stop_the_scan() {
        let answer = chain((100..=103).chain(106..=120));
        let err = plan_scan(None, 100, &answer, 50, 10).unwrap_err();
        assert_eq!(
            err,
            RewardsError::SkippedBlocks {
                first: 104,
                last: 105
            }
        );
        assert!(err.to_string().contains("blocks 104 to 105"), "{err}");
        // The last scanned block itself missing from the answer is a skip too.
        let last = scanned(99, Some("h99"));
        let err = plan_scan(Some(&last), 99, &chain(100..=120), 50, 10).unwrap_err();
        assert_eq!(
            err,
            RewardsError::SkippedBlocks {
                first: 99,
                last: 99
            }
        );
        assert!(err.to_string().contains("skips block 99"), "{err}");
    }

    #[test]
    fn an_empty_answer_is_nothing_to_do_unless_a_block_was_scanned() {
        assert_eq!(plan_scan(None, 100, &[], 6, 10).unwrap().credit, 0..0);
        let last = scanned(99, Some("h99"));
        assert_eq!(
            plan_scan(Some(&last), 99, &[], 6, 10),
            Err(RewardsError::StoredBlockMissing { height: 99 })
        );
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
