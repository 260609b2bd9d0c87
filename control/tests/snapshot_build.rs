//! A full snapshot built from the database opens on an edge and says what the database says.

use latchkey_control::context::RequestContext;
use latchkey_control::db::devices::{self, LeaseIssuer, SeatRequest};
use latchkey_control::db::licenses::{self, NewLicense};
use latchkey_control::db::{MIGRATOR, snapshot};
use latchkey_control::secrets::Secrets;
use latchkey_shared::fingerprint::Fingerprint;
use latchkey_shared::snapshot::{LicenseStatus, Opened, SnapshotBuffer, SnapshotState, open};
use latchkey_shared::{LicenseKey, SigningKeyPair, TrustedKeys};
use sqlx::PgPool;
use time::OffsetDateTime;

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_snapshot_holds_licenses_devices_products_and_flags(pool: PgPool) {
    let ctx = RequestContext::system("test");
    let secrets = Secrets::new(&"s".repeat(40)).unwrap();
    let signer = SigningKeyPair::from_seed([5; 32]);
    let product_id: i32 = sqlx::query_scalar(
        "INSERT INTO products (slug, name) VALUES ('studio', 'Studio') RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO releases (product_id, version, channel, published_at) VALUES ($1, '2.4.0', 'stable', now())",
    )
    .bind(product_id)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO feature_flags (key, enabled, rollout_percent) VALUES ('new-ui', true, 25)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let new: NewLicense = serde_json::from_value(serde_json::json!({
        "product_id": product_id, "device_limit": 3, "features": ["sync"], "usage_limits": {"api_calls": 500}
    }))
    .unwrap();
    let created = licenses::create(&pool, &ctx, &secrets, &new, 20)
        .await
        .unwrap();
    let issuer = LeaseIssuer {
        signer: signer.clone(),
    };
    let fingerprint = Fingerprint {
        cpu_id: Some("cpu".into()),
        macs: vec!["02:00:00:00:00:01".into()],
        ..Default::default()
    }
    .canonicalize()
    .unwrap();
    let key: LicenseKey = created[0].license_key.parse().unwrap();
    let request = SeatRequest {
        key: key.into(),
        fingerprint: fingerprint.clone(),
        device_name: None,
        app_version: None,
        ip: None,
        idempotency_key: None,
    };
    devices::activate(&pool, &ctx, &issuer, &request)
        .await
        .unwrap();
    licenses::set_status(&pool, &ctx, created[1].license.id, LicenseStatus::Suspended)
        .await
        .unwrap();

    let now = OffsetDateTime::now_utc();
    let built = snapshot::build_full(&pool, &signer, now, snapshot::EXPORT_VALID_SECS)
        .await
        .unwrap();
    assert_eq!((built.sequence, built.licenses), (1, 20));
    let trusted = TrustedKeys::new().with(signer.verifying_key());
    let buffer = SnapshotBuffer::from_slice(&built.bytes).unwrap();
    let Ok(Opened::Full(full)) = open(buffer, &trusted, None, now.unix_timestamp()) else {
        panic!("opens")
    };
    let state = SnapshotState::new(full);
    let first = state.license(&key.hash()).expect("present");
    assert_eq!(first.license_id(), created[0].license.id);
    assert_eq!(first.devices().len(), 1);
    assert!(first.match_device(&fingerprint).is_same_machine());
    assert_eq!(first.features(), vec!["sync".to_owned()]);
    assert_eq!(first.usage_limits()[0].limit, 500);
    let second: LicenseKey = created[1].license_key.parse().unwrap();
    assert_eq!(
        state.license(&second.hash()).unwrap().status(),
        LicenseStatus::Suspended
    );
    assert_eq!(
        state.product_by_slug("studio").unwrap().channels[0].version,
        "2.4.0"
    );
    assert_eq!(state.flags()[0].rollout_percent, 25);

    let again = snapshot::build_full(&pool, &signer, now, snapshot::EXPORT_VALID_SECS)
        .await
        .unwrap();
    assert_eq!(again.sequence, 2, "each build takes the next sequence");
}
