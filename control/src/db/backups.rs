//! The record of backups (`backups`), and what a backup is checked by: the
//! schema version and every table's row count, read in the same database
//! snapshot `pg_dump` dumps.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::{PgConnection, PgExecutor, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::audit::{self, Change};
use crate::context::RequestContext;
use crate::error::{DomainError, DomainResult, Entity};

/// Rows per table, by table name.
pub type RowCounts = BTreeMap<String, i64>;

/// Who asked for a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Manual,
    /// The schedule's slot it was made for.
    Scheduled,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Scheduled => "scheduled",
        }
    }
}

/// One backup as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow)]
pub struct Backup {
    pub id: Uuid,
    pub status: String,
    pub origin: String,
    pub path: Option<String>,
    pub size_bytes: Option<i64>,
    pub sha256: Option<String>,
    pub duration_ms: Option<i64>,
    pub schema_version: Option<i64>,
    #[sqlx(json(nullable))]
    pub row_counts: Option<RowCounts>,
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub scheduled_for: Option<OffsetDateTime>,
    pub created_by: Option<Uuid>,
}

const COLUMNS: &str =
    "id, status, origin, path, size_bytes, sha256, duration_ms, schema_version, row_counts,
                       error, started_at, finished_at, scheduled_for, created_by";

/// What a finished dump is recorded with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finished {
    pub path: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub duration_ms: u64,
    pub schema_version: i64,
    pub row_counts: RowCounts,
}

/// Records a backup as running. For a scheduled one, `None` when another
/// replica has already taken the slot.
pub async fn start(
    pool: &PgPool,
    ctx: &RequestContext,
    origin: Origin,
    scheduled_for: Option<OffsetDateTime>,
) -> DomainResult<Option<Uuid>> {
    let mut tx = pool.begin().await?;
    let id: Option<Uuid> = sqlx::query_scalar(
        "INSERT INTO backups (status, origin, scheduled_for, created_by)
         VALUES ('running', $1, $2, $3)
         ON CONFLICT (scheduled_for) DO NOTHING
         RETURNING id",
    )
    .bind(origin.as_str())
    .bind(scheduled_for)
    .bind(ctx.admin_id())
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(id) = id {
        audit::record_change(
            &mut tx,
            ctx,
            Change::new("backup.start", "backup", id)
                .after(serde_json::json!({ "origin": origin.as_str(), "scheduled_for": scheduled_for.map(|at| at.unix_timestamp()) })),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(id)
}

pub async fn finish(pool: &PgPool, id: Uuid, done: &Finished) -> DomainResult<()> {
    sqlx::query(
        "UPDATE backups SET status = 'done', finished_at = now(), path = $2, size_bytes = $3, sha256 = $4,
                duration_ms = $5, schema_version = $6, row_counts = $7
         WHERE id = $1",
    )
    .bind(id)
    .bind(&done.path)
    .bind(done.size_bytes as i64)
    .bind(&done.sha256)
    .bind(done.duration_ms as i64)
    .bind(done.schema_version)
    .bind(sqlx::types::Json(&done.row_counts))
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn fail(pool: &PgPool, id: Uuid, error: &str) -> DomainResult<()> {
    sqlx::query(
        "UPDATE backups SET status = 'failed', finished_at = now(), error = $2 WHERE id = $1",
    )
    .bind(id)
    .bind(error)
    .execute(pool)
    .await?;
    Ok(())
}

/// Newest first.
pub async fn list(pool: &PgPool, limit: i64) -> DomainResult<Vec<Backup>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM backups ORDER BY started_at DESC, id LIMIT $1"
    ))
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

pub async fn get(pool: &PgPool, id: Uuid) -> DomainResult<Backup> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM backups WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(DomainError::NotFound(Entity::Backup))
}

