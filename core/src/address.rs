//! The one rule for a uPow address (SPEC §4.1, TRANSACTIONS.md §2.3 "strict validation"), applied
//! wherever an address enters minerpool: the compressed form is base58 of 33 bytes whose first
//! byte is 42 or 43 and whose x (little-endian) is the x of a P-256 point; the full legacy form is
//! 128 hex characters of an (x, y) on the curve. An address that is only well-formed would be
//! refused by the chain at payout time, so it is refused on the way in.

use p256::ecdsa::VerifyingKey;

/// Why a string is not a uPow address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("address is empty")]
    Empty,
    #[error("address is {0} characters long; a uPow address has 45 (base58) or 128 (hex)")]
    Length(usize),
    #[error("address is not base58: {0}")]
    NotBase58(String),
    #[error("address decodes to {0} bytes, not 33")]
    WrongSize(usize),
    #[error("address starts with byte {0}, not 42 or 43")]
    WrongPrefix(u8),
    #[error("a 128-character address must be hexadecimal")]
    NotHex,
    #[error(
        "address is not a P-256 point (its key is not on the curve), so no one can be paid there"
    )]
    OffCurve,
}

/// The two written forms, before the curve is consulted.
enum Form {
    /// Prefix 42/43, then x little-endian.
    Compressed([u8; 33]),
    /// x then y, each 32 bytes little-endian.
    Full([u8; 64]),
}

fn parse_form(address: &str) -> Result<Form, AddressError> {
    match address.len() {
        0 => Err(AddressError::Empty),
        128 => {
            let bytes = hex::decode(address).map_err(|_| AddressError::NotHex)?;
            Ok(Form::Full(
                bytes.try_into().map_err(|_| AddressError::NotHex)?,
            ))
        }
        // Base58 of 33 bytes is 44 to 46 characters; anything else cannot decode to 33 bytes.
        44..=46 => {
            let bytes = bs58::decode(address)
                .into_vec()
                .map_err(|e| AddressError::NotBase58(e.to_string()))?;
            let bytes: [u8; 33] = bytes
                .try_into()
                .map_err(|b: Vec<u8>| AddressError::WrongSize(b.len()))?;
            match bytes[0] {
                42 | 43 => Ok(Form::Compressed(bytes)),
                prefix => Err(AddressError::WrongPrefix(prefix)),
            }
        }
        other => Err(AddressError::Length(other)),
    }
}

/// The public key behind 33 canonical address bytes (prefix 42/43, x < p, on the curve).
pub(crate) fn point_of(bytes: &[u8; 33]) -> Option<VerifyingKey> {
    let parity = match bytes[0] {
        42 => 0x02,
        43 => 0x03,
        _ => return None,
    };
    let mut sec1 = [0u8; 33];
    sec1[0] = parity;
    for (i, b) in bytes[1..].iter().rev().enumerate() {
        sec1[1 + i] = *b;
    }
    VerifyingKey::from_sec1_bytes(&sec1).ok()
}

/// Decodes `address` strictly into the 33 bytes a transaction output carries; the full form is
/// converted to the compressed one (a transaction cannot mix forms).
pub fn decode(address: &str) -> Result<[u8; 33], AddressError> {
    match parse_form(address)? {
        Form::Compressed(bytes) => {
            point_of(&bytes).ok_or(AddressError::OffCurve)?;
            Ok(bytes)
        }
        Form::Full(bytes) => {
            let mut sec1 = [0u8; 65];
            sec1[0] = 0x04;
            for (i, b) in bytes[..32].iter().rev().enumerate() {
                sec1[1 + i] = *b;
            }
            for (i, b) in bytes[32..].iter().rev().enumerate() {
                sec1[33 + i] = *b;
            }
            let key = VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| AddressError::OffCurve)?;
            Ok(address_bytes(&key))
        }
    }
}

/// The public key an address encodes (either form): what a signed message from its owner
/// verifies against (SPEC §4.5).
pub fn public_key(address: &str) -> Result<VerifyingKey, AddressError> {
    let bytes = decode(address)?;
    point_of(&bytes).ok_or(AddressError::OffCurve)
}

/// Checks that `address` is a payable uPow address (the strict rule above). Every entry point
/// uses this: pool registration, the WebSocket, the config, the import, chain data.
pub fn check_format(address: &str) -> Result<(), AddressError> {
    decode(address).map(|_| ())
}

/// Checks only the written form, for looking up or removing what is already stored: a record
/// under an off-curve address (left by the original iNode) must stay reachable to be cleaned up.
pub fn check_syntax(address: &str) -> Result<(), AddressError> {
    parse_form(address).map(|_| ())
}

