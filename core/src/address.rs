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
            Ok(crate::upow::address_bytes(&key))
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
}
