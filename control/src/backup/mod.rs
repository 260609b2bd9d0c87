//! Backups with PostgreSQL's own tools: `pg_dump` in custom format, made by
//! hand (panel, CLI) or on the schedule of `[backups]`, each recorded in
//! `backups` with its size, SHA-256, duration, schema version and every
//! table's row count, and written with a manifest beside it; retention of
//! scheduled ones; and restore (`restore`): into a scratch database first,
//! verified, then swapped in on confirmation.
//!
//! The row counts are exact for the dump: they are read in a transaction
//! whose snapshot `pg_dump` is given (`pg_export_snapshot`), so both see the
//! same database.
//!
//! License keys are sealed with `SECRET_KEY` inside the database, so a dump
//! is useless without that secret: keep the two apart, and both.

use std::path::{Path, PathBuf};
use std::time::Instant;

use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::BackupConfig;
use crate::context::RequestContext;
use crate::db::backups::{self, Backup, Finished, Origin};
use crate::error::{DomainError, cause_chain};
use crate::progress::Progress;
pub use manifest::Manifest;
pub use restore::{Prepared, Swapped};
use tools::Target;

mod manifest;
mod restore;
pub mod schedule;
mod tools;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup configuration: {0}")]
    Config(String),
    #[error("{tool} failed: {message}")]
    Tool { tool: &'static str, message: String },
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("the dump does not match its manifest: {0}")]
    Corrupt(String),
    #[error("the restored database does not match the backup: {0}")]
    Mismatch(String),
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("file: {0}")]
    Io(#[from] std::io::Error),
}

/// Makes, lists, prunes and restores backups of one database.
#[derive(Debug, Clone)]
pub struct Backups {
    config: BackupConfig,
    target: Target,
}

impl Backups {
    pub fn new(config: BackupConfig, database_url: &str) -> Result<Self, BackupError> {
        Ok(Self {
            config,
            target: Target::parse(database_url)?,
        })
    }

    pub fn config(&self) -> &BackupConfig {
        &self.config
    }

    /// Dumps the database now. `scheduled_for` is the schedule's slot; for a
    /// slot another replica has taken already, `None` and nothing is done.
    pub async fn create(
        &self,
        pool: &PgPool,
        ctx: &RequestContext,
        scheduled_for: Option<OffsetDateTime>,
        progress: &Progress,
    ) -> Result<Option<Backup>, BackupError> {
        match self.begin(pool, ctx, scheduled_for).await? {
            Some(id) => self.complete(pool, id, progress).await.map(Some),
            None => Ok(None),
        }
    }

    /// Records a backup as running (see [`create`](Self::create)); the
    /// panel answers with it while [`complete`](Self::complete) dumps.
    pub async fn begin(
        &self,
        pool: &PgPool,
        ctx: &RequestContext,
        scheduled_for: Option<OffsetDateTime>,
    ) -> Result<Option<Uuid>, BackupError> {
        let origin = match scheduled_for {
            Some(_) => Origin::Scheduled,
            None => Origin::Manual,
        };
        Ok(backups::start(pool, ctx, origin, scheduled_for).await?)
    }

    /// Dumps the database for the running backup `id`. A failure is
    /// recorded on the backup's row as well as returned.
    pub async fn complete(
        &self,
        pool: &PgPool,
        id: Uuid,
        progress: &Progress,
    ) -> Result<Backup, BackupError> {
        let started = Instant::now();
        let file = self.file_for(id, OffsetDateTime::now_utc());
        match self.dump(pool, id, &file, started, progress).await {
            Ok(done) => {
                backups::finish(pool, id, &done).await?;
                tracing::info!(%id, path = %done.path, bytes = done.size_bytes, ms = done.duration_ms, "backup made");
                Ok(backups::get(pool, id).await?)
            }
            Err(error) => {
                let _ = std::fs::remove_file(partial(&file));
                backups::fail(pool, id, &cause_chain(&error)).await?;
                Err(error)
            }
        }
    }

