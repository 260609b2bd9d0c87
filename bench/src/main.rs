//! `latchkey-bench`: load scenarios, each racing a reference measured in the
//! same run so the figure is a ratio, not a number that depends on the day.
//! Every scenario works in a database of its own, created and dropped here.

mod activations;
mod baseline_postgres;
mod ceiling;
mod data;
mod ingest;
mod ingest_db;
mod panel;
mod propagation;
mod scratch;
mod seed;
mod snapshot_build;
mod stack;
mod verify;

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
    /// Usage records per second through the control ingest (batch id once,
    /// binary COPY, session heartbeat times) from concurrent edges, beside a
    /// plain binary COPY of as many rows from as many connections.
    IngestDb(ingest_db::Args),
    /// Usage records per second end to end: heartbeats recorded into
    /// in-process edges, shipped in batches over the QUIC link, ingested by
    /// control; beside a plain binary COPY of as many rows.
    Ingest(ingest::Args),
    /// Export rows per second of the licenses list (CSV, JSON) beside
    /// PostgreSQL's COPY, with peak memory; backup and restore time beside
    /// pg_dump and pg_restore run by hand; at 1 000 000 licenses.
    Data(data::Args),
    /// Server time per admin panel page (p50, p95) at 1 000 000 licenses
    /// and 100 000 customers, beside a plain indexed SELECT of the same rows.
    Panel(panel::Args),
    /// Time from a committed license change to every in-process edge
    /// serving it (publisher, signed delta, QUIC), beside PostgreSQL's
    /// LISTEN/NOTIFY round trip.
    Propagation(propagation::Args),
    /// Time to build and sign a full snapshot of N licenses from PostgreSQL,
    /// beside only streaming the same rows.
    SnapshotBuild(snapshot_build::Args),
    /// Verify requests per second and latency of the edge (`latchkey-edge
    /// serve`), beside a bare hyper server (the ceiling) and a server
    /// answering from one PostgreSQL query per request (the seed's way).
    Verify(verify::Args),
    /// The `verify` ceiling: a bare hyper server answering every request
    /// with a fixed JSON (started by `verify`, one process per server).
    #[command(hide = true)]
    CeilingServer(ceiling::Args),
    /// The `verify` PostgreSQL reference server (started by `verify`).
    #[command(hide = true)]
    BaselinePostgresServer(baseline_postgres::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.scenario {
        Scenario::Activations(args) => activations::run(&cli.database_url, args).await,
        Scenario::Data(args) => data::run(&cli.database_url, args).await,
        Scenario::IngestDb(args) => ingest_db::run(&cli.database_url, args).await,
        Scenario::Ingest(args) => ingest::run(&cli.database_url, args).await,
        Scenario::Panel(args) => panel::run(&cli.database_url, args).await,
        Scenario::Propagation(args) => propagation::run(&cli.database_url, args).await,
        Scenario::SnapshotBuild(args) => snapshot_build::run(&cli.database_url, args).await,
        Scenario::Verify(args) => verify::run(&cli.database_url, args).await,
        Scenario::CeilingServer(args) => ceiling::serve(args).await,
        Scenario::BaselinePostgresServer(args) => {
            baseline_postgres::serve(&cli.database_url, args).await
        }
    }
}
