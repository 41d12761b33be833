//! How long `/modify-pool-list/` takes to refuse each kind of body, measured in one process on
//! one 2048-bit key, the classes interleaved so that load and frequency drift hit all alike.
//! Every class of the key's length must take the same time: a ciphertext at or above the
//! modulus, one below it with a bad padding, one encrypted for another key, and a valid
//! ciphertext of a bad command. Prints each class's median and mean, and each median's
//! difference from the slowest in percent.
//!
//! `cargo bench -p minerpool-node --bench admin_timing` (MINERPOOL_BENCH_ROUNDS, default 200)

use std::time::{Duration, Instant};

use minerpool_node::http::legacy::open_admin_request;
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, Oaep, RsaPrivateKey, RsaPublicKey};
use sha2::Sha256;

fn main() {
    let rounds: usize = std::env::var("MINERPOOL_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut rng = rand::thread_rng();
    let key = RsaPrivateKey::new(&mut rng, 2048).expect("generate a key");
    let public = RsaPublicKey::from(&key);
    let other = RsaPublicKey::from(&RsaPrivateKey::new(&mut rng, 2048).expect("a second key"));
    let size = key.size();
    let n = key.n().clone();
    let encrypt = |key: &RsaPublicKey, text: &str| {
        key.encrypt(
            &mut rand::thread_rng(),
            Oaep::new::<Sha256>(),
            text.as_bytes(),
        )
        .expect("encrypt")
    };
    let at_or_above_modulus = {
        let above = (&n + BigUint::from(12345u32)).to_bytes_be();
        assert_eq!(above.len(), size, "n + 12345 still fits the key's length");
        above
    };
    let below_modulus = {
        let below = (&n - BigUint::from(12345u32)).to_bytes_be();
        assert_eq!(below.len(), size);
        below
    };
    let classes: Vec<(&str, Vec<u8>)> = vec![
        ("ciphertext >= modulus", at_or_above_modulus),
        ("all 0xff (>= modulus)", vec![0xff; size]),
        ("ciphertext < modulus, bad padding", below_modulus),
        ("encrypted for another key", encrypt(&other, "add:x")),
        (
            "valid ciphertext, bad command",
            encrypt(&public, "drop:everything"),
        ),
    ];
    for (name, body) in &classes {
        assert!(
            open_admin_request(&key, body).is_none(),
            "{name} was accepted"
        );
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::with_capacity(rounds); classes.len()];
    // Warm-up, then rounds in which every class runs once, in a rotating order.
    for (_, body) in &classes {
        let _ = open_admin_request(&key, body);
    }
    for round in 0..rounds {
        for i in 0..classes.len() {
            let class = (i + round) % classes.len();
            let started = Instant::now();
            let refused = open_admin_request(&key, &classes[class].1).is_none();
            times[class].push(started.elapsed());
            assert!(refused);
        }
    }
    let medians: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort();
            t[t.len() / 2].as_secs_f64() * 1e3
        })
        .collect();
    let slowest = medians.iter().cloned().fold(0.0, f64::max);
    println!("refusals of /modify-pool-list/ bodies, 2048-bit key, {rounds} rounds each:");
    for ((name, _), (t, median)) in classes.iter().zip(times.iter().zip(&medians)) {
        let mean = t.iter().sum::<Duration>().as_secs_f64() * 1e3 / t.len() as f64;
        println!(
            "  {name:<36} median {median:7.3} ms  mean {mean:7.3} ms  ({:+.1} % of the slowest median)",
            (median - slowest) / slowest * 100.0
        );
    }
    let fastest = medians.iter().cloned().fold(f64::MAX, f64::min);
    println!(
        "  spread of the medians: {:.1} % (fastest {fastest:.3} ms, slowest {slowest:.3} ms)",
        (slowest - fastest) / slowest * 100.0
    );
}
