//! Products and their releases, the version check, and what of them a
//! snapshot carries.
//!
//! Every change locks the product row first, so changes to one product's
//! releases are serialised: that is what keeps "at most one minimum-allowed
//! release per product and channel" true without a partial unique index.
//! Each writes one audit row and one outbox row of kind `product`.
//!
//! Versions are stored normalised (`parse_version(..).to_string()`) and
//! ordered by semver in Rust, never by text (`2.10.0 > 2.9.0`,
//! `2.0.0-rc.1 < 2.0.0`). The minimum allowed release must be published, so
//! an application told to update always has something to update to.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use latchkey_shared::api::VersionCheckResponse;
use latchkey_shared::snapshot::{ChannelRelease, Product as SnapshotProduct, ProductClientConfig};
use latchkey_shared::version::{self, parse_version};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::context::RequestContext;
use crate::db::audit::{self, Change, to_json};
use crate::db::licenses;
use crate::db::outbox::EntityKind;
use crate::error::{DomainError, DomainResult, Entity, OnConstraint};

/// The channel of a release or check that names none.
pub const DEFAULT_CHANNEL: &str = "stable";

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct Product {
    pub id: i32,
    pub slug: String,
    pub name: String,
    pub description: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize, utoipa::ToSchema)]
pub struct Release {
    pub id: Uuid,
    pub product_id: i32,
    /// Normalised semver.
    pub version: String,
    pub channel: String,
    /// `None`: a draft.
    #[serde(with = "time::serde::rfc3339::option")]
    pub published_at: Option<OffsetDateTime>,
    pub download_url: Option<String>,
    pub notes: Option<String>,
    /// Versions below this one are refused on its channel.
    pub min_allowed: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    /// What applications name the product by; cannot change later.
    pub slug: String,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

/// Fields left out stay as they are; `"description": null` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub description: Option<Option<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRelease {
    /// Loose versions are accepted (`v2.1`) and stored normalised (`2.1.0`).
    pub version: String,
    #[serde(default = "default_channel")]
    pub channel: String,
    #[serde(default)]
    pub download_url: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
}

/// What a product's client applications read besides their license.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// `None`: the edge configuration's.
    #[serde(default)]
    pub heartbeat_interval_secs: Option<i32>,
    /// How long a client may run offline on its lease; `None`: the edge
    /// configuration's. A license's own grace comes first.
    #[serde(default)]
    pub grace_period_secs: Option<i32>,
    /// The catalogue of feature names licenses of the product may carry.
    #[serde(default)]
    pub features: Vec<String>,
    /// The vendor's own settings: a JSON object of at most
    /// [`MAX_CLIENT_SETTINGS`] bytes.
    #[sqlx(rename = "client_settings")]
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub settings: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// The largest `settings` object, in bytes of its JSON text.
pub const MAX_CLIENT_SETTINGS: usize = 16 * 1024;
const CONFIG_COLUMNS: &str =
    "heartbeat_interval_secs, grace_period_secs, features, client_settings";

const PRODUCT_COLUMNS: &str = "id, slug, name, description, created_at, updated_at";
const RELEASE_COLUMNS: &str =
    "id, product_id, version, channel, published_at, download_url, notes, min_allowed, created_at";
const MAX_DESCRIPTION: usize = 4096;
const MAX_NOTES: usize = 16_384;
const MAX_URL: usize = 2048;

impl NewProduct {
    pub fn validate(&self) -> DomainResult<()> {
        validate_slug(&self.slug)?;
        validate_name(&self.name)?;
        validate_text("description", self.description.as_deref(), MAX_DESCRIPTION)
    }
}

impl ProductUpdate {
    pub fn validate(&self) -> DomainResult<()> {
        if let Some(name) = &self.name {
            validate_name(name)?;
        }
        validate_text(
            "description",
            self.description.as_ref().and_then(Option::as_deref),
            MAX_DESCRIPTION,
        )
    }
}

