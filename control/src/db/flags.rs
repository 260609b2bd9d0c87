//! Feature flags: global (no product) or per product, with a rollout share.
//!
//! A key is unique per product, and once more among the global flags (the
//! `feature_flags_key` index treats "no product" as product 0). Every change
//! writes one audit row and one outbox row of kind `flags`: edges hold all
//! flags, so the publisher resends them whole.

use std::collections::HashMap;

use futures_util::TryStreamExt;
use latchkey_shared::KeyHash;
use latchkey_shared::snapshot::{FeatureFlag as SnapshotFlag, flags_on};
use serde::{Deserialize, Deserializer, Serialize};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::context::RequestContext;
use crate::db::audit::{self, Change, to_json};
use crate::db::outbox::EntityKind;
use crate::error::{DomainError, DomainResult, Entity, OnConstraint};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct FeatureFlag {
    pub id: Uuid,
    pub key: String,
    /// `None`: applies to every product.
    pub product_id: Option<i32>,
    pub enabled: bool,
    /// 0..=100.
    pub rollout_percent: i16,
    pub description: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewFlag {
    pub key: String,
    #[serde(default)]
    pub product_id: Option<i32>,
    #[serde(default)]
    pub enabled: bool,
    #[serde(default = "full_rollout")]
    pub rollout_percent: i16,
    #[serde(default)]
    pub description: Option<String>,
}

/// Fields left out stay as they are; `"description": null` clears it. Key
/// and product are the flag's identity and do not change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlagUpdate {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub rollout_percent: Option<i16>,
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<String>>,
}

const COLUMNS: &str =
    "id, key, product_id, enabled, rollout_percent, description, created_at, updated_at";
const MAX_DESCRIPTION: usize = 4096;

impl NewFlag {
    pub fn validate(&self) -> DomainResult<()> {
        validate_key(&self.key)?;
        validate_rollout(self.rollout_percent)?;
        validate_description(self.description.as_deref())
    }
}

impl FlagUpdate {
    pub fn validate(&self) -> DomainResult<()> {
        if let Some(percent) = self.rollout_percent {
            validate_rollout(percent)?;
        }
        validate_description(self.description.as_ref().and_then(Option::as_deref))
    }
}

pub async fn create(
    pool: &PgPool,
    ctx: &RequestContext,
    new: &NewFlag,
) -> DomainResult<FeatureFlag> {
    new.validate()?;
    let mut tx = pool.begin().await?;
    if let Some(product_id) = new.product_id {
        // KEY SHARE: the product cannot vanish before the insert commits.
        sqlx::query_scalar::<_, i32>("SELECT id FROM products WHERE id = $1 FOR KEY SHARE")
            .bind(product_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(DomainError::NotFound(Entity::Product))?;
    }
    let flag: FeatureFlag = sqlx::query_as(&format!(
        "INSERT INTO feature_flags (key, product_id, enabled, rollout_percent, description)
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    ))
    .bind(&new.key)
    .bind(new.product_id)
    .bind(new.enabled)
    .bind(new.rollout_percent)
    .bind(&new.description)
    .fetch_one(&mut *tx)
    .await
    .on_unique(
        "feature_flags_key",
        "key",
        "this flag key already exists for this product",
    )?;
    let change = Change::new("flag.create", "feature_flag", flag.id)
        .after(to_json(&flag)?)
        .publish(EntityKind::Flags, flag.id);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(flag)
}

pub async fn update(
    pool: &PgPool,
    ctx: &RequestContext,
    flag_id: Uuid,
    changes: &FlagUpdate,
) -> DomainResult<FeatureFlag> {
    changes.validate()?;
    let mut tx = pool.begin().await?;
    let before: FeatureFlag = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM feature_flags WHERE id = $1 FOR UPDATE"
    ))
    .bind(flag_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(DomainError::NotFound(Entity::Flag))?;
    let description = match &changes.description {
        Some(description) => description.as_deref(),
        None => before.description.as_deref(),
    };
    let after: FeatureFlag = sqlx::query_as(&format!(
        "UPDATE feature_flags
            SET enabled = $2, rollout_percent = $3, description = $4, updated_at = now()
          WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(flag_id)
    .bind(changes.enabled.unwrap_or(before.enabled))
    .bind(changes.rollout_percent.unwrap_or(before.rollout_percent))
    .bind(description)
    .fetch_one(&mut *tx)
    .await?;
    let change = Change::new("flag.update", "feature_flag", flag_id)
        .before(to_json(&before)?)
        .after(to_json(&after)?)
        .publish(EntityKind::Flags, flag_id);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(after)
}

/// Deletes a flag and returns what it was.
pub async fn delete(
    pool: &PgPool,
    ctx: &RequestContext,
    flag_id: Uuid,
) -> DomainResult<FeatureFlag> {
    let mut tx = pool.begin().await?;
    let before: FeatureFlag = sqlx::query_as(&format!(
        "DELETE FROM feature_flags WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(flag_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(DomainError::NotFound(Entity::Flag))?;
    let change = Change::new("flag.delete", "feature_flag", flag_id)
        .before(to_json(&before)?)
        .publish(EntityKind::Flags, flag_id);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(before)
}

pub async fn get(pool: &PgPool, flag_id: Uuid) -> DomainResult<FeatureFlag> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM feature_flags WHERE id = $1"
    ))
    .bind(flag_id)
    .fetch_optional(pool)
    .await?
    .ok_or(DomainError::NotFound(Entity::Flag))
}

/// Every flag, by key; global flags before per-product ones.
pub async fn list(pool: &PgPool) -> DomainResult<Vec<FeatureFlag>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM feature_flags ORDER BY key, product_id NULLS FIRST"
    ))
    .fetch_all(pool)
    .await?)
}

