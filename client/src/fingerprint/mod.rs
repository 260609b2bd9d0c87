//! This machine's fingerprint: collected from the operating system, then
//! canonicalised by the shared rules ([`Fingerprint::canonicalize`]) and
//! *protected*: every component is replaced by a keyed BLAKE3 hash of its
//! canonical value before it leaves the machine.
//!
//! The matching rule compares components one by one (equal or not, MAC sets
//! overlapping or not), so hashing each component keeps every decision the
//! edges and control make, while no raw serial, UUID or MAC address is ever
//! sent. The hash is scoped by the product slug, so two vendors' products
//! on one machine report unrelated values and cannot be joined.
//!
//! Sources, per operating system:
//!
//! | component | Linux | macOS | Windows |
//! |---|---|---|---|
//! | `system_uuid` | `/sys/class/dmi/id/product_uuid` (root only) | `IOPlatformUUID` (`ioreg`) | `Win32_ComputerSystemProduct.UUID` |
//! | `machine_id` | `/etc/machine-id`, else `/var/lib/dbus/machine-id` | — | `MachineGuid` (registry) |
//! | `cpu_id` | vendor, family, model, stepping and name (`/proc/cpuinfo`) | `machdep.cpu.brand_string` | `Win32_Processor.ProcessorId` |
//! | `macs` | permanent addresses of interfaces backed by a device (`/sys/class/net/*/device`) | hardware ports (`networksetup`) | physical adapters (`Get-NetAdapter -Physical`) |
//!
//! Only the Linux collector is tested here; the macOS and Windows ones are
//! written against the tools' documented output and never run (Windows
//! compiles, see `ARCHITECTURE.md`). A component that cannot
//! be read, or that the shared rules refuse (a placeholder UUID, a malformed
//! address), is left out rather than failing the whole fingerprint.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(target_os = "windows")]
mod windows;

#[cfg(target_os = "linux")]
pub use linux::collect_under;

use latchkey_shared::fingerprint::{Fingerprint, FingerprintError, MAX_MACS};

const COMPONENT_CONTEXT: &str = "latchkey-client 2026-12 protected component v1";

/// The raw components of this machine, as the operating system reports them
/// (already filtered to those the shared rules accept). Never sent: pass
/// them through [`protect`].
#[cfg(target_os = "linux")]
pub fn collect() -> Fingerprint {
    collect_under(std::path::Path::new("/"))
}

/// The raw components of this machine (see the Linux build's docs).
#[cfg(target_os = "macos")]
pub fn collect() -> Fingerprint {
    macos::collect()
}

/// The raw components of this machine (see the Linux build's docs).
#[cfg(target_os = "windows")]
pub fn collect() -> Fingerprint {
    windows::collect()
}

/// No collector for this operating system: the application passes its own
/// components to [`ClientBuilder::fingerprint`](crate::ClientBuilder::fingerprint).
#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
pub fn collect() -> Fingerprint {
    Fingerprint::default()
}

/// What is sent for `raw`: each canonical component replaced by its keyed
/// hash under `scope` (the product slug, or `""`). Same machine, same
/// answer; an error when no usable component is left.
pub fn protect(raw: &Fingerprint, scope: &str) -> Result<Fingerprint, FingerprintError> {
    let canonical = raw.canonicalize()?;
    let hide = |kind: &str, value: &str, bytes: usize| hidden(scope, kind, value, bytes);
    let protected = Fingerprint {
        system_uuid: canonical.system_uuid.map(|u| hide("system_uuid", &u, 16)),
        machine_id: canonical.machine_id.map(|m| hide("machine_id", &m, 16)),
        cpu_id: canonical.cpu_id.map(|c| hide("cpu_id", &c, 16)),
        macs: canonical
            .macs
            .iter()
            .map(|mac| hide("mac", mac, 6))
            .collect(),
        extra: canonical
            .extra
            .iter()
            .map(|(name, value)| (name.clone(), hide(name, value, 16)))
            .collect(),
    };
    // The hashes are themselves canonical; checked so a change to the shared
    // rules cannot make the client send what the edges refuse.
    protected.canonicalize()?;
    Ok(protected)
}

