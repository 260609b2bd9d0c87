//! Hardware fingerprints: which machine a license is activated on.
//!
//! A client reports its components (system UUID, CPU id, MAC addresses and any
//! extra named components). [`Fingerprint::canonicalize`] fixes case,
//! separators and order so that the same machine always gives the same
//! [`FingerprintHash`], the device's identity in control.
//!
//! # The matching rule
//!
//! Machines change: a network card is replaced, a CPU is upgraded, a VM gets
//! a new SMBIOS UUID. Four *signals* are compared between a stored device and
//! the machine asking:
//!
//! * `system_uuid` — equal or not;
//! * `cpu_id` — equal or not;
//! * `network` — the two MAC sets share at least one address (so adding or
//!   replacing one NIC of several still agrees);
//! * `extra` — all extra components taken together, equal or not.
//!
//! A signal counts only when both sides report it. Then:
//!
//! * **Exact**: every component is the same.
//! * **Same machine** ([`MatchVerdict::Changed`]): at least two signals agree
//!   and at most one disagrees. The verdict names which agreed and which
//!   changed. A lone agreeing signal never identifies a machine: CPU ids
//!   repeat across every machine of one model.
//! * **Different** otherwise.
//!
//! Known limit: two clones of one VM image that keep the SMBIOS UUID and the
//! CPU id but differ in MAC look like one machine whose NIC changed.
//!
//! Edges hold only a [`DeviceDigest`] per activated device (24 bytes of
//! truncated component hashes), enough to apply the rule without knowing the
//! components themselves.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use blake3::hazmat::HasherExt;
use serde::{Deserialize, Serialize};

/// Most MAC addresses a fingerprint may report.
pub const MAX_MACS: usize = 16;
/// Most extra components a fingerprint may report.
pub const MAX_EXTRA: usize = 8;
/// Longest component value, in characters, after trimming.
pub const MAX_VALUE_LEN: usize = 256;
/// MAC hashes a [`DeviceDigest`] keeps: the lowest three canonical MACs.
pub const DIGEST_MACS: usize = 3;

const FINGERPRINT_CONTEXT: &str = "latchkey 2026-11 fingerprint v1";
const COMPONENT_CONTEXT: &str = "latchkey 2026-11 fingerprint component v1";

/// The components a client reports, as it reports them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fingerprint {
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::schema::SystemUuid>))]
    pub system_uuid: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::schema::ComponentText>))]
    pub cpu_id: Option<String>,
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(value_type = Vec<crate::schema::MacAddress>, max_items = 16)
    )]
    pub macs: Vec<String>,
    /// Further components by name (`disk_serial`, `board_serial`, ...).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::schema::extra_components))]
    pub extra: BTreeMap<String, String>,
}

/// What is wrong with a reported fingerprint; `field` is the JSON path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FingerprintError {
    pub field: String,
    pub reason: &'static str,
}

/// A fingerprint in canonical form: lower-case hex without separators for
/// UUIDs and MACs, sorted and de-duplicated MACs, trimmed values.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CanonicalFingerprint {
    pub system_uuid: Option<String>,
    pub cpu_id: Option<String>,
    pub macs: Vec<String>,
    pub extra: BTreeMap<String, String>,
}

/// BLAKE3 of the canonical fingerprint: a device's identity within a license.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FingerprintHash(pub [u8; 32]);

/// Truncated hashes of each component: what an edge keeps per device.
/// `0` means "not reported". Byte layout: system UUID, CPU id, extra, then
/// up to three MACs, each a little-endian `u32`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DeviceDigest {
    pub system_uuid: u32,
    pub cpu_id: u32,
    pub extra: u32,
    pub macs: [u32; DIGEST_MACS],
}

/// A fingerprint's component hashes, computed once: comparing with each of
/// a license's devices then costs no hashing.
#[derive(Debug, Clone)]
pub struct Matcher {
    digest: DeviceDigest,
    /// Hashes of every reported MAC (the digest keeps three).
    mac_hashes: Vec<u32>,
}

/// The signals of the matching rule.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    SystemUuid,
    CpuId,
    Network,
    Extra,
}

/// The outcome of comparing a stored device with the machine asking.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum MatchVerdict {
    Exact,
    /// The same machine, changed: `changed` names the one signal that
    /// disagrees, or is `None` when the difference agrees on every signal
    /// (a network card added to those already there).
    Changed {
        agreed: Vec<Signal>,
        changed: Option<Signal>,
    },
    Different,
}

impl MatchVerdict {
    pub fn is_same_machine(&self) -> bool {
        !matches!(self, Self::Different)
    }
}

