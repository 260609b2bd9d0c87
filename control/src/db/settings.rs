//! Settings kept in the `settings` table. Today one: the edge configuration
//! published in every snapshot (`edge_config`), read and changed here; a
//! change is audited and published so the next delta carries it to every
//! edge. Control decides by the same values: a session's heartbeat interval
//! and a lease's grace fall back to it when the product does not set them.

use sqlx::{PgExecutor, PgPool};

use latchkey_shared::snapshot::EdgeConfig;

use super::audit::{self, Change, to_json};
use super::outbox::EntityKind;
use crate::context::RequestContext;
use crate::error::{DomainError, DomainResult};

/// The key the edge configuration is stored under.
pub const EDGE_CONFIG_KEY: &str = "edge_config";

/// The edge settings stored in `settings` under `edge_config`, or the
/// defaults; read by a pool or inside a caller's transaction.
pub async fn edge_config(db: impl PgExecutor<'_>) -> DomainResult<EdgeConfig> {
    let stored: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT value FROM settings WHERE key = 'edge_config'")
            .fetch_optional(db)
            .await?;
    stored
        .map(|value| {
            serde_json::from_value(value)
                .map_err(|e| DomainError::Internal(format!("edge_config: {e}")))
        })
        .transpose()
        .map(Option::unwrap_or_default)
}

/// Each field of [`EdgeConfig`] with its inclusive bounds: `(field, min, max)`.
pub const EDGE_CONFIG_BOUNDS: [(&str, u32, u32); 5] = [
    ("rate_limit_per_key_per_min", 1, 1_000_000),
    ("rate_limit_per_ip_per_min", 1, 1_000_000),
    ("heartbeat_interval_secs", 10, 86_400),
    ("grace_period_secs", 0, 90 * 86_400),
    ("max_snapshot_age_secs", 60, 30 * 86_400),
];

/// Every field of `config` outside its bounds, with what is allowed.
pub fn edge_config_problems(config: &EdgeConfig) -> Vec<(&'static str, String)> {
    let values = [
        config.rate_limit_per_key_per_min,
        config.rate_limit_per_ip_per_min,
        config.heartbeat_interval_secs,
        config.grace_period_secs,
        config.max_snapshot_age_secs,
    ];
    EDGE_CONFIG_BOUNDS
        .iter()
        .zip(values)
        .filter(|((_, min, max), value)| !(*min..=*max).contains(value))
        .map(|((field, min, max), _)| (*field, format!("a whole number from {min} to {max}")))
        .collect()
}

/// Stores a new edge configuration: one audit row (before and after) and a
/// `config` outbox row, in one transaction, so the next delta carries it.
pub async fn set_edge_config(
    pool: &PgPool,
    ctx: &RequestContext,
    config: &EdgeConfig,
) -> DomainResult<EdgeConfig> {
    if let Some((field, message)) = edge_config_problems(config).into_iter().next() {
        return Err(DomainError::invalid(field, message));
    }
    let before = edge_config(pool).await?;
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = now()",
    )
    .bind(EDGE_CONFIG_KEY)
    .bind(to_json(config)?)
    .execute(&mut *tx)
    .await?;
    let change = Change::new("edge_config.update", "config", EDGE_CONFIG_KEY)
        .before(to_json(&before)?)
        .after(to_json(config)?)
        .publish(EntityKind::Config, EDGE_CONFIG_KEY);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(*config)
}
