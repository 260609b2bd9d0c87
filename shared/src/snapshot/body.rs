//! The archived bodies: what the signed envelope carries.
//!
//! A full body keeps licenses as fixed-size records in a table sorted by key
//! hash, with gaps: a record sits at or just after its *home* slot, the hash
//! scaled to the table's home size (ordered linear probing). Key hashes are
//! already uniform, so no second hash is needed, and a lookup reads the home
//! slot and the few next to it: one random memory access, then a short
//! sequential scan. Records hold the first 128 bits of the key hash (enough
//! to tell 10^9 keys apart with certainty in practice) and no pointer, so
//! validation stays linear; devices and policies live in side tables.

use rkyv::{Archive, Deserialize, Serialize};
use uuid::Uuid;

use super::model::{EdgeConfig, FeatureFlag, LicenseEntry, Policy, Product, RevokedSession};
use crate::fingerprint::DeviceDigest;

/// `flags` bit: control found a usage limit reached.
pub(crate) const FLAG_USAGE_EXHAUSTED: u8 = 1;
/// `flags` bit: the slot holds a license (empty slots have no flags).
pub(crate) const FLAG_PRESENT: u8 = 1 << 7;
/// Home slots per license: the table is at most 80% full.
pub(crate) const SLOTS_PER_LICENSE: f64 = 1.25;
/// `valid_until` of a license that never expires.
pub(crate) const NEVER: i64 = i64::MAX;

#[derive(Debug, Archive, Serialize, Deserialize)]
pub(crate) struct FullBody {
    /// Ordered linear-probing table, sorted by `key_hash`, with empty slots
    /// (no `FLAG_PRESENT`). At least `home_slots` long.
    pub slots: Vec<LicenseRecord>,
    /// Slots the hash range is scaled onto; the table may run past it.
    pub home_slots: u64,
    pub license_count: u64,
    pub devices: Vec<[u8; DeviceDigest::BYTES]>,
    pub policies: Vec<Policy>,
    pub products: Vec<Product>,
    pub flags: Vec<FeatureFlag>,
    /// Sorted by session id.
    pub revoked_sessions: Vec<RevokedSession>,
    pub config: EdgeConfig,
}

/// One license in a full body: 72 bytes archived.
#[derive(Debug, Clone, Default, Archive, Serialize, Deserialize)]
pub(crate) struct LicenseRecord {
    /// The first 16 bytes of the key hash.
    pub key_hash: [u8; 16],
    pub license_id: Uuid,
    pub valid_from: i64,
    pub valid_until: i64,
    pub product_id: u32,
    pub policy: u32,
    pub devices_start: u32,
    pub device_limit: u32,
    pub devices_len: u16,
    pub session_limit: u16,
    pub status: u8,
    pub kind: u8,
    pub flags: u8,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct DeltaBody {
    /// Whole new records; `entry: None` removes the license.
    pub licenses: Vec<LicenseChange>,
    /// The whole product list, when any product changed.
    pub products: Option<Vec<Product>>,
    /// The whole flag list, when any flag changed.
    pub flags: Option<Vec<FeatureFlag>>,
    /// Sessions ended since the base.
    pub revoked_sessions: Vec<RevokedSession>,
    pub config: Option<EdgeConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq, Archive, Serialize, Deserialize)]
pub struct LicenseChange {
    pub key_hash: [u8; 32],
    pub entry: Option<LicenseEntry>,
}

/// The first 16 bytes of a key hash: what a record keeps.
pub(crate) fn short_hash(key_hash: &[u8; 32]) -> [u8; 16] {
    key_hash[..16].try_into().expect("16 bytes")
}

/// The home slot of a hash: its top 64 bits scaled onto `home_slots`. Monotonic
/// in the hash, so a table sorted by hash is sorted by home slot too.
pub(crate) fn home_slot(short_hash: &[u8; 16], home_slots: u64) -> usize {
    let top = u64::from_be_bytes(short_hash[..8].try_into().expect("8 bytes"));
    ((u128::from(top) * u128::from(home_slots)) >> 64) as usize
}

impl ArchivedFullBody {
    /// Checks what bytecheck cannot: sorted hashes, each record reachable
    /// from its home slot, indices that point into the side tables. Runs once
    /// per open, so that lookups afterwards never fail or panic.
    pub(crate) fn check_invariants(&self) -> Result<(), &'static str> {
        let home_slots = self.home_slots.to_native();
        if (self.slots.len() as u64) < home_slots {
            return Err("the table is shorter than its home slots");
        }
        let mut count = 0u64;
        let mut previous: Option<&[u8; 16]> = None;
        // A lookup scans forward from the home slot and stops at an empty slot.
        let mut last_empty: Option<usize> = None;
        for (i, record) in self.slots.iter().enumerate() {
            if record.flags & FLAG_PRESENT == 0 {
                last_empty = Some(i);
                continue;
            }
            count += 1;
            if previous.is_some_and(|p| p >= &record.key_hash) {
                return Err("licenses are not sorted by key hash");
            }
            previous = Some(&record.key_hash);
            let home = home_slot(&record.key_hash, home_slots);
            if home > i || last_empty.is_some_and(|e| e >= home) {
                return Err("a license cannot be reached from its home slot");
            }
            if record.policy.to_native() as usize >= self.policies.len() {
                return Err("license names a policy that does not exist");
            }
            let end = record.devices_start.to_native() as usize
                + usize::from(record.devices_len.to_native());
            if end > self.devices.len() {
                return Err("license devices run past the device table");
            }
            if super::LicenseStatus::from_u8(record.status).is_none()
                || super::LicenseKind::from_u8(record.kind).is_none()
            {
                return Err("unknown license status or kind");
            }
        }
        if count != self.license_count.to_native() {
            return Err("license count does not match the table");
        }
        let revoked = &self.revoked_sessions;
        if revoked
            .windows(2)
            .any(|w| w[0].session_id >= w[1].session_id)
        {
            return Err("revoked sessions are not sorted");
        }
        Ok(())
    }

    pub(crate) fn find(&self, key_hash: &[u8; 32]) -> Option<&ArchivedLicenseRecord> {
        let wanted = short_hash(key_hash);
        let home = home_slot(&wanted, self.home_slots.to_native());
        for record in self.slots.get(home..)? {
            if record.flags & FLAG_PRESENT == 0 || record.key_hash > wanted {
                return None;
            }
            if record.key_hash == wanted {
                return Some(record);
            }
        }
        None
    }
}