impl ClientConfig {
    pub fn validate(&self) -> DomainResult<()> {
        if let Some(secs) = self.heartbeat_interval_secs
            && !(10..=86_400).contains(&secs)
        {
            return Err(DomainError::invalid(
                "heartbeat_interval_secs",
                "a whole number from 10 to 86400, or empty for the edge configuration's",
            ));
        }
        if let Some(secs) = self.grace_period_secs
            && !(0..=90 * 86_400).contains(&secs)
        {
            return Err(DomainError::invalid(
                "grace_period_secs",
                "a whole number from 0 to 7776000 (90 days), or empty for the edge configuration's",
            ));
        }
        licenses::check_features(&self.features)?;
        if !self.settings.is_object() {
            return Err(DomainError::invalid("settings", "must be a JSON object"));
        }
        if self.settings.to_string().len() > MAX_CLIENT_SETTINGS {
            return Err(DomainError::invalid(
                "settings",
                format!("at most {MAX_CLIENT_SETTINGS} bytes of JSON"),
            ));
        }
        Ok(())
    }

    /// Settings typed as text (the panel's textarea): a JSON object, or
    /// empty for none. The refusal names `settings` and says where.
    pub fn parse_settings(text: &str) -> DomainResult<serde_json::Value> {
        if text.len() > MAX_CLIENT_SETTINGS {
            return Err(DomainError::invalid(
                "settings",
                format!("at most {MAX_CLIENT_SETTINGS} bytes of JSON"),
            ));
        }
        if text.trim().is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_str(text)
            .map_err(|e| DomainError::invalid("settings", format!("not valid JSON: {e}")))
    }
}

impl NewRelease {
    pub fn validate(&self) -> DomainResult<()> {
        normalised_version(&self.version)?;
        validate_channel(&self.channel)?;
        if let Some(url) = &self.download_url {
            validate_url("download_url", url)?;
        }
        validate_text("notes", self.notes.as_deref(), MAX_NOTES)
    }
}

pub async fn create(
    pool: &PgPool,
    ctx: &RequestContext,
    new: &NewProduct,
) -> DomainResult<Product> {
    new.validate()?;
    let mut tx = pool.begin().await?;
    let product: Product = sqlx::query_as(&format!(
        "INSERT INTO products (slug, name, description) VALUES ($1, $2, $3) RETURNING {PRODUCT_COLUMNS}"
    ))
    .bind(&new.slug)
    .bind(new.name.trim())
    .bind(&new.description)
    .fetch_one(&mut *tx)
    .await
    .on_unique("products_slug_key", "slug", "a product with this slug already exists")?;
    let change = Change::new("product.create", "product", product.id)
        .after(to_json(&product)?)
        .publish(EntityKind::Product, product.id);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(product)
}

pub async fn update(
    pool: &PgPool,
    ctx: &RequestContext,
    product_id: i32,
    changes: &ProductUpdate,
) -> DomainResult<Product> {
    changes.validate()?;
    let mut tx = pool.begin().await?;
    let before = lock_product(&mut tx, product_id).await?;
    let name = changes
        .name
        .as_deref()
        .map_or(before.name.as_str(), str::trim);
    let description = match &changes.description {
        Some(description) => description.as_deref(),
        None => before.description.as_deref(),
    };
    let after: Product = sqlx::query_as(&format!(
        "UPDATE products SET name = $2, description = $3, updated_at = now()
          WHERE id = $1 RETURNING {PRODUCT_COLUMNS}"
    ))
    .bind(product_id)
    .bind(name)
    .bind(description)
    .fetch_one(&mut *tx)
    .await?;
    commit_product_change(tx, ctx, "product.update", product_id, &before, &after).await?;
    Ok(after)
}

pub async fn get(pool: &PgPool, product_id: i32) -> DomainResult<Product> {
    sqlx::query_as(&format!(
        "SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1"
    ))
    .bind(product_id)
    .fetch_optional(pool)
    .await?
    .ok_or(DomainError::NotFound(Entity::Product))
}

pub async fn get_by_slug(pool: &PgPool, slug: &str) -> DomainResult<Product> {
    sqlx::query_as(&format!(
        "SELECT {PRODUCT_COLUMNS} FROM products WHERE slug = $1"
    ))
    .bind(slug)
    .fetch_optional(pool)
    .await?
    .ok_or(DomainError::NotFound(Entity::Product))
}

/// Every product, by slug.
pub async fn list(pool: &PgPool) -> DomainResult<Vec<Product>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {PRODUCT_COLUMNS} FROM products ORDER BY slug"
    ))
    .fetch_all(pool)
    .await?)
}

