//! Panel sessions: the cookie's BLAKE3 hash is the key, so a leaked table
//! gives no usable cookie. A session is live while not revoked, before its
//! absolute expiry, and used within the idle timeout.

use std::net::IpAddr;

use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::audit::{self, Change};
use crate::context::RequestContext;
use crate::error::DomainResult;

/// A live session with its admin.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LiveSession {
    pub id_hash: Vec<u8>,
    pub admin_id: Uuid,
    pub username: String,
    pub role: String,
    pub csrf_token: String,
    pub mfa_passed: bool,
    pub totp_enabled: bool,
}

/// A session as the "my sessions" list shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionSummary {
    pub id_hash: Vec<u8>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

#[derive(Debug)]
pub struct NewSession<'a> {
    pub id_hash: &'a [u8],
    pub admin_id: Uuid,
    pub csrf_token: &'a str,
    pub mfa_passed: bool,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<&'a str>,
    pub absolute_timeout_secs: u64,
}

/// Opens a session and audits the login in one transaction.
pub async fn create(
    pool: &PgPool,
    ctx: &RequestContext,
    session: NewSession<'_>,
) -> DomainResult<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO admin_sessions (id_hash, admin_id, csrf_token, mfa_passed, ip, user_agent, expires_at)
         VALUES ($1, $2, $3, $4, $5::inet, $6, now() + make_interval(secs => $7))",
    )
    .bind(session.id_hash)
    .bind(session.admin_id)
    .bind(session.csrf_token)
    .bind(session.mfa_passed)
    .bind(session.ip.map(|ip| ip.to_string()))
    .bind(session.user_agent)
    .bind(session.absolute_timeout_secs as f64)
    .execute(&mut *tx)
    .await?;
    let action = if session.mfa_passed {
        "admin.login"
    } else {
        "admin.login_password"
    };
    let change = Change::new(action, "admin_user", session.admin_id)
        .after(json!({ "second_factor_pending": !session.mfa_passed }));
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(())
}

/// The live session behind `id_hash`. With `touch`, its idle clock restarts:
/// page views touch, the dashboard's event stream does not (an open tab
/// must not keep a session alive forever).
pub async fn find_live(
    pool: &PgPool,
    id_hash: &[u8],
    idle_timeout_secs: u64,
    touch: bool,
) -> DomainResult<Option<LiveSession>> {
    const LIVE: &str = "s.id_hash = $1 AND a.id = s.admin_id AND s.revoked_at IS NULL
        AND s.expires_at > now() AND s.last_seen_at > now() - make_interval(secs => $2)
        AND a.disabled_at IS NULL";
    const COLUMNS: &str = "s.id_hash, s.admin_id, a.username, a.role, s.csrf_token, s.mfa_passed,
        a.totp_enabled_at IS NOT NULL AS totp_enabled";
    let sql = if touch {
        format!(
            "UPDATE admin_sessions s SET last_seen_at = now() FROM admin_users a
              WHERE {LIVE} RETURNING {COLUMNS}"
        )
    } else {
        format!("SELECT {COLUMNS} FROM admin_sessions s, admin_users a WHERE {LIVE}")
    };
    Ok(sqlx::query_as(&sql)
        .bind(id_hash)
        .bind(idle_timeout_secs as f64)
        .fetch_optional(pool)
        .await?)
}

/// Marks the second factor passed under a new id (`new_id_hash`): the
/// cookie that only knew the password is worth nothing afterwards. Audits
/// the completed login.
pub async fn pass_second_factor(
    pool: &PgPool,
    ctx: &RequestContext,
    id_hash: &[u8],
    new_id_hash: &[u8],
    admin_id: Uuid,
    method: &str,
) -> DomainResult<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE admin_sessions SET mfa_passed = true, id_hash = $2 WHERE id_hash = $1")
        .bind(id_hash)
        .bind(new_id_hash)
        .execute(&mut *tx)
        .await?;
    let change = Change::new("admin.login", "admin_user", admin_id)
        .after(json!({ "second_factor": method }));
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(())
}

/// Ends one of `admin_id`'s sessions; `false` if it has no such live session.
pub async fn revoke(
    pool: &PgPool,
    ctx: &RequestContext,
    admin_id: Uuid,
    id_hash: &[u8],
    action: &str,
) -> DomainResult<bool> {
    let mut tx = pool.begin().await?;
    let revoked = sqlx::query(
        "UPDATE admin_sessions SET revoked_at = now()
          WHERE id_hash = $1 AND admin_id = $2 AND revoked_at IS NULL",
    )
    .bind(id_hash)
    .bind(admin_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if revoked == 0 {
        return Ok(false);
    }
    let change = Change::new(action, "admin_session", hex::encode(&id_hash[..8]))
        .before(json!({ "revoked": false }))
        .after(json!({ "revoked": true }));
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(true)
}

/// `admin_id`'s live sessions, newest first.
pub async fn list_live(
    pool: &PgPool,
    admin_id: Uuid,
    idle_timeout_secs: u64,
) -> DomainResult<Vec<SessionSummary>> {
    Ok(sqlx::query_as(
        "SELECT id_hash, host(ip) AS ip, user_agent, created_at, last_seen_at, expires_at
           FROM admin_sessions
          WHERE admin_id = $1 AND revoked_at IS NULL AND expires_at > now()
            AND last_seen_at > now() - make_interval(secs => $2)
          ORDER BY created_at DESC",
    )
    .bind(admin_id)
    .bind(idle_timeout_secs as f64)
    .fetch_all(pool)
    .await?)
}
