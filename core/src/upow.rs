//! Native uPow transactions (upow/TRANSACTIONS.md): P-256 keys, addresses, amounts, and version-3
//! transactions built, signed (RFC 6979, one signature per distinct key), serialised, parsed,
//! hashed and verified exactly as the uPow node does.

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha256};

pub use crate::address::{address_bytes, address_of};

/// Why a key, address, amount or transaction is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpowError {
    #[error("wallet key: {0}")]
    Key(String),
    #[error("address {address:?}: {reason}")]
    Address { address: String, reason: String },
    #[error("transaction: {0}")]
    Transaction(String),
    #[error("signature of input {0} does not verify")]
    BadSignature(usize),
}

fn tx_error(message: impl Into<String>) -> UpowError {
    UpowError::Transaction(message.into())
}

/// Most inputs, and most outputs, in one transaction (count bytes).
pub const MAX_INPUTS: usize = 255;
pub const MAX_OUTPUTS: usize = 255;

/// Parses the wallet key as the iNode read it: `[0x]hex`, 1 to 64 digits, `1 ≤ d < n`.
pub fn parse_private_key(text: &str) -> Result<SigningKey, UpowError> {
    let digits = text.trim();
    let digits = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
        .unwrap_or(digits);
    if digits.is_empty() || digits.len() > 64 || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(UpowError::Key(
            "must be 1 to 64 hexadecimal digits, optionally after 0x".into(),
        ));
    }
    let padded = format!("{digits:0>64}");
    let bytes = hex::decode(padded).map_err(|e| UpowError::Key(e.to_string()))?;
    SigningKey::from_slice(&bytes)
        .map_err(|_| UpowError::Key("must be at least 1 and below the P-256 group order".into()))
}

/// Strict validation of a recipient (TRANSACTIONS.md §2, the rule in [`crate::address`]); a
/// 128-hex full address is converted to the compressed form.
pub fn decode_address(address: &str) -> Result<[u8; 33], UpowError> {
    crate::address::decode(address).map_err(|e| UpowError::Address {
        address: address.to_owned(),
        reason: e.to_string(),
    })
}

/// An amount on the wire: a length byte, then the units little-endian in that many bytes.
pub fn encode_amount(units: u64) -> Vec<u8> {
    let le = units.to_le_bytes();
    let length = 8 - (units.leading_zeros() as usize / 8);
    let mut out = Vec::with_capacity(1 + length);
    out.push(length as u8);
    out.extend_from_slice(&le[..length]);
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// As written in hex (no reversal).
    pub tx_hash: [u8; 32],
    pub index: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// 33 bytes (version 3) or 64 bytes (version 1).
    pub address: Vec<u8>,
    pub units: u64,
}

/// A uPow transaction. minerpool builds only version 3 with compressed outputs; the parser also
/// reads versions 1 and 2 so that what the chain shows can be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub version: u8,
    pub inputs: Vec<Input>,
    pub outputs: Vec<Output>,
    /// `Some(vec![])` (an empty message) differs from `None` on the wire.
    pub message: Option<Vec<u8>>,
    /// r ‖ s, 32 bytes little-endian each; one per distinct signing key.
    pub signatures: Vec<[u8; 64]>,
}

impl Transaction {
    /// A version-3 transaction; checks counts and amounts.
    pub fn new(
        inputs: Vec<Input>,
        outputs: Vec<Output>,
        message: Option<Vec<u8>>,
    ) -> Result<Transaction, UpowError> {
        let tx = Transaction {
            version: 3,
            inputs,
            outputs,
            message,
            signatures: Vec::new(),
        };
        tx.check_shape()?;
        Ok(tx)
    }

