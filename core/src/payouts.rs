//! The payout rules (SPEC §5.3) as pure functions: who is paid in a batch, which coins pay it,
//! and what to do with a batch given what the chain says.

use crate::upow::MAX_INPUTS;

/// A spendable output of the iNode wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coin {
    pub tx_hash: String,
    pub index: u8,
    pub units: u64,
}

/// The coins chosen for a payment and the change back to the payer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub coins: Vec<Coin>,
    pub change: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayoutError {
    #[error("no spendable outputs (all are spent, or spent by pending transactions)")]
    NoSpendableOutputs,
    #[error("spendable outputs hold {available} units, the batch needs {needed}")]
    InsufficientFunds { available: u64, needed: u64 },
    #[error("the batch needs more than {MAX_INPUTS} inputs ({0})")]
    TooManyInputs(usize),
    #[error("amounts overflow")]
    Overflow,
}

/// Chooses coins for `needed` units: the spendable outputs less those a pending transaction
/// already spends, largest first until covered (fewest inputs, so large batches fit in 255).
pub fn select_coins(
    spendable: &[Coin],
    pending_spent: &[(String, u8)],
    needed: u64,
) -> Result<Selection, PayoutError> {
    let mut candidates: Vec<&Coin> = spendable
        .iter()
        .filter(|c| {
            !pending_spent
                .iter()
                .any(|(h, i)| *h == c.tx_hash && *i == c.index)
        })
        .collect();
    if candidates.is_empty() {
        return Err(PayoutError::NoSpendableOutputs);
    }
    let available = candidates
        .iter()
        .try_fold(0u64, |sum, c| sum.checked_add(c.units))
        .ok_or(PayoutError::Overflow)?;
    if available < needed {
        return Err(PayoutError::InsufficientFunds { available, needed });
    }
    // Largest first; ties in the node's order (stable sort).
    candidates.sort_by_key(|c| std::cmp::Reverse(c.units));
    let mut chosen = Vec::new();
    let mut sum = 0u64;
    for coin in candidates {
        if sum >= needed && !chosen.is_empty() {
            break;
        }
        sum += coin.units;
        chosen.push(coin.clone());
    }
    if chosen.len() > MAX_INPUTS {
        return Err(PayoutError::TooManyInputs(chosen.len()));
    }
    Ok(Selection {
        change: sum - needed,
        coins: chosen,
    })
}

/// The balances a batch pays: those with at least `minimum` pending, largest first, at most
/// `max_recipients`.
pub fn plan_batch(
    pending: &[(String, i64)],
    minimum: i64,
    max_recipients: usize,
) -> Vec<(String, i64)> {
    let mut payable: Vec<(String, i64)> = pending
        .iter()
        .filter(|(_, units)| *units >= minimum && *units > 0)
        .cloned()
        .collect();
    payable.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    payable.truncate(max_recipients);
    payable
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn coin(n: u8, units: u64) -> Coin {
        Coin {
            tx_hash: format!("{n:064x}"),
            index: 0,
            units,
        }
    }

    #[test]
    fn exact_cover_change_and_pending_spent() {
        let coins = [coin(1, 5), coin(2, 1), coin(3, 20), coin(4, 3)];
        let s = select_coins(&coins, &[], 20).unwrap();
        assert_eq!((s.coins.len(), s.change), (1, 0));
        let s = select_coins(&coins, &[], 21).unwrap();
        assert_eq!(s.coins, vec![coin(3, 20), coin(1, 5)]);
        assert_eq!(s.change, 4);
        let s = select_coins(&coins, &[(coin(3, 0).tx_hash, 0)], 6).unwrap();
        assert!(
            s.coins.iter().all(|c| c.units != 20),
            "a pending-spent coin is not used"
        );
        assert_eq!(
            select_coins(&coins, &[], 30),
            Err(PayoutError::InsufficientFunds {
                available: 29,
                needed: 30
            })
        );
        assert_eq!(
            select_coins(&[], &[], 1),
            Err(PayoutError::NoSpendableOutputs)
        );
    }

    #[test]
    fn more_than_255_inputs_is_refused() {
        let coins: Vec<Coin> = (0..300)
            .map(|i| Coin {
                tx_hash: format!("{i:064x}"),
                index: 0,
                units: 1,
            })
            .collect();
        assert!(select_coins(&coins, &[], 255).is_ok());
        assert_eq!(
            select_coins(&coins, &[], 256),
            Err(PayoutError::TooManyInputs(256))
        );
    }

    #[test]
    fn batches_take_the_largest_balances_over_the_minimum() {
        let pending = vec![
            ("a".into(), 5),
            ("b".into(), 50),
            ("c".into(), 10),
            ("d".into(), 10),
        ];
        assert_eq!(
            plan_batch(&pending, 10, 2),
            vec![("b".into(), 50), ("c".into(), 10)]
        );
        assert!(plan_batch(&pending, 100, 10).is_empty());
    }

    proptest! {
        #[test]
        fn inputs_equal_outputs_plus_change(
            units in proptest::collection::vec(1u64..1_000_000_000, 1..60),
            needed in 1u64..5_000_000_000,
        ) {
            let coins: Vec<Coin> = units.iter().enumerate().map(|(i, &u)| Coin { tx_hash: format!("{i:064x}"), index: 0, units: u }).collect();
            match select_coins(&coins, &[], needed) {
                Ok(s) => {
                    let inputs: u64 = s.coins.iter().map(|c| c.units).sum();
                    prop_assert_eq!(inputs, needed + s.change);
                }
                Err(PayoutError::InsufficientFunds { available, .. }) => prop_assert!(available < needed),
                Err(e) => prop_assert!(false, "{e}"),
            }
        }
    }
}
