//! Every vector of `shared/upow/vectors.json` (made by the uPow node's own code) reproduced byte
//! for byte, and every corrupted copy refused.

use minerpool_core::money::Amount;
use minerpool_core::upow::{
    Input, Output, Transaction, address_bytes, address_of, decode_address, encode_amount,
    parse_private_key,
};
use p256::ecdsa::SigningKey;
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/upow/vectors.json"
    );
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (shared/ must sit beside the repository)"));
    serde_json::from_str(&text).expect("vectors.json is JSON")
}

fn key_named(v: &Value, name: &str) -> SigningKey {
    let key = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == name)
        .unwrap_or_else(|| panic!("key {name}"));
    parse_private_key(key["private_key_hex_be"].as_str().unwrap()).unwrap()
}

#[test]
fn keys_and_addresses() {
    let v = vectors();
    for key in v["keys"].as_array().unwrap() {
        let signing = parse_private_key(key["private_key_hex_be"].as_str().unwrap()).unwrap();
        let public = signing.verifying_key();
        assert_eq!(address_of(public), key["address"].as_str().unwrap());
        assert_eq!(
            hex::encode(address_bytes(public)),
            key["address_bytes_33_hex"].as_str().unwrap()
        );
        let full = key["address_full_hex_64"].as_str().unwrap();
        assert_eq!(
            decode_address(full).unwrap(),
            address_bytes(public),
            "{full}"
        );
        // The key as the original printed it: Python hex(d), no padding.
        let int_hex = format!(
            "0x{}",
            key["private_key_hex_be"]
                .as_str()
                .unwrap()
                .trim_start_matches('0')
        );
        assert_eq!(parse_private_key(&int_hex).unwrap(), signing);
    }
}

#[test]
fn strict_address_decoding() {
    let v = vectors();
    for case in v["address_decoding"].as_array().unwrap() {
        let input = case["input"].as_str().unwrap();
        let accepted = decode_address(input);
        if case["survives_node_reencoding"] == true {
            let bytes = accepted.unwrap_or_else(|e| panic!("{}: {e}", case["case"]));
            let canonical = case["canonical_address"].as_str().unwrap();
            assert_eq!(
                bs58::encode(bytes).into_string(),
                canonical,
                "{}",
                case["case"]
            );
        } else {
            let err = accepted.expect_err(case["case"].as_str().unwrap());
            assert!(
                err.to_string().contains(input),
                "the error names the address: {err}"
            );
        }
    }
}

#[test]
fn amounts() {
    let v = vectors();
    for case in v["amounts"].as_array().unwrap() {
        let decimal = case["decimal"].as_str().unwrap();
        match case.get("smallest_units").and_then(Value::as_u64) {
            Some(units) => {
                assert_eq!(
                    Amount::parse(decimal).unwrap().units() as u64,
                    units,
                    "{decimal}"
                );
                assert_eq!(
                    hex::encode(encode_amount(units)),
                    case["field_hex"].as_str().unwrap()
                );
            }
            None => assert!(Amount::parse(decimal).is_err(), "{decimal} must be refused"),
        }
    }
}

fn output_address(version: u64, address: &str) -> Vec<u8> {
    if version == 1 {
        hex::decode(address).unwrap()
    } else {
        decode_address(address).unwrap().to_vec()
    }
}

#[test]
fn transactions_are_reproduced_byte_for_byte() {
    let v = vectors();
    for t in v["transactions"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let version = t["version"].as_u64().unwrap();
        let inputs: Vec<Input> = t["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| Input {
                tx_hash: hex::decode(i["tx_hash"].as_str().unwrap())
                    .unwrap()
                    .try_into()
                    .unwrap(),
                index: i["index"].as_u64().unwrap() as u8,
            })
            .collect();
        let outputs: Vec<Output> = t["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| Output {
                address: output_address(version, o["address"].as_str().unwrap()),
                units: o["smallest_units"].as_u64().unwrap(),
            })
            .collect();
        let message = t["message_hex"].as_str().map(|m| hex::decode(m).unwrap());
        let mut tx = Transaction {
            version: version as u8,
            ..Transaction::new(
                inputs.clone(),
                vec![Output {
                    address: vec![42; 33],
                    units: 1,
                }],
                None,
            )
            .unwrap()
        };
        tx.outputs = outputs;
        tx.message = message;
        assert_eq!(
            hex::encode(tx.unsigned_bytes()),
            t["unsigned_hex"].as_str().unwrap(),
            "{name}"
        );
        let keys: Vec<SigningKey> = t["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| key_named(&v, i["owner_key"].as_str().unwrap()))
            .collect();
        tx.sign(&keys.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!(tx.to_hex(), t["signed_hex"].as_str().unwrap(), "{name}");
        assert_eq!(tx.hash(), t["tx_hash"].as_str().unwrap(), "{name}");

        let parsed = Transaction::parse(&hex::decode(t["signed_hex"].as_str().unwrap()).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parsed, tx, "{name}: parse(serialise(tx)) == tx");
        let owners: Vec<[u8; 33]> = keys
            .iter()
            .map(|k| address_bytes(k.verifying_key()))
            .collect();
        parsed
            .verify(&owners)
            .unwrap_or_else(|e| panic!("{name}: {e}"));

        for corrupted in t["corrupted"].as_array().unwrap() {
            let what = corrupted["what"].as_str().unwrap();
            let bytes = hex::decode(corrupted["hex"].as_str().unwrap()).unwrap();
            let refused = match Transaction::parse(&bytes) {
                Err(_) => true,
                Ok(bad) => bad.verify(&owners).is_err() || bad.to_bytes() != bytes,
            };
            assert!(refused, "{name}: corrupted copy accepted: {what}");
        }
    }
}
