//! Signed snapshots: round trips, and every rule `open` must enforce.

mod common;

use std::collections::HashSet;

use common::{NOW, arb_entry, entry_for, signer, trusted};
use latchkey_shared::LicenseKey;
use latchkey_shared::signing::{SigningKeyPair, TrustedKeys};
use latchkey_shared::snapshot::{
    ChannelRelease, DeltaBody, EdgeConfig, FORMAT_VERSION, FeatureFlag, LicenseEntry,
    LicenseStatus, OpenError, Opened, Product, ProductClientConfig, RevokedSession, SealParams,
    SnapshotBuffer, SnapshotBuilder, SnapshotKind, SnapshotState, open, seal,
};
use proptest::prelude::*;
use uuid::Uuid;

const EXPIRES: i64 = NOW + 7 * 86_400;

fn unique(entries: Vec<LicenseEntry>) -> Vec<LicenseEntry> {
    let mut seen = HashSet::new();
    entries
        .into_iter()
        .filter(|e| seen.insert(e.key_hash))
        .collect()
}

fn seal_full(entries: &[LicenseEntry], sequence: u64) -> Vec<u8> {
    let mut builder = SnapshotBuilder::new(EdgeConfig::default());
    for entry in entries {
        builder.add_license(entry).unwrap();
    }
    builder.add_product(Product {
        id: 1,
        slug: "studio".into(),
        name: "Studio".into(),
        min_allowed_version: Some("2.0.0".into()),
        channels: vec![ChannelRelease {
            channel: "stable".into(),
            version: "2.3.1".into(),
            download_url: Some("https://example.invalid/studio-2.3.1".into()),
            published_at: NOW,
        }],
        client: ProductClientConfig {
            heartbeat_interval_secs: Some(300),
            grace_period_secs: None,
            features: vec!["export".into()],
            settings_json: r#"{"theme":"dark"}"#.into(),
        },
    });
    builder.add_flag(FeatureFlag {
        key: "new-ui".into(),
        enabled: true,
        product_id: None,
        rollout_percent: 50,
    });
    builder.revoke_session(RevokedSession {
        session_id: Uuid::from_u128(42),
        token_expires_at: EXPIRES,
    });
    builder.seal(&signer(), sequence, NOW, EXPIRES).unwrap()
}

fn open_full(bytes: Vec<u8>, held: Option<u64>) -> SnapshotState {
    match open(buf(&bytes), &trusted(), held, NOW).unwrap() {
        Opened::Full(full) => SnapshotState::new(full),
        Opened::Delta(_) => panic!("expected a full snapshot"),
    }
}

fn small_entries() -> Vec<LicenseEntry> {
    (0..5)
        .map(|n| entry_for(&LicenseKey::from_entropy([n as u8; 15]), n))
        .collect()
}

