//! Demo data for trying Latchkey out: a product with releases, a customer
//! and licenses of every kind and state, created through the same services
//! the admin API uses (so they are audited and reach the snapshot outbox).

use latchkey_shared::snapshot::{LicenseKind, LicenseStatus};
use sqlx::PgPool;
use time::{Duration, OffsetDateTime};

use crate::context::RequestContext;
use crate::db::customers::{self, NewCustomer};
use crate::db::licenses::{self, NewLicense};
use crate::db::products::{self, NewProduct, NewRelease};
use crate::error::DomainResult;
use crate::secrets::Secrets;

/// A demo license and its key, for the run script to print.
#[derive(Debug, Clone)]
pub struct DemoLicense {
    pub key: String,
    pub kind: LicenseKind,
    pub status: LicenseStatus,
    pub expired: bool,
}

/// Seeds the demo product "studio" (2.4.0 stable, 2.5.0-beta.1 beta, 2.0.0
/// the oldest allowed), a customer, and `count` licenses: full ones with two
/// seats and one session, then a trial, a suspended and an expired one.
pub async fn seed(
    pool: &PgPool,
    secrets: &Secrets,
    count: usize,
) -> DomainResult<Vec<DemoLicense>> {
    let ctx = RequestContext::system("demo");
    let product = products::create(
        pool,
        &ctx,
        &NewProduct {
            slug: "studio".into(),
            name: "Latchkey Studio (demo)".into(),
            description: None,
        },
    )
    .await?;
    for (version, channel) in [
        ("2.0.0", "stable"),
        ("2.4.0", "stable"),
        ("2.5.0-beta.1", "beta"),
    ] {
        let release = products::add_release(
            pool,
            &ctx,
            product.id,
            &NewRelease {
                version: version.into(),
                channel: channel.into(),
                download_url: Some(format!("https://downloads.example.com/studio/{version}")),
                notes: None,
            },
        )
        .await?;
        products::publish(pool, &ctx, release.id).await?;
        if version == "2.0.0" {
            products::mark_min_allowed(pool, &ctx, release.id).await?;
        }
    }
    let customer = customers::create(
        pool,
        &ctx,
        NewCustomer {
            name: "Demo Customer".into(),
            email: Some("it@demo-customer.example".into()),
            company: Some("Demo Customer Ltd".into()),
            notes: None,
            metadata: None,
        },
    )
    .await?;
    let now = OffsetDateTime::now_utc();
    let template = |kind: LicenseKind, valid_until: OffsetDateTime| NewLicense {
        customer_id: Some(customer.id),
        product_id: product.id,
        kind,
        valid_from: Some(now - Duration::days(30)),
        valid_until: Some(valid_until),
        device_limit: 2,
        session_limit: 1,
        allow_session_takeover: true,
        grace_period_secs: None,
        seat_change_limit: licenses::DEFAULT_SEAT_CHANGE_LIMIT,
        seat_change_window_secs: licenses::DEFAULT_SEAT_CHANGE_WINDOW_SECS,
        features: if kind == LicenseKind::Full {
            vec!["export".into(), "sync".into()]
        } else {
            vec![]
        },
        usage_limits: Default::default(),
        metadata: serde_json::json!({ "demo": true }),
    };
    let mut seeded = Vec::with_capacity(count.max(3));
    let full = licenses::create(
        pool,
        &ctx,
        secrets,
        &template(LicenseKind::Full, now + Duration::days(365)),
        count.max(1),
    )
    .await?;
    seeded.extend(full.into_iter().map(|c| DemoLicense {
        key: c.license_key,
        kind: LicenseKind::Full,
        status: LicenseStatus::Active,
        expired: false,
    }));
    let trial = licenses::create(
        pool,
        &ctx,
        secrets,
        &template(LicenseKind::Trial, now + Duration::days(14)),
        1,
    )
    .await?;
    seeded.push(DemoLicense {
        key: trial[0].license_key.clone(),
        kind: LicenseKind::Trial,
        status: LicenseStatus::Active,
        expired: false,
    });
    let suspended = licenses::create(
        pool,
        &ctx,
        secrets,
        &template(LicenseKind::Full, now + Duration::days(365)),
        1,
    )
    .await?;
    licenses::set_status(
        pool,
        &ctx,
        suspended[0].license.id,
        LicenseStatus::Suspended,
    )
    .await?;
    seeded.push(DemoLicense {
        key: suspended[0].license_key.clone(),
        kind: LicenseKind::Full,
        status: LicenseStatus::Suspended,
        expired: false,
    });
    let expired = licenses::create(
        pool,
        &ctx,
        secrets,
        &template(LicenseKind::Full, now - Duration::days(1)),
        1,
    )
    .await?;
    seeded.push(DemoLicense {
        key: expired[0].license_key.clone(),
        kind: LicenseKind::Full,
        status: LicenseStatus::Active,
        expired: true,
    });
    Ok(seeded)
}
