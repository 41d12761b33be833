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

/// A balance that cannot be paid because its address is not a point of the curve: it stays
/// pending and is named wherever payouts report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub address: String,
    pub units: i64,
    pub reason: String,
}

/// Splits due balances into those a transaction can pay and those whose address cannot be
/// decoded strictly (one bad address must never stop everyone else's payout).
pub fn hold_aside_undecodable(due: Vec<(String, i64)>) -> (Vec<(String, i64)>, Vec<Held>) {
    let mut payable = Vec::with_capacity(due.len());
    let mut held = Vec::new();
    for (address, units) in due {
        match crate::upow::decode_address(&address) {
            Ok(_) => payable.push((address, units)),
            Err(e) => held.push(Held {
                address,
                units,
                reason: e.to_string(),
            }),
        }
    }
    (payable, held)
}

/// Takes the batch fee from the fee payer's (the reward address's) own balance, never from
/// another recipient: when the payer is among the recipients its payment shrinks by the fee;
/// otherwise its pending must cover the fee. `None` when it cannot.
pub fn take_fee(
    mut due: Vec<(String, i64)>,
    payer: &str,
    payer_pending: i64,
    fee: i64,
) -> Option<Vec<(String, i64)>> {
    if fee == 0 {
        return Some(due);
    }
    if payer_pending < fee {
        return None;
    }
    if let Some(position) = due.iter().position(|(address, _)| address == payer) {
        let left = due[position].1 - fee;
        if left > 0 {
            due[position].1 = left;
        } else {
            due.remove(position);
        }
    }
    Some(due)
}

/// What a payouts run does with the wallet's coins and the balances due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentPlan {
    /// Nobody is due.
    Nothing,
    /// Pay these recipients (a prefix of those due, largest first) with these coins.
    Pay {
        recipients: Vec<(String, i64)>,
        selection: Selection,
    },
    /// Even the largest balance needs more than [`MAX_INPUTS`] coins: merge the largest coins
    /// into one output of the wallet first.
    Consolidate { coins: Vec<Coin> },
    /// All spendable coins together do not cover the largest balance and the fee.
    Insufficient { available: u64, needed: u64 },
}