fn buf(bytes: &[u8]) -> SnapshotBuffer {
    SnapshotBuffer::from_slice(bytes).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_license_round_trips(entries in prop::collection::vec(arb_entry(), 0..200)) {
        let entries = unique(entries);
        let state = open_full(seal_full(&entries, 1), None);
        prop_assert_eq!(state.base_license_count(), entries.len());
        for entry in &entries {
            let view = state.license(&entry.key_hash()).expect("license present");
            prop_assert_eq!(&view.to_entry(), entry);
        }
        let absent = LicenseKey::from_entropy([0xEE; 15]).hash();
        prop_assert!(entries.iter().any(|e| e.key_hash == absent.0) || state.license(&absent).is_none());
    }

    #[test]
    fn deltas_round_trip_and_shadow_the_base(
        base in prop::collection::vec(arb_entry(), 1..50),
        changed in prop::collection::vec(arb_entry(), 0..20),
        removed in prop::collection::vec(any::<prop::sample::Index>(), 0..5),
    ) {
        let base = unique(base);
        let state = open_full(seal_full(&base, 10), None);
        let mut delta = DeltaBody::default();
        let changed = unique(changed);
        for entry in &changed {
            delta.upsert(entry.clone());
        }
        let removed: Vec<[u8; 32]> = removed.iter().map(|i| base[i.index(base.len())].key_hash).collect();
        for key_hash in &removed {
            if !changed.iter().any(|c| &c.key_hash == key_hash) {
                delta.remove(*key_hash);
            }
        }
        delta.revoked_sessions.push(RevokedSession { session_id: Uuid::from_u128(7), token_expires_at: EXPIRES });
        let bytes = delta.seal(&signer(), 10, 11, NOW, EXPIRES).unwrap();
        let Opened::Delta(opened) = open(buf(&bytes), &trusted(), Some(10), NOW).unwrap() else {
            panic!("expected a delta");
        };
        prop_assert_eq!(&opened.body, &delta);
        let next = state.apply(opened).unwrap();
        prop_assert_eq!(next.sequence(), 11);
        for entry in &changed {
            prop_assert_eq!(&next.license(&entry.key_hash()).unwrap().to_entry(), entry);
        }
        for key_hash in &removed {
            if !changed.iter().any(|c| &c.key_hash == key_hash) {
                prop_assert!(next.license(&latchkey_shared::KeyHash(*key_hash)).is_none());
            }
        }
        prop_assert!(next.is_session_revoked(&Uuid::from_u128(7)));
        prop_assert!(next.is_session_revoked(&Uuid::from_u128(42)));
        prop_assert!(!state.is_session_revoked(&Uuid::from_u128(7)), "the old view is untouched");
    }

    #[test]
    fn a_full_snapshot_not_newer_than_the_held_one_is_refused(held in 1u64..1000, back in 0u64..1000) {
        let sequence = held.saturating_sub(back).max(1);
        let result = open(buf(&seal_full(&small_entries(), sequence)), &trusted(), Some(held), NOW);
        prop_assert_eq!(result.unwrap_err(), OpenError::NotNewer { held, got: sequence });
    }

    #[test]
    fn a_delta_on_another_base_is_refused(base in 1u64..1000, held in prop::option::of(1u64..1000)) {
        prop_assume!(held != Some(base));
        let bytes = DeltaBody::default().seal(&signer(), base, base + 1, NOW, EXPIRES).unwrap();
        prop_assert_eq!(open(buf(&bytes), &trusted(), held, NOW).unwrap_err(), OpenError::WrongBase { base, held });
    }

    #[test]
    fn truncation_anywhere_is_refused(cut in any::<prop::sample::Index>()) {
        let bytes = seal_full(&small_entries(), 1);
        let cut = cut.index(bytes.len());
        let error = open(buf(&bytes[..cut]), &trusted(), None, NOW).unwrap_err();
        prop_assert!(matches!(error, OpenError::Truncated { .. }), "{error:?}");
    }

    #[test]
    fn arbitrary_bytes_never_open_or_panic(mut junk in prop::collection::vec(any::<u8>(), 0..600), magic in any::<bool>()) {
        if magic && junk.len() >= 10 {
            junk[..8].copy_from_slice(b"LTCHSNAP");
            junk[8..10].copy_from_slice(&1u16.to_le_bytes());
        }
        prop_assert!(open(buf(&junk), &trusted(), None, NOW).is_err());
    }
}

/// Every single-bit change anywhere in a signed snapshot makes it unopenable.
#[test]
fn flipping_any_bit_of_a_full_snapshot_is_refused() {
    let bytes = seal_full(&small_entries()[..2], 1);
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        assert!(
            open(buf(&flipped), &trusted(), None, NOW).is_err(),
            "bit {bit} flipped and the snapshot still opened"
        );
    }
    assert!(open(buf(&bytes), &trusted(), None, NOW).is_ok());
}

#[test]
fn flipping_any_bit_of_a_delta_is_refused() {
    let mut delta = DeltaBody::default();
    delta.upsert(small_entries()[0].clone());
    let bytes = delta.seal(&signer(), 1, 2, NOW, EXPIRES).unwrap();
    for bit in 0..bytes.len() * 8 {
        let mut flipped = bytes.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        assert!(
            open(buf(&flipped), &trusted(), Some(1), NOW).is_err(),
            "bit {bit} flipped and the delta still opened"
        );
    }
}

