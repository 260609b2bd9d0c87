//! Licenses: create (one or a batch), edit, suspend/resume/revoke, extend, delete.
//!
//! Keys are generated here and returned once in clear; the database keeps
//! the key hash (lookups), the first group (lists) and the key sealed with
//! `SECRET_KEY` (an admin may reveal it again).

use std::collections::BTreeMap;

use latchkey_shared::snapshot::{LicenseKind, LicenseStatus};
use latchkey_shared::{KeyHash, LegacyKey, LicenseKey};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use time::OffsetDateTime;
use uuid::Uuid;

use super::audit::{self, Change};
use super::outbox::{self, EntityKind};
use crate::context::RequestContext;
use crate::error::{DomainError, DomainResult, Entity};
use crate::secrets::Secrets;

/// Largest batch one call may create.
pub const MAX_BATCH: usize = 10_000;
pub const MAX_DEVICE_LIMIT: i32 = 1_000_000;
/// Seat changes (deactivations, transfers) a client may make per window
/// unless the license says otherwise; the migration's column default too.
pub const DEFAULT_SEAT_CHANGE_LIMIT: i32 = 3;
pub const DEFAULT_SEAT_CHANGE_WINDOW_SECS: i32 = 30 * 86_400;
pub const MAX_SEAT_CHANGE_LIMIT: i32 = 10_000;
pub const MIN_SEAT_CHANGE_WINDOW_SECS: i32 = 3_600;
pub const MAX_SEAT_CHANGE_WINDOW_SECS: i32 = 365 * 86_400;

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct License {
    pub id: Uuid,
    pub key_prefix: String,
    pub customer_id: Option<Uuid>,
    pub product_id: i32,
    #[sqlx(try_from = "String")]
    #[schema(value_type = String, example = "full")]
    pub kind: LicenseKind,
    #[sqlx(try_from = "String")]
    #[schema(value_type = String, example = "active")]
    pub status: LicenseStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub valid_from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub valid_until: Option<OffsetDateTime>,
    pub device_limit: i32,
    pub session_limit: i32,
    pub allow_session_takeover: bool,
    pub grace_period_secs: Option<i32>,
    /// Seat changes a client may make (deactivate, transfer) within
    /// `seat_change_window_secs`; 0: only an admin may free a seat.
    pub seat_change_limit: i32,
    pub seat_change_window_secs: i32,
    pub features: Vec<String>,
    pub usage_limits: Value,
    pub usage_exhausted: bool,
    pub metadata: Value,
    pub batch_id: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A license with its key, as returned once at creation.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreatedLicense {
    pub license_key: String,
    #[serde(flatten)]
    pub license: License,
}

/// What a new license looks like; a batch creates `count` of them.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLicense {
    #[serde(default)]
    pub customer_id: Option<Uuid>,
    pub product_id: i32,
    #[serde(default = "default_kind")]
    #[schema(value_type = String, example = "full")]
    pub kind: LicenseKind,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub valid_from: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub valid_until: Option<OffsetDateTime>,
    #[serde(default = "default_device_limit")]
    pub device_limit: i32,
    #[serde(default)]
    pub session_limit: i32,
    #[serde(default)]
    pub allow_session_takeover: bool,
    #[serde(default)]
    pub grace_period_secs: Option<i32>,
    /// Seat changes a client may make per window (0: admins only); 3 unless given.
    #[serde(default = "default_seat_change_limit")]
    pub seat_change_limit: i32,
    /// The window seat changes are counted in, 1 hour to 1 year; 30 days unless given.
    #[serde(default = "default_seat_change_window_secs")]
    pub seat_change_window_secs: i32,
    #[serde(default)]
    pub features: Vec<String>,
    /// Metric name → limit per calendar month.
    #[serde(default)]
    pub usage_limits: BTreeMap<String, u64>,
    #[serde(default = "empty_object")]
    pub metadata: Value,
}