impl Fingerprint {
    pub fn canonicalize(&self) -> Result<CanonicalFingerprint, FingerprintError> {
        let system_uuid = self
            .system_uuid
            .as_deref()
            .map(|u| canonical_hex(u, 32, "fingerprint.system_uuid", "expected a UUID"))
            .transpose()?
            .filter(|u| !is_placeholder_hex(u));
        let cpu_id = self
            .cpu_id
            .as_deref()
            .map(|c| canonical_text(c, "fingerprint.cpu_id"))
            .transpose()?
            .filter(|c| !c.is_empty());
        if self.macs.len() > MAX_MACS {
            return Err(error(
                "fingerprint.macs",
                "too many MAC addresses (at most 16)",
            ));
        }
        let mut macs = Vec::with_capacity(self.macs.len());
        for (i, mac) in self.macs.iter().enumerate() {
            let mac = canonical_hex(mac, 12, "", "expected a MAC address").map_err(|e| {
                FingerprintError {
                    field: format!("fingerprint.macs[{i}]"),
                    ..e
                }
            })?;
            if !is_placeholder_hex(&mac) {
                macs.push(mac);
            }
        }
        macs.sort();
        macs.dedup();
        if self.extra.len() > MAX_EXTRA {
            return Err(error(
                "fingerprint.extra",
                "too many extra components (at most 8)",
            ));
        }
        let mut extra = BTreeMap::new();
        for (name, value) in &self.extra {
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !name_ok {
                return Err(error(
                    "fingerprint.extra",
                    "component names are [a-z0-9_], 1 to 64",
                ));
            }
            let value = canonical_text(value, &format!("fingerprint.extra.{name}"))?;
            if !value.is_empty() {
                extra.insert(name.clone(), value);
            }
        }
        let canonical = CanonicalFingerprint {
            system_uuid,
            cpu_id,
            macs,
            extra,
        };
        if canonical.signal_count() == 0 {
            return Err(error("fingerprint", "no usable component reported"));
        }
        Ok(canonical)
    }
}

impl CanonicalFingerprint {
    pub fn hash(&self) -> FingerprintHash {
        let mut hasher = blake3::Hasher::new_derive_key(FINGERPRINT_CONTEXT);
        // Length-prefixed fields: no two different fingerprints encode alike.
        let mut field = |tag: &[u8], value: &str| {
            hasher.update(tag);
            hasher.update(&(value.len() as u64).to_le_bytes());
            hasher.update(value.as_bytes());
        };
        field(b"u", self.system_uuid.as_deref().unwrap_or(""));
        field(b"c", self.cpu_id.as_deref().unwrap_or(""));
        for mac in &self.macs {
            field(b"m", mac);
        }
        for (name, value) in &self.extra {
            field(b"n", name);
            field(b"v", value);
        }
        FingerprintHash(*hasher.finalize().as_bytes())
    }

    pub fn digest(&self) -> DeviceDigest {
        self.matcher().digest
    }

    /// Applies the matching rule (module docs) to a stored device.
    pub fn compare(&self, stored: &DeviceDigest) -> MatchVerdict {
        self.matcher().compare(stored)
    }

    /// The component hashes, computed once for comparing with many devices.
    pub fn matcher(&self) -> Matcher {
        let mac_hashes: Vec<u32> = self
            .macs
            .iter()
            .map(|mac| component_hash("mac", mac))
            .collect();
        let mut macs = [0u32; DIGEST_MACS];
        for (slot, hash) in macs.iter_mut().zip(&mac_hashes) {
            *slot = *hash;
        }
        let digest = DeviceDigest {
            system_uuid: self
                .system_uuid
                .as_deref()
                .map_or(0, |u| component_hash("uuid", u)),
            cpu_id: self
                .cpu_id
                .as_deref()
                .map_or(0, |c| component_hash("cpu", c)),
            extra: self.extra_hash(),
            macs,
        };
        Matcher { digest, mac_hashes }
    }

    fn extra_hash(&self) -> u32 {
        if self.extra.is_empty() {
            return 0;
        }
        let joined: String = self
            .extra
            .iter()
            .map(|(n, v)| format!("{}:{n}={}:{v};", n.len(), v.len()))
            .collect();
        component_hash("extra", &joined)
    }

    fn signal_count(&self) -> usize {
        usize::from(self.system_uuid.is_some())
            + usize::from(self.cpu_id.is_some())
            + usize::from(!self.macs.is_empty())
            + usize::from(!self.extra.is_empty())
    }
}

