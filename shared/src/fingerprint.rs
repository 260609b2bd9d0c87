//! Hardware fingerprints: which machine a license is activated on.
//!
//! A client reports its components (system UUID, a vendor-supplied machine
//! id, CPU id, MAC addresses and any extra named components).
//! [`Fingerprint::canonicalize`] fixes case, separators and order so that the
//! same machine always gives the same [`FingerprintHash`], the device's
//! identity in control.
//!
//! # The matching rule
//!
//! Machines change: a network card is replaced, a CPU is upgraded, a VM gets
//! a new SMBIOS UUID. Five *signals* are compared between a stored device and
//! the machine asking:
//!
//! * `system_uuid` — equal or not (**strong**);
//! * `machine_id` — equal or not (**strong**): what the operating system or
//!   the vendor's own code names the installation by (`/etc/machine-id`,
//!   Windows `MachineGuid`, …);
//! * `cpu_id` — equal or not; weak: CPU ids repeat across every machine of
//!   one model;
//! * `network` — the two MAC sets share at least one address (so adding or
//!   replacing one NIC of several still agrees); weak: virtual adapters share
//!   well-known addresses;
//! * `extra` — all extra components taken together, equal or not.
//!
//! A signal is compared when the stored device has it. A signal the stored
//! device has and the machine asking leaves out counts as *changed*:
//! leaving components out never makes a machine look more like a device.
//! A signal only the machine asking reports is neither agreed nor changed.
//! Then:
//!
//! * **Exact**: every component is the same.
//! * **Same machine** ([`MatchVerdict::Changed`]): at least two signals
//!   agree, at least one of them strong, and at most one is changed. The
//!   verdict names which agreed and which changed. Weak signals alone never
//!   identify a machine, however many agree.
//! * **Different** otherwise.
//!
//! So a machine that reports neither a system UUID nor a machine id is only
//! ever recognised exactly. When a device is recognised under a changed
//! fingerprint, control replaces its stored digest only with one that
//! reports every signal the stored one did ([`DeviceDigest::covers`]): a
//! partial fingerprint never weakens what later machines are compared with.
//!
//! Known limit: two clones of one VM image that keep the SMBIOS UUID, the
//! machine id and the CPU id but differ in MAC look like one machine whose
//! NIC changed.
//!
//! Edges hold only a [`DeviceDigest`] per activated device (28 bytes of
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
/// Shortest machine id, in bytes after trimming: a strong signal must tell
/// machines apart, and shorter values are placeholders in practice.
pub const MIN_MACHINE_ID_LEN: usize = 16;

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
    /// A machine id the operating system or the vendor supplies
    /// (`/etc/machine-id`, Windows `MachineGuid`, ...): 16 to 256 letters,
    /// digits and `. _ : { } -`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::schema::MachineId>))]
    pub machine_id: Option<String>,
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
    /// Absent from the stored form when not reported, so components stored
    /// before machine ids existed read back unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine_id: Option<String>,
    pub cpu_id: Option<String>,
    pub macs: Vec<String>,
    pub extra: BTreeMap<String, String>,
}

/// BLAKE3 of the canonical fingerprint: a device's identity within a license.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FingerprintHash(pub [u8; 32]);

/// Truncated hashes of each component: what an edge keeps per device.
/// `0` means "not reported". Byte layout: system UUID, CPU id, extra, up to
/// three MACs, then the machine id, each a little-endian `u32`. The machine
/// id came last (format 2): a format-1 digest is this one's first 24 bytes,
/// with no machine id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DeviceDigest {
    pub system_uuid: u32,
    pub cpu_id: u32,
    pub extra: u32,
    pub macs: [u32; DIGEST_MACS],
    pub machine_id: u32,
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
    MachineId,
    CpuId,
    Network,
    Extra,
}

impl Signal {
    /// Whether the signal tells one machine from another by itself: only
    /// these may make a changed fingerprint the same machine.
    pub fn is_strong(self) -> bool {
        matches!(self, Self::SystemUuid | Self::MachineId)
    }
}

