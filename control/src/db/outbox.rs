//! The snapshot outbox: every change an edge must learn of, written in the
//! change's transaction, so a committed change is never missed by the
//! publisher and an aborted one never published.

use sqlx::PgConnection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityKind {
    License,
    Product,
    Flags,
    Config,
    Session,
}

impl EntityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::License => "license",
            Self::Product => "product",
            Self::Flags => "flags",
            Self::Config => "config",
            Self::Session => "session",
        }
    }
}

pub async fn push(
    conn: &mut PgConnection,
    kind: EntityKind,
    entity_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO snapshot_outbox (entity_kind, entity_id) VALUES ($1, $2)")
        .bind(kind.as_str())
        .bind(entity_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// A deleted license: its key hash travels in the row, since no license row
/// is left to read it from.
pub async fn push_removed_license(
    conn: &mut PgConnection,
    license_id: uuid::Uuid,
    key_hash: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO snapshot_outbox (entity_kind, entity_id, key_hash) VALUES ('license', $1, $2)",
    )
    .bind(license_id.to_string())
    .bind(key_hash)
    .execute(conn)
    .await?;
    Ok(())
}
