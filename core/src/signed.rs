//! Signed validator messages (SPEC §4.5): the bytes a validator signs, and the check that its own
//! uPow key signed them. A validator proves authorship with the key its address already encodes,
//! so no registry of keys exists to be forged or to drift.
//!
//! Both the node (verifying) and `minerpool-validator` (signing) use this one definition of the
//! signed bytes, through the message codec of [`crate::message`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use aws_lc_rs::signature::ParsedPublicKey;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha256};

/// The first line of the signed bytes: names the scheme and its version.
pub const DOMAIN: &str = "minerpool-signed-v1";

/// Characters of a nonce: 16 random bytes in lowercase hex.
pub const NONCE_HEX_LEN: usize = 32;
/// Characters of a signature: `r` then `s`, 32 bytes each, big-endian, lowercase hex.
pub const SIGNATURE_HEX_LEN: usize = 128;

/// What a signed message says, in the order of the signed bytes after the iNode's address. A
/// field the type does not use is the empty string (a PING's pool and val_id) or `None` (a
/// TASK's port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedFields<'a> {
    /// The iNode's wallet address: a message signed for one iNode is refused by every other.
    pub inode: &'a str,
    pub kind: &'a str,
    pub validator: &'a str,
    pub pool: &'a str,
    pub val_id: &'a str,
    pub ip: &'a str,
    pub port: Option<u16>,
    pub ts: i64,
    pub nonce: &'a str,
}

impl SignedFields<'_> {
    /// UTF-8, fields joined by `\n`, no trailing newline.
    pub fn bytes(&self) -> Vec<u8> {
        let port = self.port.map(|p| p.to_string()).unwrap_or_default();
        let ts = self.ts.to_string();
        [
            DOMAIN,
            self.inode,
            self.kind,
            self.validator,
            self.pool,
            self.val_id,
            self.ip,
            &port,
            &ts,
            self.nonce,
        ]
        .join("\n")
        .into_bytes()
    }
}

/// Why a message's signature parts are refused; every case is the same reply
/// (`ERROR: Invalid signature`), the reason is for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("a signed message carries ts, nonce and sig together")]
    Incomplete,
    #[error("ts is not an integer of unix seconds")]
    BadTimestamp,
    #[error("nonce is not 32 lowercase hex characters")]
    BadNonce,
    #[error("sig is not 128 lowercase hex characters")]
    BadEncoding,
    #[error("sig is not an ECDSA P-256 signature (r or s out of range)")]
    NotASignature,
    #[error("validator_wallet is not a P-256 public key")]
    NoKey,
    #[error("the signature does not verify against validator_wallet's key")]
    Mismatch,
}

/// The SHA-256 of the signed bytes, in hex: what a nonce is remembered with, so that a resend of
/// the very same message is told from another message reusing its nonce.
pub fn digest_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks a nonce's form.
pub fn check_nonce(nonce: &str) -> Result<(), SignatureError> {
    if is_lower_hex(nonce, NONCE_HEX_LEN) {
        Ok(())
    } else {
        Err(SignatureError::BadNonce)
    }
}

/// Checks that `signature_hex` is the validator's signature of `bytes`: ECDSA P-256 over
/// SHA-256, `r‖s` big-endian (IEEE P1363), either `s` form accepted.
pub fn verify(validator: &str, bytes: &[u8], signature_hex: &str) -> Result<(), SignatureError> {
    if !is_lower_hex(signature_hex, SIGNATURE_HEX_LEN) {
        return Err(SignatureError::BadEncoding);
    }
    let raw = hex::decode(signature_hex).map_err(|_| SignatureError::BadEncoding)?;
    Signature::from_slice(&raw).map_err(|_| SignatureError::NotASignature)?;
    // AWS-LC checks r‖s as it is (no low-`s` rule): either form verifies.
    public_key(validator)?
        .verify_sig(bytes, &raw)
        .map_err(|_| SignatureError::Mismatch)
}

/// Validators whose uncompressed key is remembered: each address is a point to decompress (a
/// square root), and a node hears from the same few hundred validators all day.
const KEY_CACHE_LIMIT: usize = 16_384;

/// The verifying key of a validator's address (from [`crate::address::public_key`]), parsed
/// once and remembered per address; the cache is emptied when full, so hostile addresses cannot
/// grow it.
fn public_key(validator: &str) -> Result<Arc<ParsedPublicKey>, SignatureError> {
    static KEYS: OnceLock<Mutex<HashMap<String, Arc<ParsedPublicKey>>>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some(key) = keys
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(validator)
    {
        return Ok(key.clone());
    }
    let point = crate::address::public_key(validator)
        .map_err(|_| SignatureError::NoKey)?
        .to_encoded_point(false);
    let key = ParsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED,
        point.as_bytes(),
    )
    .map(Arc::new)
    .map_err(|_| SignatureError::NoKey)?;
    let mut keys = keys.lock().unwrap_or_else(|e| e.into_inner());
    if keys.len() >= KEY_CACHE_LIMIT {
        keys.clear();
    }
    keys.insert(validator.to_owned(), key.clone());
    Ok(key)
}

