//! Well-formed uPow addresses (base58 of 33 bytes, prefix 42/43) for tests and the demo.

pub const INODE: &str = "DfG98pTidMnKd8wRK7D6tEgFLZasxYr415JxQRcsADLFi";
pub const REWARD: &str = "DtYF6VXDET3GzxXUK2JZPVjwQ7qDqzFeJrDnCtfpyWUrW";
pub const POOL_A: &str = "DcDbHR1iD3rcpD3jg3NGXKPjor5kkWurTSHXgS2SURSAz";
pub const POOL_B: &str = "DyiognVCWcV3iwhwB3xqhZkLsdRKYgJWBkgMoU3R1LMvR";
pub const POOL_C: &str = "DdctsD1rywjEQrfXwnu3cuqa8i7khAMUpmaNAgkB6XxTy";
pub const VALIDATOR_1: &str = "E4AeWsv2tgHo4hYqHb4AYEsuvfzmWPkbMTkE2uwdjK2FV";
pub const VALIDATOR_2: &str = "DWWbEAVqPqsaDsALnotBV7MDsdhxsfun4y36ycB7UKtFe";
pub const VALIDATOR_3: &str = "E3GBnW9Yy6whtQGaaZCYKDSbcJ8XBMLZcsEh2BvNLTNUJ";
pub const PAYER: &str = "DctVXDwauLtJGEJwdsTkBLYssENc4TTSPrZPjNCSS33q5";
pub const MINER: &str = "E3KQC35GjME91ZGvmJNTx8HQ3B3FNapnpgG14Dk3Vruu8";
