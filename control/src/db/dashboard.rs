//! The dashboard's numbers, read in one round trip per refresh.

use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;

use crate::error::DomainResult;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Stats {
    pub active_licenses: i64,
    pub expiring_licenses: i64,
    pub active_sessions: i64,
    pub verifications_per_minute: i64,
    pub heartbeats_per_minute: i64,
    pub failed_logins_hour: i64,
}

/// A connected (enrolled, not revoked) edge and how far behind the newest
/// snapshot it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct EdgeLag {
    pub name: String,
    pub snapshot_sequence: Option<i64>,
    pub lag: Option<i64>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen_at: Option<OffsetDateTime>,
}

/// "Active" is what an edge would accept now: status active, inside the
/// validity window. Per-minute rates read the last minute of
/// `license_heartbeats` (verifications arrive counted, so they are summed).
pub async fn stats(pool: &PgPool) -> DomainResult<Stats> {
    Ok(sqlx::query_as(
        "SELECT
           (SELECT count(*) FROM licenses WHERE status = 'active' AND valid_from <= now()
               AND (valid_until IS NULL OR valid_until > now())) AS active_licenses,
           (SELECT count(*) FROM licenses WHERE status = 'active'
               AND valid_until > now() AND valid_until <= now() + interval '30 days') AS expiring_licenses,
           (SELECT count(*) FROM sessions WHERE ended_at IS NULL) AS active_sessions,
           (SELECT coalesce(sum(count), 0)::bigint FROM license_heartbeats
             WHERE kind = 'verify' AND at > now() - interval '1 minute') AS verifications_per_minute,
           (SELECT coalesce(sum(count), 0)::bigint FROM license_heartbeats
             WHERE kind = 'heartbeat' AND at > now() - interval '1 minute') AS heartbeats_per_minute,
           (SELECT count(*) FROM login_attempts
             WHERE NOT success AND at > now() - interval '1 hour') AS failed_logins_hour",
    )
    .fetch_one(pool)
    .await?)
}

pub async fn edges(pool: &PgPool) -> DomainResult<Vec<EdgeLag>> {
    Ok(sqlx::query_as(
        "SELECT e.name, e.snapshot_sequence,
                (SELECT max(sequence) FROM snapshots) - e.snapshot_sequence AS lag,
                e.last_seen_at
           FROM edges e
          WHERE e.enrolled_at IS NOT NULL AND e.revoked_at IS NULL
          ORDER BY e.name",
    )
    .fetch_all(pool)
    .await?)
}
