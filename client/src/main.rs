//! `latchkey-client`: the library's calls from a shell, for vendors trying
//! an integration and for support looking at a customer's machine.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use latchkey_client::{Client, LeaseFile, SessionEvent, SessionOptions, fingerprint};
use latchkey_shared::token::{self, Lease};
use latchkey_shared::{LicenseKey, TrustedKeys};
use serde::Serialize;
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(
    name = "latchkey-client",
    version,
    about = "Activate, verify and run sessions on a Latchkey license"
)]
struct Cli {
    /// An edge's base URL; repeat (or separate with commas) for failover.
    #[arg(
        long = "edge",
        env = "LATCHKEY_EDGES",
        value_delimiter = ',',
        global = true
    )]
    edges: Vec<String>,
    /// The license signing public key (PEM file).
    #[arg(long, env = "LATCHKEY_PUBLIC_KEY", global = true)]
    public_key: Option<PathBuf>,
    /// The product slug.
    #[arg(long, env = "LATCHKEY_PRODUCT", global = true)]
    product: Option<String>,
    /// The application's version, checked against the product's minimum.
    #[arg(long, global = true)]
    app_version: Option<String>,
    /// Where the offline lease is cached.
    #[arg(long, env = "LATCHKEY_LEASE_FILE", global = true)]
    lease_file: Option<PathBuf>,
    /// Read the machine's identity files under this directory instead of `/`
    /// (Linux: a container's or a mounted system's).
    #[arg(long, global = true, default_value = "/")]
    machine_root: PathBuf,
    /// Believe answers an edge did not sign (an edge serving a snapshot
    /// file has no certified key); any server at that address could then
    /// answer "valid".
    #[arg(long, global = true)]
    accept_unsigned_answers: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Args)]
struct Key {
    /// The license key (or LATCHKEY_LICENSE_KEY, which `ps` does not show).
    #[arg(long = "key", env = "LATCHKEY_LICENSE_KEY", hide_env_values = true)]
    license_key: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the fingerprint this machine sends (protected components).
    Fingerprint,
    /// Take a seat for this machine and cache its lease.
    Activate {
        #[command(flatten)]
        key: Key,
        #[arg(long)]
        device_name: Option<String>,
    },
    /// Verify the license on this machine (online, else from the lease).
    Verify {
        #[command(flatten)]
        key: Key,
        #[arg(long)]
        feature: Option<String>,
    },
    /// Give this machine's seat up.
    Deactivate {
        #[command(flatten)]
        key: Key,
    },
    /// Move a device's seat to this machine.
    Transfer {
        #[command(flatten)]
        key: Key,
        #[arg(long)]
        from_device: Uuid,
    },
    /// Run a session until Ctrl-C, printing each heartbeat.
    Session {
        #[command(flatten)]
        key: Key,
        #[arg(long)]
        take_over: bool,
    },
    /// The cached lease.
    Lease {
        #[command(subcommand)]
        command: LeaseCommand,
    },
}

#[derive(Debug, Subcommand)]
enum LeaseCommand {
    /// Print the cached lease's claims, checked with the public key.
    Show {
        /// Also say whether the lease is this license key's.
        #[arg(long = "key", env = "LATCHKEY_LICENSE_KEY", hide_env_values = true)]
        license_key: Option<String>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    #[cfg(target_os = "linux")]
    let raw = fingerprint::collect_under(&cli.machine_root);
    #[cfg(not(target_os = "linux"))]
    let raw = fingerprint::collect();
    let scope = cli.product.clone().unwrap_or_default();
    match &cli.command {
        Command::Fingerprint => {
            let protected = fingerprint::protect(&raw, &scope)
                .context("this machine reports no usable component")?;
            print_json(&protected)
        }
        Command::Lease {
            command: LeaseCommand::Show { license_key },
        } => show_lease(&cli, license_key.as_deref()),
        Command::Activate { key, device_name } => {
            let mut builder = builder(&cli, raw)?;
            if let Some(name) = device_name {
                builder = builder.device_name(name);
            }
            let client = builder.build()?;
            print_json(&client.activate(&key.license_key).await?)
        }
        Command::Verify { key, feature } => {
            let client = builder(&cli, raw)?.build()?;
            let answer = match feature {
                Some(feature) => client.verify_feature(&key.license_key, feature).await?,
                None => client.verify(&key.license_key).await?,
            };
            print_json(&Verdict::from(&answer))?;
            anyhow::ensure!(answer.is_valid(), "the license is not valid here");
            Ok(())
        }
        Command::Deactivate { key } => {
            let client = builder(&cli, raw)?.build()?;
            print_json(&client.deactivate(&key.license_key).await?)
        }
        Command::Transfer { key, from_device } => {
            let client = builder(&cli, raw)?.build()?;
            print_json(&client.transfer(&key.license_key, *from_device).await?)
        }
        Command::Session { key, take_over } => {
            let client = builder(&cli, raw)?.build()?;
            let options = SessionOptions {
                take_over: *take_over,
                ..SessionOptions::default()
            };
            run_session(&client, &key.license_key, options).await
        }
    }
}

fn builder(
    cli: &Cli,
    raw: latchkey_shared::Fingerprint,
) -> anyhow::Result<latchkey_client::ClientBuilder> {
    let mut builder = Client::builder()
        .edges(&cli.edges)
        .trusted_keys(trusted(cli)?)
        .fingerprint(raw);
    if let Some(version) = &cli.app_version {
        builder = builder.app_version(version);
    }
    if let Some(product) = &cli.product {
        builder = builder.product(product);
    }
    if let Some(path) = &cli.lease_file {
        builder = builder.lease_file(path);
    }
    if cli.accept_unsigned_answers {
        builder = builder.accept_unsigned_answers();
    }
    Ok(builder)
}

fn trusted(cli: &Cli) -> anyhow::Result<TrustedKeys> {
    let path = cli
        .public_key
        .as_ref()
        .context("--public-key (or LATCHKEY_PUBLIC_KEY) names the license signing public key")?;
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("reading the public key {}", path.display()))?;
    let mut keys = TrustedKeys::new();
    keys.insert_pem(&pem)
        .with_context(|| format!("the public key {}", path.display()))?;
    Ok(keys)
}