pub async fn client_config(pool: &PgPool, product_id: i32) -> DomainResult<ClientConfig> {
    sqlx::query_as(&format!(
        "SELECT {CONFIG_COLUMNS} FROM products WHERE id = $1"
    ))
    .bind(product_id)
    .fetch_optional(pool)
    .await?
    .ok_or(DomainError::NotFound(Entity::Product))
}

/// Replaces a product's client configuration whole.
pub async fn set_client_config(
    pool: &PgPool,
    ctx: &RequestContext,
    product_id: i32,
    config: &ClientConfig,
) -> DomainResult<ClientConfig> {
    config.validate()?;
    let mut tx = pool.begin().await?;
    lock_product(&mut tx, product_id).await?;
    let before: ClientConfig = sqlx::query_as(&format!(
        "SELECT {CONFIG_COLUMNS} FROM products WHERE id = $1"
    ))
    .bind(product_id)
    .fetch_one(&mut *tx)
    .await?;
    let after: ClientConfig = sqlx::query_as(&format!(
        "UPDATE products SET heartbeat_interval_secs = $2, grace_period_secs = $3, features = $4,
                client_settings = $5, updated_at = now()
          WHERE id = $1 RETURNING {CONFIG_COLUMNS}"
    ))
    .bind(product_id)
    .bind(config.heartbeat_interval_secs)
    .bind(config.grace_period_secs)
    .bind(&config.features)
    .bind(&config.settings)
    .fetch_one(&mut *tx)
    .await?;
    commit_product_change(
        tx,
        ctx,
        "product.client_config",
        product_id,
        &before,
        &after,
    )
    .await?;
    Ok(after)
}

/// Audits a change of the product row (with its outbox row) and commits.
async fn commit_product_change<T: Serialize>(
    mut tx: Transaction<'_, Postgres>,
    ctx: &RequestContext,
    action: &str,
    product_id: i32,
    before: &T,
    after: &T,
) -> DomainResult<()> {
    let change = Change::new(action, "product", product_id)
        .before(to_json(before)?)
        .after(to_json(after)?)
        .publish(EntityKind::Product, product_id);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(())
}

/// Adds a draft release; `publish` makes it visible.
pub async fn add_release(
    pool: &PgPool,
    ctx: &RequestContext,
    product_id: i32,
    new: &NewRelease,
) -> DomainResult<Release> {
    new.validate()?;
    let version = normalised_version(&new.version)?;
    let mut tx = pool.begin().await?;
    lock_product(&mut tx, product_id).await?;
    let release: Release = sqlx::query_as(&format!(
        "INSERT INTO releases (product_id, version, channel, download_url, notes)
         VALUES ($1, $2, $3, $4, $5) RETURNING {RELEASE_COLUMNS}"
    ))
    .bind(product_id)
    .bind(&version)
    .bind(&new.channel)
    .bind(&new.download_url)
    .bind(&new.notes)
    .fetch_one(&mut *tx)
    .await
    .on_unique(
        "releases_product_id_channel_version_key",
        "version",
        "this version already exists on this channel",
    )?;
    let change = Change::new("release.add", "release", release.id)
        .after(to_json(&release)?)
        .publish(EntityKind::Product, product_id);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(release)
}

/// Publishes a draft now. Publishing a published release changes nothing
/// and writes nothing.
pub async fn publish(
    pool: &PgPool,
    ctx: &RequestContext,
    release_id: Uuid,
) -> DomainResult<Release> {
    change_release(pool, ctx, release_id, ReleaseChange::Publish).await
}

/// Turns a release back into a draft. The minimum allowed release cannot
/// be unpublished: mark another one first.
pub async fn unpublish(
    pool: &PgPool,
    ctx: &RequestContext,
    release_id: Uuid,
) -> DomainResult<Release> {
    change_release(pool, ctx, release_id, ReleaseChange::Unpublish).await
}

/// Makes a published release the minimum allowed of its product and
/// channel, clearing the previous one in the same transaction.
pub async fn mark_min_allowed(
    pool: &PgPool,
    ctx: &RequestContext,
    release_id: Uuid,
) -> DomainResult<Release> {
    change_release(pool, ctx, release_id, ReleaseChange::MarkMinAllowed).await
}

