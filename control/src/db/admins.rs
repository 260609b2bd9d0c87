//! Admin users of the panel: created here with an argon2id password hash;
//! their TOTP secret (sealed with `SECRET_KEY`) and hashed recovery codes.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::audit::{self, Change};
use crate::context::RequestContext;
use crate::error::{DomainError, DomainResult, Entity, OnConstraint};

pub const MIN_PASSWORD_CHARS: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Read-only.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Viewer => "viewer",
        }
    }
}

pub fn hash_password(password: &str) -> DomainResult<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| DomainError::Internal(format!("argon2: {e}")))
}

pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

pub async fn create(
    pool: &PgPool,
    ctx: &RequestContext,
    username: &str,
    password: &str,
    role: Role,
) -> DomainResult<Uuid> {
    let username_ok = (1..=64).contains(&username.len())
        && username
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.@-".contains(&b));
    if !username_ok {
        return Err(DomainError::invalid(
            "username",
            "1 to 64 of letters, digits and _.@-",
        ));
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(DomainError::invalid("password", "at least 12 characters"));
    }
    let hash = hash_password(password)?;
    let mut tx = pool.begin().await?;
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO admin_users (username, password_hash, role) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(username)
    .bind(&hash)
    .bind(role.as_str())
    .fetch_one(&mut *tx)
    .await
    .on_unique(
        "admin_users_username_key",
        "username",
        "an admin with this username exists",
    )?;
    let change = Change::new("admin.create", "admin_user", id)
        .after(json!({ "username": username, "role": role }));
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(id)
}

impl std::str::FromStr for Role {
    type Err = DomainError;

    fn from_str(text: &str) -> DomainResult<Self> {
        match text {
            "admin" => Ok(Self::Admin),
            "viewer" => Ok(Self::Viewer),
            _ => Err(DomainError::Internal(format!(
                "unknown admin role {text:?}"
            ))),
        }
    }
}

/// An admin as login needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminAccount {
    pub id: Uuid,
    pub username: String,
    pub role: String,
    pub password_hash: String,
    /// Sealed; set while enrolling and after.
    pub totp_secret: Option<Vec<u8>>,
    /// Set once the first code confirmed the secret: from then on login asks for a code.
    pub totp_enabled_at: Option<OffsetDateTime>,
    pub disabled_at: Option<OffsetDateTime>,
}

/// An admin as the settings page lists them.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AdminSummary {
    pub id: Uuid,
    pub username: String,
    pub role: String,
    pub totp_enabled: bool,
    pub last_login_at: Option<OffsetDateTime>,
}

const ACCOUNT_COLUMNS: &str =
    "id, username, role, password_hash, totp_secret, totp_enabled_at, disabled_at";

pub async fn find_by_username(pool: &PgPool, username: &str) -> DomainResult<Option<AdminAccount>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM admin_users WHERE username = $1"
    ))
    .bind(username)
    .fetch_optional(pool)
    .await?)
}

pub async fn find(pool: &PgPool, id: Uuid) -> DomainResult<Option<AdminAccount>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM admin_users WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

pub async fn list(pool: &PgPool) -> DomainResult<Vec<AdminSummary>> {
    Ok(sqlx::query_as(
        "SELECT id, username, role, totp_enabled_at IS NOT NULL AS totp_enabled, last_login_at
           FROM admin_users ORDER BY username",
    )
    .fetch_all(pool)
    .await?)
}