async fn run_session(client: &Client, key: &str, options: SessionOptions) -> anyhow::Result<()> {
    let mut session = client.start_session(key, options).await?;
    say(&format!("session {} started", session.id()))?;
    loop {
        let event = tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            event = session.events().recv() => event,
        };
        match event {
            Some(SessionEvent::Heartbeat { edge, next_in }) => {
                say(&format!(
                    "heartbeat at {edge}; next in {}s",
                    next_in.as_secs()
                ))?;
            }
            Some(SessionEvent::Lost(reason)) => anyhow::bail!("session lost: {reason:?}"),
            Some(other) => say(&format!("{other:?}"))?,
            None => anyhow::bail!("the session's task stopped"),
        }
    }
    session.end().await;
    say("session ended")
}

/// `lease show`: the lease is decoded only after its signature verified; the
/// license and machine are checked when a key is at hand.
fn show_lease(cli: &Cli, license_key: Option<&str>) -> anyhow::Result<()> {
    let path = cli
        .lease_file
        .as_ref()
        .context("--lease-file (or LATCHKEY_LEASE_FILE) names the lease cache")?;
    let cached = LeaseFile::new(path)
        .read()?
        .with_context(|| format!("no lease is cached at {}", path.display()))?;
    let lease: Lease = token::verify(&cached.lease, &trusted(cli)?, i64::MIN)
        .context("the cached lease does not verify")?;
    let key_matches = license_key
        .map(|key| key.parse::<LicenseKey>().context("the license key"))
        .transpose()?
        .map(|key| key.hash() == lease.key_hash);
    print_json(&serde_json::json!({
        "license_id": lease.license_id,
        "product_id": lease.product_id,
        "features": lease.features,
        "issued_at": lease.issued_at,
        "valid_until": lease.valid_until,
        "last_seen": cached.last_seen,
        "grace_ended_at": cached.grace_ended_at,
        "for_license_key": key_matches,
    }))
}

/// What `verify` prints.
#[derive(Debug, Serialize)]
struct Verdict<'a> {
    valid: bool,
    source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<latchkey_shared::api::ErrorCode>,
    features: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    offline_until: Option<i64>,
}

impl<'a> From<&'a latchkey_client::Verification> for Verdict<'a> {
    fn from(answer: &'a latchkey_client::Verification) -> Self {
        let offline_until = match answer {
            latchkey_client::Verification::Offline { lease, .. } => Some(lease.valid_until),
            latchkey_client::Verification::Online(_) => None,
        };
        Self {
            valid: answer.is_valid(),
            source: if offline_until.is_some() {
                "lease"
            } else {
                "edge"
            },
            code: answer.code(),
            features: answer.features(),
            offline_until,
        }
    }
}

fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    say(&serde_json::to_string_pretty(value)?)
}

/// One line on standard output. A reader that went away (`| head`) is not
/// an error of ours: the rest is dropped, as `println!` would panic.
fn say(line: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match writeln!(std::io::stdout().lock(), "{line}") {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error.into()),
        _ => Ok(()),
    }
}
