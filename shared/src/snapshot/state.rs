//! What an edge answers from: a verified full snapshot read in place, plus a
//! small overlay of the deltas applied since.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use semver::Version;
use uuid::Uuid;

use super::body::{ArchivedFullBody, ArchivedLicenseRecord, FLAG_USAGE_EXHAUSTED, NEVER};
use super::envelope::{DeltaSnapshot, FullSnapshot, OpenError, SnapshotKind};
use super::model::{
    EdgeConfig, FeatureFlag, LicenseEntry, LicenseKind, LicenseStatus, Product, UsageLimit,
};
use crate::fingerprint::{CanonicalFingerprint, DeviceDigest, MatchVerdict};
use crate::key::KeyHash;
use crate::version::{VersionError, parse_version};

/// An immutable view; applying a delta makes a new one, so readers holding
/// the old view finish on it undisturbed.
#[derive(Debug, Clone)]
pub struct SnapshotState {
    full: Arc<FullSnapshot>,
    sequence: u64,
    /// Creation time of the newest data applied (full or delta).
    data_created_at: i64,
    expires_at: i64,
    overlay: HashMap<KeyHash, Option<Arc<LicenseEntry>>>,
    revoked_overlay: HashSet<Uuid>,
    products: Arc<Vec<Product>>,
    /// Each product's `min_allowed_version`, parsed once when the products
    /// arrive rather than on every verify; in the order of `products`.
    minimums: Arc<Vec<Option<Result<Version, VersionError>>>>,
    flags: Arc<Vec<FeatureFlag>>,
    config: EdgeConfig,
}

/// One license, whether it comes from the full snapshot or a delta.
#[derive(Clone, Copy)]
pub struct LicenseView<'a>(Inner<'a>);

#[derive(Clone, Copy)]
enum Inner<'a> {
    Full {
        record: &'a ArchivedLicenseRecord,
        body: &'a ArchivedFullBody,
        key_hash: KeyHash,
    },
    Delta(&'a LicenseEntry),
}

impl std::fmt::Debug for LicenseView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LicenseView")
            .field("license_id", &self.license_id())
            .field("status", &self.status())
            .field("from_delta", &matches!(self.0, Inner::Delta(_)))
            .finish()
    }
}

impl SnapshotState {
    pub fn new(full: FullSnapshot) -> Self {
        let body = full.body();
        let products = rkyv::deserialize::<Vec<Product>, rkyv::rancor::Error>(&body.products)
            .expect("validated archive deserializes");
        let flags = rkyv::deserialize::<Vec<FeatureFlag>, rkyv::rancor::Error>(&body.flags)
            .expect("validated archive deserializes");
        let config = rkyv::deserialize::<EdgeConfig, rkyv::rancor::Error>(&body.config)
            .expect("validated archive deserializes");
        Self {
            sequence: full.meta.sequence,
            data_created_at: full.meta.created_at,
            expires_at: full.meta.expires_at,
            overlay: HashMap::new(),
            revoked_overlay: HashSet::new(),
            minimums: minimums(&products),
            products: Arc::new(products),
            flags: Arc::new(flags),
            config,
            full: Arc::new(full),
        }
    }

    /// The state after `delta`; refused unless the delta's base is this
    /// state's sequence.
    pub fn apply(&self, delta: DeltaSnapshot) -> Result<Self, OpenError> {
        let SnapshotKind::Delta { base } = delta.meta.kind else {
            return Err(OpenError::MalformedHeader("not a delta"));
        };
        if base != self.sequence {
            return Err(OpenError::WrongBase {
                base,
                held: Some(self.sequence),
            });
        }
        let mut next = self.clone();
        let body = delta.body;
        for change in body.licenses {
            next.overlay
                .insert(KeyHash(change.key_hash), change.entry.map(Arc::new));
        }
        next.revoked_overlay
            .extend(body.revoked_sessions.iter().map(|s| s.session_id));
        if let Some(products) = body.products {
            next.minimums = minimums(&products);
            next.products = Arc::new(products);
        }
        if let Some(flags) = body.flags {
            next.flags = Arc::new(flags);
        }
        if let Some(config) = body.config {
            next.config = config;
        }
        next.sequence = delta.meta.sequence;
        next.data_created_at = delta.meta.created_at;
        next.expires_at = delta.meta.expires_at;
        Ok(next)
    }

