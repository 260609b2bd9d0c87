//! `latchkey-control`: the control plane's command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use latchkey_control::{demo, keys};

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

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
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