/// Fields an edit may change; absent fields stay as they are. For
/// `valid_until`, `customer_id` and `grace_period_secs`, an explicit `null` clears.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LicensePatch {
    #[serde(default, deserialize_with = "some")]
    pub customer_id: Option<Option<Uuid>>,
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "full")]
    pub kind: Option<LicenseKind>,
    #[serde(default, deserialize_with = "some_time")]
    pub valid_until: Option<Option<OffsetDateTime>>,
    #[serde(default)]
    pub device_limit: Option<i32>,
    #[serde(default)]
    pub session_limit: Option<i32>,
    #[serde(default)]
    pub allow_session_takeover: Option<bool>,
    #[serde(default, deserialize_with = "some")]
    pub grace_period_secs: Option<Option<i32>>,
    #[serde(default)]
    pub seat_change_limit: Option<i32>,
    #[serde(default)]
    pub seat_change_window_secs: Option<i32>,
    #[serde(default)]
    pub features: Option<Vec<String>>,
    #[serde(default)]
    pub usage_limits: Option<BTreeMap<String, u64>>,
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// Which licenses a list (or a bulk operation) takes; every field left out
/// matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenseFilter {
    #[serde(default)]
    pub status: Option<LicenseStatus>,
    #[serde(default)]
    pub product_id: Option<i32>,
    #[serde(default)]
    pub customer_id: Option<Uuid>,
    #[serde(default)]
    pub batch_id: Option<Uuid>,
    /// The start of a license key, any case: a whole first group (or a
    /// whole key) matches that group, fewer characters every group
    /// starting with them.
    #[serde(default)]
    pub key_prefix: Option<String>,
    #[serde(default)]
    pub kind: Option<LicenseKind>,
    /// Valid until between now and this many days from now.
    #[serde(default)]
    pub expiring_within_days: Option<u32>,
}

impl LicenseFilter {
    /// No condition at all: every license.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The conditions given, and only those (no `$1 IS NULL OR …`: the
    /// planner then sees the shape of the indexes whatever plan it caches).
    pub(crate) fn push(&self, sql: &mut QueryBuilder<'_, Postgres>) {
        if let Some(status) = self.status {
            sql.push(" AND status = ").push_bind(status.as_str());
        }
        if let Some(product) = self.product_id {
            sql.push(" AND product_id = ").push_bind(product);
        }
        if let Some(customer) = self.customer_id {
            sql.push(" AND customer_id = ").push_bind(customer);
        }
        if let Some(batch) = self.batch_id {
            sql.push(" AND batch_id = ").push_bind(batch);
        }
        if let Some(kind) = self.kind {
            sql.push(" AND kind = ").push_bind(kind.as_str());
        }
        if let Some(prefix) = &self.key_prefix {
            sql.push(" AND key_prefix LIKE ")
                .push_bind(key_pattern(prefix));
        }
        if let Some(days) = self.expiring_within_days {
            // On the expression `licenses_valid_until` indexes; a NULL
            // (perpetual) is infinity there, never within a range.
            sql.push(
                " AND coalesce(valid_until, 'infinity'::timestamptz) BETWEEN now() AND now() + make_interval(days => ",
            )
            .push_bind(i32::try_from(days).unwrap_or(i32::MAX))
            .push(")");
        }
    }
}

/// `LIKE` pattern of a key prefix filter: the first group of what was
/// typed, upper case, with `LIKE`'s own characters taken literally.
fn key_pattern(prefix: &str) -> String {
    let group: String = prefix
        .trim()
        .split('-')
        .next()
        .unwrap_or_default()
        .chars()
        .take(latchkey_shared::key::GROUP)
        .flat_map(char::to_uppercase)
        .collect();
    let mut pattern = String::with_capacity(group.len() + 4);
    for c in group.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    if group.chars().count() < latchkey_shared::key::GROUP {
        pattern.push('%');
    }
    pattern
}

/// The orders a list can be read in, each served by an index that a keyset
/// page walks from its cursor: page 1 000 costs what page 1 does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LicenseSort {
    /// `licenses_created_id`, backwards.
    #[default]
    Newest,
    /// `licenses_created_id`.
    Oldest,
    /// Valid until, earliest first, perpetual last: `licenses_valid_until`.
    ValidUntil,
}

impl LicenseSort {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Newest => "newest",
            Self::Oldest => "oldest",
            Self::ValidUntil => "valid_until",
        }
    }

    /// The ordering key, the comparison a later page takes, and its direction.
    fn keyset(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Newest => ("created_at", "<", "DESC"),
            Self::Oldest => ("created_at", ">", "ASC"),
            Self::ValidUntil => ("coalesce(valid_until, 'infinity'::timestamptz)", ">", "ASC"),
        }
    }

    fn cursor_of(self, license: &License) -> LicenseCursor {
        LicenseCursor {
            at: match self {
                Self::Newest | Self::Oldest => Some(license.created_at),
                Self::ValidUntil => license.valid_until,
            },
            id: license.id,
        }
    }
}

