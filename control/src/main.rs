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
    /// Serve the admin API: reads the configuration (defaults, the TOML file in
    /// LATCHKEY_CONFIG, LATCHKEY_* variables; DATABASE_URL, SECRET_KEY and
    /// JWT_SECRET required), migrates the database, listens until SIGTERM/Ctrl-C.
    Serve,
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
    /// Admin users of the panel.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// API keys for the admin API.
    ApiKeys {
        #[command(subcommand)]
        command: ApiKeysCommand,
    },
    /// Full snapshots for edges.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCommand,
    },
    /// Edges: enrolment tokens, list, revoke.
    Edges {
        #[command(subcommand)]
        command: EdgesCommand,
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
enum AdminCommand {
    /// Create an admin user. The password is read from LATCHKEY_ADMIN_PASSWORD
    /// or, when that is unset, from the first line of standard input.
    Create {
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        #[arg(long)]
        username: String,
        /// `admin` (everything) or `viewer` (read-only).
        #[arg(long, default_value = "admin", value_parser = ["admin", "viewer"])]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
enum ApiKeysCommand {
    /// Create an API key and print its secret (shown this once). Reads
    /// DATABASE_URL and SECRET_KEY like `serve`; for the first key, before any exists.
    Create {
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        #[arg(long, env = "SECRET_KEY", hide_env_values = true)]
        secret_key: String,
        #[arg(long)]
        name: String,
        /// Scopes such as `licenses:write`, `customers:read` or `*`; repeat or separate with commas.
        #[arg(long = "scope", value_delimiter = ',', default_value = "*")]
        scopes: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum SnapshotCommand {
    /// Build a signed full snapshot from the database into a file, for an
    /// edge that cannot reach control (air-gapped sites).
    Export {
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// The private signing key (PKCS#8 PEM) from `keys generate`.
        #[arg(long, env = "LATCHKEY_SIGNING_KEY_PATH")]
        signing_key: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum EdgesCommand {
    /// Register an edge and print its one-time enrolment token (shown once;
    /// give it to the edge with --enrol-token on its first start).
    Create {
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        #[arg(long)]
        name: String,
    },
    /// List edges: enrolled, revoked, last seen, snapshot sequence held.
    List {
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
    },
    /// Refuse an edge from now on (its next connection is turned away).
    Revoke {
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        #[arg(long)]
        id: uuid::Uuid,
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
    /// Create the demo product, customer and licenses in the database and
    /// print the demo license keys (one per line: key, kind, state).
    Seed {
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        #[arg(long, env = "SECRET_KEY", hide_env_values = true)]
        secret_key: String,
        /// Full licenses to create (a trial, a suspended and an expired one come on top).
        #[arg(long, default_value_t = 100)]
        licenses: usize,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve => serve().await?,
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
        Command::Admin {
            command:
                AdminCommand::Create {
                    database_url,
                    username,
                    role,
                },
        } => {
            let password = match std::env::var("LATCHKEY_ADMIN_PASSWORD") {
                Ok(password) => password,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("reading the password from standard input")?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
            };
            let role = if role == "viewer" {
                db::admins::Role::Viewer
            } else {
                db::admins::Role::Admin
            };
            let pool = db::connect(&database_url, 2)
                .await
                .context("connecting to DATABASE_URL")?;
            db::migrate(&pool).await.context("applying migrations")?;
            let ctx = latchkey_control::context::RequestContext::system("cli");
            let id = db::admins::create(&pool, &ctx, &username, &password, role).await?;
            println!("admin {username} created ({id})");
        }
        Command::ApiKeys {
            command:
                ApiKeysCommand::Create {
                    database_url,
                    secret_key,
                    name,
                    scopes,
                },
        } => {
            let scopes = db::api_keys::Scopes::parse(&scopes)
                .map_err(|(i, message)| anyhow::anyhow!("--scope #{}: {message}", i + 1))?;
            let secrets = latchkey_control::secrets::Secrets::new(&secret_key)?;
            let pool = db::connect(&database_url, 2)
                .await
                .context("connecting to DATABASE_URL")?;
            db::migrate(&pool).await.context("applying migrations")?;
            let scopes: Vec<_> = scopes.iter().collect();
            let created = db::api_keys::create_bootstrap(&pool, &secrets, &name, &scopes).await?;
            println!(
                "api key {} ({}): {}",
                created.key.name, created.key.id, created.secret
            );
        }
        Command::Snapshot {
            command:
                SnapshotCommand::Export {
                    database_url,
                    signing_key,
                    out,
                },
        } => {
            let signer = keys::load(&signing_key)?;
            let pool = db::connect(&database_url, 2)
                .await
                .context("connecting to DATABASE_URL")?;
            let started = std::time::Instant::now();
            let built =
                db::snapshot::build_full(&pool, &signer, time::OffsetDateTime::now_utc()).await?;
            std::fs::write(&out, &built.bytes)
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "wrote {}: sequence {}, {} licenses, {} bytes, signed by {} in {:.2?}",
                out.display(),
                built.sequence,
                built.licenses,
                built.bytes.len(),
                signer.id(),
                started.elapsed()
            );
        }
        Command::Edges { command } => edges(command).await?,
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
                DemoCommand::Seed {
                    database_url,
                    secret_key,
                    licenses,
                },
        } => {
            let secrets = latchkey_control::secrets::Secrets::new(&secret_key)?;
            let pool = db::connect(&database_url, 2)
                .await
                .context("connecting to DATABASE_URL")?;
            db::migrate(&pool).await.context("applying migrations")?;
            for license in demo::seed(&pool, &secrets, licenses).await? {
                let state = if license.expired {
                    "expired"
                } else {
                    license.status.as_str()
                };
                println!("{} {} {state}", license.key, license.kind.as_str());
            }
        }
    }
    Ok(())
}

async fn serve() -> anyhow::Result<()> {
    use latchkey_control::config::{Config, LogFormat};
    use tracing_subscriber::EnvFilter;

    // Everything is checked before a socket is bound.
    let config = Config::load().context("invalid configuration")?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
    latchkey_control::http::serve(config).await
}

async fn edges(command: EdgesCommand) -> anyhow::Result<()> {
    match command {
        EdgesCommand::Create { database_url, name } => {
            let pool = db::connect(&database_url, 1).await?;
            let created = db::edges::create(&pool, &name).await?;
            println!("edge {} ({})", created.edge.name, created.edge.id);
            println!("enrolment token (shown once): {}", created.enrol_token);
        }
        EdgesCommand::List { database_url } => {
            let pool = db::connect(&database_url, 1).await?;
            for edge in db::edges::list(&pool).await? {
                println!("{}", serde_json::to_string(&edge)?);
            }
        }
        EdgesCommand::Revoke { database_url, id } => {
            let pool = db::connect(&database_url, 1).await?;
            let edge = db::edges::revoke(&pool, id).await?;
            println!("edge {} revoked", edge.name);
        }
    }
    Ok(())
}
