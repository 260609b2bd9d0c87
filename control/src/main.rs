//! `latchkey-control`: the control plane's command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use latchkey_control::{db, demo, keys};

#[derive(Debug, Parser)]
#[command(
    name = "latchkey-control",
    version,
    about = "Latchkey control plane: licenses, admin panel and API, snapshot publishing"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply the database migrations (creates the schema on an empty database).
    Migrate {
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Create heartbeat partitions ahead and retire those past the retention.
    Partitions {
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// Months of partitions to keep ready after the current one.
        #[arg(long, default_value_t = 3)]
        months_ahead: u32,
        /// Months of heartbeats to keep before the current one.
        #[arg(
            long,
            env = "LATCHKEY_HEARTBEAT_RETENTION_MONTHS",
            default_value_t = 13
        )]
        retention_months: u32,
    },
    /// Signing keys for snapshots and offline leases.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Demo data for trying Latchkey out.
    Demo {
        #[command(subcommand)]
        command: DemoCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Generate an Ed25519 key pair: signing-<id>.pem (private) and signing-<id>.pub.pem.
    Generate {
        /// Directory to write the two PEM files into.
        #[arg(long, default_value = ".data/keys")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum DemoCommand {
    /// Write a signed full snapshot of demo licenses and print some of their keys.
    Snapshot {
        /// The private signing key (PKCS#8 PEM) from `keys generate`.
        #[arg(long)]
        signing_key: PathBuf,
        /// Where to write the snapshot.
        #[arg(long)]
        out: PathBuf,
        /// How many demo licenses.
        #[arg(long, default_value_t = 1000)]
        licenses: usize,
        /// Snapshot sequence number.
        #[arg(long, default_value_t = 1)]
        sequence: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Migrate { database_url } => {
            let pool = db::connect(&database_url, 2)
                .await
                .context("connecting to DATABASE_URL")?;
            db::migrate(&pool).await.context("applying migrations")?;
            println!("schema is up to date");
        }
        Command::Partitions {
            database_url,
            months_ahead,
            retention_months,
        } => {
            let pool = db::connect(&database_url, 2)
                .await
                .context("connecting to DATABASE_URL")?;
            let today = time::OffsetDateTime::now_utc().date();
            let done = db::partitions::maintain(&pool, today, months_ahead, retention_months)
                .await
                .context("maintaining heartbeat partitions")?;
            println!(
                "created {} partitions, retired {:?}",
                done.created, done.retired
            );
        }
        Command::Keys {
            command: KeysCommand::Generate { out },
        } => {
            let written = keys::generate(&out)?;
            println!("key id {}", written.key_id);
            println!("private key: {}", written.private_pem.display());
            println!("public key:  {}", written.public_pem.display());
        }
        Command::Demo {
            command:
                DemoCommand::Snapshot {
                    signing_key,
                    out,
                    licenses,
                    sequence,
                },
        } => {
            let signer = keys::load(&signing_key)?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs() as i64;
            let demo_licenses = demo::licenses(licenses, now);
            let builder = demo::snapshot_builder(&demo_licenses, now)?;
            let bytes = builder.seal(&signer, sequence, now, now + 7 * 86_400)?;
            std::fs::write(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {} ({} bytes, {} licenses, sequence {sequence})",
                out.display(),
                bytes.len(),
                licenses
            );
            for (key, entry) in demo_licenses.iter().take(3) {
                println!("demo license {key}  ({:?}, {:?})", entry.kind, entry.status);
            }
        }
    }
    Ok(())
}
