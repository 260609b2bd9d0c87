//! Login attempts (kept for the record and the dashboard) and blocked
//! networks. Blocks live here, in PostgreSQL, whatever counter backend the
//! panel uses: every replica shares the database, a block needs a durable
//! list with who set and lifted it, and a CIDR match is one GiST lookup.

use std::net::IpAddr;

use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::audit::{self, Change};
use crate::context::RequestContext;
use crate::error::{DomainError, DomainResult, Entity};

/// An active block as the blocked-IPs page shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Block {
    pub id: i64,
    pub network: String,
    pub reason: String,
    /// `None`: set automatically after failed logins.
    pub blocked_by: Option<String>,
    pub created_at: OffsetDateTime,
    pub expires_at: Option<OffsetDateTime>,
}

pub async fn record_attempt(
    pool: &PgPool,
    username: Option<&str>,
    ip: IpAddr,
    success: bool,
    reason: &str,
) -> DomainResult<()> {
    sqlx::query(
        "INSERT INTO login_attempts (username, ip, success, reason) VALUES ($1, $2::inet, $3, $4)",
    )
    .bind(username)
    .bind(ip.to_string())
    .bind(success)
    .bind(reason)
    .execute(pool)
    .await?;
    Ok(())
}

/// Whether an active, unexpired block covers `ip`.
pub async fn is_blocked(pool: &PgPool, ip: IpAddr) -> DomainResult<bool> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM blocked_ips
                         WHERE lifted_at IS NULL AND network >>= $1::inet
                           AND (expires_at IS NULL OR expires_at > now()))",
    )
    .bind(ip.to_string())
    .fetch_one(pool)
    .await?)
}

/// Blocks `network` (an address or CIDR, checked by PostgreSQL's `cidr`
/// type) until `expires_at` (`None`: until lifted).
pub async fn block(
    pool: &PgPool,
    ctx: &RequestContext,
    network: &str,
    reason: &str,
    blocked_by: Option<Uuid>,
    expires_at: Option<OffsetDateTime>,
) -> DomainResult<i64> {
    let mut tx = pool.begin().await?;
    let inserted: Result<(i64, String), sqlx::Error> = sqlx::query_as(
        "INSERT INTO blocked_ips (network, reason, blocked_by, expires_at)
         VALUES ($1::cidr, $2, $3, $4) RETURNING id, network::text",
    )
    .bind(network)
    .bind(reason)
    .bind(blocked_by)
    .bind(expires_at)
    .fetch_one(&mut *tx)
    .await;
    let (id, network) = inserted.map_err(|error| match &error {
        // 22P02 invalid text representation, 22000 data exception: host bits set.
        sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("22P02" | "22000")) => {
            DomainError::invalid(
                "network",
                "an IP address or CIDR network, like 203.0.113.0/24",
            )
        }
        _ => DomainError::Database(error),
    })?;
    let change = Change::new("ip.block", "blocked_ip", id)
        .after(json!({ "network": network, "reason": reason, "expires_at": expires_at }));
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(id)
}

pub async fn lift(pool: &PgPool, ctx: &RequestContext, id: i64, by: Uuid) -> DomainResult<()> {
    let mut tx = pool.begin().await?;
    let network: Option<String> = sqlx::query_scalar(
        "UPDATE blocked_ips SET lifted_at = now(), lifted_by = $2
          WHERE id = $1 AND lifted_at IS NULL RETURNING network::text",
    )
    .bind(id)
    .bind(by)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(network) = network else {
        return Err(DomainError::NotFound(Entity::Block));
    };
    let change = Change::new("ip.lift", "blocked_ip", id)
        .before(json!({ "network": network, "lifted": false }))
        .after(json!({ "network": network, "lifted": true }));
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(())
}

/// Blocks not lifted and not expired, newest first.
pub async fn list_active(pool: &PgPool) -> DomainResult<Vec<Block>> {
    Ok(sqlx::query_as(
        "SELECT b.id, b.network::text AS network, b.reason, a.username AS blocked_by,
                b.created_at, b.expires_at
           FROM blocked_ips b LEFT JOIN admin_users a ON a.id = b.blocked_by
          WHERE b.lifted_at IS NULL AND (b.expires_at IS NULL OR b.expires_at > now())
          ORDER BY b.created_at DESC, b.id DESC",
    )
    .fetch_all(pool)
    .await?)
}
