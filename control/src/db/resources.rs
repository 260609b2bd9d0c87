//! Resource pools: domains, IP addresses and phone numbers handed to
//! licenses exclusively.
//!
//! A resource is `available`, `allocated` to exactly one license, or
//! `quarantined` until a time (a released number rests before it is handed
//! out again). Every state change writes a `resource_history` row and one
//! audit row in the change's transaction. Edges never see resources, so no
//! change here touches the snapshot outbox.
//!
//! Exclusivity comes from row locks, not from a retry loop: `allocate` locks
//! the license row (allocations to one license queue up) and picks its
//! resources with `FOR UPDATE SKIP LOCKED`, so concurrent allocations to
//! different licenses take disjoint rows without waiting for each other.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::context::RequestContext;
use crate::db::audit::{self, Change, to_json};
use crate::error::{DomainError, DomainResult, Entity};

mod bulk;
mod ranges;

pub use bulk::{BulkAdded, BulkInput, BulkReport, LineReport, OnBadLine, add_bulk, add_lines};

/// Most values one bulk add takes, ranges counted by their size: a /16
/// of IPv4 addresses, or a paste of about 1 MiB (the body limit).
pub const MAX_BULK_VALUES: usize = 65_536;
/// Most resources one `allocate` call hands out.
pub const MAX_ALLOCATION: u32 = 10_000;
/// Largest page `list` returns.
pub const MAX_PER_PAGE: u32 = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Domain,
    Ip,
    Phone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResourceStatus {
    Available,
    Allocated,
    Quarantined,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct Resource {
    pub id: i64,
    #[sqlx(try_from = "String")]
    pub kind: ResourceKind,
    pub value: String,
    #[sqlx(try_from = "String")]
    pub status: ResourceStatus,
    pub license_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub allocated_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub quarantined_until: Option<OffsetDateTime>,
    pub notes: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// One line of a resource's history.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct HistoryEntry {
    pub id: i64,
    pub resource_id: i64,
    /// `added`, `allocated`, `released`, `quarantined` or `restored`.
    pub action: String,
    pub license_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Which resources `list` returns; every field left out matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceFilter {
    #[serde(default)]
    pub kind: Option<ResourceKind>,
    #[serde(default)]
    pub status: Option<ResourceStatus>,
    #[serde(default)]
    pub license_id: Option<Uuid>,
    /// Part of the value, in any case; spaces are ignored (values are
    /// stored without them).
    #[serde(default)]
    pub search: Option<String>,
}

impl ResourceFilter {
    /// The conditions given, and only those.
    fn push(&self, sql: &mut QueryBuilder<'_, Postgres>) {
        if let Some(kind) = self.kind {
            sql.push(" AND kind = ").push_bind(kind.as_str());
        }
        if let Some(status) = self.status {
            sql.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(license) = self.license_id {
            sql.push(" AND license_id = ").push_bind(license);
        }
        let term: String = self
            .search
            .iter()
            .flat_map(|text| text.chars())
            .filter(|c| !c.is_whitespace())
            .collect::<String>()
            .to_lowercase();
        if !term.is_empty() {
            // strpos, not LIKE: what is searched for may hold `%` or `_`.
            sql.push(" AND strpos(value, ")
                .push_bind(term)
                .push(") > 0");
        }
    }
}

/// One pool's counts by status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PoolSummary {
    pub kind: ResourceKind,
    pub available: i64,
    pub allocated: i64,
    pub quarantined: i64,
}

impl PoolSummary {
    pub fn total(&self) -> i64 {
        self.available + self.allocated + self.quarantined
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourcePage {
    pub items: Vec<Resource>,
    /// Matching resources over all pages.
    pub total: i64,
}

const COLUMNS: &str =
    "id, kind, value, status, license_id, allocated_at, quarantined_until, notes, created_at";

/// Gives `count` available resources of `kind` to a license, all or
/// nothing. Fewer available than asked is a `Conflict` on `count` saying
/// how many are, and nothing is allocated.
pub async fn allocate(
    pool: &PgPool,
    ctx: &RequestContext,
    license_id: Uuid,
    kind: ResourceKind,
    count: u32,
) -> DomainResult<Vec<Resource>> {
    if count == 0 || count > MAX_ALLOCATION {
        return Err(DomainError::invalid(
            "count",
            format!("must be between 1 and {MAX_ALLOCATION}"),
        ));
    }
    let mut tx = pool.begin().await?;
    let status: Option<String> =
        sqlx::query_scalar("SELECT status FROM licenses WHERE id = $1 FOR UPDATE")
            .bind(license_id)
            .fetch_optional(&mut *tx)
            .await?;
    match status.as_deref() {
        None => return Err(DomainError::NotFound(Entity::License)),
        Some("revoked") => {
            return Err(DomainError::conflict(
                "license_id",
                "the license is revoked",
            ));
        }
        Some(_) => {}
    }
    // Rows another transaction is taking right now are skipped, not waited
    // for; a row it committed meanwhile fails the status recheck.
    let picked: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM resources WHERE kind = $1 AND status = 'available'
          ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED",
    )
    .bind(kind.as_str())
    .bind(i64::from(count))
    .fetch_all(&mut *tx)
    .await?;
    if picked.len() < count as usize {
        // Dropping the transaction releases the rows untouched.
        return Err(DomainError::conflict(
            "count",
            format!(
                "asked for {count} {kind} resources, only {} available",
                picked.len(),
                kind = kind.as_str()
            ),
        ));
    }
    let mut allocated: Vec<Resource> = sqlx::query_as(&format!(
        "WITH updated AS (
             UPDATE resources
                SET status = 'allocated', license_id = $2, allocated_at = now(), quarantined_until = NULL
              WHERE id = ANY($1)
             RETURNING {COLUMNS}
         ), history AS (
             INSERT INTO resource_history (resource_id, action, license_id)
             SELECT id, 'allocated', $2 FROM updated
         )
         SELECT {COLUMNS} FROM updated"
    ))
    .bind(&picked)
    .bind(license_id)
    .fetch_all(&mut *tx)
    .await?;
    allocated.sort_by_key(|r| r.id);
    let change = Change::new("resource.allocate", "license", license_id).after(json!({
        "kind": kind.as_str(),
        "count": count,
        "resource_ids": picked,
    }));
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(allocated)
}

/// Takes an allocated resource back from its license: available again, or
/// quarantined until `quarantine_until` when given.
pub async fn release(
    pool: &PgPool,
    ctx: &RequestContext,
    resource_id: i64,
    quarantine_until: Option<OffsetDateTime>,
) -> DomainResult<Resource> {
    if let Some(until) = quarantine_until {
        ensure_future("quarantine_until", until)?;
    }
    let mut tx = pool.begin().await?;
    let before = lock(&mut tx, resource_id).await?;
    if before.status != ResourceStatus::Allocated {
        return Err(DomainError::conflict(
            "status",
            format!("resource {resource_id} is not allocated"),
        ));
    }
    let status = match quarantine_until {
        Some(_) => ResourceStatus::Quarantined,
        None => ResourceStatus::Available,
    };
    let after: Resource = sqlx::query_as(&format!(
        "UPDATE resources
            SET status = $2, license_id = NULL, allocated_at = NULL, quarantined_until = $3
          WHERE id = $1
         RETURNING {COLUMNS}"
    ))
    .bind(resource_id)
    .bind(status.as_str())
    .bind(quarantine_until)
    .fetch_one(&mut *tx)
    .await?;
    write_history(&mut tx, resource_id, "released", before.license_id).await?;
    if quarantine_until.is_some() {
        write_history(&mut tx, resource_id, "quarantined", None).await?;
    }
    let change = Change::new("resource.release", "resource", resource_id)
        .before(to_json(&before)?)
        .after(to_json(&after)?);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(after)
}

/// Rests an available (or already quarantined) resource until `until`.
/// An allocated one must be released first: its license should learn of it.
pub async fn quarantine(
    pool: &PgPool,
    ctx: &RequestContext,
    resource_id: i64,
    until: OffsetDateTime,
) -> DomainResult<Resource> {
    ensure_future("until", until)?;
    let mut tx = pool.begin().await?;
    let before = lock(&mut tx, resource_id).await?;
    if before.status == ResourceStatus::Allocated {
        return Err(DomainError::conflict(
            "status",
            format!("resource {resource_id} is allocated; release it first"),
        ));
    }
    let after: Resource = sqlx::query_as(&format!(
        "UPDATE resources SET status = 'quarantined', quarantined_until = $2
          WHERE id = $1
         RETURNING {COLUMNS}"
    ))
    .bind(resource_id)
    .bind(until)
    .fetch_one(&mut *tx)
    .await?;
    write_history(&mut tx, resource_id, "quarantined", None).await?;
    let change = Change::new("resource.quarantine", "resource", resource_id)
        .before(to_json(&before)?)
        .after(to_json(&after)?);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(after)
}

/// The maintenance job: resources quarantined until `now` or earlier become
/// available. Rows another transaction holds are left for the next run.
/// Writes one audit row (system actor) when it restored anything.
pub async fn restore_expired_quarantine(pool: &PgPool, now: OffsetDateTime) -> DomainResult<u64> {
    let mut tx = pool.begin().await?;
    let restored: Vec<i64> = sqlx::query_scalar(
        "WITH due AS (
             SELECT id FROM resources
              WHERE status = 'quarantined' AND quarantined_until <= $1
              ORDER BY id FOR UPDATE SKIP LOCKED
         ), restored AS (
             UPDATE resources r SET status = 'available', quarantined_until = NULL
               FROM due WHERE r.id = due.id
             RETURNING r.id
         ), history AS (
             INSERT INTO resource_history (resource_id, action) SELECT id, 'restored' FROM restored
         )
         SELECT id FROM restored ORDER BY id",
    )
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    if restored.is_empty() {
        return Ok(0);
    }
    let ctx = RequestContext::system("quarantine-restore");
    let change = Change::new("resource.restore_quarantine", "resource", "quarantine")
        .after(json!({ "resource_ids": restored }));
    audit::record_change(&mut tx, &ctx, change).await?;
    tx.commit().await?;
    Ok(restored.len() as u64)
}

pub async fn get(pool: &PgPool, resource_id: i64) -> DomainResult<Resource> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM resources WHERE id = $1"))
        .bind(resource_id)
        .fetch_optional(pool)
        .await?
        .ok_or(DomainError::NotFound(Entity::Resource))
}