/// The base58 alphabet, in the order of the digits it writes.
const BASE58: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// A regular expression (ECMA 262 and Python `re` alike) matching exactly the addresses
/// [`check_syntax`] accepts, for the API's documented parameters. Base58 of 33 bytes starting
/// with 42 or 43 is always 45 characters, from the encoding of `42, 0…0` to that of `43, ff…ff`:
/// the pattern is that range, written digit by digit.
pub fn syntax_pattern() -> String {
    let mut low = [0u8; 33];
    low[0] = 42;
    let mut high = [0xffu8; 33];
    high[0] = 43;
    let digits = |bytes: &[u8; 33]| -> Vec<u8> {
        bs58::encode(bytes)
            .into_string()
            .bytes()
            .map(|c| BASE58.iter().position(|d| *d == c).unwrap_or(0) as u8)
            .collect()
    };
    format!(
        "^(?:{}|[0-9a-fA-F]{{128}})$",
        between(&digits(&low), &digits(&high))
    )
}

/// Strings of base58 digits as long as `low` and `high`, from `low` to `high` inclusive.
fn between(low: &[u8], high: &[u8]) -> String {
    match (low.split_first(), high.split_first()) {
        (Some((l, low_rest)), Some((h, high_rest))) if l == h => {
            format!("{}{}", digit_class(*l, *l), between(low_rest, high_rest))
        }
        (Some((l, low_rest)), Some((h, high_rest))) => {
            let mut ways = vec![format!("{}{}", digit_class(*l, *l), at_least(low_rest))];
            if h - l > 1 {
                ways.push(format!(
                    "{}{}",
                    digit_class(l + 1, h - 1),
                    any(low_rest.len())
                ));
            }
            ways.push(format!("{}{}", digit_class(*h, *h), at_most(high_rest)));
            format!("(?:{})", ways.join("|"))
        }
        _ => String::new(),
    }
}

/// Digit strings of `low`'s length, `low` or above.
fn at_least(low: &[u8]) -> String {
    match low.split_first() {
        None => String::new(),
        Some((&l, rest)) if l == 57 => format!("{}{}", digit_class(l, l), at_least(rest)),
        Some((&l, rest)) => format!(
            "(?:{}{}|{}{})",
            digit_class(l + 1, 57),
            any(rest.len()),
            digit_class(l, l),
            at_least(rest)
        ),
    }
}

/// Digit strings of `high`'s length, `high` or below.
fn at_most(high: &[u8]) -> String {
    match high.split_first() {
        None => String::new(),
        Some((&0, rest)) => format!("{}{}", digit_class(0, 0), at_most(rest)),
        Some((&h, rest)) => format!(
            "(?:{}{}|{}{})",
            digit_class(0, h - 1),
            any(rest.len()),
            digit_class(h, h),
            at_most(rest)
        ),
    }
}

fn any(count: usize) -> String {
    match count {
        0 => String::new(),
        n => format!("{}{{{n}}}", digit_class(0, 57)),
    }
}

/// The digits `from..=to` as a character class (or one character).
fn digit_class(from: u8, to: u8) -> String {
    let chars: String = BASE58[from as usize..=to as usize]
        .iter()
        .map(|c| *c as char)
        .collect();
    if from == to {
        chars
    } else {
        format!("[{chars}]")
    }
}

/// The 33 address bytes of a public key: prefix 42 (y even) or 43 (y odd), then x little-endian.
pub fn address_bytes(key: &VerifyingKey) -> [u8; 33] {
    let point = key.to_encoded_point(true);
    let sec1 = point.as_bytes();
    let mut bytes = [0u8; 33];
    bytes[0] = if sec1[0] == 0x03 { 43 } else { 42 };
    for (i, b) in sec1[1..].iter().rev().enumerate() {
        bytes[1 + i] = *b;
    }
    bytes
}