    fn check_shape(&self) -> Result<(), UpowError> {
        if self.inputs.is_empty() || self.inputs.len() > MAX_INPUTS {
            return Err(tx_error(format!(
                "You can spend max 255 inputs in a single transactions, not {}",
                self.inputs.len()
            )));
        }
        if self.outputs.is_empty() || self.outputs.len() > MAX_OUTPUTS {
            return Err(tx_error(format!(
                "You can have max 255 outputs in a single transactions, not {}",
                self.outputs.len()
            )));
        }
        let address_len = if self.version == 1 { 64 } else { 33 };
        for (i, output) in self.outputs.iter().enumerate() {
            if output.units == 0 {
                return Err(tx_error(format!("output {i} pays nothing")));
            }
            if output.address.len() != address_len {
                return Err(tx_error(format!(
                    "output {i} address is {} bytes, version {} needs {address_len}",
                    output.address.len(),
                    self.version
                )));
            }
        }
        let mut seen = std::collections::HashSet::new();
        if !self
            .inputs
            .iter()
            .all(|i| seen.insert((i.tx_hash, i.index)))
        {
            return Err(tx_error("an output is spent twice"));
        }
        if let Some(message) = &self.message {
            let limit = if self.version == 3 { 65_535 } else { 255 };
            if message.len() > limit {
                return Err(tx_error(format!("message longer than {limit} bytes")));
            }
        }
        Ok(())
    }

    fn write_body(&self, out: &mut Vec<u8>) {
        out.push(self.version);
        out.push(self.inputs.len() as u8);
        for input in &self.inputs {
            out.extend_from_slice(&input.tx_hash);
            out.push(input.index);
            out.push(0);
        }
        out.push(self.outputs.len() as u8);
        for output in &self.outputs {
            out.extend_from_slice(&output.address);
            out.extend_from_slice(&encode_amount(output.units));
            out.push(0);
        }
    }

    fn write_message(&self, out: &mut Vec<u8>) {
        match &self.message {
            None => out.push(0),
            Some(message) => {
                out.push(1);
                if self.version == 3 {
                    out.extend_from_slice(&(message.len() as u16).to_le_bytes());
                } else {
                    out.push(message.len() as u8);
                }
                out.extend_from_slice(message);
            }
        }
    }

