//! The archived bodies: what the signed envelope carries.
//!
//! A full body keeps licenses as fixed-size records sorted by key hash, with
//! a radix directory on the hash's top bits. Key hashes are already uniform,
//! so no second hash function or probing is needed: the directory names the
//! handful of records that can hold a key, usually one or two, and a lookup
//! costs two or three cache misses. Devices and policies live in side tables,
//! so a record has no pointer of its own and validation stays linear.

use rkyv::{Archive, Deserialize, Serialize};
use uuid::Uuid;

use super::model::{EdgeConfig, FeatureFlag, LicenseEntry, Policy, Product, RevokedSession};
use crate::fingerprint::DeviceDigest;

/// `flags` bit: control found a usage limit reached.
pub(crate) const FLAG_USAGE_EXHAUSTED: u8 = 1;
/// `valid_until` of a license that never expires.
pub(crate) const NEVER: i64 = i64::MAX;

#[derive(Debug, Archive, Serialize, Deserialize)]
pub(crate) struct FullBody {
    /// Sorted by `key_hash`, no duplicates.
    pub licenses: Vec<LicenseRecord>,
    /// `directory[p]` is the first record whose hash prefix is `>= p`;
    /// `2^directory_bits + 1` entries, the last one `licenses.len()`.
    pub directory_bits: u8,
    pub directory: Vec<u32>,
    pub devices: Vec<[u8; DeviceDigest::BYTES]>,
    pub policies: Vec<Policy>,
    pub products: Vec<Product>,
    pub flags: Vec<FeatureFlag>,
    /// Sorted by session id.
    pub revoked_sessions: Vec<RevokedSession>,
    pub config: EdgeConfig,
}

/// One license in a full body: 88 bytes archived.
#[derive(Debug, Clone, Archive, Serialize, Deserialize)]
pub(crate) struct LicenseRecord {
    pub key_hash: [u8; 32],
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

/// The top `bits` bits of a key hash.
pub(crate) fn hash_prefix(key_hash: &[u8; 32], bits: u8) -> usize {
    if bits == 0 {
        return 0;
    }
    let top = u64::from_be_bytes(key_hash[..8].try_into().expect("8 bytes"));
    (top >> (64 - u32::from(bits))) as usize
}

/// Directory size for `n` licenses: about one record per slot.
pub(crate) fn directory_bits_for(n: usize) -> u8 {
    // floor(log2(n)), capped so the directory stays within 2^26 slots.
    (usize::BITS - 1)
        .saturating_sub(n.max(1).leading_zeros())
        .min(26) as u8
}

impl ArchivedFullBody {
    /// Checks what bytecheck cannot: indices that point into the side
    /// tables, sorted keys and a consistent directory. Runs once per open,
    /// so that lookups afterwards may never fail or panic.
    pub(crate) fn check_invariants(&self) -> Result<(), &'static str> {
        let n = self.licenses.len();
        let bits = self.directory_bits;
        if bits > 26 || self.directory.len() != (1usize << bits) + 1 {
            return Err("directory size does not match its bits");
        }
        if self.directory.last().map(|d| d.to_native() as usize) != Some(n) {
            return Err("directory does not end at the license count");
        }
        let mut slot = 0usize;
        let mut previous: Option<&[u8; 32]> = None;
        for (i, record) in self.licenses.iter().enumerate() {
            if previous.is_some_and(|p| p >= &record.key_hash) {
                return Err("licenses are not sorted by key hash");
            }
            previous = Some(&record.key_hash);
            let prefix = hash_prefix(&record.key_hash, bits);
            // Slots up to this record's prefix that are still open must start here.
            while slot <= prefix {
                if self.directory[slot].to_native() as usize != i {
                    return Err("directory points at the wrong record");
                }
                slot += 1;
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
        if self.directory[slot..]
            .iter()
            .any(|d| d.to_native() as usize != n)
        {
            return Err("directory points past the last record");
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
        let slot = hash_prefix(key_hash, self.directory_bits);
        let start = self.directory.get(slot)?.to_native() as usize;
        let end = self.directory.get(slot + 1)?.to_native() as usize;
        self.licenses
            .get(start..end)?
            .iter()
            .find(|r| &r.key_hash == key_hash)
    }
}
