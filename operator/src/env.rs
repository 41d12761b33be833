//! The environment variables the operator fills from the Secrets the spec names.

pub const MONGODB_URI: &str = "MONGODB_URI";
pub const ADMIN_TOKEN: &str = "MINERPOOL_ADMIN_TOKEN";
pub const ADMIN_RSA_KEY: &str = "MINERPOOL_ADMIN_RSA_KEY";
pub const WALLET_KEY: &str = "MINERPOOL_WALLET_KEY";
/// Every one, whether or not a given pod gets it: none may come from elsewhere.
pub const ALL: [&str; 4] = [MONGODB_URI, ADMIN_TOKEN, ADMIN_RSA_KEY, WALLET_KEY];
