//! `chain-sim`: the uPow chain simulator as a process, for the demo and end-to-end tests.
//! Generated blocks pay the iNode wallet outputs it can spend, and confirm every pending
//! transaction, so a wallet whose key the demo holds really pays through it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use minerpool_tests::chain_sim::{ChainSim, Scenario, generate_blocks};

#[derive(Parser)]
#[command(
    name = "chain-sim",
    version,
    about = "Serves a simulated uPow chain API"
)]
struct Cli {
    /// Address to listen on (port 0: any free port; the URL is printed on stdout)
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// A YAML or JSON scenario: blocks and validators
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Print a fresh wallet key and its address ("KEY ADDRESS" on one line) and exit
    #[arg(long, exclusive = true)]
    new_wallet: bool,
    /// Emit a block paying this wallet every --every seconds (it also confirms every pending
    /// transaction)
    #[arg(long, value_name = "ADDRESS")]
    generate_for: Option<String>,
    /// Seconds between generated blocks
    #[arg(long, default_value_t = 5)]
    every: u64,
    /// First generated block id
    #[arg(long, default_value_t = 20001)]
    start_height: u64,
    /// Seed of the generated amounts
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    minerpool_core::logging::init();
    let cli = Cli::parse();
    if cli.new_wallet {
        let (key, address) = new_wallet()?;
        println!("{key} {address}");
        return Ok(());
    }
    let scenario = match &cli.scenario {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading scenario {}", path.display()))?;
            serde_yaml::from_str::<Scenario>(&text)
                .with_context(|| format!("scenario {}", path.display()))?
        }
        None => Scenario::default(),
    };
    let sim = ChainSim::serve(cli.listen, scenario)
        .await
        .with_context(|| format!("listening on {}", cli.listen))?;
    if let Some(wallet) = cli.generate_for {
        generate_blocks(
            &sim,
            wallet,
            Duration::from_secs(cli.every.max(1)),
            cli.start_height,
            cli.seed,
        );
    }
    println!("{}", sim.url);
    tokio::signal::ctrl_c().await?;
    Ok(())
}

/// A private key from the OS random source (retried in the rare case it is not below the group
/// order), in the hex form `MINERPOOL_WALLET_KEY` takes, and its address.
fn new_wallet() -> anyhow::Result<(String, String)> {
    use std::io::Read;
    let mut random = std::fs::File::open("/dev/urandom").context("opening /dev/urandom")?;
    loop {
        let mut bytes = [0u8; 32];
        random
            .read_exact(&mut bytes)
            .context("reading /dev/urandom")?;
        let hex = hex::encode(bytes);
        if let Ok(key) = minerpool_core::upow::parse_private_key(&hex) {
            return Ok((hex, minerpool_core::upow::address_of(key.verifying_key())));
        }
    }
}
