//! The owned records a snapshot is built from and a delta carries.

use rkyv::{Archive, Deserialize as RkyvDeserialize, Serialize as RkyvSerialize};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::fingerprint::DeviceDigest;
use crate::key::KeyHash;

/// Whether control lets the license be used. Expiry is not a status: it
/// follows from the validity window and the clock.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum LicenseStatus {
    Active = 0,
    Suspended = 1,
    Revoked = 2,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum LicenseKind {
    Full = 0,
    Trial = 1,
    Test = 2,
}

/// What a license may do beyond its limits; shared by many licenses, so a
/// full snapshot stores each distinct policy once.
#[derive(
    Debug,
    Clone,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
pub struct Policy {
    /// Sorted feature names.
    pub features: Vec<String>,
    pub usage_limits: Vec<UsageLimit>,
    /// A new session may end the oldest one instead of being refused.
    pub allow_session_takeover: bool,
    /// Overrides the edge config's offline grace period for this license.
    pub grace_period_secs: Option<u32>,
}

#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
pub struct UsageLimit {
    pub metric: String,
    pub limit: u64,
}

/// Everything an edge knows of one license: what a delta carries whole.
#[derive(Debug, Clone, PartialEq, Eq, Archive, RkyvSerialize, RkyvDeserialize)]
pub struct LicenseEntry {
    pub key_hash: [u8; 32],
    pub license_id: Uuid,
    pub status: LicenseStatus,
    pub kind: LicenseKind,
    /// Unix seconds.
    pub valid_from: i64,
    /// Unix seconds; `None` never expires.
    pub valid_until: Option<i64>,
    pub product_id: u32,
    pub device_limit: u32,
    /// Concurrent sessions; 0 = unlimited, 1 = single-session.
    pub session_limit: u16,
    /// Control found a usage limit reached.
    pub usage_exhausted: bool,
    /// [`DeviceDigest`] bytes of the activated devices.
    pub devices: Vec<[u8; DeviceDigest::BYTES]>,
    pub policy: Policy,
}

/// A product with the newest release of each channel.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize,
)]
pub struct Product {
    pub id: u32,
    pub slug: String,
    pub name: String,
    /// Versions below this one are refused (`VERSION_NOT_ALLOWED`).
    pub min_allowed_version: Option<String>,
    pub channels: Vec<ChannelRelease>,
    pub client: ProductClientConfig,
}

/// What a product's client applications read besides their license
/// (`POST /api/product/config` at an edge).
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize,
)]
pub struct ProductClientConfig {
    /// `None`: the edge configuration's.
    pub heartbeat_interval_secs: Option<u32>,
    /// `None`: the edge configuration's; a license's own grace overrides it.
    pub grace_period_secs: Option<u32>,
    /// The catalogue of feature names licenses of the product may carry.
    pub features: Vec<String>,
    /// The vendor's own settings, a JSON object as text: rkyv has no JSON
    /// value, and an edge hands it on without reading it.
    pub settings_json: String,
}

/// Nothing of the product's own: the edge configuration's intervals, no
/// features, no settings.
impl Default for ProductClientConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval_secs: None,
            grace_period_secs: None,
            features: Vec::new(),
            settings_json: "{}".to_owned(),
        }
    }
}

impl Product {
    /// How often a client of this product heartbeats under `config`.
    pub fn heartbeat_interval_secs(&self, config: &EdgeConfig) -> u32 {
        self.client
            .heartbeat_interval_secs
            .unwrap_or(config.heartbeat_interval_secs)
    }

    /// How long a license of this product may run offline: the license's
    /// own grace, else the product's, else `config`'s.
    pub fn grace_period_secs(&self, license_grace: Option<u32>, config: &EdgeConfig) -> u32 {
        license_grace
            .or(self.client.grace_period_secs)
            .unwrap_or(config.grace_period_secs)
    }
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize,
)]
pub struct ChannelRelease {
    pub channel: String,
    pub version: String,
    pub download_url: Option<String>,
    pub published_at: i64,
}

#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Archive, RkyvSerialize, RkyvDeserialize,
)]
pub struct FeatureFlag {
    pub key: String,
    pub enabled: bool,
    /// `None` applies to every product.
    pub product_id: Option<u32>,
    /// Share of licenses (by key hash) that see the flag on, 0..=100.
    pub rollout_percent: u8,
}

impl FeatureFlag {
    /// Whether the flag is on for the license whose key hashes to
    /// `key_hash`: enabled, and the license's bucket (0..100, from the flag
    /// key and the key hash, so each flag rolls out to its own share) below
    /// the rollout.
    pub fn is_on_for(&self, key_hash: &KeyHash) -> bool {
        self.enabled && rollout_bucket(&self.key, key_hash) < self.rollout_percent
    }

