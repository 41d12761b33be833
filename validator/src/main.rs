//! `minerpool-validator`: sends one TASK or PING to a minerpool node, signed with the validator's
//! uPow key (SPEC §4.5), and prints the node's reply. Exit status: 0 on `SUCCESS…`, 1 on any other
//! reply (`ERROR…`), 2 when no reply was had (usage, key file, connection).

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use minerpool_validator::{Statement, address, legacy_frame, read_key_file, send, signed_frame};

#[derive(Parser)]
#[command(name = "minerpool-validator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report that a pool did work for this validator (TASK).
    Task {
        #[command(flatten)]
        to: Destination,
        /// The pool's wallet address.
        #[arg(long)]
        pool: String,
        /// The validation's id; a retry with the same id scores once.
        #[arg(long)]
        val_id: String,
    },
    /// Tell the node where this validator listens (PING).
    Ping {
        #[command(flatten)]
        to: Destination,
        /// The IPv4 address pools connect to.
        #[arg(long)]
        ip: Ipv4Addr,
        /// The port pools connect to.
        #[arg(long)]
        port: u16,
    },
    /// Print the validator's uPow address (the one its key encodes).
    Address {
        /// File holding the validator's private key: hex, optionally after 0x.
        #[arg(long)]
        key_file: PathBuf,
    },
}

#[derive(Args)]
struct Destination {
    /// The node's WebSocket URL, ws://HOST:PORT.
    #[arg(long)]
    node: String,
    /// File holding the validator's private key: hex, optionally after 0x.
    #[arg(long)]
    key_file: PathBuf,
    /// The iNode's wallet address: a signature is valid only at the iNode it names.
    #[arg(long, value_parser = inode_address)]
    inode: String,
    /// Send the legacy message, without ts, nonce and sig.
    #[arg(long)]
    unsigned: bool,
    /// Seconds to wait for the reply, connecting included.
    #[arg(long, default_value_t = 15)]
    timeout_seconds: u64,
}

fn inode_address(text: &str) -> Result<String, String> {
    minerpool_core::address::check_format(text)
        .map(|()| text.to_owned())
        .map_err(|e| e.to_string())
}

/// What came of a command that ran to its end.
enum Outcome {
    Accepted,
    Refused,
}

async fn run(command: Command) -> anyhow::Result<Outcome> {
    let (to, statement) = match command {
        Command::Address { key_file } => {
            println!("{}", address(&read_key_file(key_file)?));
            return Ok(Outcome::Accepted);
        }
        Command::Task { to, pool, val_id } => (to, Statement::Task { pool, val_id }),
        Command::Ping { to, ip, port } => (to, Statement::Ping { ip, port }),
    };
    let key = read_key_file(&to.key_file)?;
    let frame = if to.unsigned {
        legacy_frame(&address(&key), &statement)
    } else {
        signed_frame(&key, &to.inode, &statement)
    };
    let reply = send(
        &to.node,
        &frame,
        Duration::from_secs(to.timeout_seconds.max(1)),
    )
    .await
    .context("no reply from the node")?;
    println!("{reply}");
    Ok(if reply.starts_with("SUCCESS") {
        Outcome::Accepted
    } else {
        Outcome::Refused
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    // clap exits by itself: 2 on a usage error, 0 for --help and --version.
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(Outcome::Accepted) => ExitCode::SUCCESS,
        Ok(Outcome::Refused) => ExitCode::from(1),
        Err(e) => {
            eprintln!("minerpool-validator: {e:#}");
            ExitCode::from(2)
        }
    }
}
