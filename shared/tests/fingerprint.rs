//! Property tests of the matching rule (`fingerprint.rs`, module docs):
//! what may make two fingerprints the same machine, and what never may.

use std::collections::BTreeMap;

use latchkey_shared::fingerprint::{
    CanonicalFingerprint, DeviceDigest, Fingerprint, MatchVerdict, Signal,
};
use proptest::prelude::*;

/// Components drawn from small pools, so that fingerprints often share some.
fn arb_fingerprint() -> impl Strategy<Value = Fingerprint> {
    let uuids = [
        "4c4c4544-0042-3510-8052-b4c04f384d32",
        "0e1b3c7a-55aa-4d2e-9f10-2b3c4d5e6f70",
        "a1b2c3d4-e5f6-4711-8899-aabbccddeeff",
    ];
    let machine_ids = [
        "7f2c1e0a9b8d4c3f8e2a1b0c9d8e7f6a",
        "0123456789abcdef0123456789abcdef",
        "{3f0c8a52-1d6e-4b7a-9c2e-5f8d7a6b4c31}",
    ];
    let cpus = ["BFEBFBFF000906EA", "178BFBFF00A20F12"];
    let macs = [
        "02:42:ac:11:00:02",
        "00:1a:2b:3c:4d:5e",
        "a4:5e:60:c1:22:01",
        "3c:22:fb:10:20:30",
        "f0:18:98:aa:bb:cc",
    ];
    (
        prop::option::of(prop::sample::select(uuids.to_vec())),
        prop::option::of(prop::sample::select(machine_ids.to_vec())),
        prop::option::of(prop::sample::select(cpus.to_vec())),
        prop::sample::subsequence(macs.to_vec(), 0..=4),
        prop::option::of(prop::sample::select(vec!["wd-1", "wd-2"])),
    )
        .prop_map(|(uuid, machine_id, cpu, macs, disk)| Fingerprint {
            system_uuid: uuid.map(str::to_owned),
            machine_id: machine_id.map(str::to_owned),
            cpu_id: cpu.map(str::to_owned),
            macs: macs.into_iter().map(str::to_owned).collect(),
            extra: disk
                .map(|d| BTreeMap::from([("disk_serial".to_owned(), d.to_owned())]))
                .unwrap_or_default(),
        })
}

fn arb_canonical() -> impl Strategy<Value = CanonicalFingerprint> {
    arb_fingerprint().prop_filter_map("no usable component", |f| f.canonicalize().ok())
}

/// `fingerprint` with the components `drop` selects left out (bit 0 the
/// system UUID, 1 the machine id, 2 the CPU id, 3 the extras; the MACs
/// kept are those `keep_macs` selects).
fn leave_out(
    fingerprint: &CanonicalFingerprint,
    drop: u8,
    keep_macs: &[bool],
) -> Option<CanonicalFingerprint> {
    let mut fewer = fingerprint.clone();
    if drop & 1 != 0 {
        fewer.system_uuid = None;
    }
    if drop & 2 != 0 {
        fewer.machine_id = None;
    }
    if drop & 4 != 0 {
        fewer.cpu_id = None;
    }
    if drop & 8 != 0 {
        fewer.extra.clear();
    }
    fewer.macs = fingerprint
        .macs
        .iter()
        .zip(keep_macs.iter().chain(std::iter::repeat(&true)))
        .filter(|(_, keep)| **keep)
        .map(|(mac, _)| mac.clone())
        .collect();
    // Through the client's form again, as a client leaving them out would send it.
    Fingerprint {
        system_uuid: fewer.system_uuid,
        machine_id: fewer.machine_id,
        cpu_id: fewer.cpu_id,
        macs: fewer.macs,
        extra: fewer.extra,
    }
    .canonicalize()
    .ok()
}