/// Every resource matching `filter`, oldest first, streamed.
pub fn stream(pool: PgPool, filter: &ResourceFilter) -> super::RowStream<Resource> {
    let mut sql =
        QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM resources WHERE true"));
    filter.push(&mut sql);
    sql.push(" ORDER BY id");
    super::stream_rows(pool, sql)
}

/// How many resources match `filter`.
pub async fn count(pool: &PgPool, filter: &ResourceFilter) -> DomainResult<i64> {
    let mut sql = QueryBuilder::<Postgres>::new("SELECT count(*) FROM resources WHERE true");
    filter.push(&mut sql);
    Ok(sql.build_query_scalar().fetch_one(pool).await?)
}

/// Resources matching `filter`, oldest first; `page` counts from 1.
pub async fn list(
    pool: &PgPool,
    filter: &ResourceFilter,
    page: u32,
    per_page: u32,
) -> DomainResult<ResourcePage> {
    if page == 0 {
        return Err(DomainError::invalid("page", "pages count from 1"));
    }
    if per_page == 0 || per_page > MAX_PER_PAGE {
        return Err(DomainError::invalid(
            "per_page",
            format!("must be between 1 and {MAX_PER_PAGE}"),
        ));
    }
    let total = count(pool, filter).await?;
    let mut sql =
        QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM resources WHERE true"));
    filter.push(&mut sql);
    sql.push(" ORDER BY id LIMIT ")
        .push_bind(i64::from(per_page))
        .push(" OFFSET ")
        .push_bind(i64::from(page - 1) * i64::from(per_page));
    let items = sql.build_query_as().fetch_all(pool).await?;
    Ok(ResourcePage { items, total })
}

