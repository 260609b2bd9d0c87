//! The license list in headless Chromium: a quick edit of a row's valid
//! until in place, and a bulk suspension by filter that real edges, linked
//! to control over QUIC, then refuse. Screenshots `licenses*.png` land in
//! `<target>/screenshots/`.

#[allow(dead_code)]
mod support;

use std::time::Duration;

use axum::http::StatusCode;
use latchkey_control::app::AppState;
use latchkey_control::context::RequestContext;
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::admins::Role;
use latchkey_control::db::licenses::{self, NewLicense};
use latchkey_control::secrets::Secrets;
use latchkey_shared::snapshot::LicenseStatus;
use serde_json::json;
use sqlx::PgPool;
use support::browser::*;
use support::panel::admin;
use support::stack::{Stack, post, status_on, wait_for};
use support::{config, serve};
use uuid::Uuid;

async fn product(pool: &PgPool, slug: &str, name: &str) -> i32 {
    sqlx::query_scalar("INSERT INTO products (slug, name) VALUES ($1, $2) RETURNING id")
        .bind(slug)
        .bind(name)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// `count` licenses of a product: their ids and keys.
async fn licenses_of(pool: &PgPool, product_id: i32, count: usize) -> Vec<(Uuid, String)> {
    let new: NewLicense = serde_json::from_value(json!({
        "product_id": product_id,
        "device_limit": 2,
        "valid_until": "2030-01-01T00:00:00Z",
    }))
    .unwrap();
    licenses::create(
        pool,
        &RequestContext::system("test"),
        &Secrets::new(&"s".repeat(48)).unwrap(),
        &new,
        count,
    )
    .await
    .unwrap()
    .into_iter()
    .map(|created| (created.license.id, created.license_key))
    .collect()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn quick_edit_a_licenses_valid_until_in_the_list(pool: PgPool) {
    let driver = start_driver().await;
    admin(&pool, "alice", Role::Admin).await;
    let studio = product(&pool, "studio", "Studio").await;
    let ids = licenses_of(&pool, studio, 3).await;
    let (id, _) = &ids[1];
    let base = serve(AppState::new(pool.clone(), &config(&[])).unwrap()).await;
    let browser = browser(&driver).await;
    log_in(&browser, &base, "alice").await;
    arrives(&browser, "/").await;
    browser.goto(&format!("{base}/licenses")).await.unwrap();
    find(&browser, "#licenses").await;
    screenshot(&browser, "licenses.png").await;

    let row = format!("#license-{id}");
    click(&browser, &format!("{row} .quick-edit")).await;
    let input = find(&browser, "#quick-valid-until").await;
    assert_eq!(
        input.prop("value").await.unwrap().as_deref(),
        Some("2030-01-01 00:00")
    );
    input.clear().await.unwrap();
    input.send_keys("next spring").await.unwrap();
    click(&browser, "#quick-save").await;
    let error = text(&browser, "#valid-until-error").await;
    assert!(error.contains("must be a date like"), "{error}");
    screenshot(&browser, "licenses-quick-edit-error.png").await;

    let input = find(&browser, "#quick-valid-until").await;
    input.clear().await.unwrap();
    input.send_keys("2031-05-17").await.unwrap();
    click(&browser, "#quick-save").await;
    eventually(10, "the saved row", || async {
        browser
            .find(fantoccini::Locator::Css(&format!("{row} .valid-until")))
            .await
            .ok()
            .is_some()
    })
    .await;
    assert_eq!(
        text(&browser, &format!("{row} .valid-until")).await,
        "2031-05-17 23:59:59 UTC"
    );
    assert_eq!(path(&browser).await, "/licenses", "edited in place");
    screenshot(&browser, "licenses-quick-edit.png").await;
    let saved = licenses::get(&pool, *id).await.unwrap();
    assert_eq!(saved.valid_until.unwrap().date().to_string(), "2031-05-17");
    // The other rows are untouched.
    for (other, _) in [&ids[0], &ids[2]] {
        let license = licenses::get(&pool, *other).await.unwrap();
        assert_eq!(license.valid_until.unwrap().year(), 2030);
    }
    browser.close().await.unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn bulk_suspend_by_filter_and_the_edges_refuse_those_keys(pool: PgPool) {
    let driver = start_driver().await;
    admin(&pool, "alice", Role::Admin).await;
    let studio = product(&pool, "studio", "Studio").await;
    let player = product(&pool, "player", "Player").await;
    let suspended = licenses_of(&pool, studio, 3).await;
    let (_, spared) = licenses_of(&pool, player, 1).await.remove(0);
    // The panel and the link share the pool, as in one control process.
    let stack = Stack::start(pool.clone()).await;
    let edge = stack.edge("edge-a", true).await;
    wait_for(Duration::from_secs(10), || {
        suspended
            .iter()
            .all(|(_, key)| status_on(&edge, key) == Some(LicenseStatus::Active))
    })
    .await
    .expect("the edge serves the licenses");

    let base = serve(AppState::new(pool.clone(), &config(&[])).unwrap()).await;
    let browser = browser(&driver).await;
    log_in(&browser, &base, "alice").await;
    arrives(&browser, "/").await;
    browser.goto(&format!("{base}/licenses")).await.unwrap();
    find(&browser, "#filter-product")
        .await
        .select_by_label("Studio")
        .await
        .unwrap();
    click(&browser, "#apply-filters").await;
    eventually(10, "the filtered list", || async {
        browser.current_url().await.is_ok_and(|url| {
            url.query()
                .unwrap_or("")
                .contains(&format!("product={studio}"))
        })
    })
    .await;
    click(&browser, "#scope-matching").await;
    find(&browser, "#bulk-op")
        .await
        .select_by_value("suspend")
        .await
        .unwrap();
    screenshot(&browser, "licenses-filtered.png").await;
    click(&browser, "#bulk-preview").await;
    assert_eq!(
        text(&browser, "#bulk-confirm").await,
        "Suspend 3 license(s)?"
    );
    screenshot(&browser, "licenses-bulk-confirm.png").await;
    click(&browser, "#bulk-apply").await;
    assert_eq!(
        text(&browser, "#bulk-done").await,
        "Suspended 3 license(s)."
    );
    screenshot(&browser, "licenses-bulk-done.png").await;

    wait_for(Duration::from_secs(5), || {
        suspended
            .iter()
            .all(|(_, key)| status_on(&edge, key) == Some(LicenseStatus::Suspended))
    })
    .await
    .expect("the suspensions reached the edge");
    for (_, key) in &suspended {
        let (status, answer) =
            post(&edge, "/api/license/verify", json!({ "license_key": key })).await;
        assert_eq!(
            (status, answer["code"].clone()),
            (StatusCode::OK, json!("LICENSE_SUSPENDED")),
            "{answer}"
        );
    }
    let (status, answer) = post(
        &edge,
        "/api/license/verify",
        json!({ "license_key": spared }),
    )
    .await;
    assert_eq!(
        (status, answer["valid"].clone()),
        (StatusCode::OK, json!(true)),
        "{answer}"
    );

    // Back in the list, the rows say so.
    browser
        .goto(&format!("{base}/licenses?product={studio}"))
        .await
        .unwrap();
    find(&browser, "#licenses").await;
    for (id, _) in &suspended {
        assert_eq!(
            text(&browser, &format!("#license-{id} .status")).await,
            "suspended"
        );
    }
    screenshot(&browser, "licenses-suspended.png").await;
    browser.close().await.unwrap();
    edge.stop().await;
}