    /// The bytes that are signed: the body, plus the message section in version 3 when there is
    /// a message.
    pub fn unsigned_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_body(&mut out);
        if self.version == 3 && self.message.is_some() {
            self.write_message(&mut out);
        }
        out
    }

    /// Signs with `keys[i]` the owner of input `i`: one signature per distinct key, in order of
    /// its first input.
    pub fn sign(&mut self, keys: &[&SigningKey]) -> Result<(), UpowError> {
        if keys.len() != self.inputs.len() {
            return Err(tx_error(format!(
                "{} keys for {} inputs",
                keys.len(),
                self.inputs.len()
            )));
        }
        let message = self.unsigned_bytes();
        let mut signed: Vec<[u8; 33]> = Vec::new();
        self.signatures.clear();
        for key in keys {
            let owner = address_bytes(key.verifying_key());
            if signed.contains(&owner) {
                continue;
            }
            signed.push(owner);
            let signature: Signature = key.sign(&message);
            self.signatures.push(wire_signature(&signature));
        }
        Ok(())
    }

    /// The complete transaction.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_body(&mut out);
        self.write_message(&mut out);
        for signature in &self.signatures {
            out.extend_from_slice(signature);
        }
        out
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }

    /// Lower-case hex SHA-256 of the complete transaction.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.to_bytes()))
    }

    /// Reads a transaction; every malformed form is an error, never a panic.
    pub fn parse(bytes: &[u8]) -> Result<Transaction, UpowError> {
        let tx = Transaction::parse_wire(bytes)?;
        // The node re-serialises without repeats, so a repeated signature means a different hash.
        let mut distinct = std::collections::HashSet::new();
        if !tx.signatures.iter().all(|s| distinct.insert(*s)) {
            return Err(tx_error(
                "a signature is repeated: not canonical (the node's hash would differ)",
            ));
        }
        tx.check_shape()?;
        Ok(tx)
    }

    /// Reads only the wire format, as the node's parser does: counts, zero amounts and inputs
    /// spent twice are left to verification, where the node judges them (TRANSACTIONS.md §9).
    pub fn parse_wire(bytes: &[u8]) -> Result<Transaction, UpowError> {
        let mut r = Reader { bytes, at: 0 };
        let version = r.byte("version")?;
        if !(1..=3).contains(&version) {
            return Err(tx_error(format!("version {version} is not 1, 2 or 3")));
        }
        let input_count = r.byte("input count")? as usize;
        let mut inputs = Vec::with_capacity(input_count);
        for i in 0..input_count {
            let tx_hash: [u8; 32] = r.take(32, "input hash")?.try_into().expect("32 bytes");
            let index = r.byte("input index")?;
            let kind = r.byte("input type")?;
            if kind != 0 {
                return Err(tx_error(format!(
                    "input {i} has type {kind}, not REGULAR (0)"
                )));
            }
            inputs.push(Input { tx_hash, index });
        }
        let output_count = r.byte("output count")? as usize;
        let address_len = if version == 1 { 64 } else { 33 };
        let mut outputs = Vec::with_capacity(output_count);
        for i in 0..output_count {
            let address = r.take(address_len, "output address")?.to_vec();
            let length = r.byte("amount length")? as usize;
            if length > 8 {
                return Err(tx_error(format!(
                    "output {i} amount is {length} bytes long"
                )));
            }
            let mut le = [0u8; 8];
            le[..length].copy_from_slice(r.take(length, "amount")?);
            let kind = r.byte("output type")?;
            if ![0, 1, 2, 3, 5, 6, 7, 8, 9].contains(&kind) {
                return Err(tx_error(format!("output {i} has unknown type {kind}")));
            }
            if kind != 0 {
                return Err(tx_error(format!(
                    "output {i} has type {kind}; only REGULAR outputs are payments"
                )));
            }
            outputs.push(Output {
                address,
                units: u64::from_le_bytes(le),
            });
        }
        let message = match r.byte("specifier")? {
            0 => None,
            1 => {
                let length = if version == 3 {
                    u16::from_le_bytes(r.take(2, "message length")?.try_into().expect("2")) as usize
                } else {
                    r.byte("message length")? as usize
                };
                Some(r.take(length, "message")?.to_vec())
            }
            other => return Err(tx_error(format!("specifier {other} is not 0 or 1"))),
        };
        let rest = &bytes[r.at..];
        if rest.is_empty() || !rest.len().is_multiple_of(64) {
            return Err(tx_error(format!(
                "{} signature bytes, not a positive multiple of 64",
                rest.len()
            )));
        }
        let signatures: Vec<[u8; 64]> = rest
            .chunks_exact(64)
            .map(|c| c.try_into().expect("64 bytes"))
            .collect();
        Ok(Transaction {
            version,
            inputs,
            outputs,
            message,
            signatures,
        })
    }

    /// Checks the signatures, given the owner address bytes of each input's spent output, and
    /// assigns them as the node does: one for all, one per input, or one per owner in order of
    /// first appearance.
    pub fn verify(&self, owners: &[[u8; 33]]) -> Result<(), UpowError> {
        if owners.len() != self.inputs.len() {
            return Err(tx_error("one owner per input is needed"));
        }
        let message = self.unsigned_bytes();
        let mut groups: Vec<[u8; 33]> = Vec::new();
        for owner in owners {
            if !groups.contains(owner) {
                groups.push(*owner);
            }
        }
        for (i, owner) in owners.iter().enumerate() {
            let signature = match self.signatures.len() {
                1 => &self.signatures[0],
                n if n == self.inputs.len() => &self.signatures[i],
                n if n == groups.len() => {
                    &self.signatures[groups.iter().position(|g| g == owner).expect("grouped")]
                }
                n => {
                    return Err(tx_error(format!(
                        "{n} signatures for {} inputs of {} owners",
                        self.inputs.len(),
                        groups.len()
                    )));
                }
            };
            let key = crate::address::point_of(owner).ok_or(UpowError::BadSignature(i))?;
            let signature = signature_from_wire(signature).ok_or(UpowError::BadSignature(i))?;
            key.verify(&message, &signature)
                .map_err(|_| UpowError::BadSignature(i))?;
        }
        Ok(())
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], UpowError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| tx_error(format!("ends inside the {what}")))?;
        let slice = &self.bytes[self.at..end];
        self.at = end;
        Ok(slice)
    }

    fn byte(&mut self, what: &str) -> Result<u8, UpowError> {
        Ok(self.take(1, what)?[0])
    }
}

