//! What `/readyz` and `/metrics` ask the database: does it answer, is the
//! schema the one this build embeds, how far behind is publishing.

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
