//! The config file: defaults, and every kind of bad input rejected with the key named.

use std::io::Write;

use minerpool_core::config::{Config, ConfigError, Secrets, Sender};
use minerpool_core::money::Amount;

const INODE: &str = "DfGQ4MBdMw7bjNn56A2d4pYi8M9yfV9iFA6mMLXLizEEp";
const REWARD: &str = "DtY8EdhmGS6LyXRmVtWxnVxWA4orV8gwEz4sjjjHUu8yo";

fn minimal() -> String {
    format!("chain:\n  inodeWallet: {INODE}\n  rewardAddress: {REWARD}\n")
}

fn error_of(yaml: &str) -> String {
    Config::from_yaml_str(yaml).unwrap_err().to_string()
}

#[test]
fn a_minimal_file_takes_every_default_of_the_spec() {
    let config = Config::from_yaml_str(&minimal()).unwrap();
    assert_eq!(config.mongodb.database, "iNode");
    assert_eq!(config.chain.api_url, "https://api.upow.ai");
    assert_eq!(
        config.chain.validators_url(),
        "https://api.upow.ai/get_validators_info?inode="
    );
    assert_eq!(config.chain.request_timeout_seconds, 15);
    assert_eq!(
        (
            config.rewards.fee_percent,
            config.rewards.pools_percent,
            config.rewards.validators_percent
        ),
        (18, 41, 41)
    );
    assert_eq!(config.rewards.start_height, 20001);
    assert_eq!(config.rewards.blocks_per_run, 10);
    assert_eq!(config.rewards.confirmations, 10);
    assert_eq!(config.chain.rate_limit_wait_seconds, 120);
    assert_eq!(config.validators.limit, 60);
    assert_eq!(config.node.http_address.to_string(), "0.0.0.0:8001");
    assert_eq!(config.node.websocket_address.to_string(), "0.0.0.0:5501");
    assert_eq!(config.node.max_connections, 1500);
    assert_eq!(config.node.protocol, minerpool_core::config::Protocol::Both);
    assert_eq!(config.node.signed_window_seconds, 60);
    assert_eq!(config.payouts.sender, Sender::DryRun);
    assert_eq!(config.payouts.minimum_payout, Amount::parse("1").unwrap());
    assert_eq!(config.payouts.max_outputs_per_tx, 200);
    assert_eq!(config.payouts.fee, Amount::ZERO);
    assert_eq!(config.schedule.rewards_seconds, 60);
    assert_eq!(config.schedule.payouts_seconds, 60);
    assert_eq!(config.schedule.validators_seconds, 600);
    assert_eq!(config.schedule.decay_seconds, 600);
}

#[test]
fn the_rendered_yaml_reads_back_the_same() {
    let mut config = Config::from_yaml_str(&minimal()).unwrap();
    config.payouts.minimum_payout = Amount::parse("2.5").unwrap();
    config.chain.validators_url = Some("http://127.0.0.1:9/v?inode=".into());
    config.chain.allow_insecure_http = true;
    let again = Config::from_yaml_str(&config.to_yaml()).unwrap();
    assert_eq!(again, config);
}

