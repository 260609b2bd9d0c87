//! Linux: sysfs, procfs and the machine id, read under a root directory so
//! a container's or a mounted system's files can be read too (and tests
//! give a tree of their own).

use std::fs;
use std::path::Path;

use latchkey_shared::fingerprint::Fingerprint;

/// The raw components of the machine whose files are under `root` (`/` for
/// this one); see the module table for what is read.
pub fn collect_under(root: &Path) -> Fingerprint {
    super::usable(Fingerprint {
        system_uuid: read(root, "sys/class/dmi/id/product_uuid"),
        machine_id: read(root, "etc/machine-id").or_else(|| read(root, "var/lib/dbus/machine-id")),
        cpu_id: cpu_id(root),
        macs: physical_macs(root),
        ..Fingerprint::default()
    })
}

fn read(root: &Path, path: &str) -> Option<String> {
    let text = fs::read_to_string(root.join(path)).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// The first processor's identity lines: what names the CPU model, not what
/// changes at run time (frequency, flags a kernel may mask).
fn cpu_id(root: &Path) -> Option<String> {
    const KEYS: [&str; 10] = [
        "vendor_id",
        "cpu family",
        "model",
        "stepping",
        "model name",
        "CPU implementer",
        "CPU architecture",
        "CPU variant",
        "CPU part",
        "CPU revision",
    ];
    let info = fs::read_to_string(root.join("proc/cpuinfo")).ok()?;
    let first = info.split("\n\n").next()?;
    let parts: Vec<String> = first
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.trim(), value.trim()))
        .filter(|(key, value)| KEYS.contains(key) && !value.is_empty())
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    (!parts.is_empty()).then(|| parts.join(";"))
}

/// Addresses of interfaces backed by a device (virtual ones, `lo`, bridges,
/// veth pairs, have no `device` link) whose address is the permanent one
/// (`addr_assign_type` 0: not random, not stolen, not set by hand).
fn physical_macs(root: &Path) -> Vec<String> {
    let Ok(entries) = fs::read_dir(root.join("sys/class/net")) else {
        return Vec::new();
    };
    let mut macs = Vec::new();
    for entry in entries.flatten() {
        let interface = entry.path();
        if !interface.join("device").exists() {
            continue;
        }
        let assigned = fs::read_to_string(interface.join("addr_assign_type"));
        if assigned.is_ok_and(|kind| kind.trim() != "0") {
            continue;
        }
        if let Ok(address) = fs::read_to_string(interface.join("address")) {
            macs.push(address.trim().to_owned());
        }
    }
    macs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A machine's files under a temporary root.
    fn tree(files: &[(&str, &str)], dirs: &[&str]) -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!("lk-fp-{}", uuid::Uuid::new_v4()));
        for dir in dirs {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        for (path, text) in files {
            let path = root.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        root
    }

    const CPUINFO: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 158\nmodel name\t: Intel(R) Core(TM) i7-8700\nstepping\t: 10\ncpu MHz\t\t: 3192.000\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\n";

    #[test]
    fn reads_the_identity_files_and_only_physical_permanent_macs() {
        let root = tree(
            &[
                (
                    "sys/class/dmi/id/product_uuid",
                    "4c4c4544-0042-3510-8052-b4c04f384d32\n",
                ),
                ("etc/machine-id", "7f2c1e0a9b8d4c3f8e2a1b0c9d8e7f6a\n"),
                ("proc/cpuinfo", CPUINFO),
                ("sys/class/net/eth0/address", "00:1a:2b:3c:4d:5e\n"),
                ("sys/class/net/eth0/addr_assign_type", "0\n"),
                ("sys/class/net/wlan0/address", "a4:5e:60:c1:22:01\n"),
                ("sys/class/net/lo/address", "00:00:00:00:00:00\n"),
                ("sys/class/net/docker0/address", "02:42:ac:11:00:02\n"),
                ("sys/class/net/docker0/addr_assign_type", "3\n"),
                ("sys/class/net/usb0/address", "8a:11:22:33:44:55\n"),
                ("sys/class/net/usb0/addr_assign_type", "1\n"),
            ],
            &[
                "sys/class/net/eth0/device",
                "sys/class/net/wlan0/device",
                "sys/class/net/usb0/device",
            ],
        );
        let raw = collect_under(&root);
        assert_eq!(
            raw.system_uuid.as_deref(),
            Some("4c4c4544-0042-3510-8052-b4c04f384d32")
        );
        assert_eq!(
            raw.machine_id.as_deref(),
            Some("7f2c1e0a9b8d4c3f8e2a1b0c9d8e7f6a")
        );
        assert_eq!(
            raw.cpu_id.as_deref(),
            Some(
                "vendor_id=GenuineIntel;cpu family=6;model=158;model name=Intel(R) Core(TM) i7-8700;stepping=10"
            )
        );
        // lo and docker0 have no device; usb0's address is random.
        assert_eq!(raw.macs, vec!["00:1a:2b:3c:4d:5e", "a4:5e:60:c1:22:01"]);
        fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn unreadable_or_placeholder_components_are_left_out() {
        let root = tree(
            &[
                (
                    "sys/class/dmi/id/product_uuid",
                    "00000000-0000-0000-0000-000000000000",
                ),
                (
                    "var/lib/dbus/machine-id",
                    "0123456789abcdef0123456789abcdef",
                ),
            ],
            &[],
        );
        let raw = collect_under(&root);
        assert_eq!(raw.system_uuid, None);
        assert_eq!(
            raw.machine_id.as_deref(),
            Some("0123456789abcdef0123456789abcdef")
        );
        assert_eq!((raw.cpu_id, raw.macs.len()), (None, 0));
        fs::remove_dir_all(root).unwrap();
    }
}
