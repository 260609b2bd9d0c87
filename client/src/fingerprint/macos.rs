//! macOS: the platform UUID from the I/O Registry, the CPU brand and the
//! hardware ports' addresses, through the system's own tools (no FFI, so
//! the crate stays free of `unsafe`). Untested here: written against the
//! tools' documented output.

use std::process::Command;

use latchkey_shared::fingerprint::Fingerprint;

pub fn collect() -> Fingerprint {
    super::usable(Fingerprint {
        system_uuid: output("ioreg", &["-rd1", "-c", "IOPlatformExpertDevice"])
            .and_then(|text| quoted_value(&text, "\"IOPlatformUUID\"")),
        cpu_id: output("sysctl", &["-n", "machdep.cpu.brand_string"])
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty()),
        macs: output("networksetup", &["-listallhardwareports"])
            .map(|text| {
                text.lines()
                    .filter_map(|line| line.trim().strip_prefix("Ethernet Address:"))
                    .map(|mac| mac.trim().to_owned())
                    .collect()
            })
            .unwrap_or_default(),
        ..Fingerprint::default()
    })
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `"IOPlatformUUID" = "UUID"` → `UUID`.
fn quoted_value(text: &str, key: &str) -> Option<String> {
    let line = text.lines().find(|line| line.contains(key))?;
    let (_, value) = line.split_once('=')?;
    Some(value.trim().trim_matches('"').to_owned())
}
