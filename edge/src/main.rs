//! `latchkey-edge`: answers client license calls from a signed snapshot.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use latchkey_shared::snapshot::{Opened, SnapshotState, open};
use latchkey_shared::{LicenseKey, TrustedKeys};

// glibc malloc's arena locks showed up in profiles of the verify path under
// load (every request allocates a little); mimalloc keeps per-thread heaps.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "latchkey-edge",
    version,
    about = "Latchkey edge node: the public license API, answered from a signed snapshot"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the public license API from a snapshot file (reloaded when it changes).
    Serve(Box<latchkey_edge::EdgeConfig>),
    /// Verify a snapshot file against trusted public keys and describe it.
    Inspect {
        /// The signed snapshot file.
        #[arg(long)]
        snapshot: PathBuf,
        /// A trusted public key (SPKI PEM); repeat for key rotation.
        #[arg(long = "trusted-key", required = true)]
        trusted_keys: Vec<PathBuf>,
        /// Look this license key up in the snapshot.
        #[arg(long)]
        key: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(config) => {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            tracing_subscriber::fmt().with_env_filter(filter).init();
            latchkey_edge::serve(*config).await
        }
        Command::Inspect {
            snapshot,
            trusted_keys,
            key,
        } => inspect(&snapshot, &trusted_keys, key.as_deref()),
    }
}

fn inspect(
    path: &std::path::Path,
    trusted_keys: &[PathBuf],
    key: Option<&str>,
) -> anyhow::Result<()> {
    let mut trusted = TrustedKeys::new();
    for key_path in trusted_keys {
        let pem = std::fs::read_to_string(key_path)
            .with_context(|| format!("reading {}", key_path.display()))?;
        trusted
            .insert_pem(&pem)
            .with_context(|| format!("loading trusted key {}", key_path.display()))?;
    }
    let bytes = latchkey_edge::snapshots::read_file(path)
        .with_context(|| format!("reading {}", path.display()))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let full = match open(bytes, &trusted, None, now)
        .with_context(|| format!("verifying {}", path.display()))?
    {
        Opened::Full(full) => full,
        Opened::Delta(delta) => bail!(
            "{} is a delta on sequence {:?}; an edge starts from a full snapshot",
            path.display(),
            delta.meta.kind
        ),
    };
    let meta = full.meta;
    let state = SnapshotState::new(full);
    println!(
        "verified: signed by key {}, sequence {}",
        meta.key_id, meta.sequence
    );
    println!(
        "created {} (unix), expires {}",
        meta.created_at, meta.expires_at
    );
    println!(
        "{} licenses, {} products, {} feature flags",
        state.base_license_count(),
        state.products().len(),
        state.flags().len()
    );
    if let Some(key) = key {
        let key: LicenseKey = key.parse().context("parsing the license key")?;
        match state.license(&key.hash()) {
            Some(license) => println!(
                "license {}: {:?}, {:?}, product {}, valid until {:?}, {}/{} devices, features {:?}",
                license.license_id(),
                license.status(),
                license.kind(),
                license.product_id(),
                license.valid_until(),
                license.devices().len(),
                license.device_limit(),
                license.features()
            ),
            None => println!("license {}: not in this snapshot", key.prefix()),
        }
    }
    Ok(())
}