impl Matcher {
    pub fn digest(&self) -> DeviceDigest {
        self.digest
    }

    /// Applies the matching rule (module docs) to a stored device.
    pub fn compare(&self, stored: &DeviceDigest) -> MatchVerdict {
        let mine = self.digest;
        if mine == *stored {
            return MatchVerdict::Exact;
        }
        let mut agreed = Vec::with_capacity(4);
        let mut changed = Vec::with_capacity(4);
        let mut signal = |signal: Signal, a: u32, b: u32| {
            if a != 0 && b != 0 {
                if a == b {
                    agreed.push(signal)
                } else {
                    changed.push(signal)
                }
            }
        };
        signal(Signal::SystemUuid, mine.system_uuid, stored.system_uuid);
        signal(Signal::CpuId, mine.cpu_id, stored.cpu_id);
        signal(Signal::Extra, mine.extra, stored.extra);
        // The network signal compares every MAC the machine reports with the
        // (up to three) the device kept.
        if !self.mac_hashes.is_empty() && stored.macs[0] != 0 {
            let overlap = self.mac_hashes.iter().any(|h| stored.macs.contains(h));
            if overlap {
                agreed.push(Signal::Network)
            } else {
                changed.push(Signal::Network)
            }
        }
        match changed.as_slice() {
            [] if agreed.len() >= 2 => MatchVerdict::Changed {
                agreed,
                changed: None,
            },
            [one] if agreed.len() >= 2 => MatchVerdict::Changed {
                agreed,
                changed: Some(*one),
            },
            _ => MatchVerdict::Different,
        }
    }
}

crate::digest::hex_digest!(FingerprintHash);

impl DeviceDigest {
    pub const BYTES: usize = 24;

    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut out = [0u8; Self::BYTES];
        let words = [
            self.system_uuid,
            self.cpu_id,
            self.extra,
            self.macs[0],
            self.macs[1],
            self.macs[2],
        ];
        for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8; Self::BYTES]) -> Self {
        let word =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        Self {
            system_uuid: word(0),
            cpu_id: word(4),
            extra: word(8),
            macs: [word(12), word(16), word(20)],
        }
    }
}

impl fmt::Debug for DeviceDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceDigest({})", hex::encode(self.to_bytes()))
    }
}

/// A 32-bit component hash, never 0 (0 marks an absent component).
/// The derive-key context hashed once: `new_derive_key` would hash the
/// context string again on every call (one more compression per component,
/// three or four per verify). Same outputs, so stored digests still match.
static COMPONENT_KEY: LazyLock<blake3::hazmat::ContextKey> =
    LazyLock::new(|| blake3::hazmat::hash_derive_key_context(COMPONENT_CONTEXT));

fn component_hash(kind: &str, value: &str) -> u32 {
    let mut hasher = blake3::Hasher::new_from_context_key(&COMPONENT_KEY);
    hasher.update(kind.as_bytes());
    hasher.update(&[0]);
    hasher.update(value.as_bytes());
    let bytes = hasher.finalize();
    let word = u32::from_le_bytes(bytes.as_bytes()[..4].try_into().expect("4 bytes"));
    word.max(1)
}

fn canonical_hex(
    raw: &str,
    digits: usize,
    field: &str,
    what: &'static str,
) -> Result<String, FingerprintError> {
    // Byte by byte into one right-sized buffer: this runs on every verify
    // that carries a fingerprint.
    let mut hex = String::with_capacity(digits);
    for byte in raw.bytes() {
        match byte {
            b':' | b'-' | b'.' | b' ' | b'{' | b'}' => {}
            _ if byte.is_ascii_hexdigit() && hex.len() < digits => {
                hex.push(char::from(byte.to_ascii_lowercase()));
            }
            _ => return Err(error(field, what)),
        }
    }
    if hex.len() != digits {
        return Err(error(field, what));
    }
    Ok(hex)
}

