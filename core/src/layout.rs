//! Conversion of the original iNode's `layout.json` into the minerpool configuration
//! (`minerpool-node import-layout`). Every key the original read is mapped or deliberately
//! dropped; anything else is an error naming the key, so nothing is silently lost.

use serde_json::{Map, Value};

use crate::config::{Config, ConfigError};

/// What the conversion could not carry into the config file, for the operator to act on.
#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub config: Config,
    pub notes: Vec<String>,
}

fn bad(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Parse(format!("layout.json {key}: {}", message.into()))
}

/// The sections of `layout.json`, each a JSON object.
fn section<'a>(
    layout: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a Map<String, Value>>, ConfigError> {
    match layout.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(section)) => Ok(Some(section)),
        Some(_) => Err(bad(name, "must be an object")),
    }
}

fn text(
    section: &Map<String, Value>,
    path: &str,
    key: &str,
) -> Result<Option<String>, ConfigError> {
    match section.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(bad(
            &format!("{path}.{key}"),
            "must be a string or a number",
        )),
    }
}

/// A whole number written as a number or a numeric string (the original had both).
fn number(section: &Map<String, Value>, path: &str, key: &str) -> Result<Option<u64>, ConfigError> {
    text(section, path, key)?
        .map(|t| {
            t.parse::<u64>().map_err(|_| {
                bad(
                    &format!("{path}.{key}"),
                    format!("{t:?} is not a whole number"),
                )
            })
        })
        .transpose()
}

/// `"18%"`, `"18"` or `18`.
fn percent(section: &Map<String, Value>, path: &str, key: &str) -> Result<Option<u8>, ConfigError> {
    text(section, path, key)?
        .map(|t| {
            t.trim_end_matches('%').trim().parse::<u8>().map_err(|_| {
                bad(
                    &format!("{path}.{key}"),
                    format!("{t:?} is not a whole percentage"),
                )
            })
        })
        .transpose()
}

const KNOWN: [&str; 10] = [
    "FAST_API",
    "MONGOD_DB",
    "RATE_LIMIT",
    "AWARD_SYSTEM",
    "URLS",
    "TIME",
    "INODE_MAIN_SOCKET",
    "INODE_WALLETS",
    "REWARD_TRACKING",
    "MAX_CONCURRENT",
];