/// Where a page of [`list_page`] starts: strictly after this license in the
/// page's order. `at` is the sort's time (created, or valid until with
/// `None` for perpetual).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LicenseCursor {
    pub at: Option<OffsetDateTime>,
    pub id: Uuid,
}

pub(crate) const COLUMNS: &str = "id, key_prefix, customer_id, product_id, kind, status, valid_from, valid_until, device_limit,
    session_limit, allow_session_takeover, grace_period_secs, seat_change_limit, seat_change_window_secs, features,
    usage_limits, usage_exhausted, metadata, batch_id, created_at, updated_at";

impl NewLicense {
    /// A license of `product_id` with every other field as the API's
    /// defaults leave it.
    pub fn for_product(product_id: i32) -> Self {
        Self {
            customer_id: None,
            product_id,
            kind: default_kind(),
            valid_from: None,
            valid_until: None,
            device_limit: default_device_limit(),
            session_limit: 0,
            allow_session_takeover: false,
            grace_period_secs: None,
            seat_change_limit: default_seat_change_limit(),
            seat_change_window_secs: default_seat_change_window_secs(),
            features: Vec::new(),
            usage_limits: BTreeMap::new(),
            metadata: empty_object(),
        }
    }
}

fn default_kind() -> LicenseKind {
    LicenseKind::Full
}

fn default_device_limit() -> i32 {
    1
}

fn default_seat_change_limit() -> i32 {
    DEFAULT_SEAT_CHANGE_LIMIT
}

fn default_seat_change_window_secs() -> i32 {
    DEFAULT_SEAT_CHANGE_WINDOW_SECS
}

fn empty_object() -> Value {
    json!({})
}

fn some<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

fn some_time<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<OffsetDateTime>>, D::Error> {
    time::serde::rfc3339::option::deserialize(d).map(Some)
}

impl NewLicense {
    pub fn validate(&self) -> DomainResult<()> {
        check_device_limit(self.device_limit)?;
        check_session_limit(self.session_limit)?;
        check_grace(self.grace_period_secs)?;
        check_seat_change_limit(self.seat_change_limit)?;
        check_seat_change_window(self.seat_change_window_secs)?;
        check_features(&self.features)?;
        check_usage_limits(&self.usage_limits)?;
        if !self.metadata.is_object() {
            return Err(DomainError::invalid("metadata", "must be a JSON object"));
        }
        if let (Some(from), Some(until)) = (self.valid_from, self.valid_until)
            && until <= from
        {
            return Err(DomainError::invalid(
                "valid_until",
                "must be after valid_from",
            ));
        }
        Ok(())
    }
}

impl LicensePatch {
    pub fn validate(&self) -> DomainResult<()> {
        self.device_limit.map(check_device_limit).transpose()?;
        self.session_limit.map(check_session_limit).transpose()?;
        self.grace_period_secs.map(check_grace).transpose()?;
        self.seat_change_limit
            .map(check_seat_change_limit)
            .transpose()?;
        self.seat_change_window_secs
            .map(check_seat_change_window)
            .transpose()?;
        self.features.as_deref().map(check_features).transpose()?;
        self.usage_limits
            .as_ref()
            .map(check_usage_limits)
            .transpose()?;
        if self.metadata.as_ref().is_some_and(|m| !m.is_object()) {
            return Err(DomainError::invalid("metadata", "must be a JSON object"));
        }
        Ok(())
    }
}

fn check_device_limit(limit: i32) -> DomainResult<()> {
    if !(0..=MAX_DEVICE_LIMIT).contains(&limit) {
        return Err(DomainError::invalid(
            "device_limit",
            "must be between 0 and 1000000",
        ));
    }
    Ok(())
}

fn check_session_limit(limit: i32) -> DomainResult<()> {
    if !(0..=i32::from(u16::MAX)).contains(&limit) {
        return Err(DomainError::invalid(
            "session_limit",
            "must be between 0 (unlimited) and 65535",
        ));
    }
    Ok(())
}

fn check_grace(grace: Option<i32>) -> DomainResult<()> {
    if grace.is_some_and(|g| !(0..=365 * 86_400).contains(&g)) {
        return Err(DomainError::invalid(
            "grace_period_secs",
            "must be between 0 and one year",
        ));
    }
    Ok(())
}

fn check_seat_change_limit(limit: i32) -> DomainResult<()> {
    if !(0..=MAX_SEAT_CHANGE_LIMIT).contains(&limit) {
        return Err(DomainError::invalid(
            "seat_change_limit",
            "must be between 0 (admins only) and 10000",
        ));
    }
    Ok(())
}

