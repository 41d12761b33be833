//! Builds and signs the largest uPow transaction (255 inputs, 254 recipients plus change) and
//! prints the time per transaction and its size.
//!
//! Run: `cargo bench -p minerpool-core --bench upow_sign`

use std::time::Instant;

use minerpool_core::upow::{Input, Output, Transaction, address_bytes, parse_private_key};

fn main() {
    let key = parse_private_key("0xc0ffee").expect("key");
    let recipients: Vec<[u8; 33]> = (1..=254u32)
        .map(|d| {
            address_bytes(
                parse_private_key(&format!("{d:x}"))
                    .unwrap()
                    .verifying_key(),
            )
        })
        .collect();
    let change = address_bytes(key.verifying_key());
    let rounds = 20;
    let started = Instant::now();
    let mut size = 0;
    for round in 0..rounds {
        let inputs: Vec<Input> = (0..255u32)
            .map(|i| Input {
                tx_hash: [(i % 251) as u8 ^ round as u8; 32],
                index: (i / 251) as u8,
            })
            .collect();
        let mut outputs: Vec<Output> = recipients
            .iter()
            .map(|r| Output {
                address: r.to_vec(),
                units: 123_456_789,
            })
            .collect();
        outputs.push(Output {
            address: change.to_vec(),
            units: 1,
        });
        let mut tx = Transaction::new(inputs, outputs, None).expect("a valid transaction");
        let signers = vec![&key; tx.inputs.len()];
        tx.sign(&signers).expect("sign");
        size = tx.to_bytes().len();
        std::hint::black_box(tx.hash());
    }
    let per = started.elapsed() / rounds;
    println!("uPow transaction, 255 inputs, 255 outputs (254 recipients + change), one key");
    println!("  build + sign + serialise + hash: {per:.2?} per transaction ({rounds} rounds)");
    println!("  size: {size} bytes ({} hex characters)", size * 2);
}