#[test]
fn each_rule_has_its_own_error() {
    let bytes = seal_full(&small_entries(), 5);
    let reopen = || bytes.clone();

    let stranger = TrustedKeys::new().with(SigningKeyPair::from_seed([9; 32]).verifying_key());
    assert_eq!(
        open(buf(&reopen()), &stranger, None, NOW).unwrap_err(),
        OpenError::UnknownKey(signer().id())
    );

    let error = open(buf(&reopen()), &trusted(), None, EXPIRES + 1).unwrap_err();
    assert_eq!(
        error,
        OpenError::Expired {
            expires_at: EXPIRES,
            now: EXPIRES + 1
        }
    );

    let mut bad_signature = reopen();
    bad_signature[100] ^= 1;
    assert_eq!(
        open(buf(&bad_signature), &trusted(), None, NOW).unwrap_err(),
        OpenError::BadSignature
    );

    let mut bad_body = reopen();
    let last = bad_body.len() - 1;
    bad_body[last] ^= 1;
    assert_eq!(
        open(buf(&bad_body), &trusted(), None, NOW).unwrap_err(),
        OpenError::DigestMismatch
    );

    let mut longer = reopen();
    longer.push(0);
    assert_eq!(
        open(buf(&longer), &trusted(), None, NOW).unwrap_err(),
        OpenError::TrailingBytes { extra: 1 }
    );

    let mut bad_magic = reopen();
    bad_magic[0] = b'X';
    assert_eq!(
        open(buf(&bad_magic), &trusted(), None, NOW).unwrap_err(),
        OpenError::BadMagic
    );

    // Format 1 had 24-byte device digests (no machine id): refused, not
    // misread; so is a format from the future.
    for version in [1, FORMAT_VERSION + 1] {
        let mut other_format = reopen();
        other_format[8..10].copy_from_slice(&version.to_le_bytes());
        assert_eq!(
            open(buf(&other_format), &trusted(), None, NOW).unwrap_err(),
            OpenError::UnsupportedFormat(version)
        );
    }
}

#[test]
fn a_signed_body_that_is_not_a_snapshot_is_refused() {
    // The signature only says control sent it; structure checks must still
    // refuse a body that is not a valid full snapshot, without panicking.
    let params = SealParams {
        sequence: 1,
        kind: SnapshotKind::Full,
        created_at: NOW,
        expires_at: EXPIRES,
    };
    let delta_bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&DeltaBody::default()).unwrap();
    for body in [
        &b"not an archive at all"[..],
        &delta_bytes[..],
        &[0u8; 256][..],
    ] {
        let error = open(buf(&seal(body, &signer(), params)), &trusted(), None, NOW).unwrap_err();
        assert!(matches!(error, OpenError::MalformedBody(_)), "{error:?}");
    }
}

#[test]
fn applying_a_delta_twice_is_refused_not_doubled() {
    let state = open_full(seal_full(&small_entries(), 3), None);
    let mut delta = DeltaBody::default();
    let mut suspended = small_entries()[1].clone();
    suspended.status = LicenseStatus::Suspended;
    delta.upsert(suspended.clone());
    let bytes = delta.seal(&signer(), 3, 4, NOW, EXPIRES).unwrap();
    let Opened::Delta(first) = open(buf(&bytes), &trusted(), Some(3), NOW).unwrap() else {
        panic!()
    };
    let next = state.apply(first).unwrap();
    assert_eq!(
        next.license(&suspended.key_hash()).unwrap().status(),
        LicenseStatus::Suspended
    );
    assert_eq!(
        state.license(&suspended.key_hash()).unwrap().status(),
        LicenseStatus::Active
    );
    let error = open(buf(&bytes), &trusted(), Some(next.sequence()), NOW).unwrap_err();
    assert_eq!(
        error,
        OpenError::WrongBase {
            base: 3,
            held: Some(4)
        }
    );
}

#[test]
fn products_flags_and_config_come_through() {
    let state = open_full(seal_full(&small_entries(), 1), None);
    assert_eq!(
        state.product_by_slug("studio").unwrap().channels[0].version,
        "2.3.1"
    );
    let studio = state.product(1).unwrap();
    assert_eq!(studio.client.settings_json, r#"{"theme":"dark"}"#);
    assert_eq!(studio.heartbeat_interval_secs(state.config()), 300);
    assert_eq!(
        studio.grace_period_secs(None, state.config()),
        EdgeConfig::default().grace_period_secs,
        "no product grace: the edge configuration's"
    );
    assert_eq!(studio.grace_period_secs(Some(60), state.config()), 60);
    assert_eq!(state.flags()[0].rollout_percent, 50);
    assert_eq!(state.config(), &EdgeConfig::default());
    let mut delta = DeltaBody::default();
    let config = EdgeConfig {
        rate_limit_per_key_per_min: 5,
        ..EdgeConfig::default()
    };
    delta.config = Some(config);
    delta.products = Some(vec![]);
    let Opened::Delta(opened) = open(
        buf(&delta.seal(&signer(), 1, 2, NOW, EXPIRES).unwrap()),
        &trusted(),
        Some(1),
        NOW,
    )
    .unwrap() else {
        panic!()
    };
    let next = state.apply(opened).unwrap();
    assert_eq!(next.config().rate_limit_per_key_per_min, 5);
    assert!(next.product(1).is_none());
}