    async fn dump(
        &self,
        pool: &PgPool,
        id: Uuid,
        file: &Path,
        started: Instant,
        progress: &Progress,
    ) -> Result<Finished, BackupError> {
        std::fs::create_dir_all(&self.config.dir)?;
        let partial = partial(file);
        manifest::private_file(&partial)?;
        // The transaction stays open until pg_dump is done, so the snapshot
        // it exports (and pg_dump imports) lives that long.
        let mut tx = pool.begin().await?;
        let snapshot = backups::export_snapshot(&mut tx).await?;
        let schema_version = backups::schema_version(&mut *tx).await?;
        let row_counts = backups::row_counts(&mut tx).await?;
        let partitioned = backups::partitioned_tables(&mut tx).await?;
        let rows: u64 = row_counts
            .iter()
            .filter(|(table, _)| !partitioned.contains(table))
            .map(|(_, &n)| n.max(0) as u64)
            .sum();
        progress.stage("dumping", "rows", Some(rows));
        tools::dump(
            &self.config.pg_dump,
            &self.target,
            &snapshot,
            &partial,
            &row_counts,
            progress,
        )
        .await?;
        tx.commit().await?;

        let digest = tokio::task::spawn_blocking({
            let (partial, progress) = (partial.clone(), progress.clone());
            move || manifest::digest(&partial, &progress)
        })
        .await
        .map_err(std::io::Error::other)??;
        std::fs::rename(&partial, file)?;
        Manifest::new(
            id,
            self.target.database(),
            OffsetDateTime::now_utc(),
            digest.clone(),
            schema_version,
            row_counts.clone(),
        )
        .write(file)?;
        Ok(Finished {
            path: file.display().to_string(),
            size_bytes: digest.size_bytes,
            sha256: digest.sha256,
            duration_ms: started.elapsed().as_millis() as u64,
            schema_version,
            row_counts,
        })
    }

    fn file_for(&self, id: Uuid, at: OffsetDateTime) -> PathBuf {
        let stamp = at
            .format(time::macros::format_description!(
                "[year][month][day]T[hour][minute][second]Z"
            ))
            .unwrap_or_default();
        let short = &id.simple().to_string()[..8];
        self.config.dir.join(format!(
            "latchkey-{}-{stamp}-{short}.dump",
            self.target.database()
        ))
    }

    /// The scheduled backup of the newest slot, if it is not made yet, then
    /// retention. `None` when nothing was due (or no schedule is set).
    pub async fn run_schedule(
        &self,
        pool: &PgPool,
        now: OffsetDateTime,
    ) -> Result<Option<Backup>, BackupError> {
        let Some(at) = self.config.daily_at else {
            return Ok(None);
        };
        let ctx = RequestContext::system("backup schedule");
        let slot = schedule::latest_slot(now, at);
        let made = self
            .create(pool, &ctx, Some(slot), &Progress::default())
            .await?;
        if made.is_some() {
            self.prune(pool, &ctx).await?;
        }
        Ok(made)
    }

    /// Deletes the scheduled backups retention no longer keeps (files and
    /// rows); manual ones stay until deleted by hand. Returns the deleted.
    pub async fn prune(
        &self,
        pool: &PgPool,
        ctx: &RequestContext,
    ) -> Result<Vec<Backup>, BackupError> {
        let scheduled: Vec<Backup> = backups::list(pool, 10_000)
            .await?
            .into_iter()
            .filter(|b| b.origin == Origin::Scheduled.as_str() && b.status == "done")
            .collect();
        let slots: Vec<(Uuid, OffsetDateTime)> = scheduled
            .iter()
            .map(|b| (b.id, b.scheduled_for.unwrap_or(b.started_at)))
            .collect();
        let expired = schedule::expired(&slots, self.config.keep_daily, self.config.keep_weekly);
        let mut deleted = Vec::new();
        for backup in scheduled.into_iter().filter(|b| expired.contains(&b.id)) {
            self.delete(pool, ctx, &backup).await?;
            deleted.push(backup);
        }
        Ok(deleted)
    }

    /// Deletes a backup's files and its row.
    pub async fn delete(
        &self,
        pool: &PgPool,
        ctx: &RequestContext,
        backup: &Backup,
    ) -> Result<(), BackupError> {
        if let Some(path) = &backup.path {
            let path = Path::new(path);
            for file in [path.to_owned(), Manifest::path_of(path)] {
                match std::fs::remove_file(&file) {
                    Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                        return Err(error.into());
                    }
                    _ => {}
                }
            }
        }
        backups::delete(pool, ctx, backup).await?;
        Ok(())
    }
}

/// Where a dump is written until it is whole.
fn partial(file: &Path) -> PathBuf {
    file.with_extension("dump.partial")
}