pub async fn record_login(pool: &PgPool, id: Uuid) -> DomainResult<()> {
    sqlx::query("UPDATE admin_users SET last_login_at = now() WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}

/// Stores a new, not yet confirmed secret; an enabled 2FA is never replaced
/// this way (reset it first).
pub async fn begin_totp(pool: &PgPool, id: Uuid, sealed_secret: &[u8]) -> DomainResult<()> {
    let updated = sqlx::query(
        "UPDATE admin_users SET totp_secret = $2, updated_at = now()
          WHERE id = $1 AND totp_enabled_at IS NULL",
    )
    .bind(id)
    .bind(sealed_secret)
    .execute(pool)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(DomainError::conflict(
            "totp",
            "two-factor login is already enabled",
        ));
    }
    Ok(())
}

/// Turns 2FA on after the first code matched, replacing any recovery codes
/// with `recovery_hashes` (argon2id).
pub async fn enable_totp(
    pool: &PgPool,
    ctx: &RequestContext,
    id: Uuid,
    recovery_hashes: &[String],
) -> DomainResult<()> {
    let mut tx = pool.begin().await?;
    let updated = sqlx::query(
        "UPDATE admin_users SET totp_enabled_at = now(), updated_at = now()
          WHERE id = $1 AND totp_enabled_at IS NULL AND totp_secret IS NOT NULL",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated == 0 {
        return Err(DomainError::conflict("totp", "no enrolment in progress"));
    }
    sqlx::query("DELETE FROM admin_recovery_codes WHERE admin_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO admin_recovery_codes (admin_id, code_hash) SELECT $1, unnest($2::text[])",
    )
    .bind(id)
    .bind(recovery_hashes)
    .execute(&mut *tx)
    .await?;
    let change = Change::new("admin.totp_enable", "admin_user", id)
        .before(json!({ "totp_enabled": false }))
        .after(json!({ "totp_enabled": true, "recovery_codes": recovery_hashes.len() }));
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(())
}

/// Clears an admin's 2FA and recovery codes and ends their sessions: they log
/// in with the password alone and enrol again.
pub async fn reset_totp(pool: &PgPool, ctx: &RequestContext, id: Uuid) -> DomainResult<()> {
    let mut tx = pool.begin().await?;
    let before: Option<bool> = sqlx::query_scalar(
        "SELECT totp_enabled_at IS NOT NULL FROM admin_users WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(before) = before else {
        return Err(DomainError::NotFound(Entity::Admin));
    };
    sqlx::query(
        "UPDATE admin_users SET totp_secret = NULL, totp_enabled_at = NULL, updated_at = now()
          WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM admin_recovery_codes WHERE admin_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE admin_sessions SET revoked_at = now() WHERE admin_id = $1 AND revoked_at IS NULL",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    let change = Change::new("admin.totp_reset", "admin_user", id)
        .before(json!({ "totp_enabled": before }))
        .after(json!({ "totp_enabled": false }));
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(())
}

/// Accepts a TOTP time step once: `false` if this step (or a later one) was
/// already used to log in, so a code seen over a shoulder cannot be replayed.
pub async fn claim_totp_step(pool: &PgPool, id: Uuid, step: u64) -> DomainResult<bool> {
    let step =
        i64::try_from(step).map_err(|_| DomainError::Internal("TOTP step overflow".into()))?;
    let claimed = sqlx::query(
        "UPDATE admin_users SET totp_last_step = $2
          WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
    )
    .bind(id)
    .bind(step)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(claimed == 1)
}

/// Spends one unused recovery code that matches `code`; `false` if none does.
pub async fn use_recovery_code(pool: &PgPool, id: Uuid, code: &str) -> DomainResult<bool> {
    let mut tx = pool.begin().await?;
    let codes: Vec<(i64, String)> = sqlx::query_as(
        "SELECT id, code_hash FROM admin_recovery_codes
          WHERE admin_id = $1 AND used_at IS NULL FOR UPDATE",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?;
    let Some((code_id, _)) = codes.iter().find(|(_, hash)| verify_password(code, hash)) else {
        return Ok(false);
    };
    sqlx::query("UPDATE admin_recovery_codes SET used_at = now() WHERE id = $1")
        .bind(code_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_hashes_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &hash));
        assert!(!verify_password("wrong horse battery", &hash));
        assert!(!verify_password("anything", "not a hash"));
    }
}
