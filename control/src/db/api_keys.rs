//! API keys of the admin API: their format, scopes and rows.
//!
//! A key reads `lk_<prefix>_<secret>`: an 8-symbol lower-case alphanumeric
//! prefix (stored in clear, shown in lists, used to find the row) and 43
//! base64url symbols (256 bits from the OS CSPRNG). Only
//! `Secrets::hash_api_key(full key)` is stored; the key itself is shown once,
//! when it is made.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgPool};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use uuid::Uuid;

use latchkey_shared::api::ErrorCode;

use crate::context::RequestContext;
use crate::db::audit::{self, Change, to_json};
use crate::error::{DomainError, DomainResult, Entity};
use crate::secrets::Secrets;

pub const KEY_PREFIX_LEN: usize = 8;
const KEY_SECRET_BYTES: usize = 32;
const PREFIX_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// `last_used_at` is written at most this often per key.
const TOUCH_INTERVAL_SECS: i64 = 60;

/// What a scope is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Area {
    Customers,
    Licenses,
    Devices,
    Sessions,
    Resources,
    Products,
    Flags,
    ApiKeys,
    Audit,
    Edges,
    /// The lead CRM: institutions, contacts, notes, import and export.
    Leads,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    Read,
    /// Implies read.
    Write,
}

/// `<area>:read`, `<area>:write`, or `*` (everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    All,
    Area(Area, Access),
}

/// The scopes a principal holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(Vec<Scope>);

/// An API key as lists show it: never the secret nor its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: Uuid,
    pub name: String,
    /// The `lk_<prefix>_` part of the key, to recognise it by.
    pub prefix: String,
    pub scopes: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// A key just made: the only time its secret exists outside its holder.
#[derive(Debug)]
pub struct CreatedApiKey {
    pub key: ApiKey,
    /// The whole `lk_<prefix>_<secret>`.
    pub secret: String,
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: String,
    pub scopes: Scopes,
    pub expires_at: Option<OffsetDateTime>,
}

/// Why a presented key was refused. The HTTP layer answers all of them with
/// the same 401, so a caller learns nothing about which keys exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefusal {
    #[error("not an API key")]
    Malformed,
    #[error("unknown API key")]
    Unknown,
    #[error("API key revoked")]
    Revoked,
    #[error("API key expired")]
    Expired,
}

const API_KEY_COLUMNS: &str =
    "id, name, prefix, scopes, created_at, expires_at, last_used_at, revoked_at";

impl Area {
    pub const ALL: [Area; 11] = [
        Self::Customers,
        Self::Licenses,
        Self::Devices,
        Self::Sessions,
        Self::Resources,
        Self::Products,
        Self::Flags,
        Self::ApiKeys,
        Self::Audit,
        Self::Edges,
        Self::Leads,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customers => "customers",
            Self::Licenses => "licenses",
            Self::Devices => "devices",
            Self::Sessions => "sessions",
            Self::Resources => "resources",
            Self::Products => "products",
            Self::Flags => "flags",
            Self::ApiKeys => "api_keys",
            Self::Audit => "audit",
            Self::Edges => "edges",
            Self::Leads => "leads",
        }
    }
}

impl Scope {
    pub const fn read(area: Area) -> Self {
        Self::Area(area, Access::Read)
    }

    pub const fn write(area: Area) -> Self {
        Self::Area(area, Access::Write)
    }

    /// Whether holding `self` grants `wanted`.
    pub fn grants(self, wanted: Scope) -> bool {
        match (self, wanted) {
            (Self::All, _) => true,
            (Self::Area(..), Self::All) => false,
            (Self::Area(area, access), Self::Area(wanted_area, wanted_access)) => {
                area == wanted_area && (access == Access::Write || wanted_access == Access::Read)
            }
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::All => f.write_str("*"),
            Self::Area(area, Access::Read) => write!(f, "{}:read", area.as_str()),
            Self::Area(area, Access::Write) => write!(f, "{}:write", area.as_str()),
        }
    }
}