/// Every pool's counts, in [`ResourceKind::ALL`] order (empty pools too).
pub async fn summary(pool: &PgPool) -> DomainResult<Vec<PoolSummary>> {
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT kind, status, count(*) FROM resources GROUP BY kind, status")
            .fetch_all(pool)
            .await?;
    Ok(ResourceKind::ALL
        .into_iter()
        .map(|kind| {
            let count = |status: ResourceStatus| {
                rows.iter()
                    .find(|(k, s, _)| k == kind.as_str() && s == status.as_str())
                    .map_or(0, |row| row.2)
            };
            PoolSummary {
                kind,
                available: count(ResourceStatus::Available),
                allocated: count(ResourceStatus::Allocated),
                quarantined: count(ResourceStatus::Quarantined),
            }
        })
        .collect())
}

/// A resource's history, oldest first.
pub async fn history(pool: &PgPool, resource_id: i64) -> DomainResult<Vec<HistoryEntry>> {
    Ok(sqlx::query_as(
        "SELECT id, resource_id, action, license_id, at FROM resource_history
          WHERE resource_id = $1 ORDER BY id",
    )
    .bind(resource_id)
    .fetch_all(pool)
    .await?)
}

impl ResourceKind {
    pub const ALL: [Self; 3] = [Self::Domain, Self::Ip, Self::Phone];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Domain => "domain",
            Self::Ip => "ip",
            Self::Phone => "phone",
        }
    }

    /// The one text a value is stored as, so `Example.COM` and
    /// `example.com` are the same resource; `Err` says what is wrong.
    pub fn canonicalise(self, raw: &str) -> Result<String, String> {
        match self {
            Self::Domain => canonical_domain(raw),
            Self::Ip => raw
                .trim()
                .parse::<IpAddr>()
                .map(|ip| ip.to_canonical().to_string())
                .map_err(|_| format!("{:?} is not an IP address", truncate(raw))),
            Self::Phone => canonical_phone(raw),
        }
    }
}

impl ResourceStatus {
    pub const ALL: [Self; 3] = [Self::Available, Self::Allocated, Self::Quarantined];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "available",
            Self::Allocated => "allocated",
            Self::Quarantined => "quarantined",
        }
    }
}