/// Plans a payment within the input limit: as many recipients (largest first) as the largest
/// [`MAX_INPUTS`] coins can pay with the fee; when not even one fits but the coins would cover it
/// together, a consolidation; never an error for having many small coins.
pub fn plan_payment(
    coins: &[Coin],
    due: &[(String, i64)],
    fee: u64,
) -> Result<PaymentPlan, PayoutError> {
    let Some(first) = due.first() else {
        return Ok(PaymentPlan::Nothing);
    };
    let mut by_size: Vec<&Coin> = coins.iter().collect();
    by_size.sort_by_key(|c| std::cmp::Reverse(c.units));
    let sum = |coins: &[&Coin]| {
        coins
            .iter()
            .try_fold(0u64, |sum, c| sum.checked_add(c.units))
            .ok_or(PayoutError::Overflow)
    };
    let capacity = sum(&by_size[..by_size.len().min(MAX_INPUTS)])?;
    let mut needed = fee;
    let mut fitting = 0;
    for (_, units) in due {
        let units = u64::try_from(*units).map_err(|_| PayoutError::Overflow)?;
        let with = needed.checked_add(units).ok_or(PayoutError::Overflow)?;
        if with > capacity {
            break;
        }
        needed = with;
        fitting += 1;
    }
    if fitting == 0 {
        let available = sum(&by_size)?;
        let needed = u64::try_from(first.1)
            .ok()
            .and_then(|u| u.checked_add(fee))
            .ok_or(PayoutError::Overflow)?;
        if available < needed || by_size.len() <= MAX_INPUTS {
            return Ok(PaymentPlan::Insufficient { available, needed });
        }
        return Ok(PaymentPlan::Consolidate {
            coins: by_size[..MAX_INPUTS].iter().map(|c| (*c).clone()).collect(),
        });
    }
    let selection = select_coins(coins, &[], needed)?;
    Ok(PaymentPlan::Pay {
        recipients: due[..fitting].to_vec(),
        selection,
    })
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

    fn coins_of(units: &[u64]) -> Vec<Coin> {
        units
            .iter()
            .enumerate()
            .map(|(i, &u)| Coin {
                tx_hash: format!("{i:064x}"),
                index: 0,
                units: u,
            })
            .collect()
    }

    #[test]
    fn too_many_small_coins_pay_fewer_recipients_then_consolidate() {
        // 300 coins of 1 unit: the 255 largest cover 255 units.
        let coins = coins_of(&[1; 300]);
        let due = vec![
            ("a".to_string(), 200),
            ("b".to_string(), 50),
            ("c".to_string(), 10),
        ];
        match plan_payment(&coins, &due, 0).unwrap() {
            PaymentPlan::Pay {
                recipients,
                selection,
            } => {
                assert_eq!(
                    recipients,
                    due[..2].to_vec(),
                    "a and b fit in 255 inputs, c waits"
                );
                assert_eq!(selection.coins.len(), 250);
            }
            other => panic!("{other:?}"),
        }
        // One balance of 280 fits in no 255 coins, but 300 coins hold it: consolidate first.
        let due = vec![("a".to_string(), 280)];
        match plan_payment(&coins, &due, 0).unwrap() {
            PaymentPlan::Consolidate { coins } => assert_eq!(coins.len(), MAX_INPUTS),
            other => panic!("{other:?}"),
        }
        // More than every coin: insufficient, named with figures.
        assert_eq!(
            plan_payment(&coins, &[("a".to_string(), 301)], 0).unwrap(),
            PaymentPlan::Insufficient {
                available: 300,
                needed: 301
            }
        );
        assert_eq!(plan_payment(&coins, &[], 0).unwrap(), PaymentPlan::Nothing);
    }

    #[test]
    fn the_fee_is_taken_from_the_payer_only() {
        let due = vec![("r".to_string(), 100), ("fee-payer".to_string(), 30)];
        assert_eq!(
            take_fee(due.clone(), "fee-payer", 30, 5).unwrap(),
            vec![("r".to_string(), 100), ("fee-payer".to_string(), 25)]
        );
        assert_eq!(
            take_fee(due.clone(), "other", 5, 5).unwrap(),
            due,
            "a payer outside the batch keeps its pending to cover the fee"
        );
        assert_eq!(take_fee(due.clone(), "other", 4, 5), None);
        assert_eq!(
            take_fee(vec![("p".to_string(), 5)], "p", 5, 5).unwrap(),
            vec![],
            "a payer whose whole balance is the fee is not paid"
        );
    }

    #[test]
    fn an_off_curve_address_is_held_aside_and_the_rest_paid() {
        let good = crate::upow::address_of(
            crate::upow::parse_private_key("0x1")
                .unwrap()
                .verifying_key(),
        );
        // 33 bytes with a valid prefix whose x is not on the curve: x = 5 (x^3-3x+b not a square).
        let mut bytes = [0u8; 33];
        bytes[0] = 42;
        let bad = (0u8..=255)
            .find_map(|x| {
                bytes[1] = x;
                let address = bs58::encode(bytes).into_string();
                crate::upow::decode_address(&address)
                    .is_err()
                    .then_some(address)
            })
            .expect("some small x is off the curve");
        let (payable, held) = hold_aside_undecodable(vec![(bad.clone(), 7), (good.clone(), 9)]);
        assert_eq!(payable, vec![(good, 9)]);
        assert_eq!(held.len(), 1);
        assert_eq!((held[0].address.as_str(), held[0].units), (bad.as_str(), 7));
    }

    proptest! {
        /// Whatever the coins and balances, a plan never needs more than 255 inputs, pays a
        /// largest-first prefix, and its inputs equal what it pays plus fee plus change.
        #[test]
        fn plans_fit_the_input_limit_and_conserve(
            units in proptest::collection::vec(1u64..1_000, 1..400),
            due in proptest::collection::vec(1i64..5_000, 0..20),
            fee in 0u64..50,
        ) {
            let coins = coins_of(&units);
            let mut due: Vec<(String, i64)> = due.into_iter().enumerate().map(|(i, u)| (format!("r{i}"), u)).collect();
            due.sort_by_key(|b| std::cmp::Reverse(b.1));
            match plan_payment(&coins, &due, fee).unwrap() {
                PaymentPlan::Pay { recipients, selection } => {
                    prop_assert!(!recipients.is_empty());
                    prop_assert!(selection.coins.len() <= MAX_INPUTS);
                    prop_assert_eq!(&recipients[..], &due[..recipients.len()]);
                    let paid: u64 = recipients.iter().map(|(_, u)| *u as u64).sum();
                    let inputs: u64 = selection.coins.iter().map(|c| c.units).sum();
                    prop_assert_eq!(inputs, paid + fee + selection.change);
                }
                PaymentPlan::Consolidate { coins: merged } => {
                    prop_assert_eq!(merged.len(), MAX_INPUTS);
                    prop_assert!(coins.len() > MAX_INPUTS);
                }
                PaymentPlan::Insufficient { available, needed } => prop_assert!(available < needed || coins.len() <= MAX_INPUTS),
                PaymentPlan::Nothing => prop_assert!(due.is_empty()),
            }
        }
    }
}