fn check_seat_change_window(secs: i32) -> DomainResult<()> {
    if !(MIN_SEAT_CHANGE_WINDOW_SECS..=MAX_SEAT_CHANGE_WINDOW_SECS).contains(&secs) {
        return Err(DomainError::invalid(
            "seat_change_window_secs",
            "must be between one hour and one year",
        ));
    }
    Ok(())
}

/// Feature names, as licenses carry them and products list them.
pub(crate) fn check_features(features: &[String]) -> DomainResult<()> {
    if features.len() > 64 {
        return Err(DomainError::invalid("features", "at most 64 features"));
    }
    for (i, feature) in features.iter().enumerate() {
        let ok = !feature.is_empty()
            && feature.len() <= 64
            && feature
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b));
        if !ok {
            return Err(DomainError::invalid(
                format!("features[{i}]"),
                "feature names are [a-z0-9_.-], 1 to 64",
            ));
        }
    }
    Ok(())
}

fn check_usage_limits(limits: &BTreeMap<String, u64>) -> DomainResult<()> {
    for name in limits.keys() {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(DomainError::invalid(
                format!("usage_limits.{name}"),
                "metric names are [a-z0-9_], 1 to 64",
            ));
        }
    }
    Ok(())
}

/// Creates `count` licenses alike in one transaction: one INSERT, one audit
/// row (per license for a single one, per batch otherwise), one outbox row each.
pub async fn create(
    pool: &PgPool,
    ctx: &RequestContext,
    secrets: &Secrets,
    new: &NewLicense,
    count: usize,
) -> DomainResult<Vec<CreatedLicense>> {
    new.validate()?;
    check_count(count)?;
    let mut tx = pool.begin().await?;
    if let Some(customer) = new.customer_id {
        ensure_customer(&mut tx, customer).await?;
    }
    let created = create_in(&mut tx, ctx, secrets, new, &vec![new.customer_id; count]).await?;
    tx.commit().await?;
    Ok(created)
}

fn check_count(count: usize) -> DomainResult<()> {
    if !(1..=MAX_BATCH).contains(&count) {
        return Err(DomainError::invalid("count", "must be between 1 and 10000"));
    }
    Ok(())
}

/// [`create`] inside the caller's transaction, one license per entry of
/// `customers` (each its own customer, or none): a batch for a list of
/// customers (`db::customers::create_license_batch`). `new.customer_id` is
/// ignored; the customers must exist. The commit is the caller's.
pub(crate) async fn create_in(
    tx: &mut PgConnection,
    ctx: &RequestContext,
    secrets: &Secrets,
    new: &NewLicense,
    customers: &[Option<Uuid>],
) -> DomainResult<Vec<CreatedLicense>> {
    check_count(customers.len())?;
    let keys: Vec<StoredKey> = customers
        .iter()
        .map(|_| StoredKey::from(&LicenseKey::generate()))
        .collect();
    insert_in(tx, ctx, secrets, new, &keys, customers).await
}

/// A key as the licenses table keeps it: the hash edges look it up by, the
/// first group lists show, and the text (sealed with `SECRET_KEY`).
#[derive(Debug, Clone)]
pub(crate) struct StoredKey {
    pub hash: KeyHash,
    pub prefix: String,
    pub text: String,
}

impl From<&LicenseKey> for StoredKey {
    fn from(key: &LicenseKey) -> Self {
        Self {
            hash: key.hash(),
            prefix: key.prefix(),
            text: key.to_string(),
        }
    }
}

impl From<&LegacyKey> for StoredKey {
    fn from(key: &LegacyKey) -> Self {
        Self {
            hash: key.hash(),
            prefix: key.prefix(),
            text: key.as_str().to_owned(),
        }
    }
}

/// Whether a license holds this key already.
pub(crate) async fn key_exists(conn: &mut PgConnection, key: &StoredKey) -> DomainResult<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM licenses WHERE key_hash = $1)")
            .bind(key.hash.0.as_slice())
            .fetch_one(conn)
            .await?,
    )
}

