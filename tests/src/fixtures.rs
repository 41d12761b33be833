//! Real uPow addresses (points of P-256, each from a private key) for tests and the demo, and
//! well-formed ones off the curve that every entry point must refuse.

pub const INODE: &str = "DfGQ4MBdMw7bjNn56A2d4pYi8M9yfV9iFA6mMLXLizEEp";
pub const REWARD: &str = "DtY8EdhmGS6LyXRmVtWxnVxWA4orV8gwEz4sjjjHUu8yo";
pub const POOL_A: &str = "DcDbHR1iD3rcpD3jg3NGXKPjor5kkWurTSHXgS2SURSAz";
pub const POOL_B: &str = "DyivM1SQ9aKwX8RvqAFP9Cyc3FmF1XtxZTPkD5pDo4uR2";
pub const POOL_C: &str = "DdctsD1rywjEQrfXwnu3cuqa8i7khAMUpmaNAgkB6XxTy";
pub const VALIDATOR_1: &str = "E4AeWsv2tgHo4hYqHb4AYEsuvfzmWPkbMTkE2uwdjK2FV";
pub const VALIDATOR_2: &str = "DWWbEAVqPqsaDsALnotBV7MDsdhxsfun4y36ycB7UKtFe";
pub const VALIDATOR_3: &str = "E3GiWsnshTkwbrifcbhj5kjN99gNFGhtBxWzx8wWMfYm8";
pub const PAYER: &str = "Dctk85yiLtCQrhRscCa9SZULV1v6AA1imDHgf44WuT1hY";
pub const MINER: &str = "E3Kdn967wpGGB1ytGocFvFFoqsnPgvgr5TRo2mWoEFaNK";

/// Base58 of 33 bytes, prefix 42, x = 1: well-formed, but no P-256 point has that x.
pub const OFF_CURVE: &str = "DUiCyVdJHEpTzNA1X3siu2CS8kkbLzh4su1NYetFEQozw";
/// The 128-hex form of the generator with y's lowest bit flipped: x, y < p, not on the curve.
pub const OFF_CURVE_FULL: &str = "96c298d84539a1f4a033eb2d817d0377f240a463e5e6bcf847422ce1f2d1176bf451bf376840b6cbce5e316b5733ce2b169e0f7c4aebe78e9b7f1afee242e34f";

/// The address of private key `key`, for tests that need many distinct real addresses.
pub fn address_from_key(key: u64) -> String {
    let key = minerpool_core::upow::parse_private_key(&format!("{key:x}")).expect("a key");
    minerpool_core::upow::address_of(key.verifying_key())
}
