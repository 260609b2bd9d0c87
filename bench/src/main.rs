//! `latchkey-bench`: load scenarios, each racing a reference measured in the
//! same run so the figure is a ratio, not a number that depends on the day.
//! Every scenario works in a database of its own, created and dropped here.

mod activations;
mod scratch;
mod snapshot_build;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "latchkey-bench",
    version,
    about = "Latchkey load scenarios, each beside a reference in the same run"
)]
struct Cli {
    /// The PostgreSQL server to work in (a scratch database is created and dropped).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres",
        global = true
    )]
    database_url: String,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Activations per second with concurrent clients, each activation the
    /// full rule (license lock, device limit, lease signing, audit, outbox),
    /// beside bare write transactions (lock a row, insert one) from as many clients.
    Activations(activations::Args),
    /// Time to build and sign a full snapshot of N licenses from PostgreSQL,
    /// beside only streaming the same rows.
    SnapshotBuild(snapshot_build::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.scenario {
        Scenario::Activations(args) => activations::run(&cli.database_url, args).await,
        Scenario::SnapshotBuild(args) => snapshot_build::run(&cli.database_url, args).await,
    }
}
