//! Usage-limit accounting: counters per license, metric and calendar month
//! (UTC), and the `usage_exhausted` flag edges refuse verifications on.
//!
//! Recording locks the license row, so concurrent records of one license
//! add up exactly and the flag flips in the same transaction as the count
//! that crossed the limit (with an outbox row, so edges learn of it).

use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::licenses::{self, License};
use super::outbox::{self, EntityKind};
use crate::error::{DomainError, DomainResult};

/// Where a license stands on one metric this month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageStatus {
    pub metric: String,
    pub used: i64,
    pub limit: Option<u64>,
    /// Any metric of the license is at or over its limit this month.
    pub exhausted: bool,
}

/// Adds `amount` to the license's `metric` for the month of `at`.
pub async fn record(
    pool: &PgPool,
    license_id: Uuid,
    metric: &str,
    amount: i64,
    at: OffsetDateTime,
) -> DomainResult<UsageStatus> {
    if amount <= 0 {
        return Err(DomainError::invalid("amount", "must be positive"));
    }
    if metric.is_empty() || metric.len() > 64 {
        return Err(DomainError::invalid("metric", "1 to 64 characters"));
    }
    let period = period_start(at);
    let mut tx = pool.begin().await?;
    let license = licenses::lock(&mut tx, license_id).await?;
    let used: i64 = sqlx::query_scalar(
        "INSERT INTO usage_counters (license_id, metric, period_start, used) VALUES ($1, $2, $3, $4)
         ON CONFLICT (license_id, metric, period_start) DO UPDATE SET used = usage_counters.used + EXCLUDED.used
         RETURNING used",
    )
    .bind(license_id)
    .bind(metric)
    .bind(period)
    .bind(amount)
    .fetch_one(&mut *tx)
    .await?;
    let exhausted = settle(&mut tx, &license, period).await?;
    tx.commit().await?;
    Ok(UsageStatus {
        metric: metric.to_owned(),
        used,
        limit: limit_of(&license, metric),
        exhausted,
    })
}

/// Where the license stands this month (of `now`) on each metric it has a
/// limit or a count for, by metric name.
pub async fn current(
    pool: &PgPool,
    license: &License,
    now: OffsetDateTime,
) -> DomainResult<Vec<UsageStatus>> {
    let counted: Vec<(String, i64)> = sqlx::query_as(
        "SELECT metric, used FROM usage_counters WHERE license_id = $1 AND period_start = $2",
    )
    .bind(license.id)
    .bind(period_start(now))
    .fetch_all(pool)
    .await?;
    let mut used: std::collections::BTreeMap<String, i64> = counted.into_iter().collect();
    if let Some(limits) = license.usage_limits.as_object() {
        for metric in limits.keys() {
            used.entry(metric.clone()).or_insert(0);
        }
    }
    Ok(used
        .into_iter()
        .map(|(metric, used)| UsageStatus {
            limit: limit_of(license, &metric),
            exhausted: license.usage_exhausted,
            metric,
            used,
        })
        .collect())
}

/// Re-decides the flag of every license marked exhausted against the month
/// of `now`: a new month, a raised limit or a removed one clears it. A job.
pub async fn refresh(pool: &PgPool, now: OffsetDateTime) -> DomainResult<u64> {
    let period = period_start(now);
    let marked: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM licenses WHERE usage_exhausted")
        .fetch_all(pool)
        .await?;
    let mut cleared = 0;
    for license_id in marked {
        let mut tx = pool.begin().await?;
        let license = match licenses::lock(&mut tx, license_id).await {
            Ok(license) => license,
            Err(DomainError::NotFound(_)) => continue,
            Err(error) => return Err(error),
        };
        if !settle(&mut tx, &license, period).await? {
            cleared += 1;
        }
        tx.commit().await?;
    }
    Ok(cleared)
}

/// Sets `usage_exhausted` from this period's counters; pushes the license to
/// the outbox when the flag changes. Returns the flag.
async fn settle(conn: &mut PgConnection, license: &License, period: Date) -> DomainResult<bool> {
    let counters: Vec<(String, i64)> = sqlx::query_as(
        "SELECT metric, used FROM usage_counters WHERE license_id = $1 AND period_start = $2",
    )
    .bind(license.id)
    .bind(period)
    .fetch_all(&mut *conn)
    .await?;
    let exhausted = counters.iter().any(|(metric, used)| {
        limit_of(license, metric).is_some_and(|limit| u64::try_from(*used).unwrap_or(0) >= limit)
    });
    if exhausted != license.usage_exhausted {
        sqlx::query("UPDATE licenses SET usage_exhausted = $2, updated_at = now() WHERE id = $1")
            .bind(license.id)
            .bind(exhausted)
            .execute(&mut *conn)
            .await?;
        outbox::push(conn, EntityKind::License, &license.id.to_string()).await?;
    }
    Ok(exhausted)
}

fn limit_of(license: &License, metric: &str) -> Option<u64> {
    license
        .usage_limits
        .get(metric)
        .and_then(serde_json::Value::as_u64)
}

fn period_start(at: OffsetDateTime) -> Date {
    at.date()
        .replace_day(1)
        .expect("every month has a first day")
}
