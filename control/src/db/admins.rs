//! Admin users of the panel: created here with an argon2id password hash.
//! Logging in, 2FA and panel sessions come with the admin panel.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use serde::Serialize;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::audit::{self, Change};
use crate::context::RequestContext;
use crate::error::{DomainError, DomainResult, OnConstraint};

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
    let change = Change {
        action: "admin.create",
        entity_kind: "admin_user",
        entity_id: id.to_string(),
        before: None,
        after: Some(json!({ "username": username, "role": role })),
    };
    audit::record(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(id)
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