/// Removes a backup's record (its file is the caller's), audited.
pub async fn delete(pool: &PgPool, ctx: &RequestContext, backup: &Backup) -> DomainResult<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM backups WHERE id = $1")
        .bind(backup.id)
        .execute(&mut *tx)
        .await?;
    audit::record_change(
        &mut tx,
        ctx,
        Change::new("backup.delete", "backup", backup.id).before(audit::to_json(backup)?),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The newest migration applied to the database.
pub async fn schema_version(conn: impl PgExecutor<'_>) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT coalesce(max(version), 0) FROM _sqlx_migrations WHERE success")
        .fetch_one(conn)
        .await
}

/// The partitioned tables: their rows are their partitions', which a dump
/// holds as the partitions' data.
pub async fn partitioned_tables(conn: &mut PgConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind = 'p' ORDER BY c.relname",
    )
    .fetch_all(conn)
    .await
}

/// Every table's row count (partitions on their own, besides their parent),
/// as the connection's transaction sees them.
pub async fn row_counts(conn: &mut PgConnection) -> Result<RowCounts, sqlx::Error> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut counts = RowCounts::new();
    for table in tables {
        // Names come from the catalogue, quoted as identifiers.
        let count: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM public.\"{}\"",
            table.replace('"', "\"\"")
        ))
        .fetch_one(&mut *conn)
        .await?;
        counts.insert(table, count);
    }
    Ok(counts)
}

/// When the newest scheduled backup that succeeded finished.
pub async fn newest_done(pool: &PgPool) -> DomainResult<Option<OffsetDateTime>> {
    Ok(sqlx::query_scalar(
        "SELECT max(finished_at) FROM backups WHERE status = 'done' AND origin = 'scheduled'",
    )
    .fetch_one(pool)
    .await?)
}

/// Makes the connection's transaction a read-only repeatable-read one and
/// exports its snapshot, for `pg_dump --snapshot`: the dump then sees what
/// this transaction sees, as long as it stays open.
pub async fn export_snapshot(conn: &mut PgConnection) -> Result<String, sqlx::Error> {
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *conn)
        .await?;
    sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut *conn)
        .await
}

/// The newest snapshot sequence a database has numbered.
pub async fn snapshot_sequence(conn: &mut PgConnection) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT max(sequence) FROM snapshots")
        .fetch_one(conn)
        .await
}

/// Makes the database's next snapshot sequence follow `floor`, with a
/// placeholder row without a body: never relayed, only counted when the
/// next sequence is chosen.
pub async fn continue_sequence_after(
    conn: &mut PgConnection,
    floor: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO snapshots (sequence, kind, key_id, size_bytes, licenses)
         SELECT $1, 'full', 'restore', 0, 0
         WHERE NOT EXISTS (SELECT 1 FROM snapshots WHERE sequence >= $1)",
    )
    .bind(floor)
    .execute(conn)
    .await?;
    Ok(())
}

/// Statements about whole databases, run from a connection to another one
/// (the server's maintenance database).
pub mod server {
    use sqlx::{Executor, PgConnection};

    /// A database name as an SQL identifier.
    fn ident(name: &str) -> String {
        format!("\"{}\"", name.replace('"', "\"\""))
    }

    pub async fn create(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
        conn.execute(format!("CREATE DATABASE {}", ident(name)).as_str())
            .await?;
        Ok(())
    }

    /// Drops it, ending its connections.
    pub async fn drop(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
        conn.execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", ident(name)).as_str())
            .await?;
        Ok(())
    }

    pub async fn rename(conn: &mut PgConnection, from: &str, to: &str) -> Result<(), sqlx::Error> {
        conn.execute(format!("ALTER DATABASE {} RENAME TO {}", ident(from), ident(to)).as_str())
            .await?;
        Ok(())
    }

    /// Refuses (or allows again) new connections to it.
    pub async fn allow_connections(
        conn: &mut PgConnection,
        name: &str,
        allow: bool,
    ) -> Result<(), sqlx::Error> {
        conn.execute(
            format!(
                "ALTER DATABASE {} WITH ALLOW_CONNECTIONS {allow}",
                ident(name)
            )
            .as_str(),
        )
        .await?;
        Ok(())
    }

    /// Ends every other connection to it.
    pub async fn end_connections(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = $1 AND pid <> pg_backend_pid()",
        )
        .bind(name)
        .execute(conn)
        .await?;
        Ok(())
    }
}
