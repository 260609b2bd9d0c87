//! Building a full signed snapshot from the database.
//!
//! Licenses are streamed and turned into compact records as they arrive, so
//! memory stays at the snapshot's own size. Active devices are aggregated per
//! license in one hash aggregate, not one index probe per license.

use futures_util::TryStreamExt;
use latchkey_shared::SigningKeyPair;
use latchkey_shared::fingerprint::DeviceDigest;
use latchkey_shared::snapshot::{
    LicenseEntry, LicenseKind, LicenseStatus, Policy, SnapshotBuilder, UsageLimit,
};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{flags, products, sessions, settings};
use crate::error::{DomainError, DomainResult};

/// How long an exported snapshot file stays valid: an air-gapped edge is
/// given a new file at least this often. Snapshots published over the link
/// live much shorter (the publisher's `valid_for`).
pub const EXPORT_VALID_SECS: i64 = 7 * 86_400;

/// A sealed full snapshot and what it holds.
#[derive(Debug)]
pub struct BuiltSnapshot {
    pub sequence: u64,
    pub licenses: u64,
    pub bytes: Vec<u8>,
}

#[derive(sqlx::FromRow)]
pub(crate) struct LicenseRow {
    id: Uuid,
    key_hash: Vec<u8>,
    #[sqlx(try_from = "String")]
    status: LicenseStatus,
    #[sqlx(try_from = "String")]
    kind: LicenseKind,
    valid_from: OffsetDateTime,
    valid_until: Option<OffsetDateTime>,
    product_id: i32,
    device_limit: i32,
    session_limit: i32,
    allow_session_takeover: bool,
    grace_period_secs: Option<i32>,
    features: Vec<String>,
    usage_limits: serde_json::Value,
    usage_exhausted: bool,
    digests: Vec<Vec<u8>>,
}

/// Every license with its active devices' digests: what a full snapshot holds.
pub const LICENSE_ROWS: &str = "WITH d AS (SELECT license_id, array_agg(digest ORDER BY first_seen_at) AS digests
                  FROM devices WHERE status = 'active' GROUP BY license_id)
     SELECT l.id, l.key_hash, l.status, l.kind, l.valid_from, l.valid_until, l.product_id, l.device_limit,
            l.session_limit, l.allow_session_takeover, l.grace_period_secs, l.features, l.usage_limits,
            l.usage_exhausted, coalesce(d.digests, '{}') AS digests
       FROM licenses l LEFT JOIN d ON d.license_id = l.id";

/// The licenses named in `$1` (uuid[]), in the shape of [`LICENSE_ROWS`].
pub(crate) const LICENSES_BY_ID: &str = "SELECT l.id, l.key_hash, l.status, l.kind, l.valid_from, l.valid_until, l.product_id, l.device_limit,
            l.session_limit, l.allow_session_takeover, l.grace_period_secs, l.features, l.usage_limits,
            l.usage_exhausted,
            coalesce((SELECT array_agg(digest ORDER BY first_seen_at) FROM devices
                       WHERE license_id = l.id AND status = 'active'), '{}') AS digests
       FROM licenses l WHERE l.id = ANY($1)";

/// Builds, signs and records the next full snapshot.
/// A full snapshot of the database, valid `valid_secs` from `now`: past
/// that, an edge holding it stops vouching for any license.
pub async fn build_full(
    pool: &PgPool,
    signer: &SigningKeyPair,
    now: OffsetDateTime,
    valid_secs: i64,
) -> DomainResult<BuiltSnapshot> {
    let config = settings::edge_config(pool).await?;
    let expected: i64 = sqlx::query_scalar("SELECT count(*) FROM licenses")
        .fetch_one(pool)
        .await?;
    let mut builder =
        SnapshotBuilder::with_capacity(config, usize::try_from(expected).unwrap_or(0));
    let mut rows = sqlx::query_as::<_, LicenseRow>(LICENSE_ROWS).fetch(pool);
    let mut licenses = 0u64;
    while let Some(row) = rows.try_next().await? {
        builder
            .add_license(&entry(row)?)
            .map_err(|e| DomainError::Internal(e.to_string()))?;
        licenses += 1;
    }
    for product in products::snapshot_products(pool).await? {
        builder.add_product(product);
    }
    for flag in flags::snapshot_flags(pool).await? {
        builder.add_flag(flag);
    }
    for session in sessions::revoked_for_snapshot(pool, now).await? {
        builder.revoke_session(session);
    }
    let sequence: i64 = sqlx::query_scalar("SELECT coalesce(max(sequence), 0) + 1 FROM snapshots")
        .fetch_one(pool)
        .await?;
    let created_at = now.unix_timestamp();
    let bytes = builder
        .seal(signer, sequence as u64, created_at, created_at + valid_secs)
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    sqlx::query(
        "INSERT INTO snapshots (sequence, kind, key_id, size_bytes, licenses, created_at)
         VALUES ($1, 'full', $2, $3, $4, $5)",
    )
    .bind(sequence)
    .bind(signer.id().to_string())
    .bind(bytes.len() as i64)
    .bind(licenses as i64)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(BuiltSnapshot {
        sequence: sequence as u64,
        licenses,
        bytes,
    })
}

pub(crate) fn entry(row: LicenseRow) -> DomainResult<LicenseEntry> {
    let corrupt = |what: &str| DomainError::Internal(format!("license {}: {what}", row.id));
    let key_hash: [u8; 32] = row
        .key_hash
        .as_slice()
        .try_into()
        .map_err(|_| corrupt("key hash is not 32 bytes"))?;
    let devices = row
        .digests
        .iter()
        .map(|d| {
            <[u8; DeviceDigest::BYTES]>::try_from(d.as_slice())
                .map_err(|_| corrupt("device digest size"))
        })
        .collect::<DomainResult<Vec<_>>>()?;
    let usage_limits = row
        .usage_limits
        .as_object()
        .map(|limits| {
            limits
                .iter()
                .filter_map(|(metric, limit)| {
                    Some(UsageLimit {
                        metric: metric.clone(),
                        limit: limit.as_u64()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(LicenseEntry {
        key_hash,
        license_id: row.id,
        status: row.status,
        kind: row.kind,
        valid_from: row.valid_from.unix_timestamp(),
        valid_until: row.valid_until.map(OffsetDateTime::unix_timestamp),
        product_id: row.product_id as u32,
        device_limit: row.device_limit as u32,
        session_limit: row.session_limit as u16,
        usage_exhausted: row.usage_exhausted,
        devices,
        policy: Policy {
            features: row.features,
            usage_limits,
            allow_session_takeover: row.allow_session_takeover,
            grace_period_secs: row.grace_period_secs.map(|g| g as u32),
        },
    })
}
