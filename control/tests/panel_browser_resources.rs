//! Resource pools in headless Chromium: paste a /24 and see 256 free,
//! allocate 3 to a license and see them among the license's resources,
//! then a resource's page with its history; a viewer sees no controls.
//! Screenshots `resources*.png`
//! in `<target>/screenshots/`.

#[allow(dead_code)]
mod support;

use fantoccini::Locator;
use latchkey_control::app::AppState;
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::admins::Role;
use serde_json::json;
use sqlx::PgPool;
use support::api::Api;
use support::browser::*;
use support::panel::admin;
use support::{config, serve};

#[sqlx::test(migrator = "MIGRATOR")]
async fn paste_a_slash_24_then_allocate_three_to_a_license(pool: PgPool) {
    let driver = start_driver().await;
    admin(&pool, "alice", Role::Admin).await;
    let state = AppState::new(pool.clone(), &config(&[])).unwrap();
    let api = Api::with_state(state.clone()).await;
    let (license_id, _) = api.license(json!({})).await;
    let base = serve(state).await;
    let browser = browser(&driver).await;
    log_in(&browser, &base, "alice").await;
    arrives(&browser, "/").await;

    browser.goto(&format!("{base}/resources")).await.unwrap();
    assert_eq!(text(&browser, "#pool-ip .free-count").await, "0");
    assert!(
        text(&browser, "#resources")
            .await
            .contains("No resources yet.")
    );
    screenshot(&browser, "resources_empty.png").await;

    // A malformed line first: nothing is added, the line is named.
    click(&browser, "#bulk-add summary").await;
    find(&browser, "#bulk-kind option[value=ip]")
        .await
        .click()
        .await
        .unwrap();
    fill(&browser, "#bulk-values", "198.51.100.0/24\n198.51.100.300").await;
    click(&browser, "#bulk-submit").await;
    let bad = text(&browser, "#line-2").await;
    assert!(bad.contains("Malformed"), "{bad}");
    assert_eq!(text(&browser, "#pool-ip .free-count").await, "0");
    screenshot(&browser, "resources_refused.png").await;
    browser
        .execute(
            "document.getElementById('bulk-form').scrollIntoView()",
            vec![],
        )
        .await
        .unwrap();
    screenshot(&browser, "resources_refused_form.png").await;

    // The paste is kept: take the bad line out and add again.
    let values = find(&browser, "#bulk-values").await;
    values.clear().await.unwrap();
    values.send_keys("198.51.100.0/24").await.unwrap();
    click(&browser, "#bulk-submit").await;
    eventually(10, "the report of the added block", || async {
        browser
            .find(Locator::Css("#bulk-report h2"))
            .await
            .ok()
            .is_some()
            && text(&browser, "#bulk-report h2").await == "Added 256 to IP addresses"
    })
    .await;
    assert_eq!(text(&browser, "#pool-ip .free-count").await, "256");
    assert_eq!(text(&browser, "#pool-ip .utilisation").await, "0.0%");
    screenshot(&browser, "resources_added.png").await;

    // Allocate 3 to the license; they are listed as the license's.
    browser.goto(&format!("{base}/resources")).await.unwrap();
    click(&browser, "#allocate summary").await;
    fill(&browser, "#allocate-license", &license_id).await;
    find(&browser, "#allocate-kind option[value=ip]")
        .await
        .click()
        .await
        .unwrap();
    let count = find(&browser, "#allocate-count").await;
    count.clear().await.unwrap();
    count.send_keys("3").await.unwrap();
    click(&browser, "#allocate-submit").await;
    find(&browser, "#allocated-banner").await;
    assert_eq!(text(&browser, "#license-filter").await, license_id);
    let listed = browser
        .find_all(Locator::Css("#resources .resource-row"))
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    for row in &listed {
        let row = row.text().await.unwrap();
        assert!(
            row.contains("allocated") && row.contains(&license_id),
            "{row}"
        );
    }
    assert_eq!(text(&browser, "#pool-ip .free-count").await, "253");
    assert_eq!(text(&browser, "#pool-ip .allocated-count").await, "3");
    assert_eq!(text(&browser, "#pool-ip .utilisation").await, "1.2%");
    screenshot(&browser, "resources_license.png").await;
    // And on the license's own page.
    browser
        .goto(&format!("{base}/licenses/{license_id}"))
        .await
        .unwrap();
    let on_license = browser
        .find_all(Locator::Css("#license-resources tr:not(.empty) code"))
        .await
        .unwrap();
    assert_eq!(on_license.len(), 3, "the license page lists its three");
    for value in &on_license {
        let value = value.text().await.unwrap();
        assert!(value.starts_with("198.51.100."), "{value}");
    }
    screenshot(&browser, "license_resources.png").await;
    browser
        .goto(&format!("{base}/resources?license={license_id}"))
        .await
        .unwrap();

    // One of them: its page and history, then released into quarantine.
    click(&browser, "#resources .resource-row a").await;
    find(&browser, "#release-form").await;
    fill(&browser, "#release-days", "14").await;
    click(&browser, "#release-submit").await;
    eventually(10, "the release", || async {
        text(&browser, "#resource-status").await == "quarantined"
    })
    .await;
    let history = text(&browser, "#history").await;
    for action in ["added", "allocated", "released", "quarantined"] {
        assert!(history.contains(action), "{history}");
    }
    screenshot(&browser, "resources_history.png").await;
    browser.close().await.unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_viewer_sees_the_pools_without_controls(pool: PgPool) {
    let driver = start_driver().await;
    admin(&pool, "victor", Role::Viewer).await;
    let state = AppState::new(pool.clone(), &config(&[])).unwrap();
    let api = Api::with_state(state.clone()).await;
    let (license_id, _) = api.license(json!({})).await;
    api.post(
        &format!("{}/resources", support::api::V1),
        json!({ "kind": "phone", "values": ["+4930123400", "+4930123401", "+4930123402"] }),
    )
    .await;
    api.post(
        &format!("{}/licenses/{license_id}/resources", support::api::V1),
        json!({ "kind": "phone", "count": 2 }),
    )
    .await;
    let base = serve(state).await;
    let browser = browser(&driver).await;
    log_in(&browser, &base, "victor").await;
    arrives(&browser, "/").await;

    browser.goto(&format!("{base}/resources")).await.unwrap();
    assert_eq!(text(&browser, "#pool-phone .allocated-count").await, "2");
    assert_eq!(text(&browser, "#pool-phone .utilisation").await, "66.7%");
    for control in ["#bulk-form", "#allocate-form"] {
        assert!(
            browser.find(Locator::Css(control)).await.is_err(),
            "no {control} for a viewer"
        );
    }
    screenshot(&browser, "resources_viewer.png").await;
    click(&browser, "#resources .resource-row a").await;
    find(&browser, "#history").await;
    assert!(
        browser.find(Locator::Css("#release-form")).await.is_err(),
        "no release for a viewer"
    );
    browser.close().await.unwrap();
}