/// r ‖ s, each 32 bytes little-endian.
fn wire_signature(signature: &Signature) -> [u8; 64] {
    let (r, s) = signature.split_bytes();
    let mut out = [0u8; 64];
    for (i, b) in r.iter().rev().enumerate() {
        out[i] = *b;
    }
    for (i, b) in s.iter().rev().enumerate() {
        out[32 + i] = *b;
    }
    out
}

fn signature_from_wire(wire: &[u8; 64]) -> Option<Signature> {
    let mut be = [0u8; 64];
    for i in 0..32 {
        be[i] = wire[31 - i];
        be[32 + i] = wire[63 - i];
    }
    Signature::from_slice(&be).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_parsing_refuses_what_is_not_a_key() {
        assert!(parse_private_key("1").is_ok());
        assert!(parse_private_key("0x00c0ffee").is_ok());
        assert!(parse_private_key(" 0XC0FFEE \n").is_ok());
        for bad in [
            "",
            "0x",
            "0",
            "0x0",
            "xyz",
            "12 34",
            &"f".repeat(65),
            // n and n + 1
            "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551",
            "ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632552",
        ] {
            let err = parse_private_key(bad).unwrap_err();
            assert!(err.to_string().starts_with("wallet key"), "{bad}: {err}");
        }
    }

    #[test]
    fn amounts_use_the_fewest_bytes() {
        assert_eq!(encode_amount(1), vec![1, 1]);
        assert_eq!(encode_amount(255), vec![1, 255]);
        assert_eq!(encode_amount(256), vec![2, 0, 1]);
        assert_eq!(encode_amount(0), vec![0]);
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parse_of_serialise_is_the_same_signed_transaction(
            key_ids in proptest::collection::vec(1u8..4, 1..20),
            units in proptest::collection::vec(1u64..=1_888_464_375_000_000, 1..20),
            message in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
        ) {
            let keys: Vec<SigningKey> = (1u8..4)
                .map(|d| parse_private_key(&d.to_string()).unwrap())
                .collect();
            let inputs = key_ids
                .iter()
                .enumerate()
                .map(|(i, _)| Input { tx_hash: [i as u8; 32], index: i as u8 })
                .collect();
            let outputs = units
                .iter()
                .enumerate()
                .map(|(i, &u)| Output {
                    address: address_bytes(keys[i % 3].verifying_key()).to_vec(),
                    units: u,
                })
                .collect();
            let mut tx = Transaction::new(inputs, outputs, message).unwrap();
            let signers: Vec<&SigningKey> = key_ids.iter().map(|&k| &keys[usize::from(k) - 1]).collect();
            tx.sign(&signers).unwrap();
            let parsed = Transaction::parse(&tx.to_bytes()).unwrap();
            prop_assert_eq!(&parsed, &tx);
            let owners: Vec<[u8; 33]> = signers.iter().map(|k| address_bytes(k.verifying_key())).collect();
            prop_assert!(parsed.verify(&owners).is_ok());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Transaction::parse(&bytes);
        }
    }

    #[test]
    fn truncated_and_garbage_bytes_are_errors() {
        for bytes in [&[][..], &[3], &[3, 1], &[9, 0, 0], &[3, 0, 0, 0]] {
            assert!(Transaction::parse(bytes).is_err(), "{bytes:?}");
        }
    }
}