    pub fn license(&self, key_hash: &KeyHash) -> Option<LicenseView<'_>> {
        if !self.overlay.is_empty()
            && let Some(changed) = self.overlay.get(key_hash)
        {
            return changed
                .as_deref()
                .map(|entry| LicenseView(Inner::Delta(entry)));
        }
        let body = self.full.body();
        body.find(&key_hash.0).map(|record| {
            LicenseView(Inner::Full {
                record,
                body,
                key_hash: *key_hash,
            })
        })
    }

    pub fn is_session_revoked(&self, session_id: &Uuid) -> bool {
        self.revoked_overlay.contains(session_id)
            || self
                .full
                .body()
                .revoked_sessions
                .binary_search_by(|s| s.session_id.cmp(session_id))
                .is_ok()
    }

    pub fn product(&self, id: u32) -> Option<&Product> {
        self.products.iter().find(|p| p.id == id)
    }

    /// Product `id`'s minimum allowed version: `None` when it has none (or
    /// is not in the snapshot), `Err` when the snapshot's text is not a
    /// version (the snapshot's fault, not the client's).
    pub fn min_allowed_version(&self, id: u32) -> Option<Result<&Version, &VersionError>> {
        let at = self.products.iter().position(|p| p.id == id)?;
        self.minimums[at].as_ref().map(Result::as_ref)
    }

    pub fn product_by_slug(&self, slug: &str) -> Option<&Product> {
        self.products.iter().find(|p| p.slug == slug)
    }

    pub fn products(&self) -> &[Product] {
        &self.products
    }

    pub fn flags(&self) -> &[FeatureFlag] {
        &self.flags
    }

    pub fn config(&self) -> &EdgeConfig {
        &self.config
    }

    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Sequence of the full snapshot under the overlay.
    pub fn base_sequence(&self) -> u64 {
        self.full.meta.sequence
    }

    pub fn data_created_at(&self) -> i64 {
        self.data_created_at
    }

    pub fn expires_at(&self) -> i64 {
        self.expires_at
    }

    /// Licenses in the full snapshot (deltas not counted).
    pub fn base_license_count(&self) -> usize {
        self.full.body().license_count.to_native() as usize
    }

    pub fn overlay_len(&self) -> usize {
        self.overlay.len()
    }

    /// The full snapshot's signed bytes, for the edge's disk cache.
    pub fn full_snapshot(&self) -> &FullSnapshot {
        &self.full
    }
}

fn minimums(products: &[Product]) -> Arc<Vec<Option<Result<Version, VersionError>>>> {
    Arc::new(
        products
            .iter()
            .map(|p| p.min_allowed_version.as_deref().map(parse_version))
            .collect(),
    )
}

impl<'a> LicenseView<'a> {
    pub fn key_hash(&self) -> KeyHash {
        match self.0 {
            Inner::Full { key_hash, .. } => key_hash,
            Inner::Delta(entry) => KeyHash(entry.key_hash),
        }
    }

    pub fn license_id(&self) -> Uuid {
        match self.0 {
            Inner::Full { record, .. } => record.license_id,
            Inner::Delta(entry) => entry.license_id,
        }
    }

    pub fn status(&self) -> LicenseStatus {
        match self.0 {
            // check_invariants admitted only known values.
            Inner::Full { record, .. } => {
                LicenseStatus::from_u8(record.status).unwrap_or(LicenseStatus::Revoked)
            }
            Inner::Delta(entry) => entry.status,
        }
    }

    pub fn kind(&self) -> LicenseKind {
        match self.0 {
            Inner::Full { record, .. } => {
                LicenseKind::from_u8(record.kind).unwrap_or(LicenseKind::Test)
            }
            Inner::Delta(entry) => entry.kind,
        }
    }

    pub fn valid_from(&self) -> i64 {
        match self.0 {
            Inner::Full { record, .. } => record.valid_from.to_native(),
            Inner::Delta(entry) => entry.valid_from,
        }
    }

    pub fn valid_until(&self) -> Option<i64> {
        match self.0 {
            Inner::Full { record, .. } => {
                Some(record.valid_until.to_native()).filter(|t| *t != NEVER)
            }
            Inner::Delta(entry) => entry.valid_until,
        }
    }

    pub fn product_id(&self) -> u32 {
        match self.0 {
            Inner::Full { record, .. } => record.product_id.to_native(),
            Inner::Delta(entry) => entry.product_id,
        }
    }

