//! The control plane's command line, as a library so tests run it: `main`
//! only parses the arguments and calls [`run`] with the process's standard
//! input and output.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};
use sqlx::PgPool;

use crate::backup::Backups;
use crate::config::{BackupConfig, Config, LogFormat};
use crate::context::RequestContext;
use crate::db::admins::Role;
use crate::db::{self, api_keys};
use crate::progress::Progress;
use crate::secrets::Secrets;
use crate::{app, demo, keys};
use bar::with_bar;
use transfer::{FileFormat, ImportKind, List};

mod bar;
mod transfer;

/// Where `admin create` reads the password when it is not on standard input.
pub const ADMIN_PASSWORD_VAR: &str = "LATCHKEY_ADMIN_PASSWORD";

#[derive(Debug, Parser)]
#[command(
    name = "latchkey-control",
    version,
    about = "Latchkey control plane: licenses, admin panel and API, snapshot publishing"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
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
    /// Backups with pg_dump, and restore with pg_restore.
    Backup {
        #[command(flatten)]
        target: BackupTarget,
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// Write a list (every row) as CSV or JSON, the file the panel's and the
    /// API's exports download.
    Export {
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        #[arg(value_enum)]
        list: List,
        #[arg(long, value_enum, default_value = "csv")]
        format: FileFormat,
        /// The file to write; standard output without it.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Check a file of customers, licenses, resources or leads (CSV, or a
    /// JSON array but for leads) and list every problem by line and column;
    /// with --apply, import it in one transaction, or nothing of it.
    Import {
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// Seals imported license keys, as `serve` does.
        #[arg(long, env = "SECRET_KEY", hide_env_values = true)]
        secret_key: String,
        #[arg(value_enum)]
        kind: ImportKind,
        file: PathBuf,
        /// Write it; without this, a dry run that writes nothing.
        #[arg(long)]
        apply: bool,
    },
    /// Demo data for trying Latchkey out.
    Demo {
        #[command(subcommand)]
        command: DemoCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an admin user. The password is read from LATCHKEY_ADMIN_PASSWORD
    /// or, when that is unset, from the first line of standard input.
    Create {
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        #[arg(long)]
        username: String,
        /// `admin` (everything) or `viewer` (read-only).
        #[arg(long, default_value = "admin", value_parser = parse_role)]
        role: Role,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeysCommand {
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
pub enum SnapshotCommand {
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
pub enum EdgesCommand {
    /// Register an edge and print its one-time enrolment token (shown once;
    /// give it to the edge in a file named by --enrol-token-file, or in
    /// LATCHKEY_EDGE_ENROL_TOKEN, on its first start).
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
pub enum KeysCommand {
    /// Generate an Ed25519 key pair: signing-<id>.pem (private) and signing-<id>.pub.pem.
    Generate {
        /// Directory to write the two PEM files into.
        #[arg(long, default_value = ".data/keys")]
        out: PathBuf,
    },
    /// For an edge with no link to control: a new answer-signing key and
    /// its certificate (answer-key.pem, 0600, and answer-certificate) for
    /// its --answer-key and --answer-certificate. Linked edges are certified
    /// over the link, daily.
    CertifyEdge {
        /// The license signing key (PKCS#8 PEM) the clients trust.
        #[arg(long, env = "LATCHKEY_SIGNING_KEY")]
        signing_key: PathBuf,
        /// Directory to write the two files into.
        #[arg(long)]
        out: PathBuf,
        /// How long the certificate holds; a new one is needed after.
        #[arg(long, default_value_t = 24)]
        valid_hours: u32,
    },
}

/// The database and tools every backup command uses; the options of
/// `serve`'s `[backups]` under the same variables.
#[derive(Debug, clap::Args)]
pub struct BackupTarget {
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    database_url: Option<String>,
    /// Where dumps are written.
    #[arg(
        long,
        env = "LATCHKEY_BACKUPS_DIR",
        default_value = ".data/backups",
        global = true
    )]
    dir: PathBuf,
    #[arg(
        long,
        env = "LATCHKEY_BACKUPS_PG_DUMP",
        default_value = "pg_dump",
        global = true
    )]
    pg_dump: PathBuf,
    #[arg(
        long,
        env = "LATCHKEY_BACKUPS_PG_RESTORE",
        default_value = "pg_restore",
        global = true
    )]
    pg_restore: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Dump the database now (custom format) with its manifest beside it.
    Create,
    /// Backups made, newest first, one JSON object a line.
    List,
    /// Delete scheduled backups past the retention.
    Prune {
        #[arg(long, env = "LATCHKEY_BACKUPS_KEEP_DAILY", default_value_t = 7)]
        keep_daily: u32,
        #[arg(long, env = "LATCHKEY_BACKUPS_KEEP_WEEKLY", default_value_t = 4)]
        keep_weekly: u32,
    },
    /// Restore a dump into a scratch database and verify it against its
    /// manifest; with --confirm, then swap it in for the live database
    /// (which is kept under another name). Stop writers first: the swap
    /// ends every connection to the live database.
    Restore {
        /// The dump (its manifest `<dump>.json` beside it).
        file: PathBuf,
        /// Swap the verified copy in; without it, only verify and drop it.
        #[arg(long)]
        confirm: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
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

fn parse_role(text: &str) -> Result<Role, String> {
    match text {
        "admin" => Ok(Role::Admin),
        "viewer" => Ok(Role::Viewer),
        other => Err(format!("{other:?} is not a role: `admin` or `viewer`")),
    }
}

/// Runs one command. `input` gives the admin password when
/// `LATCHKEY_ADMIN_PASSWORD` is unset (`password_env`); `out` gets what the
/// command prints.
pub async fn run(
    cli: Cli,
    password_env: Option<String>,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve => serve().await,
        Command::Migrate { database_url } => {
            connect_migrated(&database_url).await?;
            writeln!(out, "schema is up to date")?;
            Ok(())
        }
        Command::Partitions {
            database_url,
            months_ahead,
            retention_months,
        } => {
            let pool = connect(&database_url).await?;
            let today = time::OffsetDateTime::now_utc().date();
            let done = db::partitions::maintain(&pool, today, months_ahead, retention_months)
                .await
                .context("maintaining heartbeat partitions")?;
            writeln!(
                out,
                "created {} partitions, retired {:?}",
                done.created, done.retired
            )?;
            Ok(())
        }
        Command::Admin {
            command:
                AdminCommand::Create {
                    database_url,
                    username,
                    role,
                },
        } => {
            let password = match password_env {
                Some(password) => password,
                None => read_password(input)?,
            };
            let pool = connect_migrated(&database_url).await?;
            let ctx = RequestContext::system("cli");
            let id = db::admins::create(&pool, &ctx, &username, &password, role).await?;
            writeln!(out, "admin {username} created ({id})")?;
            Ok(())
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
            let scopes = api_keys::Scopes::parse(&scopes)
                .map_err(|(i, message)| anyhow::anyhow!("--scope #{}: {message}", i + 1))?;
            let secrets = Secrets::new(&secret_key)?;
            let pool = connect_migrated(&database_url).await?;
            let scopes: Vec<_> = scopes.iter().collect();
            let created = api_keys::create_bootstrap(&pool, &secrets, &name, &scopes).await?;
            writeln!(
                out,
                "api key {} ({}): {}",
                created.key.name, created.key.id, created.secret
            )?;
            Ok(())
        }
        Command::Snapshot {
            command:
                SnapshotCommand::Export {
                    database_url,
                    signing_key,
                    out: file,
                },
        } => {
            let pool = connect(&database_url).await?;
            export_snapshot(&pool, &signing_key, &file, out).await
        }
        Command::Edges { command } => edges(command, out).await,
        Command::Keys {
            command:
                KeysCommand::CertifyEdge {
                    signing_key,
                    out: dir,
                    valid_hours,
                },
        } => {
            let signer = keys::load(&signing_key)?;
            let written = keys::certify_edge(&signer, &dir, valid_hours)?;
            writeln!(out, "edge id {}", written.edge_id)?;
            writeln!(out, "answer key:         {}", written.key.display())?;
            writeln!(out, "answer certificate: {}", written.certificate.display())?;
            writeln!(out, "valid until {} (Unix time)", written.expires_at)?;
            Ok(())
        }
        Command::Keys {
            command: KeysCommand::Generate { out: dir },
        } => {
            let written = keys::generate(&dir)?;
            writeln!(out, "key id {}", written.key_id)?;
            writeln!(out, "private key: {}", written.private_pem.display())?;
            writeln!(out, "public key:  {}", written.public_pem.display())?;
            Ok(())
        }
        Command::Backup { target, command } => backup(target, command, out).await,
        Command::Export {
            database_url,
            list,
            format,
            output,
        } => {
            let pool = connect(&database_url).await?;
            let rows = match output {
                Some(path) => {
                    let mut file = std::io::BufWriter::new(
                        std::fs::File::create(&path)
                            .with_context(|| format!("creating {}", path.display()))?,
                    );
                    let rows = transfer::export(&pool, list, format, &mut file).await?;
                    file.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                    rows
                }
                None => transfer::export(&pool, list, format, out).await?,
            };
            tracing::info!(rows, ?list, "exported");
            Ok(())
        }
        Command::Import {
            database_url,
            secret_key,
            kind,
            file,
            apply,
        } => {
            let pool = connect_migrated(&database_url).await?;
            let secrets = Secrets::new(&secret_key)?;
            transfer::import(&pool, &secrets, kind, &file, apply, out).await
        }
        Command::Demo {
            command:
                DemoCommand::Seed {
                    database_url,
                    secret_key,
                    licenses,
                },
        } => {
            let secrets = Secrets::new(&secret_key)?;
            let pool = connect_migrated(&database_url).await?;
            for license in demo::seed(&pool, &secrets, licenses).await? {
                let state = if license.expired {
                    "expired"
                } else {
                    license.status.as_str()
                };
                writeln!(out, "{} {} {state}", license.key, license.kind.as_str())?;
            }
            Ok(())
        }
    }
}

/// Everything is checked before a socket is bound.
async fn serve() -> anyhow::Result<()> {
    use tracing_subscriber::EnvFilter;

    let config = Config::load().context("invalid configuration")?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
    app::serve(&config).await
}

/// The first line, without its line ending; an empty one is refused here
/// rather than by the length rule, to say where the password was looked for.
fn read_password(input: &mut dyn BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(
        !password.is_empty(),
        "no password: set {ADMIN_PASSWORD_VAR} or give it on standard input"
    );
    Ok(password)
}

/// A signed full snapshot of the database, written where an edge without a
/// link reads it.
async fn export_snapshot(
    pool: &PgPool,
    signing_key: &Path,
    file: &Path,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let signer = keys::load(signing_key)?;
    let started = std::time::Instant::now();
    let built = db::snapshot::build_full(
        pool,
        &signer,
        time::OffsetDateTime::now_utc(),
        db::snapshot::EXPORT_VALID_SECS,
    )
    .await?;
    std::fs::write(file, &built.bytes).with_context(|| format!("writing {}", file.display()))?;
    writeln!(
        out,
        "wrote {}: sequence {}, {} licenses, {} bytes, signed by {} in {:.2?}",
        file.display(),
        built.sequence,
        built.licenses,
        built.bytes.len(),
        signer.id(),
        started.elapsed()
    )?;
    Ok(())
}

async fn edges(command: EdgesCommand, out: &mut dyn Write) -> anyhow::Result<()> {
    match command {
        EdgesCommand::Create { database_url, name } => {
            let pool = connect(&database_url).await?;
            let created = db::edges::create(&pool, &RequestContext::system("cli"), &name).await?;
            writeln!(out, "edge {} ({})", created.edge.name, created.edge.id)?;
            writeln!(out, "enrolment token (shown once): {}", created.enrol_token)?;
        }
        EdgesCommand::List { database_url } => {
            let pool = connect(&database_url).await?;
            for edge in db::edges::list(&pool).await? {
                writeln!(out, "{}", serde_json::to_string(&edge)?)?;
            }
        }
        EdgesCommand::Revoke { database_url, id } => {
            let pool = connect(&database_url).await?;
            let edge = db::edges::revoke(&pool, &RequestContext::system("cli"), id).await?;
            writeln!(out, "edge {} revoked", edge.name)?;
        }
    }
    Ok(())
}

async fn backup(
    target: BackupTarget,
    command: BackupCommand,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let database_url = target
        .database_url
        .context("set DATABASE_URL or --database-url")?;
    let (keep_daily, keep_weekly) = match &command {
        BackupCommand::Prune {
            keep_daily,
            keep_weekly,
        } => (*keep_daily, *keep_weekly),
        _ => (0, 0),
    };
    let backups = Backups::new(
        BackupConfig {
            dir: target.dir,
            daily_at: None,
            keep_daily,
            keep_weekly,
            pg_dump: target.pg_dump,
            pg_restore: target.pg_restore,
        },
        &database_url,
    )?;
    let ctx = RequestContext::system("cli");
    match command {
        BackupCommand::Create => {
            let pool = connect(&database_url).await?;
            let progress = Progress::default();
            let made = with_bar(&progress, backups.create(&pool, &ctx, None, &progress))
                .await?
                .context("a manual backup always runs")?;
            writeln!(
                out,
                "backup {}: {} ({} bytes, sha256 {}) in {} ms, schema version {}",
                made.id,
                made.path.unwrap_or_default(),
                made.size_bytes.unwrap_or_default(),
                made.sha256.unwrap_or_default(),
                made.duration_ms.unwrap_or_default(),
                made.schema_version.unwrap_or_default()
            )?;
        }
        BackupCommand::List => {
            let pool = connect(&database_url).await?;
            for backup in db::backups::list(&pool, 1_000).await? {
                writeln!(out, "{}", serde_json::to_string(&backup)?)?;
            }
        }
        BackupCommand::Prune { .. } => {
            let pool = connect(&database_url).await?;
            for gone in backups.prune(&pool, &ctx).await? {
                writeln!(
                    out,
                    "deleted backup {} ({})",
                    gone.id,
                    gone.path.unwrap_or_default()
                )?;
            }
        }
        BackupCommand::Restore { file, confirm } => {
            let started = std::time::Instant::now();
            let progress = Progress::default();
            let prepared = with_bar(&progress, backups.prepare_restore(&file, &progress)).await?;
            let rows: i64 = prepared.manifest.row_counts.values().sum();
            writeln!(
                out,
                "verified {}: SHA-256 and size match the manifest; restored into {} with schema version {} and the {} tables' {rows} rows as dumped{} in {:.1?}",
                file.display(),
                prepared.scratch,
                prepared.manifest.schema_version,
                prepared.manifest.row_counts.len(),
                match prepared.migrated_to {
                    Some(version) => format!(", then migrated to {version}"),
                    None => String::new(),
                },
                started.elapsed()
            )?;
            if confirm {
                let swapped = backups.swap(&prepared).await?;
                writeln!(
                    out,
                    "swapped in: the restored copy is the live database now; the previous one is kept as {}",
                    swapped.previous
                )?;
            } else {
                backups.discard(&prepared).await?;
                writeln!(
                    out,
                    "not swapped in (dropped {}): run again with --confirm to replace the live database",
                    prepared.scratch
                )?;
            }
        }
    }
    Ok(())
}

async fn connect(database_url: &str) -> anyhow::Result<PgPool> {
    db::connect(database_url, 2)
        .await
        .context("connecting to DATABASE_URL")
}

async fn connect_migrated(database_url: &str) -> anyhow::Result<PgPool> {
    let pool = connect(database_url).await?;
    db::migrate(&pool).await.context("applying migrations")?;
    Ok(pool)
}