/// Signs `bytes` with `key` in the form [`verify`] takes.
pub fn sign(key: &SigningKey, bytes: &[u8]) -> String {
    let signature: Signature = key.sign(bytes);
    hex::encode(signature.to_bytes())
}

/// A fresh nonce: 16 random bytes in lowercase hex.
pub fn new_nonce() -> String {
    let mut bytes = [0u8; NONCE_HEX_LEN / 2];
    p256::elliptic_curve::rand_core::RngCore::fill_bytes(
        &mut p256::elliptic_curve::rand_core::OsRng,
        &mut bytes,
    );
    hex::encode(bytes)
}

/// Now, in unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Whether `ts` lies within `window_seconds` of `now` (unix seconds), either side.
pub fn within_window(ts: i64, now: i64, window_seconds: u32) -> bool {
    ts.abs_diff(now) <= u64::from(window_seconds)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upow::{address_of, parse_private_key};

    fn key(d: &str) -> SigningKey {
        parse_private_key(d).unwrap()
    }

    fn task<'a>(inode: &'a str, validator: &'a str, nonce: &'a str) -> SignedFields<'a> {
        SignedFields {
            inode,
            kind: "TASK",
            validator,
            pool: "DcDbHR1iD3rcpD3jg3NGXKPjor5kkWurTSHXgS2SURSAz",
            val_id: "7",
            ip: "",
            port: None,
            ts: 1_700_000_000,
            nonce,
        }
    }

    #[test]
    fn the_signed_bytes_are_the_fields_joined_by_newlines() {
        let fields = SignedFields {
            inode: "I",
            kind: "PING",
            validator: "V",
            pool: "",
            val_id: "",
            ip: "10.0.0.1",
            port: Some(5502),
            ts: 1_700_000_000,
            nonce: "00112233445566778899aabbccddeeff",
        };
        assert_eq!(
            String::from_utf8(fields.bytes()).unwrap(),
            "minerpool-signed-v1\nI\nPING\nV\n\n\n10.0.0.1\n5502\n1700000000\n00112233445566778899aabbccddeeff"
        );
    }

    #[test]
    fn a_signature_verifies_only_for_its_key_and_bytes() {
        let (mine, other) = (key("1234"), key("5678"));
        let (me, them) = (
            address_of(mine.verifying_key()),
            address_of(other.verifying_key()),
        );
        let nonce = new_nonce();
        let bytes = task("I", &me, &nonce).bytes();
        let sig = sign(&mine, &bytes);
        assert_eq!(verify(&me, &bytes, &sig), Ok(()));
        assert_eq!(verify(&them, &bytes, &sig), Err(SignatureError::Mismatch));
        let changed = task("J", &me, &nonce).bytes();
        assert_eq!(verify(&me, &changed, &sig), Err(SignatureError::Mismatch));
        assert_eq!(
            verify(&me, &bytes, &sig.to_uppercase()),
            Err(SignatureError::BadEncoding)
        );
        assert_eq!(
            verify(&me, &bytes, &sig[..126]),
            Err(SignatureError::BadEncoding)
        );
        assert_eq!(
            verify(&me, &bytes, &"0".repeat(128)),
            Err(SignatureError::NotASignature)
        );
    }

    #[test]
    fn either_form_of_s_is_accepted() {
        let mine = key("abcdef");
        let me = address_of(mine.verifying_key());
        let bytes = task("I", &me, "00112233445566778899aabbccddeeff").bytes();
        let signature: Signature = mine.sign(&bytes);
        let (r, s) = signature.split_scalars();
        let flipped = Signature::from_scalars(r, -*s).unwrap();
        for sig in [signature, flipped] {
            assert_eq!(verify(&me, &bytes, &hex::encode(sig.to_bytes())), Ok(()));
        }
    }

    #[test]
    fn the_window_holds_on_both_sides() {
        assert!(within_window(100, 160, 60));
        assert!(within_window(220, 160, 60));
        assert!(!within_window(99, 160, 60));
        assert!(!within_window(221, 160, 60));
        assert!(!within_window(i64::MIN, 160, 60));
        assert!(!within_window(i64::MAX, 160, 60));
    }

    #[test]
    fn nonces_are_lowercase_hex_of_32() {
        assert_eq!(check_nonce(&new_nonce()), Ok(()));
        for bad in ["", "00", &"A".repeat(32), &"g".repeat(32), &"0".repeat(33)] {
            assert_eq!(check_nonce(bad), Err(SignatureError::BadNonce), "{bad}");
        }
    }
}
