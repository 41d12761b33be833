//! `minerpool-operator`. Today it generates the MinerPool CRD (`crd`); the reconciler is not
//! built yet.

use clap::{Parser, Subcommand};
use kube::CustomResourceExt;

#[derive(Parser)]
#[command(
    name = "minerpool-operator",
    version,
    about = "Kubernetes operator for MinerPool resources"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the MinerPool CustomResourceDefinition as YAML
    Crd,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crd => print!("{}", crd_yaml()?),
    }
    Ok(())
}

fn crd_yaml() -> anyhow::Result<String> {
    Ok(serde_yaml::to_string(
        &minerpool_operator::crd::MinerPool::crd(),
    )?)
}