/// Keeps the components the shared rules accept one by one: firmware that
/// reports "Not Settable" as its UUID must not cost the machine its MACs.
fn usable(raw: Fingerprint) -> Fingerprint {
    let accepted = |candidate: Fingerprint| candidate.canonicalize().is_ok();
    let only = Fingerprint::default;
    let mut macs: Vec<String> = raw
        .macs
        .into_iter()
        .filter(|mac| {
            accepted(Fingerprint {
                macs: vec![mac.clone()],
                ..only()
            })
        })
        .collect();
    macs.sort();
    macs.dedup();
    macs.truncate(MAX_MACS);
    Fingerprint {
        system_uuid: raw.system_uuid.filter(|u| {
            accepted(Fingerprint {
                system_uuid: Some(u.clone()),
                ..only()
            })
        }),
        machine_id: raw.machine_id.filter(|m| {
            accepted(Fingerprint {
                machine_id: Some(m.clone()),
                ..only()
            })
        }),
        cpu_id: raw.cpu_id.filter(|c| {
            accepted(Fingerprint {
                cpu_id: Some(c.clone()),
                ..only()
            })
        }),
        macs,
        extra: Default::default(),
    }
}

fn hidden(scope: &str, kind: &str, value: &str, bytes: usize) -> String {
    let mut hasher = blake3::Hasher::new_derive_key(COMPONENT_CONTEXT);
    // Length-prefixed: no two (scope, kind, value) triples hash alike.
    for part in [scope, kind, value] {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    let mut out = vec![0u8; bytes];
    hasher.finalize_xof().fill(&mut out);
    hex::encode(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Fingerprint {
        Fingerprint {
            system_uuid: Some("4C4C4544-0042-3510-8052-B4C04F384D32".into()),
            machine_id: Some("7f2c1e0a9b8d4c3f8e2a1b0c9d8e7f6a".into()),
            cpu_id: Some("GenuineIntel family 6 model 158".into()),
            macs: vec!["00:1A:2B:3C:4D:5E".into(), "a4-5e-60-c1-22-01".into()],
            ..Fingerprint::default()
        }
    }

    #[test]
    fn protection_keeps_no_raw_value_and_is_stable_across_formatting() {
        let protected = protect(&machine(), "studio").unwrap();
        let text = serde_json::to_string(&protected).unwrap().to_lowercase();
        for raw in ["4c4c4544", "7f2c1e0a", "genuineintel", "001a2b", "a45e60"] {
            assert!(!text.contains(raw), "{raw} in {text}");
        }
        let restyled = Fingerprint {
            system_uuid: Some("{4c4c4544004235108052b4c04f384d32}".into()),
            macs: vec!["A4:5E:60:C1:22:01".into(), "001a.2b3c.4d5e".into()],
            ..machine()
        };
        assert_eq!(protect(&restyled, "studio").unwrap(), protected);
        assert_eq!(protected.macs.len(), 2);
    }

    #[test]
    fn products_see_unrelated_values_but_the_same_verdicts() {
        let studio = protect(&machine(), "studio").unwrap();
        let other = protect(&machine(), "other").unwrap();
        assert_ne!(studio.system_uuid, other.system_uuid);
        assert_ne!(studio.macs, other.macs);
        // A new network card: the matching rule still sees the same machine.
        let stored = studio.canonicalize().unwrap().digest();
        let new_nic = Fingerprint {
            macs: vec!["11:22:33:44:55:66".into()],
            ..machine()
        };
        let now = protect(&new_nic, "studio").unwrap().canonicalize().unwrap();
        assert!(now.compare(&stored).is_same_machine());
    }

    #[test]
    fn a_component_the_rules_refuse_is_left_out_not_fatal() {
        let raw = Fingerprint {
            system_uuid: Some("Not Settable".into()),
            machine_id: Some("short".into()),
            macs: vec![
                "00:00:00:00:00:00".into(),
                "zz".into(),
                "02:42:ac:11:00:02".into(),
            ],
            ..machine()
        };
        let kept = usable(raw);
        assert_eq!(kept.system_uuid, None);
        assert_eq!(kept.machine_id, None);
        assert_eq!(kept.macs, vec!["02:42:ac:11:00:02".to_owned()]);
        assert!(protect(&kept, "").is_ok());
        assert_eq!(
            protect(&Fingerprint::default(), "").unwrap_err().field,
            "fingerprint"
        );
    }
}