/// The outcome of comparing a stored device with the machine asking.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum MatchVerdict {
    Exact,
    /// The same machine, changed: `changed` names the one signal that
    /// disagrees or is no longer reported, or is `None` when the difference
    /// agrees on every signal the device had (a network card added to those
    /// already there, a component reported for the first time).
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
        let machine_id = self
            .machine_id
            .as_deref()
            .map(canonical_machine_id)
            .transpose()?
            .filter(|m| !is_placeholder_text(m));
        let cpu_id = self
            .cpu_id
            .as_deref()
            .map(|c| canonical_text(c).map_err(|reason| error("fingerprint.cpu_id", reason)))
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
            // The field's path is formatted only for a refusal, not per component.
            let value = canonical_text(value)
                .map_err(|reason| error(&format!("fingerprint.extra.{name}"), reason))?;
            if !value.is_empty() {
                extra.insert(name.clone(), value);
            }
        }
        let canonical = CanonicalFingerprint {
            system_uuid,
            machine_id,
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
        // Only when reported: a fingerprint without one hashes as it did
        // before machine ids existed, so stored devices keep their identity.
        if let Some(machine_id) = &self.machine_id {
            field(b"i", machine_id);
        }
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
            machine_id: self
                .machine_id
                .as_deref()
                .map_or(0, |m| component_hash("machine", m)),
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
            + usize::from(self.machine_id.is_some())
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
        // On the stack: a license's other devices are compared on most
        // verifies, and only a `Changed` verdict needs a `Vec`.
        let mut agreed = [Signal::SystemUuid; 5];
        let mut agreed_len = 0;
        let (mut first_changed, mut changed_len) = (None, 0);
        let mut note = |signal: Signal, same: bool| {
            if same {
                agreed[agreed_len] = signal;
                agreed_len += 1;
            } else {
                first_changed = first_changed.or(Some(signal));
                changed_len += 1;
            }
        };
        // Compared when the device has it; left out counts as changed.
        for (signal, a, b) in [
            (Signal::SystemUuid, mine.system_uuid, stored.system_uuid),
            (Signal::MachineId, mine.machine_id, stored.machine_id),
            (Signal::CpuId, mine.cpu_id, stored.cpu_id),
            (Signal::Extra, mine.extra, stored.extra),
        ] {
            if b != 0 {
                note(signal, a == b);
            }
        }
        // The network signal compares every MAC the machine reports with the
        // (up to three) the device kept.
        if stored.macs[0] != 0 {
            note(
                Signal::Network,
                self.mac_hashes.iter().any(|h| stored.macs.contains(h)),
            );
        }
        let agreed = &agreed[..agreed_len];
        let recognised = agreed.len() >= 2 && agreed.iter().any(|s| s.is_strong());
        match changed_len {
            0 | 1 if recognised => MatchVerdict::Changed {
                agreed: agreed.to_vec(),
                changed: first_changed,
            },
            _ => MatchVerdict::Different,
        }
    }
}

crate::digest::hex_digest!(FingerprintHash);

impl DeviceDigest {
    pub const BYTES: usize = 28;

    /// The signals this digest reports, in the rule's order.
    pub fn signals(&self) -> Vec<Signal> {
        [
            (Signal::SystemUuid, self.system_uuid),
            (Signal::MachineId, self.machine_id),
            (Signal::CpuId, self.cpu_id),
            (Signal::Extra, self.extra),
            (Signal::Network, self.macs[0]),
        ]
        .into_iter()
        .filter(|(_, hash)| *hash != 0)
        .map(|(signal, _)| signal)
        .collect()
    }

    /// Whether this digest reports every signal `stored` does: only then may
    /// it replace `stored` (a partial fingerprint must not weaken a device).
    pub fn covers(&self, stored: &DeviceDigest) -> bool {
        let mine = self.signals();
        stored.signals().iter().all(|s| mine.contains(s))
    }