/// Leaves the release's channel without a minimum.
pub async fn clear_min_allowed(
    pool: &PgPool,
    ctx: &RequestContext,
    release_id: Uuid,
) -> DomainResult<Release> {
    change_release(pool, ctx, release_id, ReleaseChange::ClearMinAllowed).await
}

pub async fn get_release(pool: &PgPool, release_id: Uuid) -> DomainResult<Release> {
    sqlx::query_as(&format!(
        "SELECT {RELEASE_COLUMNS} FROM releases WHERE id = $1"
    ))
    .bind(release_id)
    .fetch_optional(pool)
    .await?
    .ok_or(DomainError::NotFound(Entity::Release))
}

/// A product's releases of every channel, drafts included, newest version
/// first (semver order; equal versions by channel).
pub async fn list_releases(pool: &PgPool, product_id: i32) -> DomainResult<Vec<Release>> {
    get(pool, product_id).await?;
    let mut releases: Vec<Release> = sqlx::query_as(&format!(
        "SELECT {RELEASE_COLUMNS} FROM releases WHERE product_id = $1"
    ))
    .bind(product_id)
    .fetch_all(pool)
    .await?;
    releases
        .sort_by(|a, b| semver_cmp(&b.version, &a.version).then_with(|| a.channel.cmp(&b.channel)));
    Ok(releases)
}

/// What the version-check endpoint answers: the shared rule
/// (`version::answer`) applied to the product's record as the next snapshot
/// carries it, so this is what every edge answers once it applied that
/// snapshot.
pub async fn version_check(
    pool: &PgPool,
    product_slug: &str,
    version: &str,
    channel: Option<&str>,
) -> DomainResult<VersionCheckResponse> {
    let channel = channel.unwrap_or(DEFAULT_CHANNEL);
    validate_channel(channel)?;
    let current = parse_version(version).map_err(|e| DomainError::invalid("version", e.reason))?;
    let product = get_by_slug(pool, product_slug).await?;
    let releases: Vec<Release> = sqlx::query_as(&format!(
        "SELECT {RELEASE_COLUMNS} FROM releases WHERE product_id = $1 AND published_at IS NOT NULL"
    ))
    .bind(product.id)
    .fetch_all(pool)
    .await?;
    let record = snapshot_product(product.id, product.slug, product.name, &releases)?;
    version::answer(&record, &current, channel)
        .map_err(|e| DomainError::Internal(format!("stored version does not parse: {e}")))
}

/// What a snapshot carries of every product, by id: the newest published
/// release of each channel (by semver, channels by name) and the minimum
/// allowed version.
///
/// The snapshot has one minimum per product while the database has one per
/// channel: the snapshot takes the lowest of them, so an edge never refuses
/// a version some channel still allows.
pub async fn snapshot_products(pool: &PgPool) -> DomainResult<Vec<SnapshotProduct>> {
    // One consistent view across both queries.
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let products: Vec<SnapshotProductRow> = sqlx::query_as(&format!(
        "SELECT id, slug, name, {CONFIG_COLUMNS} FROM products ORDER BY id"
    ))
    .fetch_all(&mut *tx)
    .await?;
    let releases: Vec<Release> = sqlx::query_as(&format!(
        "SELECT {RELEASE_COLUMNS} FROM releases WHERE published_at IS NOT NULL"
    ))
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;

    let mut by_product: BTreeMap<i32, Vec<Release>> = BTreeMap::new();
    for release in releases {
        by_product
            .entry(release.product_id)
            .or_default()
            .push(release);
    }
    products
        .into_iter()
        .map(|row| {
            let releases = by_product.remove(&row.id).unwrap_or_default();
            let mut product = snapshot_product(row.id, row.slug, row.name, &releases)?;
            product.client = row.client.to_snapshot();
            Ok(product)
        })
        .collect()
}

#[derive(sqlx::FromRow)]
struct SnapshotProductRow {
    id: i32,
    slug: String,
    name: String,
    #[sqlx(flatten)]
    client: ClientConfig,
}

impl ClientConfig {
    /// The snapshot's form: the table's checks keep both intervals within
    /// `u32`.
    fn to_snapshot(&self) -> ProductClientConfig {
        ProductClientConfig {
            heartbeat_interval_secs: self.heartbeat_interval_secs.map(|s| s as u32),
            grace_period_secs: self.grace_period_secs.map(|s| s as u32),
            features: self.features.clone(),
            settings_json: self.settings.to_string(),
        }
    }
}