impl FromStr for Scope {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "*" {
            return Ok(Self::All);
        }
        let unknown = || {
            format!(
                "unknown scope {text:?}: expected `*` or `<area>:read` / `<area>:write` with area one of {}",
                Area::ALL.map(Area::as_str).join(", ")
            )
        };
        let (area, access) = text.split_once(':').ok_or_else(unknown)?;
        let area = Area::ALL
            .into_iter()
            .find(|candidate| candidate.as_str() == area)
            .ok_or_else(unknown)?;
        match access {
            "read" => Ok(Self::read(area)),
            "write" => Ok(Self::write(area)),
            _ => Err(unknown()),
        }
    }
}

impl Scopes {
    pub fn new(mut scopes: Vec<Scope>) -> Self {
        scopes.sort();
        scopes.dedup();
        Self(scopes)
    }

    /// Parses stored or requested scope strings; the error names the index.
    pub fn parse<S: AsRef<str>>(texts: &[S]) -> Result<Self, (usize, String)> {
        texts
            .iter()
            .enumerate()
            .map(|(index, text)| text.as_ref().parse().map_err(|error| (index, error)))
            .collect::<Result<Vec<_>, _>>()
            .map(Self::new)
    }

    pub fn allows(&self, wanted: Scope) -> bool {
        self.0.iter().any(|held| held.grants(wanted))
    }

    /// The first of `other`'s scopes these do not grant: a key may make or
    /// revoke only keys whose every scope it holds itself.
    pub fn first_beyond(&self, other: &Scopes) -> Option<Scope> {
        other.iter().find(|&scope| !self.allows(scope))
    }

