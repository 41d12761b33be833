//! Exact money: integer smallest units (1e-8 coin) and splits that always add up.
//!
//! Chain amounts arrive as JSON numbers or decimal strings; they are parsed from their literal
//! text, never through a float, and anything finer than 8 decimals is refused.

use std::fmt;
use std::str::FromStr;

use bson::Bson;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Smallest units in one coin.
pub const UNITS_PER_COIN: i64 = 100_000_000;
/// Decimal places of the smallest unit.
pub const DECIMALS: u32 = 8;
/// All the uPow there will ever be (TRANSACTIONS.md §4): no single amount owed can exceed it.
pub const MAX_SUPPLY: Amount = Amount(1_888_464_375_000_000);

/// Why a piece of text is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("amount is empty")]
    Empty,
    #[error("amount {0:?} is negative")]
    Negative(String),
    #[error("amount {0:?} is not a decimal number")]
    NotANumber(String),
    #[error("amount {0:?} has more than 8 decimals")]
    TooPrecise(String),
    #[error("amount {0:?} is too large")]
    TooLarge(String),
}

/// A non-negative amount of uPow in smallest units.
///
/// Serialised as a decimal string with 8 decimals (`"12.50000000"`), the shape of the HTTP API
/// and the config file; stored in MongoDB as the raw `i64` via [`Amount::units`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(i64);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    /// An amount of `units` smallest units; `None` when negative.
    pub const fn from_units(units: i64) -> Option<Amount> {
        if units < 0 { None } else { Some(Amount(units)) }
    }

    pub const fn units(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).and_then(Amount::from_units)
    }

    /// The sum of `amounts`, or `None` on overflow.
    pub fn checked_sum<I: IntoIterator<Item = Amount>>(amounts: I) -> Option<Amount> {
        amounts
            .into_iter()
            .try_fold(Amount::ZERO, |acc, a| acc.checked_add(a))
    }

    /// Parses a decimal literal as written by the chain API: `"12.5"`, `6`, `6.0`, `1e-08`,
    /// `"0.00000001"`. Exact; more than 8 decimals, a sign, or anything else is refused.
    pub fn parse(text: &str) -> Result<Amount, AmountError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AmountError::Empty);
        }
        if text.starts_with('-') {
            return Err(AmountError::Negative(text.to_owned()));
        }
        let not_a_number = || AmountError::NotANumber(text.to_owned());
        let body = text.strip_prefix('+').unwrap_or(text);
        let (mantissa, exponent) = match body.find(['e', 'E']) {
            Some(at) => {
                let exponent: i32 = body[at + 1..].parse().map_err(|_| not_a_number())?;
                (&body[..at], exponent)
            }
            None => (body, 0),
        };
        let (whole, fraction) = match mantissa.split_once('.') {
            Some((w, f)) => (w, f),
            None => (mantissa, ""),
        };
        let is_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty()) || !is_digits(whole) || !is_digits(fraction) {
            return Err(not_a_number());
        }
        // value = digits × 10^(exponent − fraction.len()); we need it × 10^8 as an integer.
        let digits = format!("{whole}{fraction}");
        let digits = digits.trim_start_matches('0');
        let scale = i64::from(exponent) - fraction.len() as i64 + i64::from(DECIMALS);
        if digits.is_empty() {
            return Ok(Amount::ZERO);
        }
        let (significant, scale) = {
            // Trailing zeros of the digits can pay for a negative scale.
            let trimmed = digits.trim_end_matches('0');
            let zeros = (digits.len() - trimmed.len()) as i64;
            (trimmed, scale + zeros)
        };
        if scale < 0 {
            return Err(AmountError::TooPrecise(text.to_owned()));
        }
        let too_large = || AmountError::TooLarge(text.to_owned());
        if significant.len() > 19 || scale > 19 {
            return Err(too_large());
        }
        let base: i64 = significant.parse().map_err(|_| too_large())?;
        let factor = 10_i64.checked_pow(scale as u32).ok_or_else(too_large)?;
        base.checked_mul(factor).map(Amount).ok_or_else(too_large)
    }

    /// The amount the original iNode paid for a Python float: `"{:.8f}".format(x)`, the float's
    /// exact binary value rounded (half to even) to 8 decimals, which Rust's `{:.8}` reproduces.
    /// Only for reading the original's stored floats; money is never computed in floats.
    pub fn from_legacy_float(value: f64) -> Result<Amount, AmountError> {
        if !value.is_finite() {
            return Err(AmountError::NotANumber(value.to_string()));
        }
        Amount::parse(&format!("{value:.8}"))
    }
}

