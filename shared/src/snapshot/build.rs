//! Building and signing snapshots: the control side.

use std::collections::HashMap;

use rkyv::rancor;

use super::body::{
    FLAG_PRESENT, FLAG_USAGE_EXHAUSTED, FullBody, LicenseRecord, NEVER, SLOTS_PER_LICENSE,
    home_slot, short_hash,
};
use super::envelope::{SealParams, SnapshotKind, seal};
use super::model::{EdgeConfig, FeatureFlag, LicenseEntry, Policy, Product, RevokedSession};
use super::{DeltaBody, LicenseChange};
use crate::fingerprint::DeviceDigest;
use crate::signing::SigningKeyPair;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("two licenses share key hash {0}")]
    DuplicateKeyHash(String),
    #[error("license {license_id} has {count} devices; a snapshot holds at most 65535 per license")]
    TooManyDevices {
        license_id: uuid::Uuid,
        count: usize,
    },
    #[error("a snapshot holds at most 4294967295 licenses, devices or policies")]
    TooLarge,
    #[error("the archive could not be written: {0}")]
    Archive(String),
}

/// Collects a full snapshot. Licenses are turned into compact records as
/// they arrive, so building 10M licenses never holds 10M owned entries.
#[derive(Debug, Default)]
pub struct SnapshotBuilder {
    records: Vec<LicenseRecord>,
    devices: Vec<[u8; DeviceDigest::BYTES]>,
    policies: Vec<Policy>,
    policy_index: HashMap<Policy, u32>,
    products: Vec<Product>,
    flags: Vec<FeatureFlag>,
    revoked_sessions: Vec<RevokedSession>,
    config: EdgeConfig,
}

impl SnapshotBuilder {
    pub fn new(config: EdgeConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    pub fn with_capacity(config: EdgeConfig, licenses: usize) -> Self {
        Self {
            records: Vec::with_capacity(licenses),
            devices: Vec::with_capacity(licenses * 2),
            ..Self::new(config)
        }
    }

    pub fn add_license(&mut self, entry: &LicenseEntry) -> Result<(), BuildError> {
        let devices_len =
            u16::try_from(entry.devices.len()).map_err(|_| BuildError::TooManyDevices {
                license_id: entry.license_id,
                count: entry.devices.len(),
            })?;
        let devices_start = u32::try_from(self.devices.len()).map_err(|_| BuildError::TooLarge)?;
        let policy = self.intern_policy(&entry.policy)?;
        self.devices.extend_from_slice(&entry.devices);
        self.records.push(LicenseRecord {
            key_hash: short_hash(&entry.key_hash),
            license_id: entry.license_id,
            valid_from: entry.valid_from,
            valid_until: entry.valid_until.unwrap_or(NEVER),
            product_id: entry.product_id,
            policy,
            devices_start,
            device_limit: entry.device_limit,
            devices_len,
            session_limit: entry.session_limit,
            status: entry.status as u8,
            kind: entry.kind as u8,
            flags: FLAG_PRESENT
                | if entry.usage_exhausted {
                    FLAG_USAGE_EXHAUSTED
                } else {
                    0
                },
        });
        Ok(())
    }

    pub fn add_product(&mut self, product: Product) {
        self.products.push(product);
    }

    pub fn add_flag(&mut self, flag: FeatureFlag) {
        self.flags.push(flag);
    }

    pub fn revoke_session(&mut self, session: RevokedSession) {
        self.revoked_sessions.push(session);
    }

    /// Sorts, indexes, archives and signs the snapshot.
    pub fn seal(
        mut self,
        signer: &SigningKeyPair,
        sequence: u64,
        created_at: i64,
        expires_at: i64,
    ) -> Result<Vec<u8>, BuildError> {
        self.records.sort_unstable_by_key(|r| r.key_hash);
        if let Some(pair) = self
            .records
            .windows(2)
            .find(|w| w[0].key_hash == w[1].key_hash)
        {
            return Err(BuildError::DuplicateKeyHash(hex::encode(pair[0].key_hash)));
        }
        // Lay devices out in record order: a license and its devices end up
        // near each other in memory.
        let mut devices = Vec::with_capacity(self.devices.len());
        for record in &mut self.records {
            let start = record.devices_start as usize;
            let end = start + usize::from(record.devices_len);
            record.devices_start = devices.len() as u32;
            devices.extend_from_slice(&self.devices[start..end]);
        }
        let license_count = self.records.len() as u64;
        let home_slots = (self.records.len() as f64 * SLOTS_PER_LICENSE).ceil() as u64;
        let slots = place(self.records, home_slots);
        self.revoked_sessions.sort_unstable_by_key(|s| s.session_id);
        self.revoked_sessions.dedup_by_key(|s| s.session_id);
        let body = FullBody {
            slots,
            home_slots,
            license_count,
            devices,
            policies: self.policies,
            products: self.products,
            flags: self.flags,
            revoked_sessions: self.revoked_sessions,
            config: self.config,
        };
        let bytes = rkyv::to_bytes::<rancor::Error>(&body)
            .map_err(|e| BuildError::Archive(e.to_string()))?;
        let params = SealParams {
            sequence,
            kind: SnapshotKind::Full,
            created_at,
            expires_at,
        };
        Ok(seal(&bytes, signer, params))
    }

    fn intern_policy(&mut self, policy: &Policy) -> Result<u32, BuildError> {
        if let Some(index) = self.policy_index.get(policy) {
            return Ok(*index);
        }
        let index = u32::try_from(self.policies.len()).map_err(|_| BuildError::TooLarge)?;
        self.policies.push(policy.clone());
        self.policy_index.insert(policy.clone(), index);
        Ok(index)
    }
}

impl DeltaBody {
    pub fn upsert(&mut self, entry: LicenseEntry) {
        self.licenses.push(LicenseChange {
            key_hash: entry.key_hash,
            entry: Some(entry),
        });
    }

    pub fn remove(&mut self, key_hash: [u8; 32]) {
        self.licenses.push(LicenseChange {
            key_hash,
            entry: None,
        });
    }

    /// Archives and signs the delta that turns `base` into `sequence`.
    pub fn seal(
        &self,
        signer: &SigningKeyPair,
        base: u64,
        sequence: u64,
        created_at: i64,
        expires_at: i64,
    ) -> Result<Vec<u8>, BuildError> {
        let bytes = rkyv::to_bytes::<rancor::Error>(self)
            .map_err(|e| BuildError::Archive(e.to_string()))?;
        let params = SealParams {
            sequence,
            kind: SnapshotKind::Delta { base },
            created_at,
            expires_at,
        };
        Ok(seal(&bytes, signer, params))
    }
}

/// Ordered linear probing: each record (sorted) goes to its home slot or
/// the first free slot after the record before it.
fn place(records: Vec<LicenseRecord>, home_slots: u64) -> Vec<LicenseRecord> {
    let mut slots: Vec<LicenseRecord> = Vec::with_capacity(home_slots as usize + 64);
    for record in records {
        let home = home_slot(&record.key_hash, home_slots);
        if slots.len() < home {
            slots.resize(home, LicenseRecord::default());
        }
        slots.push(record);
    }
    if (slots.len() as u64) < home_slots {
        slots.resize(home_slots as usize, LicenseRecord::default());
    }
    slots
}