/// The base58 address of a public key.
pub fn address_of(key: &VerifyingKey) -> String {
    bs58::encode(address_bytes(key)).into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 33 bytes with prefix 42 and x = 1: well-formed, but 1 − 3 + b is not a square mod p.
    fn off_curve() -> String {
        let mut bytes = [0u8; 33];
        bytes[0] = 42;
        bytes[1] = 1;
        bs58::encode(bytes).into_string()
    }

    /// The full form (x, y little-endian) of key 1's point, the generator; `flip` changes y.
    fn generator_full(flip: bool) -> String {
        let key = crate::upow::parse_private_key("1").unwrap();
        let point = key.verifying_key().to_encoded_point(false);
        let mut x = point.x().unwrap().to_vec();
        let mut y = point.y().unwrap().to_vec();
        if flip {
            *y.last_mut().unwrap() ^= 1;
        }
        x.reverse();
        y.reverse();
        hex::encode([x, y].concat())
    }

    /// The generator with y's lowest bit flipped: x and y below p, not on the curve.
    fn off_curve_full() -> String {
        generator_full(true)
    }

    #[test]
    fn accepts_both_forms() {
        check_format("DfGQ4MBdMw7bjNn56A2d4pYi8M9yfV9iFA6mMLXLizEEp").unwrap();
        check_format("E4AeWsv2tgHo4hYqHb4AYEsuvfzmWPkbMTkE2uwdjK2FV").unwrap();
        let full = generator_full(false);
        assert_eq!(decode(&full).unwrap()[0], 43, "G's y is odd");
        assert_eq!(decode(&full.to_uppercase()), decode(&full));
    }

    #[test]
    fn refuses_what_is_not_an_address() {
        assert_eq!(check_format(""), Err(AddressError::Empty));
        assert_eq!(check_format("pool-a"), Err(AddressError::Length(6)));
        assert_eq!(check_format(&"zz".repeat(64)), Err(AddressError::NotHex));
        assert!(matches!(
            check_format("0OIl8pTidMnKd8wRK7D6tEgFLZasxYr415JxQRcsADLFi"),
            Err(AddressError::NotBase58(_))
        ));
        // 33 bytes with prefix 2 (SEC1 style), base58-encoded.
        let sec1 = bs58::encode([2u8; 33]).into_string();
        assert_eq!(check_format(&sec1), Err(AddressError::WrongPrefix(2)));
        let short = bs58::encode([42u8; 32]).into_string();
        assert!(check_format(&short).is_err());
        assert!(check_format("ééééééééééééééééééééééééééééééééééééééééééééé").is_err());
    }

    #[test]
    fn refuses_a_well_formed_address_off_the_curve() {
        for address in [off_curve(), off_curve_full()] {
            assert_eq!(check_syntax(&address), Ok(()), "{address} is well-formed");
            let err = check_format(&address).unwrap_err();
            assert_eq!(err, AddressError::OffCurve, "{address}");
            assert!(err.to_string().contains("not a P-256 point"), "{err}");
        }
        // x ≥ p is not reduced: 33 bytes of prefix 42 then 0xff… is off the curve too.
        let mut big = [0xffu8; 33];
        big[0] = 42;
        assert_eq!(
            check_format(&bs58::encode(big).into_string()),
            Err(AddressError::OffCurve)
        );
    }

    fn pattern() -> regex::Regex {
        regex::Regex::new(&syntax_pattern()).unwrap()
    }

    #[test]
    fn the_pattern_takes_the_bounds_of_the_range_and_nothing_past_them() {
        let pattern = pattern();
        let mut low = [0u8; 33];
        low[0] = 42;
        let mut high = [0xffu8; 33];
        high[0] = 43;
        for bytes in [low, high] {
            assert!(pattern.is_match(&bs58::encode(bytes).into_string()));
        }
        let mut below = [0xffu8; 33];
        below[0] = 41;
        let mut above = [0u8; 33];
        above[0] = 44;
        for bytes in [below, above] {
            let text = bs58::encode(bytes).into_string();
            assert!(check_syntax(&text).is_err());
            assert!(!pattern.is_match(&text), "{text}");
        }
        assert!(pattern.is_match(&"aB".repeat(64)));
        assert!(!pattern.is_match(&"g".repeat(128)));
        assert!(!pattern.is_match(""));
    }

    proptest::proptest! {
        /// The documented pattern and the rule agree on any 33 bytes, whatever their prefix.
        #[test]
        fn the_pattern_matches_exactly_the_addresses_the_rule_accepts(
            prefix in 40u8..46,
            rest in proptest::collection::vec(proptest::num::u8::ANY, 32),
        ) {
            let mut bytes = vec![prefix];
            bytes.extend(rest);
            let text = bs58::encode(&bytes).into_string();
            proptest::prop_assert_eq!(pattern().is_match(&text), check_syntax(&text).is_ok(), "{}", text);
        }

        /// And on any string of base58 digits 43 to 47 long, or of hex 127 to 129 long.
        #[test]
        fn the_pattern_matches_exactly_the_strings_the_rule_accepts(
            text in "[1-9A-HJ-NP-Za-km-z]{43,47}|[0-9a-fA-F]{127,129}",
        ) {
            proptest::prop_assert_eq!(pattern().is_match(&text), check_syntax(&text).is_ok(), "{}", text);
        }
    }
}
