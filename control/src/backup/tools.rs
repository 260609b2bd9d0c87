//! PostgreSQL's own tools, run as child processes: `pg_dump` in custom
//! format and `pg_restore`. The password goes to them in `PGPASSWORD`, never
//! on the command line, where any local user could read it.

use std::path::Path;
use std::process::Stdio;

use percent_encoding::percent_decode_str;
use tokio::process::Command;
use url::Url;

use super::BackupError;

/// A database as sqlx and the tools reach it.
#[derive(Clone)]
pub struct Target {
    url: Url,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.url.host_str())
            .field("database", &self.database())
            .finish()
    }
}

impl Target {
    pub fn parse(database_url: &str) -> Result<Self, BackupError> {
        let url = Url::parse(database_url)
            .map_err(|error| BackupError::Config(format!("DATABASE_URL: {error}")))?;
        let target = Self { url };
        if target.database().is_empty() {
            return Err(BackupError::Config("DATABASE_URL names no database".into()));
        }
        Ok(target)
    }

    /// The database's name.
    pub fn database(&self) -> &str {
        self.url.path().trim_start_matches('/')
    }

    /// The same server, another database.
    pub fn with_database(&self, name: &str) -> Self {
        let mut url = self.url.clone();
        url.set_path(name);
        Self { url }
    }

    /// The URL sqlx connects with, password included.
    pub fn connect_url(&self) -> &str {
        self.url.as_str()
    }

    fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        let mut url = self.url.clone();
        if let Some(password) = url.password() {
            let password = percent_decode_str(password)
                .decode_utf8_lossy()
                .into_owned();
            command.env("PGPASSWORD", password);
        }
        // Only fails for URLs without a host, which libpq reads the same.
        let _ = url.set_password(None);
        command
            .arg(format!("--dbname={url}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }
}

/// `pg_dump --format=custom` of the database as of `snapshot` (an exported
/// snapshot id), into `file`.
pub async fn dump(
    program: &Path,
    target: &Target,
    snapshot: &str,
    file: &Path,
) -> Result<(), BackupError> {
    let mut command = target.command(program);
    command
        .arg("--format=custom")
        .arg(format!("--snapshot={snapshot}"))
        .arg(format!("--file={}", file.display()));
    run("pg_dump", command).await
}

/// `pg_restore` of `file` into the (empty) database `target`, stopping at
/// the first error.
pub async fn restore(program: &Path, target: &Target, file: &Path) -> Result<(), BackupError> {
    let mut command = target.command(program);
    command.arg("--exit-on-error").arg("--no-owner").arg(file);
    run("pg_restore", command).await
}

async fn run(tool: &'static str, mut command: Command) -> Result<(), BackupError> {
    let output = command.output().await.map_err(|error| BackupError::Tool {
        tool,
        message: format!("cannot run it: {error} (is the PostgreSQL client installed?)"),
    })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(BackupError::Tool {
        tool,
        message: format!("{}: {}", output.status, stderr.trim()),
    })
}
