//! A license's pages in headless Chromium: a batch of 50 made from the form
//! and its keys downloaded as CSV, a refused CSV line shown at its field,
//! and a device deactivated from the license's page after confirming.
//! Screenshots `license*.png` land in `<target>/screenshots/`.

#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;

use base64::Engine;
use latchkey_control::app::AppState;
use latchkey_control::context::RequestContext;
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::admins::Role;
use latchkey_control::db::devices::{self, LeaseIssuer, SeatRequest};
use latchkey_control::db::licenses::{self, NewLicense};
use latchkey_shared::fingerprint::Fingerprint;
use latchkey_shared::{LicenseKey, SigningKeyPair};
use sqlx::PgPool;
use support::browser::*;
use support::panel::admin;
use support::{config, serve};
use uuid::Uuid;

async fn product(pool: &PgPool) -> i32 {
    sqlx::query_scalar("INSERT INTO products (slug, name) VALUES ('studio', 'Studio') RETURNING id")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Screenshots show the window: bring `css` to its top first.
async fn scroll_to(browser: &fantoccini::Client, css: &str) {
    browser
        .execute(
            "document.querySelector(arguments[0]).scrollIntoView();",
            vec![serde_json::json!(css)],
        )
        .await
        .unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_batch_of_fifty_is_made_and_its_keys_downloaded_as_csv(pool: PgPool) {
    let driver = start_driver().await;
    admin(&pool, "alice", Role::Admin).await;
    product(&pool).await;
    let base = serve(AppState::new(pool.clone(), &config(&[])).unwrap()).await;
    let browser = browser(&driver).await;
    log_in(&browser, &base, "alice").await;
    arrives(&browser, "/").await;

    // A bad line first, from a file read into the list: named by its
    // number, nothing made.
    let file = std::env::temp_dir().join(format!("customers-{}.csv", Uuid::new_v4()));
    std::fs::write(
        &file,
        "email,name\nada@example.com,Ada\nnot an address,Bob\n",
    )
    .unwrap();
    browser
        .goto(&format!("{base}/licenses/batch"))
        .await
        .unwrap();
    fill(&browser, "#customers-file", file.to_str().unwrap()).await;
    eventually(10, "the file in the list", || async {
        find(&browser, "#customers")
            .await
            .prop("value")
            .await
            .unwrap()
            .is_some_and(|value| value.contains("not an address"))
    })
    .await;
    std::fs::remove_file(&file).unwrap();
    click(&browser, "#batch-submit").await;
    let refusal = text(&browser, "#customers-error").await;
    assert!(refusal.contains("line 3: email"), "{refusal}");
    screenshot(&browser, "license_batch_refused.png").await;
    let none: i64 = sqlx::query_scalar("SELECT count(*) FROM licenses")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(none, 0);

    browser
        .goto(&format!("{base}/licenses/batch"))
        .await
        .unwrap();
    fill(&browser, "#count", "50").await;
    find(&browser, "#device_limit").await.clear().await.unwrap();
    fill(&browser, "#device_limit", "3").await;
    fill(&browser, "#features", "export").await;
    screenshot(&browser, "license_batch_form.png").await;
    click(&browser, "#batch-submit").await;
    assert_eq!(text(&browser, "#created-count").await, "50");
    screenshot(&browser, "license_batch_done.png").await;

    // The link's own CSV: what the browser saves.
    let href = find(&browser, "#download-keys")
        .await
        .attr("href")
        .await
        .unwrap()
        .expect("a download link");
    let encoded = href
        .strip_prefix("data:text/csv;charset=utf-8;base64,")
        .expect("the CSV in the page");
    let csv = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 50, "{csv}");
    for row in rows {
        let key: LicenseKey = row.split(',').next().unwrap().parse().unwrap();
        let limit: i32 =
            sqlx::query_scalar("SELECT device_limit FROM licenses WHERE key_hash = $1")
                .bind(&key.hash().0[..])
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(limit, 3, "each key is one of the batch");
    }
    let download = find(&browser, "#download-keys")
        .await
        .attr("download")
        .await
        .unwrap()
        .unwrap();
    assert!(download.starts_with("licenses-") && download.ends_with(".csv"));
    browser.close().await.unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_device_is_deactivated_from_the_license_page(pool: PgPool) {
    let driver = start_driver().await;
    admin(&pool, "alice", Role::Admin).await;
    let config = config(&[]);
    let product_id = product(&pool).await;
    let new: NewLicense = serde_json::from_value(serde_json::json!({
        "product_id": product_id, "device_limit": 2, "session_limit": 1,
        "features": ["export"], "usage_limits": { "exports": 500 },
    }))
    .unwrap();
    let ctx = RequestContext::system("test");
    let created = licenses::create(&pool, &ctx, &config.secrets().unwrap(), &new, 1)
        .await
        .unwrap();
    let id = created[0].license.id;
    let issuer = LeaseIssuer {
        signer: SigningKeyPair::from_seed([9; 32]),
    };
    let seat = SeatRequest {
        key: created[0].license_key.parse().unwrap(),
        fingerprint: Fingerprint {
            system_uuid: Some(Uuid::from_u128(7).to_string()),
            machine_id: None,
            cpu_id: Some("Intel i7-1185G7".into()),
            macs: vec!["02:00:00:00:00:07".into()],
            extra: BTreeMap::new(),
        }
        .canonicalize()
        .unwrap(),
        device_name: Some("ada-laptop".into()),
        app_version: Some("2.4.0".into()),
        ip: Some("203.0.113.9".parse().unwrap()),
        idempotency_key: None,
    };
    let device = devices::activate(&pool, &ctx, &issuer, &seat)
        .await
        .unwrap()
        .device_id;
    let base = serve(AppState::new(pool.clone(), &config).unwrap()).await;
    let browser = browser(&driver).await;
    log_in(&browser, &base, "alice").await;
    arrives(&browser, "/").await;

    browser
        .goto(&format!("{base}/licenses/{id}"))
        .await
        .unwrap();
    assert!(
        text(&browser, "#license-device-limit")
            .await
            .contains("1 of 2")
    );
    screenshot(&browser, "license.png").await;
    scroll_to(&browser, "#devices").await;
    screenshot(&browser, "license_devices.png").await;
    click(&browser, &format!("#device-{device} button.deactivate")).await;
    // htmx asks first (hx-confirm); the dialog may take a moment to open.
    eventually(10, "the confirmation", || async {
        browser.accept_alert().await.is_ok()
    })
    .await;
    eventually(10, "the device to be deactivated", || async {
        text(&browser, &format!("#device-{device} .status"))
            .await
            .starts_with("deactivated")
    })
    .await;
    assert!(
        text(&browser, "#license-device-limit")
            .await
            .contains("0 of 2")
    );
    assert!(text(&browser, "#seat-changes").await.contains("deactivate"));
    scroll_to(&browser, "#devices").await;
    screenshot(&browser, "license_device_deactivated.png").await;
    let status: String = sqlx::query_scalar("SELECT status FROM devices WHERE id = $1")
        .bind(device)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "deactivated");

    // Another machine's seat, and the form that moves it.
    let mut other = seat.clone();
    other.fingerprint = Fingerprint {
        machine_id: Some("d3adb33fd3adb33fd3adb33f".into()),
        ..Fingerprint::default()
    }
    .canonicalize()
    .unwrap();
    other.device_name = Some("studio-mac".into());
    let other = devices::activate(&pool, &ctx, &issuer, &other)
        .await
        .unwrap()
        .device_id;
    browser
        .goto(&format!("{base}/licenses/{id}"))
        .await
        .unwrap();
    click(&browser, &format!("#device-{other} a.transfer")).await;
    assert_eq!(text(&browser, "#transfer-from").await, "studio-mac");
    fill(&browser, "#machine_id", "short").await;
    click(&browser, "#transfer-submit").await;
    find(&browser, "#machine_id-error").await;
    screenshot(&browser, "license_transfer_refused.png").await;

    // The edit form, refused at its field.
    browser
        .goto(&format!("{base}/licenses/{id}/edit"))
        .await
        .unwrap();
    find(&browser, "#device_limit").await.clear().await.unwrap();
    fill(&browser, "#device_limit", "-4").await;
    click(&browser, "#license-submit").await;
    assert!(
        text(&browser, "#device_limit-error")
            .await
            .contains("between 0 and")
    );
    screenshot(&browser, "license_form_refused.png").await;
    browser.close().await.unwrap();
}