    pub fn device_limit(&self) -> u32 {
        match self.0 {
            Inner::Full { record, .. } => record.device_limit.to_native(),
            Inner::Delta(entry) => entry.device_limit,
        }
    }

    pub fn session_limit(&self) -> u16 {
        match self.0 {
            Inner::Full { record, .. } => record.session_limit.to_native(),
            Inner::Delta(entry) => entry.session_limit,
        }
    }

    pub fn usage_exhausted(&self) -> bool {
        match self.0 {
            Inner::Full { record, .. } => record.flags & FLAG_USAGE_EXHAUSTED != 0,
            Inner::Delta(entry) => entry.usage_exhausted,
        }
    }

    /// [`DeviceDigest`] bytes of the activated devices.
    pub fn devices(&self) -> &'a [[u8; DeviceDigest::BYTES]] {
        match self.0 {
            Inner::Full { record, body, .. } => {
                let start = record.devices_start.to_native() as usize;
                let end = start + usize::from(record.devices_len.to_native());
                body.devices.get(start..end).unwrap_or(&[])
            }
            Inner::Delta(entry) => &entry.devices,
        }
    }

    /// The best verdict of the matching rule over the activated devices.
    pub fn match_device(&self, fingerprint: &CanonicalFingerprint) -> MatchVerdict {
        let matcher = fingerprint.matcher();
        let mut best = MatchVerdict::Different;
        for bytes in self.devices() {
            match matcher.compare(&DeviceDigest::from_bytes(bytes)) {
                MatchVerdict::Exact => return MatchVerdict::Exact,
                changed @ MatchVerdict::Changed { .. } => best = changed,
                MatchVerdict::Different => {}
            }
        }
        best
    }

    pub fn has_feature(&self, feature: &str) -> bool {
        match self.0 {
            Inner::Full { record, body, .. } => body
                .policies
                .get(record.policy.to_native() as usize)
                .is_some_and(|p| p.features.iter().any(|f| f.as_str() == feature)),
            Inner::Delta(entry) => entry.policy.features.iter().any(|f| f == feature),
        }
    }

    pub fn features(&self) -> Vec<String> {
        match self.0 {
            Inner::Full { record, body, .. } => body
                .policies
                .get(record.policy.to_native() as usize)
                .map(|p| p.features.iter().map(|f| f.as_str().to_owned()).collect())
                .unwrap_or_default(),
            Inner::Delta(entry) => entry.policy.features.clone(),
        }
    }

    pub fn usage_limits(&self) -> Vec<UsageLimit> {
        match self.0 {
            Inner::Full { record, body, .. } => body
                .policies
                .get(record.policy.to_native() as usize)
                .map(|p| {
                    p.usage_limits
                        .iter()
                        .map(|l| UsageLimit {
                            metric: l.metric.as_str().to_owned(),
                            limit: l.limit.to_native(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Inner::Delta(entry) => entry.policy.usage_limits.clone(),
        }
    }

    pub fn allow_session_takeover(&self) -> bool {
        match self.0 {
            Inner::Full { record, body, .. } => body
                .policies
                .get(record.policy.to_native() as usize)
                .is_some_and(|p| p.allow_session_takeover),
            Inner::Delta(entry) => entry.policy.allow_session_takeover,
        }
    }

    pub fn grace_period_secs(&self) -> Option<u32> {
        match self.0 {
            Inner::Full { record, body, .. } => body
                .policies
                .get(record.policy.to_native() as usize)
                .and_then(|p| p.grace_period_secs.as_ref().map(|g| g.to_native())),
            Inner::Delta(entry) => entry.policy.grace_period_secs,
        }
    }

    /// The license as a whole record, e.g. to compare or re-publish it.
    pub fn to_entry(&self) -> LicenseEntry {
        match self.0 {
            Inner::Delta(entry) => (*entry).clone(),
            Inner::Full { .. } => LicenseEntry {
                key_hash: self.key_hash().0,
                license_id: self.license_id(),
                status: self.status(),
                kind: self.kind(),
                valid_from: self.valid_from(),
                valid_until: self.valid_until(),
                product_id: self.product_id(),
                device_limit: self.device_limit(),
                session_limit: self.session_limit(),
                usage_exhausted: self.usage_exhausted(),
                devices: self.devices().to_vec(),
                policy: super::Policy {
                    features: self.features(),
                    usage_limits: self.usage_limits(),
                    allow_session_takeover: self.allow_session_takeover(),
                    grace_period_secs: self.grace_period_secs(),
                },
            },
        }
    }
}