/// How many active licenses a flag decides for, and for how many of them
/// it is on: the edges' rule (`flags_on`) applied to every active license.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reach {
    pub in_scope: i64,
    pub on: i64,
}

/// The reach of every flag, by id. One pass over the active licenses.
pub async fn reach(pool: &PgPool) -> DomainResult<HashMap<Uuid, Reach>> {
    let flags = list(pool).await?;
    let records = to_snapshot(&flags)?;
    let mut reach: HashMap<Uuid, Reach> = flags.iter().map(|f| (f.id, Reach::default())).collect();
    let mut licenses = sqlx::query_as::<_, (i32, Vec<u8>)>(
        "SELECT product_id, key_hash FROM licenses WHERE status = 'active'",
    )
    .fetch(pool);
    while let Some((product_id, key_hash)) = licenses.try_next().await? {
        let (Ok(product_id), Ok(key_hash)) =
            (u32::try_from(product_id), <[u8; 32]>::try_from(key_hash))
        else {
            continue;
        };
        let on = flags_on(&records, product_id, &KeyHash(key_hash));
        for (flag, record) in flags.iter().zip(&records) {
            if record.decides_for(&records, product_id) {
                let counted = reach.entry(flag.id).or_default();
                counted.in_scope += 1;
                counted.on += i64::from(on.contains(&record.key));
            }
        }
    }
    Ok(reach)
}

/// A flag's latest change and the snapshot that carried it (`None`: not
/// published yet).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Delivery {
    pub flag_id: String,
    pub changed_at: OffsetDateTime,
    pub sequence: Option<i64>,
}

/// The newest flag changes (deleted flags' too), newest first.
pub async fn deliveries(pool: &PgPool, limit: i64) -> DomainResult<Vec<Delivery>> {
    Ok(sqlx::query_as(
        "SELECT * FROM (
            SELECT DISTINCT ON (entity_id) entity_id AS flag_id, created_at AS changed_at,
                   published_in AS sequence
              FROM snapshot_outbox WHERE entity_kind = 'flags'
             ORDER BY entity_id, id DESC) latest
          ORDER BY changed_at DESC LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// Every flag as a snapshot carries it, in `list` order.
pub async fn snapshot_flags(pool: &PgPool) -> DomainResult<Vec<SnapshotFlag>> {
    to_snapshot(&list(pool).await?)
}

fn to_snapshot(flags: &[FeatureFlag]) -> DomainResult<Vec<SnapshotFlag>> {
    flags
        .iter()
        .map(|flag| {
            let product_id = flag
                .product_id
                .map(u32::try_from)
                .transpose()
                .map_err(|_| {
                    DomainError::Internal(format!("flag {} has a negative product id", flag.id))
                })?;
            let rollout_percent = u8::try_from(flag.rollout_percent).map_err(|_| {
                DomainError::Internal(format!("flag {} rollout out of range", flag.id))
            })?;
            Ok(SnapshotFlag {
                key: flag.key.clone(),
                enabled: flag.enabled,
                product_id,
                rollout_percent,
            })
        })
        .collect()
}

/// Lower-case letters and digits, then also `_`, `.` and `-`; 64 at most.
fn validate_key(key: &str) -> DomainResult<()> {
    let bytes = key.as_bytes();
    let valid = (1..=64).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(|&b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        });
    if !valid {
        return Err(DomainError::invalid(
            "key",
            "1 to 64 lower-case letters, digits, '_', '.' and '-', starting with a letter or digit",
        ));
    }
    Ok(())
}

fn validate_rollout(percent: i16) -> DomainResult<()> {
    if !(0..=100).contains(&percent) {
        return Err(DomainError::invalid(
            "rollout_percent",
            "must be between 0 and 100",
        ));
    }
    Ok(())
}

fn validate_description(description: Option<&str>) -> DomainResult<()> {
    if description.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION) {
        return Err(DomainError::invalid(
            "description",
            format!("at most {MAX_DESCRIPTION} characters"),
        ));
    }
    Ok(())
}

fn full_rollout() -> i16 {
    100
}

/// Tells a field given as `null` (`Some(None)`) from one left out (`None`).
fn present<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_rollouts_are_checked() {
        let flag = |key: &str, rollout_percent| NewFlag {
            key: key.into(),
            product_id: None,
            enabled: true,
            rollout_percent,
            description: None,
        };
        assert!(flag("new-ui.v2", 50).validate().is_ok());
        assert_eq!(flag("New", 50).validate().unwrap_err().field(), Some("key"));
        assert_eq!(flag("_x", 50).validate().unwrap_err().field(), Some("key"));
        assert_eq!(
            flag("x", 101).validate().unwrap_err().field(),
            Some("rollout_percent")
        );
        let update: FlagUpdate = serde_json::from_str(r#"{"rollout_percent": -1}"#).unwrap();
        assert_eq!(
            update.validate().unwrap_err().field(),
            Some("rollout_percent")
        );
        assert!(serde_json::from_str::<FlagUpdate>(r#"{"key": "x"}"#).is_err());
    }
}
