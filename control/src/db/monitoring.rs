//! What the panel's monitoring page reads: every current edge with how far
//! behind it is, and the facts its own alerts are computed from when no
//! Alertmanager is configured (the same conditions as the Prometheus rules
//! in `deploy/prometheus/rules`, judged from the database).

use sqlx::PgPool;
use time::OffsetDateTime;

use crate::error::DomainResult;

/// An enrolled, unrevoked edge as the page shows it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct EdgeState {
    pub name: String,
    pub version: Option<String>,
    pub last_seen_at: Option<OffsetDateTime>,
    pub snapshot_sequence: Option<i64>,
    /// Published snapshots it has not applied.
    pub behind: i64,
    /// Age of the oldest of those, 0 when it holds the newest.
    pub lag_secs: f64,
}

/// The database's side of the computed alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub edges: Vec<EdgeState>,
    /// Age of the oldest change not yet published, 0 when none waits.
    pub outbox_oldest_secs: f64,
    pub outbox_pending: i64,
    /// Whether next month's heartbeat partition exists.
    pub next_month_partition: bool,
    /// Failed logins in the last 15 minutes.
    pub failed_logins: i64,
    /// Automatic IP blocks made in the last hour.
    pub automatic_blocks: i64,
    pub read_at: OffsetDateTime,
}

pub async fn facts(pool: &PgPool) -> DomainResult<Facts> {
    let edges = sqlx::query_as(
        "SELECT e.name, e.version, e.last_seen_at, e.snapshot_sequence,
                count(s.sequence) AS behind,
                coalesce(extract(epoch FROM now() - min(s.created_at))::float8, 0) AS lag_secs
           FROM edges e
           LEFT JOIN snapshots s ON s.sequence > coalesce(e.snapshot_sequence, -1)
          WHERE e.enrolled_at IS NOT NULL AND e.revoked_at IS NULL
          GROUP BY e.id
          ORDER BY e.name",
    )
    .fetch_all(pool)
    .await?;
    let (outbox_pending, outbox_oldest_secs, next_month_partition, failed_logins, automatic_blocks, read_at): (
        i64,
        f64,
        bool,
        i64,
        i64,
        OffsetDateTime,
    ) = sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM snapshot_outbox WHERE published_in IS NULL),
           (SELECT coalesce(extract(epoch FROM now() - min(created_at))::float8, 0)
              FROM snapshot_outbox WHERE published_in IS NULL),
           to_regclass(format('license_heartbeats_%s',
                              to_char(date_trunc('month', now()) + interval '1 month', 'YYYY_MM'))) IS NOT NULL,
           (SELECT count(*) FROM login_attempts
             WHERE NOT success AND at > now() - interval '15 minutes'),
           (SELECT count(*) FROM blocked_ips
             WHERE blocked_by IS NULL AND created_at > now() - interval '1 hour'),
           now()",
    )
    .fetch_one(pool)
    .await?;
    Ok(Facts {
        edges,
        outbox_oldest_secs,
        outbox_pending,
        next_month_partition,
        failed_logins,
        automatic_blocks,
        read_at,
    })
}
