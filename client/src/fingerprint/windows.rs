//! Windows: `MachineGuid` from the registry, the SMBIOS UUID, the CPU's
//! `ProcessorId` and the physical adapters' addresses, through `reg` and
//! PowerShell's CIM cmdlets (no FFI, so the crate stays free of `unsafe`).
//! Untested here: written against the tools' documented output.

use std::process::Command;

use latchkey_shared::fingerprint::Fingerprint;

pub fn collect() -> Fingerprint {
    super::usable(Fingerprint {
        system_uuid: powershell("(Get-CimInstance Win32_ComputerSystemProduct).UUID"),
        machine_id: output(
            "reg",
            &[
                "query",
                r"HKLM\SOFTWARE\Microsoft\Cryptography",
                "/v",
                "MachineGuid",
            ],
        )
        .and_then(|text| {
            text.lines()
                .find(|line| line.contains("MachineGuid"))
                .and_then(|line| line.split_whitespace().last())
                .map(str::to_owned)
        }),
        cpu_id: powershell(
            "(Get-CimInstance Win32_Processor | Select-Object -First 1).ProcessorId",
        ),
        macs: powershell("Get-NetAdapter -Physical | ForEach-Object { $_.MacAddress }")
            .map(|text| text.lines().map(|mac| mac.trim().to_owned()).collect())
            .unwrap_or_default(),
        ..Fingerprint::default()
    })
}

fn powershell(command: &str) -> Option<String> {
    output(
        "powershell",
        &["-NoProfile", "-NonInteractive", "-Command", command],
    )
    .map(|text| text.trim().to_owned())
    .filter(|text| !text.is_empty())
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
