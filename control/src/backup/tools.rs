//! PostgreSQL's own tools, run as child processes: `pg_dump` in custom
//! format and `pg_restore`. The password goes to them in `PGPASSWORD`, never
//! on the command line, where any local user could read it.
//!
//! Both run `--verbose`: they name each table as they start on its data,
//! which advances the job's progress by the rows of the table before it
//! (the row counts are known beforehand), and `pg_restore` names each index
//! and constraint it builds afterwards.

use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;

use percent_encoding::percent_decode_str;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use url::Url;

use super::BackupError;
use crate::db::backups::RowCounts;
use crate::progress::Progress;

/// The tool's last lines of output kept for the error of a failed run.
const KEPT_LINES: usize = 20;

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
/// snapshot id), into `file`; `rows` are the tables' row counts in that
/// snapshot.
pub async fn dump(
    program: &Path,
    target: &Target,
    snapshot: &str,
    file: &Path,
    rows: &RowCounts,
    progress: &Progress,
) -> Result<(), BackupError> {
    let mut command = target.command(program);
    command
        .arg("--format=custom")
        .arg("--verbose")
        .arg(format!("--snapshot={snapshot}"))
        .arg(format!("--file={}", file.display()));
    let mut watch = Watch::new(rows, progress, "dumping contents of table ");
    run("pg_dump", command, |line| watch.line(line)).await?;
    watch.finish();
    Ok(())
}

/// What a dump holds, from its table of contents: the tables with data and
/// the number of indexes, constraints and triggers built after the data.
pub async fn contents(program: &Path, file: &Path) -> Result<Contents, BackupError> {
    let mut command = Command::new(program);
    command
        .arg("--list")
        .arg(file)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = command
        .output()
        .await
        .map_err(|error| cannot_run("pg_restore", &error))?;
    if !output.status.success() {
        return Err(BackupError::Tool {
            tool: "pg_restore",
            message: format!(
                "{}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        });
    }
    let mut contents = Contents::default();
    // Lines such as `3456; 0 16789 TABLE DATA public licenses postgres`.
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some((_, entry)) = line
            .split_once(' ')
            .and_then(|(_, rest)| rest.split_once(' '))
            .and_then(|(_, rest)| rest.split_once(' '))
        else {
            continue;
        };
        if let Some(table) = entry.strip_prefix("TABLE DATA public ") {
            contents
                .tables
                .push(table.split(' ').next().unwrap_or_default().to_owned());
        } else if POST_DATA
            .iter()
            .any(|kind| entry.starts_with(&format!("{kind} ")))
        {
            contents.post_data += 1;
        }
    }
    Ok(contents)
}

/// What `pg_restore` builds after the data, as `--list` and `--verbose` name it.
const POST_DATA: [&str; 4] = ["INDEX", "CONSTRAINT", "FK CONSTRAINT", "TRIGGER"];

#[derive(Debug, Default)]
pub struct Contents {
    pub tables: Vec<String>,
    pub post_data: u64,
}

/// `pg_restore` of `file` into the (empty) database `target`, stopping at
/// the first error: the rows of `rows`, then `post_data` indexes and
/// constraints, as the progress's two stages.
pub async fn restore(
    program: &Path,
    target: &Target,
    file: &Path,
    rows: &RowCounts,
    post_data: u64,
    progress: &Progress,
) -> Result<(), BackupError> {
    let mut command = target.command(program);
    command
        .arg("--exit-on-error")
        .arg("--no-owner")
        .arg("--verbose")
        .arg(file);
    let mut watch = Watch::new(rows, progress, "processing data for table ");
    let mut building = false;
    run("pg_restore", command, |line| {
        let built = line.split_once("creating ").is_some_and(|(_, what)| {
            POST_DATA
                .iter()
                .any(|kind| what.starts_with(&format!("{kind} ")))
        });
        if built && watch.started() {
            if !building {
                watch.finish();
                progress.stage("building indexes", "items", Some(post_data));
                building = true;
            }
            progress.advance(1);
        } else {
            watch.line(line);
        }
    })
    .await?;
    if !building {
        watch.finish();
    }
    Ok(())
}

/// Follows a tool's `--verbose` lines: when it names a table, the one
/// before it is done.
struct Watch<'a> {
    rows: &'a RowCounts,
    progress: &'a Progress,
    marker: &'static str,
    current: Option<u64>,
}

impl<'a> Watch<'a> {
    fn new(rows: &'a RowCounts, progress: &'a Progress, marker: &'static str) -> Self {
        Self {
            rows,
            progress,
            marker,
            current: None,
        }
    }

    fn started(&self) -> bool {
        self.current.is_some()
    }

    fn line(&mut self, line: &str) {
        let Some((_, table)) = line.split_once(self.marker) else {
            return;
        };
        let table = table.trim().trim_matches('"');
        let table = table.strip_prefix("public.").unwrap_or(table);
        let rows = self.rows.get(table).map_or(0, |&n| n.max(0) as u64);
        if let Some(before) = self.current.replace(rows) {
            self.progress.advance(before);
        }
    }

    fn finish(&mut self) {
        if let Some(last) = self.current.take() {
            self.progress.advance(last);
        }
    }
}

fn cannot_run(tool: &'static str, error: &std::io::Error) -> BackupError {
    BackupError::Tool {
        tool,
        message: format!("cannot run it: {error} (is the PostgreSQL client installed?)"),
    }
}

/// Runs the tool, handing each line of its output to `on_line`; a failure
/// carries its last lines.
async fn run(
    tool: &'static str,
    mut command: Command,
    mut on_line: impl FnMut(&str),
) -> Result<(), BackupError> {
    let mut child = command.spawn().map_err(|error| cannot_run(tool, &error))?;
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    let mut last = VecDeque::with_capacity(KEPT_LINES);
    while let Some(line) = lines.next_line().await? {
        on_line(&line);
        if last.len() == KEPT_LINES {
            last.pop_front();
        }
        last.push_back(line);
    }
    let status = child.wait().await?;
    if status.success() {
        return Ok(());
    }
    let tail: Vec<String> = last.into_iter().collect();
    Err(BackupError::Tool {
        tool,
        message: format!("{status}: {}", tail.join("\n").trim()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_named_by_the_tool_finishes_the_one_before_it() {
        let rows = RowCounts::from([
            ("licenses".to_owned(), 40),
            ("customers".to_owned(), 2),
            ("heartbeats".to_owned(), 7),
            ("heartbeats_2026_12".to_owned(), 7),
        ]);
        let progress = Progress::default();
        let mut watch = Watch::new(&rows, &progress, "dumping contents of table ");
        watch.line("pg_dump: reading dependency data");
        assert!(!watch.started());
        watch.line("pg_dump: dumping contents of table \"public.customers\"");
        assert_eq!(progress.view().done, 0, "customers are being dumped");
        watch.line("pg_dump: dumping contents of table \"public.heartbeats_2026_12\"");
        assert_eq!(progress.view().done, 2);
        watch.line("pg_dump: dumping contents of table \"public.licenses\"");
        assert_eq!(progress.view().done, 9);
        watch.finish();
        // The partitioned parent's rows are its partition's, counted once.
        assert_eq!(progress.view().done, 49);
    }
}
