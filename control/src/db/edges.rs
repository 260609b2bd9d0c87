//! Edges known to control: enrolment with a one-time token, identity by the
//! hash of the edge's link certificate, revocation, and what each holds.

use rand_core::{OsRng, RngCore};
use serde::Serialize;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::context::RequestContext;
use crate::db::audit::{self, Change, to_json};
use crate::error::{DomainError, DomainResult, Entity};

#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Edge {
    pub id: Uuid,
    pub name: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub enrolled_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen_at: Option<OffsetDateTime>,
    pub snapshot_sequence: Option<i64>,
    pub version: Option<String>,
    /// Until when control's certificate of its answer key holds.
    #[serde(with = "time::serde::rfc3339::option")]
    pub answers_certified_until: Option<OffsetDateTime>,
}

/// A new edge and the one-time token it enrols with (shown once).
#[derive(Debug)]
pub struct Created {
    pub edge: Edge,
    pub enrol_token: String,
}

/// Why an edge is not let in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this edge identity is not enrolled and no valid enrolment token was given")]
    Unknown,
    #[error("this edge has been revoked")]
    Revoked,
}

const COLUMNS: &str = "id, name, enrolled_at, revoked_at, last_seen_at, snapshot_sequence, version,
    answers_certified_until";

/// A new edge waiting for its enrolment; one audit row (never the token).
pub async fn create(pool: &PgPool, ctx: &RequestContext, name: &str) -> DomainResult<Created> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 {
        return Err(DomainError::invalid("name", "1 to 64 characters"));
    }
    let mut secret = [0u8; 24];
    OsRng.fill_bytes(&mut secret);
    let enrol_token = format!("lke_{}", hex::encode(secret));
    let mut tx = pool.begin().await?;
    let edge: Edge = sqlx::query_as(&format!(
        "INSERT INTO edges (name, enrol_token_hash) VALUES ($1, $2) RETURNING {COLUMNS}"
    ))
    .bind(name)
    .bind(token_hash(&enrol_token))
    .fetch_one(&mut *tx)
    .await?;
    let change = Change::new("edge.create", "edge", edge.id).after(to_json(&edge)?);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(Created { edge, enrol_token })
}

/// The edge presenting `identity` (the hash of its certificate). An unknown
/// identity is enrolled when it brings an unused token, which is then spent.
pub async fn admit(
    pool: &PgPool,
    identity: &[u8; 32],
    enrol_token: Option<&str>,
    version: &str,
) -> DomainResult<Result<Edge, Refusal>> {
    let known: Option<Edge> = sqlx::query_as(&format!(
        "UPDATE edges SET last_seen_at = now(), version = $2 WHERE identity_hash = $1 RETURNING {COLUMNS}"
    ))
    .bind(&identity[..])
    .bind(version)
    .fetch_optional(pool)
    .await?;
    if let Some(edge) = known {
        return Ok(if edge.revoked_at.is_some() {
            Err(Refusal::Revoked)
        } else {
            Ok(edge)
        });
    }
    let Some(token) = enrol_token else {
        return Ok(Err(Refusal::Unknown));
    };
    let enrolled: Option<Edge> = sqlx::query_as(&format!(
        "UPDATE edges SET identity_hash = $1, enrol_token_hash = NULL, enrolled_at = now(),
                          last_seen_at = now(), version = $3
          WHERE enrol_token_hash = $2 AND revoked_at IS NULL
          RETURNING {COLUMNS}"
    ))
    .bind(&identity[..])
    .bind(token_hash(token))
    .bind(version)
    .fetch_optional(pool)
    .await?;
    Ok(enrolled.ok_or(Refusal::Unknown))
}

/// The edge now serves `sequence`.
pub async fn applied(pool: &PgPool, edge_id: Uuid, sequence: u64) -> DomainResult<()> {
    sqlx::query(
        "UPDATE edges SET snapshot_sequence = $2, applied_at = now(), last_seen_at = now() WHERE id = $1",
    )
    .bind(edge_id)
    .bind(sequence as i64)
    .execute(pool)
    .await?;
    Ok(())
}

/// Control certified the edge's answer key until `expires_at` (Unix time).
pub async fn certified(pool: &PgPool, edge_id: Uuid, expires_at: i64) -> DomainResult<()> {
    sqlx::query("UPDATE edges SET answers_certified_until = to_timestamp($2) WHERE id = $1")
        .bind(edge_id)
        .bind(expires_at as f64)
        .execute(pool)
        .await?;
    Ok(())
}

/// The edge is still connected; `false` once it has been revoked.
pub async fn seen(pool: &PgPool, edge_id: Uuid) -> DomainResult<bool> {
    let still: Option<Uuid> = sqlx::query_scalar(
        "UPDATE edges SET last_seen_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING id",
    )
    .bind(edge_id)
    .fetch_optional(pool)
    .await?;
    Ok(still.is_some())
}

/// Stops an edge: its link is closed within seconds and never admitted
/// again. Revoking twice changes nothing more; one audit row each time.
pub async fn revoke(pool: &PgPool, ctx: &RequestContext, edge_id: Uuid) -> DomainResult<Edge> {
    let mut tx = pool.begin().await?;
    let edge: Edge = sqlx::query_as(&format!(
        "UPDATE edges SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(edge_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| DomainError::NotFound(Entity::Edge))?;
    let change = Change::new("edge.revoke", "edge", edge.id).after(to_json(&edge)?);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(edge)
}

pub async fn list(pool: &PgPool) -> DomainResult<Vec<Edge>> {
    Ok(
        sqlx::query_as(&format!("SELECT {COLUMNS} FROM edges ORDER BY name"))
            .fetch_all(pool)
            .await?,
    )
}

fn token_hash(token: &str) -> Vec<u8> {
    blake3::hash(token.as_bytes()).as_bytes().to_vec()
}
