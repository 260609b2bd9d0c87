//! What `/readyz` and `/metrics` ask the database: does it answer, is the
//! schema the one this build embeds, how far behind are publishing and each
//! edge, how many sessions are open.

use sqlx::PgPool;

use super::MIGRATOR;

/// The database as readiness sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaState {
    /// The newest migration this build embeds.
    pub expected: i64,
    /// The newest one applied successfully, if any.
    pub applied: Option<i64>,
}

impl SchemaState {
    pub fn is_current(&self) -> bool {
        self.applied == Some(self.expected)
    }
}

/// Fails when the database does not answer.
pub async fn schema(pool: &PgPool) -> Result<SchemaState, sqlx::Error> {
    let expected = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    // A database never migrated has no table to ask (naming it would fail
    // the statement), which is an answer too.
    let migrated: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    let applied = if migrated {
        sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
            .fetch_one(pool)
            .await?
    } else {
        None
    };
    Ok(SchemaState { expected, applied })
}

/// Changes edges have not been sent yet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutboxBacklog {
    pub pending: i64,
    /// Age of the oldest pending change, 0 when there is none.
    pub oldest_secs: f64,
}

pub async fn outbox_backlog(pool: &PgPool) -> Result<OutboxBacklog, sqlx::Error> {
    let (pending, oldest_secs): (i64, f64) = sqlx::query_as(
        "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at))::float8, 0)
           FROM snapshot_outbox WHERE published_in IS NULL",
    )
    .fetch_one(pool)
    .await?;
    Ok(OutboxBacklog {
        pending,
        oldest_secs,
    })
}

/// How far behind the published chain an enrolled edge is.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EdgeLag {
    pub name: String,
    /// Age of the oldest published snapshot the edge has not applied; 0
    /// when it holds the newest.
    pub lag_secs: f64,
}

/// Every enrolled, unrevoked edge, by name. Measured in time, not in
/// sequences: a burst of changes makes many deltas in a second.
pub async fn edge_lags(pool: &PgPool) -> Result<Vec<EdgeLag>, sqlx::Error> {
    sqlx::query_as(
        "SELECT e.name,
                coalesce(extract(epoch FROM now() - min(s.created_at))::float8, 0) AS lag_secs
           FROM edges e
           LEFT JOIN snapshots s ON s.sequence > coalesce(e.snapshot_sequence, -1)
          WHERE e.enrolled_at IS NOT NULL AND e.revoked_at IS NULL
          GROUP BY e.name
          ORDER BY e.name",
    )
    .fetch_all(pool)
    .await
}

pub async fn open_sessions(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM sessions WHERE ended_at IS NULL")
        .fetch_one(pool)
        .await
}