/// One license like `new` for each of `keys`, owned by the customer beside
/// it: [`create_in`]'s insert, audited and published, not committed.
pub(crate) async fn insert_in(
    tx: &mut PgConnection,
    ctx: &RequestContext,
    secrets: &Secrets,
    new: &NewLicense,
    keys: &[StoredKey],
    customers: &[Option<Uuid>],
) -> DomainResult<Vec<CreatedLicense>> {
    new.validate()?;
    let count = keys.len();
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::new_v4()).collect();
    let hashes: Vec<Vec<u8>> = keys.iter().map(|k| k.hash.0.to_vec()).collect();
    let prefixes: Vec<String> = keys.iter().map(|k| k.prefix.clone()).collect();
    let sealed: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| secrets.seal(k.text.as_bytes()))
        .collect();
    let batch_id = (count > 1).then(Uuid::new_v4);
    let mut features = new.features.clone();
    features.sort();
    features.dedup();

    ensure_product(&mut *tx, new.product_id).await?;
    let licenses: Vec<License> = sqlx::query_as(&format!(
        "INSERT INTO licenses (id, key_hash, key_prefix, key_sealed, customer_id, product_id, kind, valid_from,
                               valid_until, device_limit, session_limit, allow_session_takeover, grace_period_secs,
                               features, usage_limits, metadata, batch_id, seat_change_limit, seat_change_window_secs)
         SELECT i.id, i.hash, i.prefix, i.sealed, i.customer, $6, $7, coalesce($8, now()), $9, $10, $11, $12, $13,
                $14, $15, $16, $17, $18, $19
           FROM UNNEST($1::uuid[], $2::bytea[], $3::text[], $4::bytea[], $5::uuid[])
                AS i(id, hash, prefix, sealed, customer)
         RETURNING {COLUMNS}"
    ))
    .bind(&ids)
    .bind(&hashes)
    .bind(&prefixes)
    .bind(&sealed)
    .bind(customers)
    .bind(new.product_id)
    .bind(new.kind.as_str())
    .bind(new.valid_from)
    .bind(new.valid_until)
    .bind(new.device_limit)
    .bind(new.session_limit)
    .bind(new.allow_session_takeover)
    .bind(new.grace_period_secs)
    .bind(&features)
    .bind(json!(new.usage_limits))
    .bind(&new.metadata)
    .bind(batch_id)
    .bind(new.seat_change_limit)
    .bind(new.seat_change_window_secs)
    .fetch_all(&mut *tx)
    .await?;
    let id_texts: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    sqlx::query(
        "INSERT INTO snapshot_outbox (entity_kind, entity_id) SELECT 'license', unnest($1::text[])",
    )
    .bind(&id_texts)
    .execute(&mut *tx)
    .await?;
    let change = match (&licenses[..], batch_id) {
        ([license], None) => Change::new("license.create", "license", license.id).after(json!(license)),
        (_, batch) => Change::new("license.create_batch", "license_batch", batch.unwrap_or_default())
            .after(json!({ "count": count, "product_id": new.product_id, "kind": new.kind, "license_ids": ids })),
    };
    audit::record_change(&mut *tx, ctx, change).await?;

    // RETURNING keeps no promised order: pair keys by id, in input order.
    let mut by_id: std::collections::HashMap<Uuid, License> =
        licenses.into_iter().map(|l| (l.id, l)).collect();
    Ok(ids
        .iter()
        .zip(keys)
        .filter_map(|(id, key)| {
            by_id.remove(id).map(|license| CreatedLicense {
                license_key: key.text.clone(),
                license,
            })
        })
        .collect())
}

pub async fn get(pool: &PgPool, id: Uuid) -> DomainResult<License> {
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM licenses WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(DomainError::NotFound(Entity::License))
}