    /// Whether this flag is the one that decides its key for licenses of
    /// `product_id`: the product's own flag, or a global one where the
    /// product has none of that key.
    pub fn decides_for(&self, flags: &[FeatureFlag], product_id: u32) -> bool {
        match self.product_id {
            Some(id) => id == product_id,
            None => !flags
                .iter()
                .any(|other| other.key == self.key && other.product_id == Some(product_id)),
        }
    }
}

fn rollout_bucket(flag_key: &str, key_hash: &KeyHash) -> u8 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(flag_key.as_bytes());
    hasher.update(&key_hash.0);
    let digest = hasher.finalize();
    let word = u32::from_le_bytes([
        digest.as_bytes()[0],
        digest.as_bytes()[1],
        digest.as_bytes()[2],
        digest.as_bytes()[3],
    ]);
    // < 100, so the cast keeps every bit.
    (word % 100) as u8
}

/// The keys of the flags on for a license of `product_id`, sorted, each
/// decided by [`FeatureFlag::decides_for`]. The one rule, for edges' verify
/// answers and the panel's counts.
pub fn flags_on(flags: &[FeatureFlag], product_id: u32, key_hash: &KeyHash) -> Vec<String> {
    let mut on: Vec<String> = flags
        .iter()
        .filter(|flag| flag.decides_for(flags, product_id) && flag.is_on_for(key_hash))
        .map(|flag| flag.key.clone())
        .collect();
    on.sort();
    on.dedup();
    on
}

/// A session control has ended; kept until its token would have expired.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
pub struct RevokedSession {
    pub session_id: Uuid,
    pub token_expires_at: i64,
}

/// Settings control hands every edge with the data.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    Archive,
    RkyvSerialize,
    RkyvDeserialize,
)]
pub struct EdgeConfig {
    pub rate_limit_per_key_per_min: u32,
    pub rate_limit_per_ip_per_min: u32,
    pub heartbeat_interval_secs: u32,
    pub grace_period_secs: u32,
    /// An edge whose newest snapshot data is older than this is not ready.
    pub max_snapshot_age_secs: u32,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        Self {
            rate_limit_per_key_per_min: 100,
            rate_limit_per_ip_per_min: 100,
            heartbeat_interval_secs: 15 * 60,
            grace_period_secs: 7 * 24 * 3600,
            max_snapshot_age_secs: 24 * 3600,
        }
    }
}

impl LicenseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Revoked => "revoked",
        }
    }

    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::Active),
            1 => Some(Self::Suspended),
            2 => Some(Self::Revoked),
            _ => None,
        }
    }
}

impl LicenseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Trial => "trial",
            Self::Test => "test",
        }
    }

    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::Full),
            1 => Some(Self::Trial),
            2 => Some(Self::Test),
            _ => None,
        }
    }
}

/// The database stores status and kind as their `as_str` text.
impl TryFrom<String> for LicenseStatus {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        [Self::Active, Self::Suspended, Self::Revoked]
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| format!("unknown license status {text:?}"))
    }
}

impl TryFrom<String> for LicenseKind {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        [Self::Full, Self::Trial, Self::Test]
            .into_iter()
            .find(|k| k.as_str() == text)
            .ok_or_else(|| format!("unknown license kind {text:?}"))
    }
}

impl LicenseEntry {
    pub fn key_hash(&self) -> KeyHash {
        KeyHash(self.key_hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(key: &str, product_id: Option<u32>, enabled: bool, rollout_percent: u8) -> FeatureFlag {
        FeatureFlag {
            key: key.into(),
            enabled,
            product_id,
            rollout_percent,
        }
    }

    #[test]
    fn a_products_own_flag_decides_its_key() {
        let hash = KeyHash([7; 32]);
        let flags = [
            flag("editor", None, true, 100),
            flag("editor", Some(2), false, 100),
            flag("sync", Some(1), true, 100),
            flag("dark", None, true, 0),
        ];
        assert_eq!(flags_on(&flags, 1, &hash), ["editor", "sync"]);
        assert!(
            flags_on(&flags, 2, &hash).is_empty(),
            "product 2 turned editor off"
        );
    }

    #[test]
    fn rollout_takes_its_share_of_keys() {
        let half = flag("half", None, true, 50);
        let on = (0..1000u32)
            .filter(|n| {
                let mut bytes = [0; 32];
                bytes[..4].copy_from_slice(&n.to_le_bytes());
                half.is_on_for(&KeyHash(bytes))
            })
            .count();
        assert!((400..600).contains(&on), "{on} of 1000");
    }
}