fn canonical_text(raw: &str, field: &str) -> Result<String, FingerprintError> {
    let value = raw.trim();
    // Bytes first: a value that short has no more characters (the common case).
    if value.len() > MAX_VALUE_LEN && value.chars().count() > MAX_VALUE_LEN {
        return Err(error(field, "longer than 256 characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(error(field, "contains control characters"));
    }
    Ok(value
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase())
}

/// All zeros or all `f`: what firmware reports when it has no real value.
fn is_placeholder_hex(hex: &str) -> bool {
    hex.bytes().all(|b| b == b'0') || hex.bytes().all(|b| b == b'f')
}

fn error(field: &str, reason: &'static str) -> FingerprintError {
    FingerprintError {
        field: field.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn component_hashes_are_blake3_derive_key() {
        let expected = blake3::derive_key(COMPONENT_CONTEXT, b"mac\0a4bb6d123456");
        let word = u32::from_le_bytes(expected[..4].try_into().unwrap()).max(1);
        assert_eq!(component_hash("mac", "a4bb6d123456"), word);
    }

    fn machine() -> Fingerprint {
        Fingerprint {
            system_uuid: Some("4C4C4544-0042-3510-8052-B4C04F384D32".into()),
            cpu_id: Some("BFEBFBFF000906EA".into()),
            macs: vec!["00:1A:2B:3C:4D:5E".into(), "a4-5e-60-c1-22-01".into()],
            extra: BTreeMap::new(),
        }
    }

    #[test]
    fn formatting_and_order_do_not_change_the_hash() {
        let a = machine().canonicalize().unwrap();
        let mut b = machine();
        b.system_uuid = Some("{4c4c4544004235108052b4c04f384d32}".into());
        b.cpu_id = Some("  bfebfbff000906ea ".into());
        b.macs = vec![
            "A45E60C12201".into(),
            "001a.2b3c.4d5e".into(),
            "00:1a:2b:3c:4d:5e".into(),
        ];
        let b = b.canonicalize().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.compare(&b.digest()), MatchVerdict::Exact);
    }

    #[test]
    fn a_new_network_card_is_the_same_machine() {
        let stored = machine().canonicalize().unwrap().digest();
        let mut now = machine();
        now.macs = vec!["11:22:33:44:55:66".into()];
        let verdict = now.canonicalize().unwrap().compare(&stored);
        assert_eq!(
            verdict,
            MatchVerdict::Changed {
                agreed: vec![Signal::SystemUuid, Signal::CpuId],
                changed: Some(Signal::Network)
            }
        );
    }

    #[test]
    fn an_added_network_card_still_agrees() {
        let stored = machine().canonicalize().unwrap().digest();
        let mut now = machine();
        now.macs.push("02:00:00:00:00:01".into());
        let now = now.canonicalize().unwrap();
        assert_ne!(now.hash(), machine().canonicalize().unwrap().hash());
        let all = vec![Signal::SystemUuid, Signal::CpuId, Signal::Network];
        assert_eq!(
            now.compare(&stored),
            MatchVerdict::Changed {
                agreed: all,
                changed: None
            }
        );
    }

    #[test]
    fn two_changes_are_another_machine() {
        let stored = machine().canonicalize().unwrap().digest();
        let mut other = machine();
        other.macs = vec!["11:22:33:44:55:66".into()];
        other.system_uuid = Some("00000000-1111-2222-3333-444444444444".into());
        assert_eq!(
            other.canonicalize().unwrap().compare(&stored),
            MatchVerdict::Different
        );
    }

    #[test]
    fn a_lone_cpu_id_never_identifies_a_machine() {
        let stored = machine().canonicalize().unwrap().digest();
        let cpu_only = Fingerprint {
            cpu_id: machine().cpu_id,
            ..Fingerprint::default()
        };
        assert_eq!(
            cpu_only.canonicalize().unwrap().compare(&stored),
            MatchVerdict::Different
        );
    }

    #[test]
    fn bad_components_name_their_field() {
        let mut bad = machine();
        bad.macs[1] = "zz:zz".into();
        assert_eq!(bad.canonicalize().unwrap_err().field, "fingerprint.macs[1]");
        let empty = Fingerprint {
            macs: vec!["00:00:00:00:00:00".into()],
            ..Fingerprint::default()
        };
        assert_eq!(empty.canonicalize().unwrap_err().field, "fingerprint");
    }

    #[test]
    fn text_components_are_limited_in_characters() {
        let with_cpu = |cpu_id: String| Fingerprint {
            cpu_id: Some(cpu_id),
            ..Fingerprint::default()
        };
        // 256 three-byte characters: 768 bytes, still within the limit.
        assert!(with_cpu("€".repeat(MAX_VALUE_LEN)).canonicalize().is_ok());
        let error = with_cpu("€".repeat(MAX_VALUE_LEN + 1))
            .canonicalize()
            .unwrap_err();
        assert_eq!(error.field, "fingerprint.cpu_id");
    }

    #[test]
    fn digest_bytes_round_trip() {
        let digest = machine().canonicalize().unwrap().digest();
        assert_eq!(DeviceDigest::from_bytes(&digest.to_bytes()), digest);
    }
}
