//! Ending sessions: the row closed and an outbox row per session, so every
//! edge refuses the session's next heartbeat. Below `sessions`, `devices` and
//! `licenses`, which all end sessions (a takeover, a released seat, a revoked
//! or deleted license), so none of them depends on another for it.

use sqlx::PgConnection;
use uuid::Uuid;

use super::outbox::{self, EntityKind};
use crate::error::DomainResult;

pub(crate) async fn end_all_for_license(
    conn: &mut PgConnection,
    license_id: Uuid,
    reason: &str,
) -> DomainResult<()> {
    end_all_where(conn, "license_id", license_id, reason).await
}

pub(crate) async fn end_all_for_device(
    conn: &mut PgConnection,
    device_id: Uuid,
    reason: &str,
) -> DomainResult<()> {
    end_all_where(conn, "device_id", device_id, reason).await
}

/// Ends every open session whose `column` (a constant, never input) is `id`.
async fn end_all_where(
    conn: &mut PgConnection,
    column: &'static str,
    id: Uuid,
    reason: &str,
) -> DomainResult<()> {
    let ended: Vec<Uuid> = sqlx::query_scalar(&format!(
        "UPDATE sessions SET ended_at = now(), end_reason = $2 WHERE {column} = $1 AND ended_at IS NULL RETURNING id"
    ))
    .bind(id)
    .bind(reason)
    .fetch_all(&mut *conn)
    .await?;
    push_ended(conn, &ended).await
}

pub(crate) async fn end_one(
    conn: &mut PgConnection,
    session_id: Uuid,
    reason: &str,
) -> DomainResult<()> {
    sqlx::query("UPDATE sessions SET ended_at = now(), end_reason = $2 WHERE id = $1")
        .bind(session_id)
        .bind(reason)
        .execute(&mut *conn)
        .await?;
    push_ended(conn, &[session_id]).await
}

pub(crate) async fn push_ended(conn: &mut PgConnection, ended: &[Uuid]) -> DomainResult<()> {
    for id in ended {
        outbox::push(conn, EntityKind::Session, &id.to_string()).await?;
    }
    Ok(())
}