impl fmt::Display for Amount {
    /// Eight decimals, always: `12.50000000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = self.0;
        write!(
            f,
            "{}.{:08}",
            units / UNITS_PER_COIN,
            units % UNITS_PER_COIN
        )
    }
}

/// `units` as coins with 8 decimals, like [`Amount`]'s `Display` but signed (`-0.50000000`): how
/// job summaries show every amount, a difference that may be negative included.
pub fn coins_text(units: i64) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let magnitude = units.unsigned_abs();
    let per_coin = UNITS_PER_COIN.unsigned_abs();
    format!("{sign}{}.{:08}", magnitude / per_coin, magnitude % per_coin)
}

impl FromStr for Amount {
    type Err = AmountError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Amount::parse(s)
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    /// Accepts a decimal string, or a JSON number taken from its literal text when the input is
    /// JSON (so `12.5` never passes through a float).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative decimal amount with at most 8 decimals")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Amount, E> {
                Amount::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Amount, E> {
                Amount::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Amount, E> {
                Amount::parse(&v.to_string()).map_err(E::custom)
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Amount, E> {
                Err(E::custom(format!(
                    "amount {v} arrived as a binary float; it must be read from its decimal text"
                )))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Serde adapter for chain JSON: numbers are read from their literal text through
/// `serde_json::value::RawValue`, so `12.5` or `1e-08` are exact.
pub mod chain_number {
    use super::Amount;
    use serde::{Deserialize, Deserializer};
    use serde_json::value::RawValue;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Amount, D::Error> {
        let raw: &RawValue = <&RawValue>::deserialize(deserializer)?;
        from_raw(raw).map_err(serde::de::Error::custom)
    }

    pub(crate) fn from_raw(raw: &RawValue) -> Result<Amount, super::AmountError> {
        let text = raw.get().trim();
        let text = text
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .unwrap_or(text);
        Amount::parse(text)
    }
}

/// Why a split could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("cannot split among no weights, or weights that are all zero")]
    NoWeight,
    #[error("the weights overflow")]
    Overflow,
}

/// Splits `total` in proportion to `weights` by the largest-remainder method: each part is the
/// floor of its exact share, and the units left over go one each to the largest remainders (the
/// earlier index first on a tie), so the parts always add up to `total` exactly.
pub fn split_largest_remainder(total: Amount, weights: &[u64]) -> Result<Vec<Amount>, SplitError> {
    let weight_sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if weight_sum == 0 {
        return Err(SplitError::NoWeight);
    }
    let total_units = total.units() as u128;
    let mut parts = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    let mut given: u128 = 0;
    for (index, &weight) in weights.iter().enumerate() {
        let exact = total_units
            .checked_mul(u128::from(weight))
            .ok_or(SplitError::Overflow)?;
        let floor = exact / weight_sum;
        parts.push(floor);
        remainders.push((exact % weight_sum, index));
        given += floor;
    }
    let left_over = (total_units - given) as usize;
    // Largest remainder first; the earlier index wins a tie so results are deterministic.
    remainders.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, index) in remainders.iter().take(left_over) {
        parts[index] += 1;
    }
    Ok(parts
        .into_iter()
        .map(|units| Amount(units as i64))
        .collect())
}

/// An amount in smallest units, exactly: integers as stored, integer text, or a double only when
/// it holds an integer exactly (below 2^53); anything else is not an amount. Money never passes
/// through a float.
pub fn stored_units(value: Option<&Bson>) -> Option<i64> {
    const EXACT_IN_DOUBLE: f64 = 9_007_199_254_740_992.0; // 2^53
    match value? {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        Bson::Double(v) if v.fract() == 0.0 && v.abs() < EXACT_IN_DOUBLE => Some(*v as i64),
        Bson::String(v) => v.trim().parse().ok(),
        _ => None,
    }
}

/// Why a stored coin amount was not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoredCoinsError {
    #[error("is missing")]
    Missing,
    #[error("is a {0:?}, not a number")]
    NotANumber(bson::spec::ElementType),
    #[error(transparent)]
    Invalid(#[from] AmountError),
}

/// An amount in coins as the original iNode stored it: a float read as the original paid it
/// (see [`Amount::from_legacy_float`]), or an exact int, decimal or string from looser old data.
pub fn stored_coins(value: Option<&Bson>) -> Result<Amount, StoredCoinsError> {
    Ok(match value {
        Some(Bson::Double(v)) => Amount::from_legacy_float(*v)?,
        Some(Bson::String(s)) => Amount::parse(s)?,
        Some(Bson::Int32(v)) => Amount::parse(&v.to_string())?,
        Some(Bson::Int64(v)) => Amount::parse(&v.to_string())?,
        Some(Bson::Decimal128(v)) => Amount::parse(&v.to_string())?,
        None | Some(Bson::Null) => return Err(StoredCoinsError::Missing),
        Some(other) => return Err(StoredCoinsError::NotANumber(other.element_type())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn amounts_are_read_exactly_or_not_at_all() {
        // 2^53 + 1 units survive as an integer; through a double they would not.
        let big = 9_007_199_254_740_993_i64;
        assert_eq!(stored_units(Some(&Bson::Int64(big))), Some(big));
        assert_eq!(
            stored_units(Some(&Bson::String(big.to_string()))),
            Some(big)
        );
        assert_eq!(stored_units(Some(&Bson::Int32(-7))), Some(-7));
        assert_eq!(stored_units(Some(&Bson::Double(12.0))), Some(12));
        assert_eq!(stored_units(Some(&Bson::Double(12.5))), None);
        assert_eq!(
            stored_units(Some(&Bson::Double(9_007_199_254_740_992.0))),
            None
        );
        assert_eq!(stored_units(Some(&Bson::Double(f64::NAN))), None);
        assert_eq!(stored_units(Some(&Bson::String("1.5".into()))), None);
        assert_eq!(stored_units(None), None);
    }

    fn units(n: i64) -> Amount {
        Amount::from_units(n).unwrap()
    }

    #[test]
    fn coins_text_is_signed_with_eight_decimals() {
        assert_eq!(coins_text(3_696_000_000), "36.96000000");
        assert_eq!(coins_text(0), "0.00000000");
        assert_eq!(coins_text(-50_000_000), "-0.50000000");
        assert_eq!(coins_text(i64::MIN), "-92233720368.54775808");
    }

    #[test]
    fn parses_the_chain_literals_exactly() {
        assert_eq!(Amount::parse("12.5").unwrap(), units(1_250_000_000));
        assert_eq!(Amount::parse("6").unwrap(), units(600_000_000));
        assert_eq!(Amount::parse("6.0").unwrap(), units(600_000_000));
        assert_eq!(Amount::parse("1e-08").unwrap(), units(1));
        assert_eq!(Amount::parse("1.5E3").unwrap(), units(150_000_000_000));
        assert_eq!(Amount::parse("0.00000001").unwrap(), units(1));
        assert_eq!(Amount::parse(".5").unwrap(), units(50_000_000));
        assert_eq!(Amount::parse("5.").unwrap(), units(500_000_000));
        assert_eq!(Amount::parse("0").unwrap(), Amount::ZERO);
        assert_eq!(Amount::parse("0.000000010").unwrap(), units(1));
        assert_eq!(Amount::parse("100e-10").unwrap(), units(1));
    }

    #[test]
    fn a_legacy_float_is_what_the_original_paid_for_it() {
        // Each as Python's "{:.8f}".format(x) prints it.
        let f = |v: f64| Amount::from_legacy_float(v).map(Amount::units);
        assert_eq!(f(0.1 + 0.2), Ok(30_000_000), "0.30000000, not refused");
        assert_eq!(
            f(12.345678905),
            Ok(1_234_567_890),
            "binary value is below the tie"
        );
        assert_eq!(
            f(1.0 / 512.0),
            Ok(195_312),
            "0.001953125: an exact tie goes to even"
        );
        assert_eq!(f(7.005859375), Ok(700_585_938), "an exact tie goes to even");
        assert_eq!(f(5e-9), Ok(1));
        assert_eq!(f(1e-9), Ok(0));
        assert_eq!(f(18_884_643.75), Ok(MAX_SUPPLY.units()));
        assert!(matches!(f(-1.5), Err(AmountError::Negative(_))));
        assert!(matches!(f(f64::NAN), Err(AmountError::NotANumber(_))));
        assert!(matches!(f(f64::INFINITY), Err(AmountError::NotANumber(_))));
        assert!(matches!(f(1e300), Err(AmountError::TooLarge(_))));
    }

    #[test]
    fn point_one_plus_point_two_is_point_three() {
        let sum = Amount::parse("0.1")
            .unwrap()
            .checked_add(Amount::parse("0.2").unwrap())
            .unwrap();
        assert_eq!(sum, Amount::parse("0.3").unwrap());
        assert_eq!(sum.to_string(), "0.30000000");
    }

    #[test]
    fn refuses_what_is_not_an_exact_amount() {
        assert_eq!(
            Amount::parse("0.000000001"),
            Err(AmountError::TooPrecise("0.000000001".into()))
        );
        assert_eq!(
            Amount::parse("0.30000000000000004"),
            Err(AmountError::TooPrecise("0.30000000000000004".into()))
        );
        assert_eq!(
            Amount::parse("1e-9"),
            Err(AmountError::TooPrecise("1e-9".into()))
        );
        assert_eq!(Amount::parse("-1"), Err(AmountError::Negative("-1".into())));
        assert_eq!(Amount::parse(""), Err(AmountError::Empty));
        for bad in [
            "abc", "1.2.3", "1e", "e5", ".", "1,5", "0x10", "NaN", "inf", "1 2",
        ] {
            assert_eq!(
                Amount::parse(bad),
                Err(AmountError::NotANumber(bad.into())),
                "{bad}"
            );
        }
        assert!(matches!(
            Amount::parse("100000000000000000000"),
            Err(AmountError::TooLarge(_))
        ));
        assert!(matches!(
            Amount::parse("1e400"),
            Err(AmountError::TooLarge(_))
        ));
        assert!(Amount::parse("1e99999999999").is_err());
    }

    #[test]
    fn errors_name_the_offending_text() {
        let message = Amount::parse("1.123456789").unwrap_err().to_string();
        assert!(message.contains("1.123456789"), "{message}");
        assert!(message.contains("more than 8 decimals"), "{message}");
    }

    #[test]
    fn displays_eight_decimals() {
        assert_eq!(units(1_250_000_000).to_string(), "12.50000000");
        assert_eq!(units(1).to_string(), "0.00000001");
        assert_eq!(Amount::ZERO.to_string(), "0.00000000");
    }

    #[test]
    fn chain_json_numbers_are_read_from_their_text() {
        #[derive(Deserialize)]
        struct Output {
            #[serde(with = "chain_number")]
            amount: Amount,
        }
        let out: Output = serde_json::from_str(r#"{"amount": 0.1}"#).unwrap();
        assert_eq!(out.amount, units(10_000_000));
        let out: Output = serde_json::from_str(r#"{"amount": "15"}"#).unwrap();
        assert_eq!(out.amount, units(1_500_000_000));
        let out: Output = serde_json::from_str(r#"{"amount": 1e-08}"#).unwrap();
        assert_eq!(out.amount, units(1));
        let err = serde_json::from_str::<Output>(r#"{"amount": 0.123456789}"#)
            .err()
            .unwrap();
        assert!(err.to_string().contains("more than 8 decimals"), "{err}");
        assert!(serde_json::from_str::<Output>(r#"{"amount": -3}"#).is_err());
        assert!(serde_json::from_str::<Output>(r#"{"amount": null}"#).is_err());
        assert!(serde_json::from_str::<Output>(r#"{"amount": [1]}"#).is_err());
    }

    #[test]
    fn splits_by_largest_remainder() {
        let parts = split_largest_remainder(units(100), &[1, 1, 1]).unwrap();
        assert_eq!(parts, vec![units(34), units(33), units(33)]);
        let parts = split_largest_remainder(units(10), &[18, 41, 41]).unwrap();
        // exact shares 1.8, 4.1, 4.1: floors 1, 4, 4 and the left-over unit to 0.8.
        assert_eq!(parts, vec![units(2), units(4), units(4)]);
        assert_eq!(
            split_largest_remainder(units(5), &[0, 0]),
            Err(SplitError::NoWeight)
        );
        assert_eq!(
            split_largest_remainder(units(5), &[]),
            Err(SplitError::NoWeight)
        );
        let parts = split_largest_remainder(units(7), &[0, 3]).unwrap();
        assert_eq!(parts, vec![Amount::ZERO, units(7)]);
    }

    proptest! {
        #[test]
        fn every_split_conserves_the_total(
            total in 0i64..=i64::MAX / 2,
            weights in proptest::collection::vec(0u64..=u64::MAX / 4, 1..50),
        ) {
            prop_assume!(weights.iter().any(|&w| w > 0));
            let parts = split_largest_remainder(units(total), &weights).unwrap();
            prop_assert_eq!(parts.len(), weights.len());
            let sum: i64 = parts.iter().map(|p| p.units()).sum();
            prop_assert_eq!(sum, total);
            for (part, weight) in parts.iter().zip(&weights) {
                if *weight == 0 {
                    prop_assert_eq!(*part, Amount::ZERO);
                }
            }
        }

        #[test]
        fn each_part_is_within_one_unit_of_its_exact_share(
            total in 0i64..=1_000_000_000_000,
            weights in proptest::collection::vec(0u64..=1_000_000, 1..30),
        ) {
            prop_assume!(weights.iter().any(|&w| w > 0));
            let parts = split_largest_remainder(units(total), &weights).unwrap();
            let weight_sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
            for (part, weight) in parts.iter().zip(&weights) {
                let floor = (total as u128 * u128::from(*weight)) / weight_sum;
                let part = part.units() as u128;
                prop_assert!(part == floor || part == floor + 1);
            }
        }

        #[test]
        fn display_then_parse_round_trips(n in 0i64..=i64::MAX) {
            let amount = units(n);
            prop_assert_eq!(Amount::parse(&amount.to_string()).unwrap(), amount);
        }

        #[test]
        fn decimal_text_parses_to_the_same_units_as_integer_arithmetic(
            whole in 0i64..=90_000_000_000,
            fraction in 0i64..100_000_000,
        ) {
            let text = format!("{whole}.{fraction:08}");
            prop_assert_eq!(
                Amount::parse(&text).unwrap().units(),
                whole * UNITS_PER_COIN + fraction
            );
        }

        #[test]
        fn arbitrary_text_never_panics(text in ".{0,40}") {
            let _ = Amount::parse(&text);
        }
    }
}