/// The license key in clear, for an admin who needs it again.
pub async fn reveal_key(
    pool: &PgPool,
    ctx: &RequestContext,
    secrets: &Secrets,
    id: Uuid,
) -> DomainResult<String> {
    let mut tx = pool.begin().await?;
    let sealed: Vec<u8> = sqlx::query_scalar("SELECT key_sealed FROM licenses WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(DomainError::NotFound(Entity::License))?;
    let key = secrets
        .open(&sealed)
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    audit::record_change(
        &mut tx,
        ctx,
        Change::new("license.reveal_key", "license", id),
    )
    .await?;
    tx.commit().await?;
    String::from_utf8(key).map_err(|e| DomainError::Internal(e.to_string()))
}

/// Newest first, by page number, and how many match over all pages (the
/// admin API's list, a customer's page).
pub async fn list(
    pool: &PgPool,
    filter: &LicenseFilter,
    page: u32,
    per_page: u32,
) -> DomainResult<(Vec<License>, i64)> {
    let mut sql =
        QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM licenses WHERE true"));
    filter.push(&mut sql);
    sql.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(i64::from(per_page))
        .push(" OFFSET ")
        .push_bind(i64::from(page.saturating_sub(1)) * i64::from(per_page));
    let items: Vec<License> = sql.build_query_as().fetch_all(pool).await?;
    Ok((items, count(pool, filter).await?))
}

/// Every matching license, newest first, streamed.
pub fn stream(pool: PgPool, filter: &LicenseFilter) -> super::RowStream<License> {
    let mut sql =
        QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM licenses WHERE true"));
    filter.push(&mut sql);
    sql.push(" ORDER BY created_at DESC, id DESC");
    super::stream_rows(pool, sql)
}

/// How many licenses match.
pub async fn count(pool: &PgPool, filter: &LicenseFilter) -> DomainResult<i64> {
    let mut sql = QueryBuilder::<Postgres>::new("SELECT count(*) FROM licenses WHERE true");
    filter.push(&mut sql);
    Ok(sql.build_query_scalar().fetch_one(pool).await?)
}

/// One page of licenses matching `filter` in `sort`'s order, after
/// `cursor`, and the cursor of the next page (`None`: this is the last).
/// Keyset, no `count(*)`; see ARCHITECTURE.md, "Measured", for the plans
/// at a million licenses.
pub async fn list_page(
    pool: &PgPool,
    filter: &LicenseFilter,
    sort: LicenseSort,
    cursor: Option<LicenseCursor>,
    per_page: u32,
) -> DomainResult<(Vec<License>, Option<LicenseCursor>)> {
    if per_page == 0 {
        return Err(DomainError::invalid("per_page", "must be at least 1"));
    }
    let (key, after, direction) = sort.keyset();
    let mut sql =
        QueryBuilder::<Postgres>::new(format!("SELECT {COLUMNS} FROM licenses WHERE true"));
    filter.push(&mut sql);
    if let Some(cursor) = cursor {
        sql.push(format_args!(" AND ({key}, id) {after} ("));
        match sort {
            LicenseSort::ValidUntil => sql
                .push("coalesce(")
                .push_bind(cursor.at)
                .push("::timestamptz, 'infinity'::timestamptz)"),
            LicenseSort::Newest | LicenseSort::Oldest => sql.push_bind(cursor.at),
        };
        sql.push(", ").push_bind(cursor.id).push(")");
    }
    sql.push(format_args!(
        " ORDER BY {key} {direction}, id {direction} LIMIT "
    ))
    .push_bind(i64::from(per_page) + 1);
    let mut items: Vec<License> = sql.build_query_as().fetch_all(pool).await?;
    let next = if items.len() > per_page as usize {
        items.truncate(per_page as usize);
        items.last().map(|last| sort.cursor_of(last))
    } else {
        None
    };
    Ok((items, next))
}

pub async fn update(
    pool: &PgPool,
    ctx: &RequestContext,
    id: Uuid,
    patch: &LicensePatch,
) -> DomainResult<License> {
    patch.validate()?;
    let mut tx = pool.begin().await?;
    let before = lock(&mut tx, id).await?;
    let after = update_in(&mut tx, ctx, &before, patch).await?;
    tx.commit().await?;
    Ok(after)
}

/// [`update`] of a license the caller's transaction has locked (`before`),
/// its patch validated; audited and published, not committed.
pub(crate) async fn update_in(
    tx: &mut PgConnection,
    ctx: &RequestContext,
    before: &License,
    patch: &LicensePatch,
) -> DomainResult<License> {
    if let Some(Some(customer)) = patch.customer_id {
        ensure_customer(&mut *tx, customer).await?;
    }
    let valid_until = patch.valid_until.unwrap_or(before.valid_until);
    if valid_until.is_some_and(|until| until <= before.valid_from) {
        return Err(DomainError::invalid(
            "valid_until",
            "must be after valid_from",
        ));
    }
    let mut features = patch
        .features
        .clone()
        .unwrap_or_else(|| before.features.clone());
    features.sort();
    features.dedup();
    let after: License = sqlx::query_as(&format!(
        "UPDATE licenses SET customer_id = $2, kind = $3, valid_until = $4, device_limit = $5, session_limit = $6,
                allow_session_takeover = $7, grace_period_secs = $8, features = $9, usage_limits = $10,
                metadata = $11, seat_change_limit = $12, seat_change_window_secs = $13, updated_at = now()
          WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(before.id)
    .bind(patch.customer_id.unwrap_or(before.customer_id))
    .bind(patch.kind.unwrap_or(before.kind).as_str())
    .bind(valid_until)
    .bind(patch.device_limit.unwrap_or(before.device_limit))
    .bind(patch.session_limit.unwrap_or(before.session_limit))
    .bind(patch.allow_session_takeover.unwrap_or(before.allow_session_takeover))
    .bind(patch.grace_period_secs.unwrap_or(before.grace_period_secs))
    .bind(&features)
    .bind(patch.usage_limits.as_ref().map_or_else(|| before.usage_limits.clone(), |l| json!(l)))
    .bind(patch.metadata.as_ref().unwrap_or(&before.metadata))
    .bind(patch.seat_change_limit.unwrap_or(before.seat_change_limit))
    .bind(
        patch
            .seat_change_window_secs
            .unwrap_or(before.seat_change_window_secs),
    )
    .fetch_one(&mut *tx)
    .await?;
    record(tx, ctx, "license.update", before, &after).await?;
    Ok(after)
}

/// Suspend, resume or revoke. Revoking is final and ends the license's open sessions.
pub async fn set_status(
    pool: &PgPool,
    ctx: &RequestContext,
    id: Uuid,
    status: LicenseStatus,
) -> DomainResult<License> {
    let mut tx = pool.begin().await?;
    let before = lock(&mut tx, id).await?;
    let after = set_status_in(&mut tx, ctx, &before, status).await?;
    tx.commit().await?;
    Ok(after)
}

/// The rule of status changes: a revoked license stays revoked.
pub fn check_transition(from: LicenseStatus, to: LicenseStatus) -> DomainResult<()> {
    if from == LicenseStatus::Revoked && to != LicenseStatus::Revoked {
        return Err(DomainError::Conflict {
            field: Some("status".into()),
            message: "a revoked license stays revoked".into(),
        });
    }
    Ok(())
}

/// [`set_status`] of a license the caller's transaction has locked.
pub(crate) async fn set_status_in(
    tx: &mut PgConnection,
    ctx: &RequestContext,
    before: &License,
    status: LicenseStatus,
) -> DomainResult<License> {
    check_transition(before.status, status)?;
    let after: License = sqlx::query_as(&format!(
        "UPDATE licenses SET status = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(before.id)
    .bind(status.as_str())
    .fetch_one(&mut *tx)
    .await?;
    if status == LicenseStatus::Revoked {
        super::session_ends::end_all_for_license(&mut *tx, before.id, "license").await?;
    }
    let action = match status {
        LicenseStatus::Active => "license.resume",
        LicenseStatus::Suspended => "license.suspend",
        LicenseStatus::Revoked => "license.revoke",
    };
    record(tx, ctx, action, before, &after).await?;
    Ok(after)
}

/// Moves the end of the validity window to `until`, which must be later.
pub async fn extend(
    pool: &PgPool,
    ctx: &RequestContext,
    id: Uuid,
    until: OffsetDateTime,
) -> DomainResult<License> {
    let mut tx = pool.begin().await?;
    let before = lock(&mut tx, id).await?;
    let after = extend_in(&mut tx, ctx, &before, until).await?;
    tx.commit().await?;
    Ok(after)
}

/// The rule of extensions: a license that never expires has nothing to
/// extend, and an extension ends later than the license does now.
pub fn check_extension(current: Option<OffsetDateTime>, until: OffsetDateTime) -> DomainResult<()> {
    match current {
        None => Err(DomainError::invalid(
            "valid_until",
            "the license never expires: nothing to extend",
        )),
        Some(current) if until <= current => Err(DomainError::invalid(
            "valid_until",
            "an extension must end later than the license does now",
        )),
        Some(_) => Ok(()),
    }
}

/// [`extend`] of a license the caller's transaction has locked.
pub(crate) async fn extend_in(
    tx: &mut PgConnection,
    ctx: &RequestContext,
    before: &License,
    until: OffsetDateTime,
) -> DomainResult<License> {
    check_extension(before.valid_until, until)?;
    let after: License = sqlx::query_as(&format!(
        "UPDATE licenses SET valid_until = $2, updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(before.id)
    .bind(until)
    .fetch_one(&mut *tx)
    .await?;
    record(tx, ctx, "license.extend", before, &after).await?;
    Ok(after)
}

pub async fn delete(pool: &PgPool, ctx: &RequestContext, id: Uuid) -> DomainResult<()> {
    let mut tx = pool.begin().await?;
    delete_in(&mut tx, ctx, id).await?;
    tx.commit().await?;
    Ok(())
}

/// [`delete`] inside the caller's transaction (a customer deleted with its
/// licenses): sessions ended, resources released, the removal in the outbox
/// for edges, one audit row. The commit is the caller's.
pub(crate) async fn delete_in(
    tx: &mut PgConnection,
    ctx: &RequestContext,
    id: Uuid,
) -> DomainResult<()> {
    let before = lock(&mut *tx, id).await?;
    super::session_ends::end_all_for_license(&mut *tx, id, "license").await?;
    // The license's resources go back to the pool, with the history a release writes.
    sqlx::query(
        "WITH freed AS (UPDATE resources SET status = 'available', license_id = NULL, allocated_at = NULL
                         WHERE license_id = $1 RETURNING id)
         INSERT INTO resource_history (resource_id, action, license_id) SELECT id, 'released', $1 FROM freed",
    )
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let key_hash: Vec<u8> =
        sqlx::query_scalar("DELETE FROM licenses WHERE id = $1 RETURNING key_hash")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
    outbox::push_removed_license(&mut *tx, id, &key_hash).await?;
    let change = Change::new("license.delete", "license", id).before(json!(before));
    audit::record_change(&mut *tx, ctx, change).await?;
    Ok(())
}

/// The license row, locked for the rest of the transaction: every rule about
/// one license (seats, sessions, status) is decided under this lock.
pub(crate) async fn lock(conn: &mut PgConnection, id: Uuid) -> DomainResult<License> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM licenses WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .ok_or(DomainError::NotFound(Entity::License))
}

/// As [`lock`], found by key hash: how client calls name a license.
pub(crate) async fn lock_by_key_hash(
    conn: &mut PgConnection,
    key_hash: &[u8; 32],
) -> DomainResult<License> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM licenses WHERE key_hash = $1 FOR UPDATE"
    ))
    .bind(&key_hash[..])
    .fetch_optional(conn)
    .await?
    .ok_or(DomainError::NotFound(Entity::License))
}

/// The audit row of a change to one license, with the outbox row that
/// tells edges; in the caller's transaction.
async fn record(
    tx: &mut PgConnection,
    ctx: &RequestContext,
    action: &str,
    before: &License,
    after: &License,
) -> DomainResult<()> {
    let change = Change::new(action, "license", after.id)
        .before(json!(before))
        .after(json!(after))
        .publish(EntityKind::License, after.id);
    audit::record_change(tx, ctx, change).await?;
    Ok(())
}

async fn ensure_product(conn: &mut PgConnection, product_id: i32) -> DomainResult<()> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM products WHERE id = $1)")
        .bind(product_id)
        .fetch_one(conn)
        .await?;
    if !exists {
        return Err(DomainError::invalid("product_id", "no such product"));
    }
    Ok(())
}