    pub fn iter(&self) -> impl Iterator<Item = Scope> + '_ {
        self.0.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

fn beyond_caller(scope: Scope) -> DomainError {
    DomainError::refused(
        ErrorCode::Forbidden,
        format!("this credential lacks the scope `{scope}`"),
    )
}

/// Makes a fresh key: its prefix and the whole text.
pub fn generate_key() -> (String, String) {
    let mut prefix = String::with_capacity(KEY_PREFIX_LEN);
    while prefix.len() < KEY_PREFIX_LEN {
        // Rejection sampling keeps the symbols uniform.
        let byte = (OsRng.next_u32() & 0xff) as usize;
        if byte < 252 {
            prefix.push(PREFIX_ALPHABET[byte % PREFIX_ALPHABET.len()] as char);
        }
    }
    let mut secret = [0u8; KEY_SECRET_BYTES];
    OsRng.fill_bytes(&mut secret);
    let whole = format!("lk_{prefix}_{}", URL_SAFE_NO_PAD.encode(secret));
    (prefix, whole)
}

/// The prefix of a well-formed key.
pub fn parse_key(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("lk_")?;
    let (prefix, secret) = rest.split_at_checked(KEY_PREFIX_LEN)?;
    let secret = secret.strip_prefix('_')?;
    let prefix_ok = prefix.bytes().all(|b| PREFIX_ALPHABET.contains(&b));
    let secret_ok = secret.len() >= 32
        && secret.len() <= 128
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (prefix_ok && secret_ok).then_some(prefix)
}

/// Checks a presented key against the table: the row if it may be used.
/// The stored hash is compared in constant time.
pub async fn authenticate(
    pool: &PgPool,
    secrets: &Secrets,
    presented: &str,
) -> DomainResult<Result<ApiKey, KeyRefusal>> {
    let Some(prefix) = parse_key(presented) else {
        return Ok(Err(KeyRefusal::Malformed));
    };
    let row: Option<(Vec<u8>, ApiKey)> = sqlx::query_as::<_, StoredKey>(&format!(
        "SELECT secret_hash, {API_KEY_COLUMNS} FROM api_keys WHERE prefix = $1"
    ))
    .bind(prefix)
    .fetch_optional(pool)
    .await?
    .map(|stored| (stored.secret_hash, stored.key));
    let Some((stored_hash, key)) = row else {
        return Ok(Err(KeyRefusal::Unknown));
    };
    let presented_hash = secrets.hash_api_key(presented);
    if !bool::from(presented_hash.as_slice().ct_eq(stored_hash.as_slice())) {
        return Ok(Err(KeyRefusal::Unknown));
    }
    let now = OffsetDateTime::now_utc();
    if let Err(refusal) = usable(&key, now) {
        return Ok(Err(refusal));
    }
    let stale = key
        .last_used_at
        .is_none_or(|at| (now - at).whole_seconds() >= TOUCH_INTERVAL_SECS);
    if stale {
        touch(pool, key.id).await?;
    }
    Ok(Ok(key))
}

/// Whether a key may be used now.
pub fn usable(key: &ApiKey, now: OffsetDateTime) -> Result<(), KeyRefusal> {
    if key.revoked_at.is_some() {
        return Err(KeyRefusal::Revoked);
    }
    if key.expires_at.is_some_and(|at| at <= now) {
        return Err(KeyRefusal::Expired);
    }
    Ok(())
}

/// Validates and stores a new key; one audit row.
/// Makes a key for the caller, who holds `granted_by` and may grant no
/// scope beyond those.
pub async fn create(
    pool: &PgPool,
    secrets: &Secrets,
    ctx: &RequestContext,
    granted_by: &Scopes,
    new: NewApiKey,
) -> DomainResult<CreatedApiKey> {
    let name = new.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 128 {
        return Err(DomainError::invalid("name", "must be 1 to 128 characters"));
    }
    if new.scopes.is_empty() {
        return Err(DomainError::invalid(
            "scopes",
            "must name at least one scope",
        ));
    }
    if let Some(beyond) = granted_by.first_beyond(&new.scopes) {
        return Err(beyond_caller(beyond));
    }
    if new
        .expires_at
        .is_some_and(|at| at <= OffsetDateTime::now_utc())
    {
        return Err(DomainError::invalid("expires_at", "must be in the future"));
    }
    let created_by = ctx.admin_id();
    // A prefix collision (36^8 values) is retried with a fresh key.
    for _ in 0..3 {
        let (prefix, whole) = generate_key();
        let mut tx = pool.begin().await?;
        let inserted = sqlx::query_as::<_, ApiKey>(&format!(
            "INSERT INTO api_keys (name, prefix, secret_hash, scopes, created_by, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (prefix) DO NOTHING
             RETURNING {API_KEY_COLUMNS}"
        ))
        .bind(&name)
        .bind(&prefix)
        .bind(secrets.hash_api_key(&whole).as_slice())
        .bind(new.scopes.to_strings())
        .bind(created_by)
        .bind(new.expires_at)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(key) = inserted else {
            continue;
        };
        let change = Change::new("api_key.create", "api_key", key.id).after(to_json(&key)?);
        audit::record_change(&mut tx, ctx, change).await?;
        tx.commit().await?;
        return Ok(CreatedApiKey { key, secret: whole });
    }
    Err(DomainError::Internal(
        "could not find a free API key prefix".into(),
    ))
}

/// Mints a key without HTTP, for the first key of an installation and for
/// tests. Audited as the system actor `bootstrap`.
pub async fn create_bootstrap(
    pool: &PgPool,
    secrets: &Secrets,
    name: &str,
    scopes: &[Scope],
) -> DomainResult<CreatedApiKey> {
    let ctx = RequestContext::system("bootstrap");
    create(
        pool,
        secrets,
        &ctx,
        &Scopes::new(vec![Scope::All]),
        NewApiKey {
            name: name.to_owned(),
            scopes: Scopes::new(scopes.to_vec()),
            expires_at: None,
        },
    )
    .await
}

pub async fn get(pool: &PgPool, id: Uuid) -> DomainResult<ApiKey> {
    sqlx::query_as::<_, ApiKey>(&format!(
        "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(DomainError::NotFound(Entity::ApiKey))
}

/// Newest first, with the total count.
pub async fn list(pool: &PgPool, limit: i64, offset: i64) -> DomainResult<(Vec<ApiKey>, i64)> {
    let items = sqlx::query_as::<_, ApiKey>(&format!(
        "SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at DESC, id LIMIT $1 OFFSET $2"
    ))
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys")
        .fetch_one(pool)
        .await?;
    Ok((items, total))
}

/// Revokes a key at once; revoking it twice is a conflict.
/// Stops a key; the caller, holding `revoked_by`, must hold every scope the
/// key has (an `api_keys:write` key cannot stop a `*` one).
pub async fn revoke(
    pool: &PgPool,
    ctx: &RequestContext,
    revoked_by: &Scopes,
    id: Uuid,
) -> DomainResult<ApiKey> {
    let mut tx = pool.begin().await?;
    let before = sqlx::query_as::<_, ApiKey>(&format!(
        "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(DomainError::NotFound(Entity::ApiKey))?;
    let held = Scopes::parse(&before.scopes)
        .map_err(|(_, message)| DomainError::Internal(format!("a stored scope: {message}")))?;
    if let Some(beyond) = revoked_by.first_beyond(&held) {
        return Err(beyond_caller(beyond));
    }
    if before.revoked_at.is_some() {
        return Err(DomainError::Conflict {
            field: None,
            message: "API key already revoked".into(),
        });
    }
    let after = sqlx::query_as::<_, ApiKey>(&format!(
        "UPDATE api_keys SET revoked_at = now() WHERE id = $1 RETURNING {API_KEY_COLUMNS}"
    ))
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    let change = Change::new("api_key.revoke", "api_key", id)
        .before(to_json(&before)?)
        .after(to_json(&after)?);
    audit::record_change(&mut tx, ctx, change).await?;
    tx.commit().await?;
    Ok(after)
}

/// Records a use. Not audited: it changes no rights.
async fn touch(pool: &PgPool, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE api_keys SET last_used_at = now()
         WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => $2))",
    )
    .bind(id)
    .bind(TOUCH_INTERVAL_SECS as f64)
    .execute(pool)
    .await?;
    Ok(())
}

#[derive(FromRow)]
struct StoredKey {
    secret_hash: Vec<u8>,
    #[sqlx(flatten)]
    key: ApiKey,
}

impl<'de> Deserialize<'de> for Scope {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Scope {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_print_and_write_implies_read() {
        for text in [
            "*",
            "customers:read",
            "api_keys:write",
            "audit:read",
            "leads:write",
        ] {
            assert_eq!(text.parse::<Scope>().unwrap().to_string(), text);
        }
        for bad in [
            "",
            "customers",
            "customers:delete",
            "users:read",
            "*:read",
            "Customers:read",
        ] {
            assert!(bad.parse::<Scope>().is_err(), "{bad}");
        }
        let held = Scopes::parse(&["customers:write", "licenses:read"]).unwrap();
        assert!(held.allows(Scope::read(Area::Customers)));
        assert!(held.allows(Scope::write(Area::Customers)));
        assert!(held.allows(Scope::read(Area::Licenses)));
        assert!(!held.allows(Scope::write(Area::Licenses)));
        assert!(!held.allows(Scope::read(Area::Devices)));
        assert!(!held.allows(Scope::All));
        let all = Scopes::parse(&["*"]).unwrap();
        assert!(Area::ALL.iter().all(|&area| all.allows(Scope::write(area))));
        assert_eq!(Scopes::parse(&["customers:read", "nope"]).unwrap_err().0, 1);
    }

    #[test]
    fn generated_keys_parse_and_differ() {
        let (prefix, whole) = generate_key();
        assert_eq!(prefix.len(), KEY_PREFIX_LEN);
        assert_eq!(parse_key(&whole), Some(prefix.as_str()));
        assert!(whole.len() >= 3 + KEY_PREFIX_LEN + 1 + 32);
        assert_ne!(generate_key().1, whole);
        for bad in [
            "",
            "lk_",
            "lk_abcdefgh",
            "lk_abcdefgh_short",
            "lk_ABCDEFGH_0123456789012345678901234567890123",
            "xx_abcdefgh_0123456789012345678901234567890123",
            "lk_abcdefgh_01234567890123456789012345678901 3",
        ] {
            assert_eq!(parse_key(bad), None, "{bad}");
        }
    }
}
