//! The syntactic check of a uPow address (SPEC §4.1), made before any database work: the
//! compressed form is base58 of 33 bytes whose first byte is 42 or 43 (45 characters), the full
//! legacy form 128 hex characters.

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
}

/// Checks the form of `address` without looking it up anywhere.
pub fn check_format(address: &str) -> Result<(), AddressError> {
    match address.len() {
        0 => Err(AddressError::Empty),
        128 => {
            if address.bytes().all(|b| b.is_ascii_hexdigit()) {
                Ok(())
            } else {
                Err(AddressError::NotHex)
            }
        }
        // Base58 of 33 bytes is 44 to 46 characters; anything else cannot decode to 33 bytes.
        44..=46 => {
            let bytes = bs58::decode(address)
                .into_vec()
                .map_err(|e| AddressError::NotBase58(e.to_string()))?;
            match bytes.as_slice() {
                [42 | 43, ..] if bytes.len() == 33 => Ok(()),
                _ if bytes.len() != 33 => Err(AddressError::WrongSize(bytes.len())),
                [prefix, ..] => Err(AddressError::WrongPrefix(*prefix)),
                [] => Err(AddressError::WrongSize(0)),
            }
        }
        other => Err(AddressError::Length(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_forms() {
        check_format("DfG98pTidMnKd8wRK7D6tEgFLZasxYr415JxQRcsADLFi").unwrap();
        check_format("E4AeWsv2tgHo4hYqHb4AYEsuvfzmWPkbMTkE2uwdjK2FV").unwrap();
        check_format(&"ab".repeat(64)).unwrap();
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
}