/// One product's snapshot record from its published releases, with the
/// default client configuration (what the version check needs).
fn snapshot_product(
    id: i32,
    slug: String,
    name: String,
    releases: &[Release],
) -> DomainResult<SnapshotProduct> {
    let mut newest: BTreeMap<&str, &Release> = BTreeMap::new();
    for release in releases {
        let slot = newest.entry(&release.channel).or_insert(release);
        if semver_cmp(&release.version, &slot.version).is_gt() {
            *slot = release;
        }
    }
    let channels = newest
        .into_values()
        .map(|r| ChannelRelease {
            channel: r.channel.clone(),
            version: r.version.clone(),
            download_url: r.download_url.clone(),
            published_at: r.published_at.map_or(0, OffsetDateTime::unix_timestamp),
        })
        .collect();
    let min_allowed_version = releases
        .iter()
        .filter(|r| r.min_allowed)
        .min_by(|a, b| semver_cmp(&a.version, &b.version))
        .map(|r| r.version.clone());
    Ok(SnapshotProduct {
        id: u32::try_from(id)
            .map_err(|_| DomainError::Internal(format!("product id {id} is negative")))?,
        slug,
        name,
        min_allowed_version,
        channels,
        client: ProductClientConfig::default(),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReleaseChange {
    Publish,
    Unpublish,
    MarkMinAllowed,
    ClearMinAllowed,
}

impl ReleaseChange {
    fn action(self) -> &'static str {
        match self {
            Self::Publish => "release.publish",
            Self::Unpublish => "release.unpublish",
            Self::MarkMinAllowed => "release.mark_min_allowed",
            Self::ClearMinAllowed => "release.clear_min_allowed",
        }
    }
}

async fn change_release(
    pool: &PgPool,
    ctx: &RequestContext,
    release_id: Uuid,
    change: ReleaseChange,
) -> DomainResult<Release> {
    let mut tx = pool.begin().await?;
    // Product row first, then the release: the lock order of every change.
    let product_id: i32 = sqlx::query_scalar("SELECT product_id FROM releases WHERE id = $1")
        .bind(release_id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(DomainError::NotFound(Entity::Release))?;
    lock_product(&mut tx, product_id).await?;
    let before: Release = sqlx::query_as(&format!(
        "SELECT {RELEASE_COLUMNS} FROM releases WHERE id = $1 FOR UPDATE"
    ))
    .bind(release_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(DomainError::NotFound(Entity::Release))?;

    let published = before.published_at.is_some();
    let mut replaced: Vec<Uuid> = Vec::new();
    let sql = match change {
        ReleaseChange::Publish if published => return Ok(before),
        ReleaseChange::Unpublish if !published => return Ok(before),
        ReleaseChange::MarkMinAllowed if before.min_allowed => return Ok(before),
        ReleaseChange::ClearMinAllowed if !before.min_allowed => return Ok(before),
        ReleaseChange::Publish => "UPDATE releases SET published_at = now() WHERE id = $1",
        ReleaseChange::Unpublish if before.min_allowed => {
            return Err(DomainError::conflict(
                "min_allowed",
                "the minimum allowed release cannot be unpublished; mark another one first",
            ));
        }
        ReleaseChange::Unpublish => "UPDATE releases SET published_at = NULL WHERE id = $1",
        ReleaseChange::MarkMinAllowed if !published => {
            return Err(DomainError::conflict(
                "min_allowed",
                "publish the release before making it the minimum allowed",
            ));
        }
        ReleaseChange::MarkMinAllowed => {
            replaced = sqlx::query_scalar(
                "UPDATE releases SET min_allowed = false
                  WHERE product_id = $1 AND channel = $2 AND min_allowed AND id <> $3
                 RETURNING id",
            )
            .bind(product_id)
            .bind(&before.channel)
            .bind(release_id)
            .fetch_all(&mut *tx)
            .await?;
            "UPDATE releases SET min_allowed = true WHERE id = $1"
        }
        ReleaseChange::ClearMinAllowed => "UPDATE releases SET min_allowed = false WHERE id = $1",
    };
    let after: Release = sqlx::query_as(&format!("{sql} RETURNING {RELEASE_COLUMNS}"))
        .bind(release_id)
        .fetch_one(&mut *tx)
        .await?;
    let mut after_json = to_json(&after)?;
    if !replaced.is_empty() {
        after_json["replaced_min_allowed"] = json!(replaced);
    }
    let audited = Change::new(change.action(), "release", release_id)
        .before(to_json(&before)?)
        .after(after_json)
        .publish(EntityKind::Product, product_id);
    audit::record_change(&mut tx, ctx, audited).await?;
    tx.commit().await?;
    Ok(after)
}

async fn lock_product(conn: &mut PgConnection, product_id: i32) -> DomainResult<Product> {
    sqlx::query_as(&format!(
        "SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1 FOR UPDATE"
    ))
    .bind(product_id)
    .fetch_optional(conn)
    .await?
    .ok_or(DomainError::NotFound(Entity::Product))
}

/// Semver order of two stored versions; one that does not parse (written
/// around control) sorts below every version.
fn semver_cmp(a: &str, b: &str) -> Ordering {
    parse_version(a).ok().cmp(&parse_version(b).ok())
}

fn normalised_version(text: &str) -> DomainResult<String> {
    parse_version(text)
        .map(|v| v.to_string())
        .map_err(|e| DomainError::invalid("version", e.reason))
}

fn validate_slug(slug: &str) -> DomainResult<()> {
    let bytes = slug.as_bytes();
    let valid = (1..=63).contains(&bytes.len())
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(DomainError::invalid(
            "slug",
            "1 to 63 lower-case letters, digits and hyphens, not starting with a hyphen",
        ));
    }
    Ok(())
}

fn validate_name(name: &str) -> DomainResult<()> {
    let length = name.trim().chars().count();
    if !(1..=256).contains(&length) {
        return Err(DomainError::invalid("name", "must be 1 to 256 characters"));
    }
    Ok(())
}

fn validate_channel(channel: &str) -> DomainResult<()> {
    let valid = (1..=32).contains(&channel.len())
        && channel
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid {
        return Err(DomainError::invalid(
            "channel",
            "1 to 32 lower-case letters, digits and hyphens",
        ));
    }
    Ok(())
}

fn validate_url(field: &str, url: &str) -> DomainResult<()> {
    let valid = url.len() <= MAX_URL
        && (url.starts_with("https://") || url.starts_with("http://"))
        && !url.chars().any(char::is_whitespace);
    if !valid {
        return Err(DomainError::invalid(
            field,
            format!("an http(s) URL without spaces, at most {MAX_URL} characters"),
        ));
    }
    Ok(())
}

fn validate_text(field: &str, text: Option<&str>, max: usize) -> DomainResult<()> {
    if text.is_some_and(|t| t.chars().count() > max) {
        return Err(DomainError::invalid(
            field,
            format!("at most {max} characters"),
        ));
    }
    Ok(())
}

fn default_channel() -> String {
    DEFAULT_CHANNEL.to_owned()
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
    fn inputs_name_the_field_they_break() {
        let release = |version: &str, channel: &str| NewRelease {
            version: version.into(),
            channel: channel.into(),
            download_url: None,
            notes: None,
        };
        assert!(release("v2.1", "stable").validate().is_ok());
        let field = |r: NewRelease| r.validate().unwrap_err().field().map(str::to_owned);
        assert_eq!(field(release("banana", "stable")), Some("version".into()));
        assert_eq!(field(release("1.0", "Beta")), Some("channel".into()));
        let product = NewProduct {
            slug: "-x".into(),
            name: "X".into(),
            description: None,
        };
        assert_eq!(product.validate().unwrap_err().field(), Some("slug"));
    }

    #[test]
    fn updates_tell_null_from_absent() {
        let absent: ProductUpdate = serde_json::from_str(r#"{"name": "N"}"#).unwrap();
        assert_eq!(absent.description, None);
        let cleared: ProductUpdate = serde_json::from_str(r#"{"description": null}"#).unwrap();
        assert_eq!(cleared.description, Some(None));
        assert!(serde_json::from_str::<ProductUpdate>(r#"{"slug": "x"}"#).is_err());
    }

    #[test]
    fn semver_not_text_order() {
        assert!(semver_cmp("2.10.0", "2.9.0").is_gt());
        assert!(semver_cmp("2.0.0-rc.1", "2.0.0").is_lt());
    }
}
