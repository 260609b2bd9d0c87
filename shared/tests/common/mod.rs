//! Strategies and fixtures shared by the property tests.
// Each test binary uses part of this module.
#![allow(dead_code)]

use latchkey_shared::LicenseKey;
use latchkey_shared::fingerprint::{DeviceDigest, Fingerprint};
use latchkey_shared::key::ENTROPY_BYTES;
use latchkey_shared::signing::{SigningKeyPair, TrustedKeys};
use latchkey_shared::snapshot::{LicenseEntry, LicenseKind, LicenseStatus, Policy, UsageLimit};
use proptest::prelude::*;
use uuid::Uuid;

pub const NOW: i64 = 1_790_000_000;

pub fn signer() -> SigningKeyPair {
    SigningKeyPair::from_seed([7; 32])
}

pub fn trusted() -> TrustedKeys {
    TrustedKeys::new().with(signer().verifying_key())
}

pub fn device(seed: u8) -> [u8; DeviceDigest::BYTES] {
    Fingerprint {
        cpu_id: Some(format!("cpu-{seed}")),
        macs: vec![format!("02:00:00:00:00:{seed:02x}")],
        ..Default::default()
    }
    .canonicalize()
    .expect("valid fingerprint")
    .digest()
    .to_bytes()
}

pub fn entry_for(key: &LicenseKey, n: u32) -> LicenseEntry {
    LicenseEntry {
        key_hash: key.hash().0,
        license_id: Uuid::from_u128(u128::from(n) + 1),
        status: LicenseStatus::Active,
        kind: LicenseKind::Full,
        valid_from: NOW - 86_400,
        valid_until: Some(NOW + 86_400 * 365),
        product_id: 1 + n % 3,
        device_limit: 3,
        session_limit: 1,
        usage_exhausted: false,
        devices: vec![device(n as u8), device(n.wrapping_add(1) as u8)],
        policy: Policy {
            features: vec!["export".into(), "sync".into()],
            usage_limits: vec![UsageLimit {
                metric: "api_calls".into(),
                limit: 10_000,
            }],
            allow_session_takeover: n.is_multiple_of(2),
            grace_period_secs: None,
        },
    }
}

prop_compose! {
    pub fn arb_policy()(
        features in prop::collection::vec("[a-z]{1,8}", 0..4),
        limit in prop::option::of(0u64..1_000_000),
        allow_session_takeover in any::<bool>(),
        grace_period_secs in prop::option::of(0u32..1_000_000),
    ) -> Policy {
        Policy {
            features,
            usage_limits: limit.map(|limit| UsageLimit { metric: "calls".into(), limit }).into_iter().collect(),
            allow_session_takeover,
            grace_period_secs,
        }
    }
}

prop_compose! {
    pub fn arb_entry()(
        entropy in any::<[u8; ENTROPY_BYTES]>(),
        id in any::<u128>(),
        status in prop_oneof![Just(LicenseStatus::Active), Just(LicenseStatus::Suspended), Just(LicenseStatus::Revoked)],
        kind in prop_oneof![Just(LicenseKind::Full), Just(LicenseKind::Trial), Just(LicenseKind::Test)],
        valid_from in -1_000_000_000i64..4_000_000_000,
        valid_until in prop::option::of(-1_000_000_000i64..4_000_000_000),
        product_id in any::<u32>(),
        device_limit in any::<u32>(),
        session_limit in any::<u16>(),
        usage_exhausted in any::<bool>(),
        devices in prop::collection::vec(any::<[u8; DeviceDigest::BYTES]>(), 0..4),
        policy in arb_policy(),
    ) -> LicenseEntry {
        LicenseEntry {
            key_hash: LicenseKey::from_entropy(entropy).hash().0,
            license_id: Uuid::from_u128(id),
            status, kind, valid_from, valid_until, product_id, device_limit, session_limit,
            usage_exhausted, devices, policy,
        }
    }
}