async fn ensure_customer(conn: &mut PgConnection, customer_id: Uuid) -> DomainResult<()> {
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM customers WHERE id = $1)")
        .bind(customer_id)
        .fetch_one(conn)
        .await?;
    if !exists {
        return Err(DomainError::invalid("customer_id", "no such customer"));
    }
    Ok(())
}

/// What the list's quick edit changes: a license's status, end of validity
/// (`None`: perpetual) and device limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuickEdit {
    pub status: LicenseStatus,
    pub valid_until: Option<OffsetDateTime>,
    pub device_limit: i32,
}

/// A [`QuickEdit`] in one transaction, by the rules of [`set_status`] and
/// [`update`], with their audit rows (only for what changed).
pub async fn quick_edit(
    pool: &PgPool,
    ctx: &RequestContext,
    id: Uuid,
    edit: &QuickEdit,
) -> DomainResult<License> {
    let patch = LicensePatch {
        valid_until: Some(edit.valid_until),
        device_limit: Some(edit.device_limit),
        ..LicensePatch::default()
    };
    patch.validate()?;
    let mut tx = pool.begin().await?;
    let mut license = lock(&mut tx, id).await?;
    if license.status != edit.status {
        license = set_status_in(&mut tx, ctx, &license, edit.status).await?;
    }
    if license.valid_until != edit.valid_until || license.device_limit != edit.device_limit {
        license = update_in(&mut tx, ctx, &license, &patch).await?;
    }
    tx.commit().await?;
    Ok(license)
}
