//! Demo data: a product and a set of licenses, for trying Latchkey out.

use latchkey_shared::LicenseKey;
use latchkey_shared::snapshot::{
    ChannelRelease, EdgeConfig, LicenseEntry, LicenseKind, LicenseStatus, Policy, Product,
    SnapshotBuilder,
};
use uuid::Uuid;

pub const DEMO_PRODUCT_ID: u32 = 1;

/// The demo product: "Studio", 2.4.0 on stable, 2.5.0-beta.1 on beta, 2.0.0 the oldest allowed.
pub fn product(now: i64) -> Product {
    Product {
        id: DEMO_PRODUCT_ID,
        slug: "studio".into(),
        name: "Latchkey Studio (demo)".into(),
        min_allowed_version: Some("2.0.0".into()),
        channels: vec![
            ChannelRelease {
                channel: "stable".into(),
                version: "2.4.0".into(),
                download_url: Some("https://downloads.example.com/studio/2.4.0".into()),
                published_at: now - 7 * 86_400,
            },
            ChannelRelease {
                channel: "beta".into(),
                version: "2.5.0-beta.1".into(),
                download_url: Some("https://downloads.example.com/studio/2.5.0-beta.1".into()),
                published_at: now - 86_400,
            },
        ],
    }
}

/// `count` demo licenses with fresh keys: a mix of kinds, one suspended in
/// every ten, one expired in every ten. Returns each key with its entry.
pub fn licenses(count: usize, now: i64) -> Vec<(LicenseKey, LicenseEntry)> {
    (0..count)
        .map(|i| {
            let key = LicenseKey::generate();
            let kind = match i % 5 {
                3 => LicenseKind::Trial,
                4 => LicenseKind::Test,
                _ => LicenseKind::Full,
            };
            let entry = LicenseEntry {
                key_hash: key.hash().0,
                license_id: Uuid::new_v4(),
                status: if i % 10 == 7 {
                    LicenseStatus::Suspended
                } else {
                    LicenseStatus::Active
                },
                kind,
                valid_from: now - 30 * 86_400,
                valid_until: Some(if i % 10 == 8 {
                    now - 86_400
                } else {
                    now + 365 * 86_400
                }),
                product_id: DEMO_PRODUCT_ID,
                device_limit: 3,
                session_limit: 1,
                usage_exhausted: false,
                devices: Vec::new(),
                policy: Policy {
                    features: if kind == LicenseKind::Full {
                        vec!["export".into(), "sync".into()]
                    } else {
                        vec![]
                    },
                    usage_limits: Vec::new(),
                    allow_session_takeover: true,
                    grace_period_secs: None,
                },
            };
            (key, entry)
        })
        .collect()
}

/// A builder holding the demo product and `licenses`.
pub fn snapshot_builder(
    licenses: &[(LicenseKey, LicenseEntry)],
    now: i64,
) -> anyhow::Result<SnapshotBuilder> {
    let mut builder = SnapshotBuilder::with_capacity(EdgeConfig::default(), licenses.len());
    builder.add_product(product(now));
    for (_, entry) in licenses {
        builder.add_license(entry)?;
    }
    Ok(builder)
}
