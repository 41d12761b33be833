//! The node's test helper ([`minerpool_node::testing`]), plus what only the node's own tests
//! need: HTTP reads and the real `minerpool-node` binary.

#![allow(dead_code)]

use std::time::Duration;

use minerpool_tests::fixtures::{INODE, REWARD};

pub use minerpool_node::testing::*;

/// The JSON body of a GET.
pub async fn json_of(url: impl reqwest::IntoUrl) -> serde_json::Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// The text body of a GET.
pub async fn text_of(url: impl reqwest::IntoUrl) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// A `minerpool-node serve` process of a test.
pub struct NodeProcess {
    pub child: tokio::process::Child,
    pub ws: String,
    pub http: String,
}

/// The real `minerpool-node serve` on `database`, configured by `configure`, with
/// `MINERPOOL_FAULT` set to `fault`; ready.
pub async fn node_process_with(
    database: &str,
    fault: Option<&str>,
    configure: impl FnOnce(&mut minerpool_core::config::Config),
) -> (tokio::process::Child, String) {
    let node = node_process(database, fault, configure).await;
    (node.child, node.ws)
}

/// [`node_process_with`], with both addresses.
pub async fn node_process(
    database: &str,
    fault: Option<&str>,
    configure: impl FnOnce(&mut minerpool_core::config::Config),
) -> NodeProcess {
    node_process_as("serve", database, fault, configure).await
}

/// `minerpool-node <command>` (`serve` or `standalone`), otherwise as [`node_process`].
pub async fn node_process_as(
    command_name: &str,
    database: &str,
    fault: Option<&str>,
    configure: impl FnOnce(&mut minerpool_core::config::Config),
) -> NodeProcess {
    let (http_port, ws_port) = (minerpool_tests::free_port(), minerpool_tests::free_port());
    let mut config = minerpool_core::config::Config::with_wallets(INODE, REWARD);
    configure(&mut config);
    config.mongodb.database = database.to_owned();
    config.node.http_address = format!("127.0.0.1:{http_port}").parse().unwrap();
    config.node.websocket_address = format!("127.0.0.1:{ws_port}").parse().unwrap();
    let path = std::env::temp_dir().join(format!("{database}-{ws_port}.yaml"));
    std::fs::write(&path, config.to_yaml()).unwrap();
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_minerpool-node"));
    command
        .args([command_name, "--config"])
        .arg(&path)
        .env("MONGODB_URI", minerpool_core::testing::mongodb_uri())
        .env("RUST_LOG", "warn")
        .env_remove("MINERPOOL_FAULT")
        .kill_on_drop(true);
    if let Some(fault) = fault {
        command.env("MINERPOOL_FAULT", fault);
    }
    let child = command.spawn().expect("start minerpool-node");
    let http = format!("http://127.0.0.1:{http_port}");
    let ready = format!("{http}/readyz");
    for _ in 0..200 {
        if reqwest::get(&ready)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return NodeProcess {
                child,
                ws: format!("ws://127.0.0.1:{ws_port}"),
                http,
            };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("minerpool-node did not get ready");
}