/// A strong component the stored device reports and the machine asking
/// reports equal.
fn strong_agreement(now: &CanonicalFingerprint, stored: &CanonicalFingerprint) -> bool {
    (stored.system_uuid.is_some() && now.system_uuid == stored.system_uuid)
        || (stored.machine_id.is_some() && now.machine_id == stored.machine_id)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_machine_is_exactly_itself(fingerprint in arb_canonical()) {
        prop_assert_eq!(fingerprint.compare(&fingerprint.digest()), MatchVerdict::Exact);
    }

    #[test]
    fn without_an_agreeing_strong_signal_only_an_exact_match_counts(
        now in arb_canonical(),
        stored in arb_canonical(),
    ) {
        let verdict = now.compare(&stored.digest());
        if !strong_agreement(&now, &stored) {
            let expected = if now.digest() == stored.digest() {
                MatchVerdict::Exact
            } else {
                MatchVerdict::Different
            };
            prop_assert_eq!(verdict, expected);
        }
    }

    #[test]
    fn a_changed_machine_agrees_on_a_strong_signal_and_changed_at_most_one(
        now in arb_canonical(),
        stored in arb_canonical(),
    ) {
        if let MatchVerdict::Changed { agreed, changed } = now.compare(&stored.digest()) {
            let stored_signals = stored.digest().signals();
            let now_signals = now.digest().signals();
            prop_assert!(agreed.len() >= 2, "{:?}", agreed);
            prop_assert!(agreed.iter().any(|s| s.is_strong()), "{:?}", agreed);
            for signal in &agreed {
                prop_assert!(stored_signals.contains(signal) && now_signals.contains(signal));
            }
            if let Some(signal) = changed {
                // A changed signal is one the device had: new ones never count.
                prop_assert!(stored_signals.contains(&signal));
                prop_assert!(!agreed.contains(&signal));
            }
            // Every signal the device had is accounted for.
            let counted = agreed.len() + usize::from(changed.is_some());
            prop_assert_eq!(counted, stored_signals.len());
        }
    }

    #[test]
    fn leaving_components_out_never_makes_a_machine_match(
        now in arb_canonical(),
        stored in arb_canonical(),
        drop in 0u8..16,
        keep_macs in prop::collection::vec(any::<bool>(), 4),
    ) {
        let Some(fewer) = leave_out(&now, drop, &keep_macs) else {
            return Ok(());
        };
        let full = now.compare(&stored.digest());
        let partial = fewer.compare(&stored.digest());
        if full == MatchVerdict::Different && fewer.digest() != stored.digest() {
            prop_assert_eq!(partial.clone(), MatchVerdict::Different, "{:?} vs {:?}", fewer, stored);
        }
        // Nor does it agree on more: what a partial fingerprint agrees on,
        // the whole one agreed on too.
        if let (
            MatchVerdict::Changed { agreed: fewer_agreed, .. },
            MatchVerdict::Changed { agreed: full_agreed, .. },
        ) = (&partial, &full)
        {
            prop_assert!(fewer_agreed.iter().all(|s| full_agreed.contains(s)));
        }
    }

    #[test]
    fn weak_signals_alone_never_identify_a_machine(
        cpu in prop::option::of(prop::sample::select(vec!["BFEBFBFF000906EA", "178BFBFF00A20F12"])),
        macs in prop::sample::subsequence(vec!["02:42:ac:11:00:02", "00:1a:2b:3c:4d:5e"], 0..=2),
        stored in arb_canonical(),
    ) {
        let Ok(weak) = (Fingerprint {
            cpu_id: cpu.map(str::to_owned),
            macs: macs.into_iter().map(str::to_owned).collect(),
            ..Fingerprint::default()
        })
        .canonicalize() else {
            return Ok(());
        };
        let verdict = weak.compare(&stored.digest());
        prop_assert!(!matches!(verdict, MatchVerdict::Changed { .. }), "{:?}", verdict);
    }

    #[test]
    fn a_covering_digest_keeps_every_signal_of_the_one_it_replaces(
        now in arb_canonical(),
        stored in arb_canonical(),
    ) {
        let (now, stored) = (now.digest(), stored.digest());
        prop_assert!(now.covers(&now));
        if now.covers(&stored) {
            let kept = now.signals();
            prop_assert!(stored.signals().iter().all(|s| kept.contains(s)));
            prop_assert!(kept.len() >= stored.signals().len());
        } else {
            prop_assert!(stored.signals().iter().any(|s| !now.signals().contains(s)));
        }
    }

    #[test]
    fn digests_round_trip_through_bytes(words in any::<[u32; 7]>()) {
        let digest = DeviceDigest {
            system_uuid: words[0],
            cpu_id: words[1],
            extra: words[2],
            macs: [words[3], words[4], words[5]],
            machine_id: words[6],
        };
        prop_assert_eq!(DeviceDigest::from_bytes(&digest.to_bytes()), digest);
    }
}

#[test]
fn strong_signals_are_the_system_uuid_and_the_machine_id() {
    let strong: Vec<Signal> = [
        Signal::SystemUuid,
        Signal::MachineId,
        Signal::CpuId,
        Signal::Network,
        Signal::Extra,
    ]
    .into_iter()
    .filter(|s| s.is_strong())
    .collect();
    assert_eq!(strong, [Signal::SystemUuid, Signal::MachineId]);
}