/// The database stores kind and status as their `as_str` text.
impl TryFrom<String> for ResourceKind {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| format!("unknown resource kind {text:?}"))
    }
}

impl TryFrom<String> for ResourceStatus {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| format!("unknown resource status {text:?}"))
    }
}

/// Lower-case ASCII labels of 1–63 letters, digits and inner hyphens, at
/// least two of them, 253 characters at most; one trailing dot is dropped.
/// Internationalised names are taken in their `xn--` form only.
fn canonical_domain(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    let name = trimmed
        .strip_suffix('.')
        .unwrap_or(trimmed)
        .to_ascii_lowercase();
    let refuse = |why: &str| Err(format!("{:?} is not a domain name: {why}", truncate(raw)));
    if name.is_empty() || name.len() > 253 {
        return refuse("it must be 1 to 253 characters long");
    }
    if !name.is_ascii() {
        return refuse("give internationalised names in their xn-- form");
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.len() < 2 {
        return refuse("it needs at least two labels");
    }
    for label in &labels {
        if label.is_empty() || label.len() > 63 {
            return refuse("every label must be 1 to 63 characters long");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return refuse("labels hold only letters, digits and hyphens");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return refuse("a label cannot start or end with a hyphen");
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return refuse("the top-level label cannot be all digits");
    }
    Ok(name)
}

/// E.164: `+` and 8 to 15 digits, the first not 0, once spaces, dashes,
/// dots and parentheses are stripped.
fn canonical_phone(raw: &str) -> Result<String, String> {
    let compact: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '\t' | '-' | '.' | '(' | ')'))
        .collect();
    let refuse = |why: &str| Err(format!("{:?} is not an E.164 number: {why}", truncate(raw)));
    let Some(digits) = compact.strip_prefix('+') else {
        return refuse("it must start with + and the country code");
    };
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return refuse("only digits may follow the +");
    }
    if !(8..=15).contains(&digits.len()) {
        return refuse("it must have 8 to 15 digits");
    }
    if digits.starts_with('0') {
        return refuse("country codes do not start with 0");
    }
    Ok(compact)
}

fn truncate(raw: &str) -> String {
    raw.chars().take(64).collect()
}

fn ensure_future(field: &str, until: OffsetDateTime) -> DomainResult<()> {
    if until <= OffsetDateTime::now_utc() {
        return Err(DomainError::invalid(field, "must be in the future"));
    }
    Ok(())
}

async fn lock(conn: &mut PgConnection, resource_id: i64) -> DomainResult<Resource> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM resources WHERE id = $1 FOR UPDATE"
    ))
    .bind(resource_id)
    .fetch_optional(conn)
    .await?
    .ok_or(DomainError::NotFound(Entity::Resource))
}

async fn write_history(
    conn: &mut PgConnection,
    resource_id: i64,
    action: &str,
    license_id: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO resource_history (resource_id, action, license_id) VALUES ($1, $2, $3)",
    )
    .bind(resource_id)
    .bind(action)
    .bind(license_id)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_lower_case_with_valid_labels() {
        let domain = |raw| ResourceKind::Domain.canonicalise(raw);
        assert_eq!(domain(" Mail.Example.COM. ").unwrap(), "mail.example.com");
        assert_eq!(
            domain("xn--bcher-kva.example").unwrap(),
            "xn--bcher-kva.example"
        );
        for bad in [
            "",
            "localhost",
            "a..b",
            "-a.com",
            "a-.com",
            "bü.de",
            "a_b.com",
            "1.2.3.4",
        ] {
            assert!(domain(bad).is_err(), "{bad:?}");
        }
        assert!(domain(&format!("{}.com", "a".repeat(64))).is_err());
    }

    #[test]
    fn ips_are_stored_in_canonical_text() {
        let ip = |raw| ResourceKind::Ip.canonicalise(raw);
        assert_eq!(ip(" 2001:DB8:0:0::1 ").unwrap(), "2001:db8::1");
        assert_eq!(ip("::ffff:192.0.2.7").unwrap(), "192.0.2.7");
        assert_eq!(ip("192.0.2.7").unwrap(), "192.0.2.7");
        for bad in ["192.0.2.256", "192.0.2", "example.com", "01.2.3.4"] {
            assert!(ip(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn phones_are_e164() {
        let phone = |raw| ResourceKind::Phone.canonicalise(raw);
        assert_eq!(phone("+1 (415) 555-0100").unwrap(), "+14155550100");
        assert_eq!(phone("+44.20.7946.0958").unwrap(), "+442079460958");
        for bad in [
            "4155550100",
            "+1234567",
            "+1234567890123456",
            "+0123456789",
            "+1415555O100",
        ] {
            assert!(phone(bad).is_err(), "{bad:?}");
        }
    }
}