    pub fn to_bytes(&self) -> [u8; Self::BYTES] {
        let mut out = [0u8; Self::BYTES];
        let words = [
            self.system_uuid,
            self.cpu_id,
            self.extra,
            self.macs[0],
            self.macs[1],
            self.macs[2],
            self.machine_id,
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
            machine_id: word(24),
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

/// A machine id is an identifier, not prose: 16 to 256 letters, digits and
/// `. _ : { } -` once trimmed (hex, a UUID, a GUID in braces), compared
/// without case; blank is not reported.
fn canonical_machine_id(raw: &str) -> Result<String, FingerprintError> {
    let value = raw.trim();
    let shaped = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:{}-".contains(&b));
    let sized = (MIN_MACHINE_ID_LEN..=MAX_VALUE_LEN).contains(&value.len());
    if !(value.is_empty() || shaped && sized) {
        return Err(error(
            "fingerprint.machine_id",
            "16 to 256 letters, digits and . _ : { } -",
        ));
    }
    Ok(value.to_ascii_lowercase())
}

/// The canonical text of a component, or why it is refused.
fn canonical_text(raw: &str) -> Result<String, &'static str> {
    let value = raw.trim();
    // Bytes first: a value that short has no more characters (the common case).
    if value.len() > MAX_VALUE_LEN && value.chars().count() > MAX_VALUE_LEN {
        return Err("longer than 256 characters");
    }
    if value.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    // ASCII with single spaces (what firmware reports) has no whitespace to
    // collapse: one copy, lower-cased, instead of three allocations. Other
    // ASCII whitespace is a control character, refused above.
    if value.is_ascii() && !value.contains("  ") {
        return Ok(value.to_ascii_lowercase());
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

/// Empty, or a placeholder once separators are left out
/// (`00000000-0000-0000-0000-000000000000`).
fn is_placeholder_text(text: &str) -> bool {
    let compact: String = text.chars().filter(char::is_ascii_alphanumeric).collect();
    compact.is_empty() || is_placeholder_hex(&compact)
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
    fn text_components_collapse_whitespace_and_lower_case() {
        let slow = |raw: &str| {
            raw.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_lowercase()
        };
        for raw in [
            "BFEBFBFF000906EA",
            " Intel Core i7 ",
            "Intel  Core   i7",
            "ÄMD Ryzen\u{a0}9",
            "Ünïcode  ÆØ",
        ] {
            assert_eq!(canonical_text(raw).unwrap(), slow(raw), "{raw:?}");
        }
    }

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
            ..Fingerprint::default()
        }
    }

    fn verdict(now: &Fingerprint, stored: &Fingerprint) -> MatchVerdict {
        now.canonicalize()
            .unwrap()
            .compare(&stored.canonicalize().unwrap().digest())
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
    fn a_cpu_id_and_a_shared_mac_are_not_a_machine() {
        // Two signals agree, but both are weak: a CPU model and a MAC
        // (virtual adapters share them) say nothing about which machine.
        let other = Fingerprint {
            system_uuid: Some("00000000-1111-2222-3333-444444444444".into()),
            ..machine()
        };
        assert_eq!(verdict(&other, &machine()), MatchVerdict::Different);
        let weak = Fingerprint {
            system_uuid: None,
            ..machine()
        };
        assert_eq!(verdict(&weak, &machine()), MatchVerdict::Different);
    }

    #[test]
    fn a_left_out_component_counts_as_changed() {
        let stored = Fingerprint {
            machine_id: Some("7f2c1e0a9b8d4c3f8e2a1b0c9d8e7f6a".into()),
            ..machine()
        };
        // Leaving out the MACs is one change: still the machine.
        let no_macs = Fingerprint {
            macs: vec![],
            ..stored.clone()
        };
        assert_eq!(
            verdict(&no_macs, &stored),
            MatchVerdict::Changed {
                agreed: vec![Signal::SystemUuid, Signal::MachineId, Signal::CpuId],
                changed: Some(Signal::Network)
            }
        );
        // A system UUID and a CPU id alone, the rest left out: two changes.
        let partial = Fingerprint {
            system_uuid: stored.system_uuid.clone(),
            cpu_id: stored.cpu_id.clone(),
            ..Fingerprint::default()
        };
        assert_eq!(verdict(&partial, &stored), MatchVerdict::Different);
    }

    #[test]
    fn a_machine_id_recognises_a_machine_whose_uuid_changed() {
        let stored = Fingerprint {
            machine_id: Some("{7F2C1E0A-9B8D-4C3F-8E2A-1B0C9D8E7F6A}".into()),
            ..machine()
        };
        let moved_vm = Fingerprint {
            system_uuid: Some("00000000-1111-2222-3333-444444444444".into()),
            ..stored.clone()
        };
        assert_eq!(
            verdict(&moved_vm, &stored),
            MatchVerdict::Changed {
                agreed: vec![Signal::MachineId, Signal::CpuId, Signal::Network],
                changed: Some(Signal::SystemUuid)
            }
        );
        // Without the machine id, a new UUID is a new machine.
        let without = Fingerprint {
            machine_id: None,
            ..moved_vm
        };
        assert_eq!(verdict(&without, &machine()), MatchVerdict::Different);
    }

    #[test]
    fn machine_ids_are_checked() {
        let short = Fingerprint {
            machine_id: Some("abc123".into()),
            ..machine()
        };
        assert_eq!(
            short.canonicalize().unwrap_err().field,
            "fingerprint.machine_id"
        );
        let placeholder = Fingerprint {
            machine_id: Some("00000000-0000-0000-0000-000000000000".into()),
            ..machine()
        };
        assert_eq!(placeholder.canonicalize().unwrap().machine_id, None);
        let styled = Fingerprint {
            machine_id: Some("  7F2C1E0A9B8D4C3F8E2A1B0C9D8E7F6A ".into()),
            ..machine()
        };
        assert_eq!(
            styled.canonicalize().unwrap().machine_id.as_deref(),
            Some("7f2c1e0a9b8d4c3f8e2a1b0c9d8e7f6a")
        );
    }

    #[test]
    fn a_fingerprint_without_machine_id_hashes_as_before() {
        // The encoding of format 1, written out: stored devices keep their
        // identity now that fingerprints may carry a machine id.
        let canonical = machine().canonicalize().unwrap();
        let mut bytes = Vec::new();
        let mut field = |tag: &[u8], value: &str| {
            bytes.extend_from_slice(tag);
            bytes.extend_from_slice(&(value.len() as u64).to_le_bytes());
            bytes.extend_from_slice(value.as_bytes());
        };
        field(b"u", "4c4c4544004235108052b4c04f384d32");
        field(b"c", "bfebfbff000906ea");
        field(b"m", "001a2b3c4d5e");
        field(b"m", "a45e60c12201");
        let expected = blake3::derive_key(FINGERPRINT_CONTEXT, &bytes);
        assert_eq!(canonical.hash().0, expected);
        // And a format-1 digest is the first 24 bytes, machine id zero.
        let digest = canonical.digest().to_bytes();
        assert_eq!(digest[24..], [0; 4]);
        let with_id = Fingerprint {
            machine_id: Some("7f2c1e0a9b8d4c3f8e2a1b0c9d8e7f6a".into()),
            ..machine()
        }
        .canonicalize()
        .unwrap();
        assert_ne!(with_id.hash(), canonical.hash());
        assert_eq!(with_id.digest().to_bytes()[..24], digest[..24]);
        // The stored form of an old device reads back as it was.
        let stored = serde_json::to_value(&canonical).unwrap();
        assert!(stored.get("machine_id").is_none(), "{stored}");
    }

    #[test]
    fn only_a_digest_reporting_every_signal_may_replace_one() {
        let full = machine().canonicalize().unwrap().digest();
        let no_uuid = Fingerprint {
            system_uuid: None,
            ..machine()
        }
        .canonicalize()
        .unwrap()
        .digest();
        let more = Fingerprint {
            machine_id: Some("7f2c1e0a9b8d4c3f8e2a1b0c9d8e7f6a".into()),
            ..machine()
        }
        .canonicalize()
        .unwrap()
        .digest();
        assert!(full.covers(&full));
        assert!(more.covers(&full));
        assert!(!full.covers(&more));
        assert!(!no_uuid.covers(&full));
        assert_eq!(
            full.signals(),
            vec![Signal::SystemUuid, Signal::CpuId, Signal::Network]
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