#[test]
fn a_missing_file_names_the_path() {
    let err = Config::load(std::path::Path::new("/nonexistent/minerpool.yaml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(
        err.to_string().contains("/nonexistent/minerpool.yaml"),
        "{err}"
    );
    let cause = std::error::Error::source(&err).expect("the I/O error is the source");
    assert!(cause.to_string().contains("No such file"), "{cause}");
}

#[test]
fn a_file_on_disk_is_read() {
    let mut file = tempfile();
    file.1.write_all(minimal().as_bytes()).unwrap();
    let config = Config::load(&file.0).unwrap();
    assert_eq!(config.chain.inode_wallet, INODE);
    std::fs::remove_file(&file.0).unwrap();
}

fn tempfile() -> (std::path::PathBuf, std::fs::File) {
    let path = std::env::temp_dir().join(format!("minerpool-config-{}.yaml", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    (path, file)
}

#[test]
fn an_unknown_key_is_named() {
    let err = error_of(&format!("{}rewards:\n  feePercnt: 18\n", minimal()));
    assert!(err.contains("feePercnt"), "{err}");
    assert!(err.contains("rewards"), "{err}");
    let err = error_of(&format!("{}colour: blue\n", minimal()));
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn a_wrong_type_is_named() {
    let err = error_of(&format!("{}rewards:\n  blocksPerRun: many\n", minimal()));
    assert!(err.contains("rewards.blocksPerRun"), "{err}");
    let err = error_of(&format!(
        "{}node:\n  httpAddress: not-an-address\n",
        minimal()
    ));
    assert!(err.contains("node.httpAddress"), "{err}");
    let err = error_of(&format!(
        "{}payouts:\n  sender: carrier-pigeon\n",
        minimal()
    ));
    assert!(err.contains("payouts.sender"), "{err}");
    let err = error_of(&format!("{}node:\n  protocol: unsigned\n", minimal()));
    assert!(err.contains("node.protocol"), "{err}");
    assert!(err.contains("legacy") && err.contains("signed"), "{err}");
    // The setting that went with the one-at-a-time write path is gone, and named if set.
    let err = error_of(&format!("{}node:\n  groupCommit: false\n", minimal()));
    assert!(err.contains("groupCommit"), "{err}");
    let err = error_of(&format!(
        "{}payouts:\n  minimumPayout: \"0.123456789\"\n",
        minimal()
    ));
    assert!(err.contains("payouts.minimumPayout"), "{err}");
    assert!(err.contains("more than 8 decimals"), "{err}");
    let err = error_of(&format!("{}rewards:\n  feePercent: -5\n", minimal()));
    assert!(err.contains("rewards.feePercent"), "{err}");
}

#[test]
fn missing_required_keys_are_named() {
    let err = error_of("chain:\n  rewardAddress: x\n");
    assert!(err.contains("inodeWallet"), "{err}");
    let err = error_of("mongodb:\n  database: iNode\n");
    assert!(err.contains("chain"), "{err}");
    let err = error_of("");
    assert!(err.contains("chain"), "{err}");
}

#[test]
fn percentages_must_sum_to_100() {
    let err = error_of(&format!(
        "{}rewards:\n  feePercent: 20\n  poolsPercent: 41\n  validatorsPercent: 41\n",
        minimal()
    ));
    assert!(err.contains("rewards"), "{err}");
    assert!(err.contains("= 102"), "{err}");
}

#[test]
fn bad_values_are_named() {
    let cases = [
        ("rewards:\n  blocksPerRun: 0\n", "rewards.blocksPerRun"),
        ("rewards:\n  blocksPerRun: 5000\n", "rewards.blocksPerRun"),
        ("rewards:\n  confirmations: 999\n", "rewards.confirmations"),
        ("rewards:\n  confirmations: -1\n", "rewards.confirmations"),
        ("validators:\n  limit: 0\n", "validators.limit"),
        ("node:\n  maxConnections: 0\n", "node.maxConnections"),
        (
            "node:\n  signedWindowSeconds: 0\n",
            "node.signedWindowSeconds",
        ),
        (
            "node:\n  signedWindowSeconds: 3601\n",
            "node.signedWindowSeconds",
        ),
        (
            "payouts:\n  maxOutputsPerTx: 255\n",
            "payouts.maxOutputsPerTx",
        ),
        (
            "payouts:\n  minimumPayout: \"0\"\n",
            "payouts.minimumPayout",
        ),
        ("schedule:\n  decaySeconds: 0\n", "schedule.decaySeconds"),
        (
            "history:\n  scoreRetentionDays: 0\n",
            "history.scoreRetentionDays",
        ),
        (
            "history:\n  scoreRetentionDays: 367\n",
            "history.scoreRetentionDays",
        ),
        ("mongodb:\n  database: \"\"\n", "mongodb.database"),
        // The two servers cannot share a port on addresses that overlap.
        (
            "node:\n  websocketAddress: 0.0.0.0:8001\n",
            "node.websocketAddress: port 8001 is the HTTP port too",
        ),
        (
            "node:\n  httpAddress: 127.0.0.1:7000\n  websocketAddress: 0.0.0.0:7000\n",
            "node.websocketAddress",
        ),
        (
            "node:\n  httpAddress: 127.0.0.1:7000\n  websocketAddress: 127.0.0.1:7000\n",
            "node.websocketAddress",
        ),
    ];
    for (extra, key) in cases {
        let err = error_of(&format!("{}{extra}", minimal()));
        assert!(err.contains(key), "{extra:?}: {err}");
    }
    let err = error_of(&format!(
        "chain:\n  rateLimitWaitSeconds: 3601\n  inodeWallet: {INODE}\n  rewardAddress: {REWARD}\n"
    ));
    assert!(err.contains("chain.rateLimitWaitSeconds"), "{err}");
    let err = error_of(&format!(
        "chain:\n  apiUrl: ftp://example.org\n  inodeWallet: {INODE}\n  rewardAddress: {REWARD}\n"
    ));
    assert!(err.contains("chain.apiUrl"), "{err}");
    let err = error_of(&format!(
        "chain:\n  apiUrl: not a url\n  inodeWallet: {INODE}\n  rewardAddress: {REWARD}\n"
    ));
    assert!(err.contains("chain.apiUrl"), "{err}");
    // Plain http only when the config says so.
    let http = format!(
        "chain:\n  apiUrl: http://10.0.0.5:3006\n  inodeWallet: {INODE}\n  rewardAddress: {REWARD}\n"
    );
    let err = error_of(&http);
    assert!(
        err.contains("chain.apiUrl") && err.contains("allowInsecureHttp"),
        "{err}"
    );
    let err = error_of(&format!(
        "chain:\n  validatorsUrl: http://10.0.0.5/v?inode=\n  inodeWallet: {INODE}\n  rewardAddress: {REWARD}\n"
    ));
    assert!(err.contains("chain.validatorsUrl"), "{err}");
    let allowed = http.replace("chain:\n", "chain:\n  allowInsecureHttp: true\n");
    assert!(
        Config::from_yaml_str(&allowed)
            .unwrap()
            .chain
            .allow_insecure_http
    );
    let err = error_of(&format!(
        "chain:\n  inodeWallet: \"\"\n  rewardAddress: {REWARD}\n"
    ));
    assert!(err.contains("chain.inodeWallet"), "{err}");
    let err = error_of(&format!(
        "chain:\n  inodeWallet: {INODE}\n  rewardAddress: not-a-wallet\n"
    ));
    assert!(err.contains("chain.rewardAddress"), "{err}");
    assert!(err.contains("not a uPow address"), "{err}");
    let err = error_of(&format!(
        "chain:\n  inodeWallet: {INODE}\n  rewardAddress: {REWARD}\n  requestTimeoutSeconds: 0\n"
    ));
    assert!(err.contains("chain.requestTimeoutSeconds"), "{err}");
    // One port on two different addresses is two sockets.
    let apart = format!(
        "{}node:\n  httpAddress: 127.0.0.1:7000\n  websocketAddress: 127.0.0.2:7000\n",
        minimal()
    );
    assert!(Config::from_yaml_str(&apart).is_ok());
    let any_free = format!(
        "{}node:\n  httpAddress: 127.0.0.1:0\n  websocketAddress: 127.0.0.1:0\n",
        minimal()
    );
    assert!(
        Config::from_yaml_str(&any_free).is_ok(),
        "each gets a port of its own"
    );
}

/// Well-formed addresses that are not P-256 points: base58 with prefix 42 and x = 1, and the
/// generator's 128-hex form with y's lowest bit flipped.
const OFF_CURVE: [&str; 2] = [
    "DUiCyVdJHEpTzNA1X3siu2CS8kkbLzh4su1NYetFEQozw",
    "96c298d84539a1f4a033eb2d817d0377f240a463e5e6bcf847422ce1f2d1176bf451bf376840b6cbce5e316b5733ce2b169e0f7c4aebe78e9b7f1afee242e34f",
];

#[test]
fn an_off_curve_wallet_is_refused_naming_the_key() {
    for address in OFF_CURVE {
        for (inode, reward, key) in [
            (address, REWARD, "chain.inodeWallet"),
            (INODE, address, "chain.rewardAddress"),
        ] {
            let err = error_of(&format!(
                "chain:\n  inodeWallet: \"{inode}\"\n  rewardAddress: \"{reward}\"\n"
            ));
            assert!(err.contains(key), "{err}");
            assert!(err.contains("not a P-256 point"), "{err}");
        }
    }
}

#[test]
fn hostile_input_is_an_error_not_a_panic() {
    for text in [
        "\u{0}\u{1}\u{2}",
        "[1, 2, 3]",
        "chain: [",
        "{{{{{{{{{{",
        "chain: &a [*a]",
        &"- ".repeat(10_000),
    ] {
        assert!(Config::from_yaml_str(text).is_err(), "{text:?}");
    }
}

#[test]
fn secrets_come_from_the_environment() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    let err = Secrets::from_lookup(env(&[])).unwrap_err();
    assert!(err.to_string().contains("MONGODB_URI"), "{err}");
    let err = Secrets::from_lookup(env(&[("MONGODB_URI", "  ")])).unwrap_err();
    assert!(err.to_string().contains("MONGODB_URI"), "{err}");
    let secrets = Secrets::from_lookup(env(&[
        ("MONGODB_URI", "mongodb://db/?replicaSet=rs0"),
        ("MINERPOOL_ADMIN_TOKEN", "s3cret"),
    ]))
    .unwrap();
    assert_eq!(secrets.admin_token.as_deref(), Some("s3cret"));
    let err = secrets.require_wallet_key().unwrap_err();
    assert!(err.to_string().contains("MINERPOOL_WALLET_KEY"), "{err}");
    let shown = format!("{secrets:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("mongodb://"),
        "{shown}"
    );
}