/// Converts the text of a `layout.json`.
pub fn import_layout(json: &str) -> Result<Imported, ConfigError> {
    let layout: Map<String, Value> = serde_json::from_str(json)
        .map_err(|e| ConfigError::Parse(format!("layout.json is not a JSON object: {e}")))?;
    if let Some(unknown) = layout.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad(unknown, "unknown key"));
    }
    let mut notes = Vec::new();
    let wallets = section(&layout, "INODE_WALLETS")?.ok_or_else(|| {
        bad(
            "INODE_WALLETS",
            "is required (WALLET_ADDRESS, REWARD_ADDRESS)",
        )
    })?;
    let wallet = text(wallets, "INODE_WALLETS", "WALLET_ADDRESS")?
        .ok_or_else(|| bad("INODE_WALLETS.WALLET_ADDRESS", "is required"))?;
    let reward = text(wallets, "INODE_WALLETS", "REWARD_ADDRESS")?
        .ok_or_else(|| bad("INODE_WALLETS.REWARD_ADDRESS", "is required"))?;
    let mut config = Config::with_wallets(&wallet, &reward);

    if let Some(urls) = section(&layout, "URLS")? {
        if let Some(api) = text(urls, "URLS", "API_URL")? {
            config.chain.api_url = api.trim_end_matches('/').to_owned();
        }
        let plain_http = [Some(config.chain.api_url.as_str())]
            .into_iter()
            .chain([text(urls, "URLS", "VALIDATORS_URL")?.as_deref()])
            .flatten()
            .any(|url| url.starts_with("http://"));
        if plain_http {
            // Kept working as the original ran it, and said so.
            config.chain.allow_insecure_http = true;
            notes.push(
                "URLS: the original reaches the chain over plain http; allowInsecureHttp is set \
                 to keep that: switch to https:// if the chain API offers it"
                    .to_owned(),
            );
        }
        if let Some(validators) = text(urls, "URLS", "VALIDATORS_URL")? {
            // The original's URL ends with its own wallet; minerpool appends the wallet itself.
            let base = validators
                .strip_suffix(wallet.as_str())
                .unwrap_or(&validators);
            config.chain.validators_url = Some(base.to_owned());
        }
    }
    if let Some(award) = section(&layout, "AWARD_SYSTEM")? {
        let r = &mut config.rewards;
        r.fee_percent = percent(award, "AWARD_SYSTEM", "FEE")?.unwrap_or(r.fee_percent);
        r.pools_percent =
            percent(award, "AWARD_SYSTEM", "POOLS_REWARD")?.unwrap_or(r.pools_percent);
        r.validators_percent =
            percent(award, "AWARD_SYSTEM", "VALIDATORS_REWARD")?.unwrap_or(r.validators_percent);
    }
    if let Some(tracking) = section(&layout, "REWARD_TRACKING")?
        && let Some(height) = number(tracking, "REWARD_TRACKING", "BLOCK_HEIGHT")?
    {
        config.rewards.start_height = height;
        notes.push(format!(
            "rewards.startHeight is {height}: used only when the database has no stored height"
        ));
    }
    let address =
        |host: Option<String>, port: Option<u64>, key: &str, current: std::net::SocketAddr| {
            let host = host.unwrap_or_else(|| current.ip().to_string());
            let port = port.map_or(Ok(current.port()), |p| {
                u16::try_from(p).map_err(|_| bad(key, format!("port {p} is out of range")))
            })?;
            format!("{host}:{port}")
                .parse::<std::net::SocketAddr>()
                .map_err(|e| bad(key, format!("{host}:{port} is not an address: {e}")))
        };
    if let Some(api) = section(&layout, "FAST_API")? {
        config.node.http_address = address(
            text(api, "FAST_API", "FAST_API_URL")?,
            number(api, "FAST_API", "FAST_API_PORT")?,
            "FAST_API",
            config.node.http_address,
        )?;
    }
    if let Some(socket) = section(&layout, "INODE_MAIN_SOCKET")? {
        config.node.websocket_address = address(
            text(socket, "INODE_MAIN_SOCKET", "IP")?,
            number(socket, "INODE_MAIN_SOCKET", "PORT")?,
            "INODE_MAIN_SOCKET",
            config.node.websocket_address,
        )?;
    }
    if let Some(max) = section(&layout, "MAX_CONCURRENT")?
        && let Some(validators) = number(max, "MAX_CONCURRENT", "VALIDATORS")?
    {
        config.node.max_connections = u32::try_from(validators)
            .map_err(|_| bad("MAX_CONCURRENT.VALIDATORS", "is too large"))?;
    }
    if let Some(time) = section(&layout, "TIME")? {
        let s = &mut config.schedule;
        for (key, slot) in [
            ("CHECK_INTERVAL", &mut s.rewards_seconds),
            ("PUSH_TX", &mut s.payouts_seconds),
            ("FETCH_VALIDATORS", &mut s.validators_seconds),
            ("DECAY", &mut s.decay_seconds),
        ] {
            if let Some(seconds) = number(time, "TIME", key)? {
                *slot = seconds;
            }
        }
    }
    if section(&layout, "MONGOD_DB")?.is_some() {
        notes.push(
            "MONGOD_DB.MONGO_URL is a secret: set it as the MONGODB_URI environment variable"
                .into(),
        );
    }
    if section(&layout, "RATE_LIMIT")?.is_some() {
        notes.push(
            "RATE_LIMIT is not carried over: put rate limits in front of the node (ingress)".into(),
        );
    }
    config
        .validate()
        .map_err(|e| ConfigError::Parse(format!("the converted layout.json is not valid: {e}")))?;
    Ok(Imported { config, notes })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WALLET: &str = "DfGQ4MBdMw7bjNn56A2d4pYi8M9yfV9iFA6mMLXLizEEp";
    const REWARD: &str = "DtY8EdhmGS6LyXRmVtWxnVxWA4orV8gwEz4sjjjHUu8yo";

    fn original() -> String {
        format!(
            r#"{{
  "FAST_API": {{"FAST_API_URL": "0.0.0.0", "FAST_API_PORT": 8000}},
  "MONGOD_DB": {{"MONGO_URL": "mongodb://localhost:27017/"}},
  "RATE_LIMIT": {{"DEFAULT": "5/minute"}},
  "AWARD_SYSTEM": {{"FEE": "20%", "POOLS_REWARD": "40%", "VALIDATORS_REWARD": "40%"}},
  "URLS": {{"API_URL": "https://api.upow.ai/", "VALIDATORS_URL": "https://api.upow.ai/get_validators_info?inode={WALLET}"}},
  "TIME": {{"CHECK_INTERVAL": 30, "PUSH_TX": "120", "FETCH_VALIDATORS": 300, "DECAY": 900}},
  "INODE_MAIN_SOCKET": {{"IP": "0.0.0.0", "PORT": "65432"}},
  "INODE_WALLETS": {{"WALLET_ADDRESS": "{WALLET}", "REWARD_ADDRESS": "{REWARD}"}},
  "REWARD_TRACKING": {{"BLOCK_HEIGHT": 15616}},
  "MAX_CONCURRENT": {{"VALIDATORS": 500}}
}}"#
        )
    }

    #[test]
    fn converts_every_key_of_the_original() {
        let imported = import_layout(&original()).unwrap();
        let c = &imported.config;
        assert_eq!(c.chain.inode_wallet, WALLET);
        assert_eq!(c.chain.reward_address, REWARD);
        assert_eq!(c.chain.api_url, "https://api.upow.ai");
        assert_eq!(
            c.chain.validators_url(),
            "https://api.upow.ai/get_validators_info?inode="
        );
        assert_eq!(
            (
                c.rewards.fee_percent,
                c.rewards.pools_percent,
                c.rewards.validators_percent
            ),
            (20, 40, 40)
        );
        assert_eq!(c.rewards.start_height, 15616);
        assert_eq!(c.node.http_address.to_string(), "0.0.0.0:8000");
        assert_eq!(c.node.websocket_address.to_string(), "0.0.0.0:65432");
        assert_eq!(c.node.max_connections, 500);
        assert_eq!(c.schedule.rewards_seconds, 30);
        assert_eq!(c.schedule.payouts_seconds, 120);
        assert_eq!(c.schedule.validators_seconds, 300);
        assert_eq!(c.schedule.decay_seconds, 900);
        assert!(imported.notes.iter().any(|n| n.contains("MONGODB_URI")));
        assert!(!c.chain.allow_insecure_http);
        // The output reads back as a config file.
        assert_eq!(&Config::from_yaml_str(&c.to_yaml()).unwrap(), c);
    }

    /// An original that reached its chain over plain http keeps working, with a note.
    #[test]
    fn a_plain_http_chain_is_allowed_with_a_note() {
        let layout = original().replace("https://api.upow.ai", "http://10.0.0.5:3006");
        let imported = import_layout(&layout).unwrap();
        assert!(imported.config.chain.allow_insecure_http);
        assert!(
            imported
                .notes
                .iter()
                .any(|n| n.contains("allowInsecureHttp"))
        );
        let c = &imported.config;
        assert_eq!(&Config::from_yaml_str(&c.to_yaml()).unwrap(), c);
    }

    #[test]
    fn bad_layouts_name_the_key() {
        let cases = [
            ("[]", "not a JSON object"),
            ("{", "not a JSON object"),
            ("{}", "INODE_WALLETS"),
            (
                r#"{"INODE_WALLETS": {"REWARD_ADDRESS": "x"}}"#,
                "INODE_WALLETS.WALLET_ADDRESS",
            ),
            (r#"{"INODE_WALLETS": 5}"#, "INODE_WALLETS"),
            (r#"{"SURPRISE": 1}"#, "SURPRISE"),
        ];
        for (json, key) in cases {
            let err = import_layout(json).unwrap_err().to_string();
            assert!(err.contains(key), "{json}: {err}");
        }
        let with = |replace: &str, by: &str| original().replace(replace, by);
        let err = import_layout(&with("\"FEE\": \"20%\"", "\"FEE\": \"lots\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("AWARD_SYSTEM.FEE"), "{err}");
        let err = import_layout(&with("\"FEE\": \"20%\"", "\"FEE\": \"30%\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be 100"), "{err}");
        let err = import_layout(&with("\"65432\"", "\"99999\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("INODE_MAIN_SOCKET"), "{err}");
        let err = import_layout(&with(REWARD, "not-a-wallet"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("chain.rewardAddress"), "{err}");
    }
}
