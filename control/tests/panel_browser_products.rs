//! Products and flags in headless Chromium with a real edge linked to
//! control: a release published on the product page changes what the edge's
//! version check answers (and the page's preview says the same), a flag
//! turned on and off changes the edge's verify answer, and the flags page
//! shows the snapshot that carried the change and that the edge applied it.

#[allow(dead_code)]
mod support;

use std::time::Duration;

use latchkey_control::app::AppState;
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::admins::Role;
use latchkey_edge::RunningEdge;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::api::Api;
use support::browser::*;
use support::panel::admin;
use support::stack::{Stack, post, status_on, wait_for};
use support::{config, serve};

async fn version_check(edge: &RunningEdge, version: &str) -> Value {
    let body = json!({ "product": "studio", "version": version });
    post(edge, "/api/version/check", body).await.1
}

async fn verified_flags(edge: &RunningEdge, key: &str) -> Value {
    let (_, answer) = post(edge, "/api/license/verify", json!({ "license_key": key })).await;
    assert_eq!(answer["valid"], true, "{answer}");
    answer["flags"].clone()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_published_release_and_a_toggled_flag_reach_the_edge(pool: PgPool) {
    let driver = start_driver().await;
    let stack = Stack::start(pool.clone()).await;
    let (_, key) = Api::new(pool.clone())
        .await
        .license(json!({ "device_limit": 1 }))
        .await;
    let edge = stack.edge("edge-a", true).await;
    assert!(
        wait_for(Duration::from_secs(10), || status_on(&edge, &key).is_some())
            .await
            .is_some(),
        "the edge serves the license"
    );
    admin(&pool, "ada", Role::Admin).await;
    let base = serve(AppState::new(pool.clone(), &config(&[])).unwrap()).await;
    let browser = browser(&driver).await;
    log_in(&browser, &base, "ada").await;
    arrives(&browser, "/").await;

    browser.goto(&format!("{base}/products")).await.unwrap();
    screenshot(&browser, "products.png").await;
    click(&browser, ".product-row a").await;
    find(&browser, "#release-form").await;

    // A draft: the edge offers nothing newer.
    fill(&browser, "#release-version", "2.0").await;
    fill(
        &browser,
        "#release-url",
        "https://dl.example.com/studio/2.0.0",
    )
    .await;
    fill(&browser, "#release-notes", "Faster export").await;
    click(&browser, "#add-release").await;
    find(&browser, ".release-row .publish").await;
    assert_eq!(version_check(&edge, "1.0").await["latest"], Value::Null);

    click(&browser, ".release-row .publish").await;
    find(&browser, ".release-row .mark-min").await;
    screenshot(&browser, "products_product.png").await;
    let edge_ref = &edge;
    eventually(10, "the edge offering 2.0.0", || async move {
        version_check(edge_ref, "1.0").await["latest"] == "2.0.0"
    })
    .await;
    let answer = version_check(&edge, "1.0").await;
    assert_eq!(answer["update_available"], true, "{answer}");
    assert_eq!(answer["update_mandatory"], false, "{answer}");

    // The preview answers what the edge does.
    fill(&browser, "#preview-version", "1.0").await;
    click(&browser, "#preview-submit").await;
    assert!(
        text(&browser, "#preview-verdict")
            .await
            .starts_with("Update available"),
    );
    assert_eq!(text(&browser, "#preview-latest").await, "2.0.0");

    // The minimum: 1.0 must now update, on the edge and in the preview.
    click(&browser, ".release-row .mark-min").await;
    find(&browser, ".release-row .clear-min").await;
    eventually(10, "the edge requiring 2.0.0", || async move {
        version_check(edge_ref, "1.0").await["update_mandatory"] == true
    })
    .await;
    fill(&browser, "#preview-version", "1.0").await;
    click(&browser, "#preview-submit").await;
    assert!(
        text(&browser, "#preview-verdict")
            .await
            .starts_with("Update required"),
    );
    screenshot(&browser, "products_release_preview.png").await;

    // The client configuration: the edge answers it to the license's
    // client, and verify tells the product's heartbeat interval.
    fill(&browser, "#heartbeat_interval_secs", "300").await;
    fill(&browser, "#features", "export, sync").await;
    let settings = find(&browser, "#settings").await;
    settings.clear().await.unwrap();
    settings.send_keys(r#"{"theme": "dark"}"#).await.unwrap();
    click(&browser, "#save-config").await;
    find(&browser, "#config-form").await;
    let key_ref = key.as_str();
    eventually(
        10,
        "the edge answering the new configuration",
        || async move {
            let body = json!({ "license_key": key_ref });
            let (_, config) = post(edge_ref, "/api/license/config", body).await;
            config["heartbeat_interval_secs"] == 300 && config["settings"]["theme"] == "dark"
        },
    )
    .await;
    let body = json!({ "license_key": key_ref });
    let (_, config) = post(&edge, "/api/license/config", body).await;
    assert_eq!(config["features"], json!(["export", "sync"]), "{config}");
    assert_eq!(
        config["grace_period_secs"],
        7 * 86_400,
        "the edge configuration's"
    );
    let (_, verified) = post(
        &edge,
        "/api/license/verify",
        json!({ "license_key": key_ref }),
    )
    .await;
    assert_eq!(verified["heartbeat_interval_secs"], 300, "{verified}");

    // A global flag turned on: the edge's verify answer lists it.
    browser.goto(&format!("{base}/flags")).await.unwrap();
    screenshot(&browser, "flags_empty.png").await;
    fill(&browser, "#key", "new-editor").await;
    fill(&browser, "#description", "The rewritten editor").await;
    click(&browser, "input[name=enabled]").await;
    click(&browser, "#create-flag").await;
    find(&browser, ".flag-row .toggle").await;
    eventually(10, "the flag on at the edge", || async move {
        verified_flags(edge_ref, key_ref).await == json!(["new-editor"])
    })
    .await;

    // Turned off: gone from the answer, and the page shows the edge has it.
    click(&browser, ".flag-row .toggle").await;
    assert_eq!(text(&browser, ".flag-row .flag-state").await, "off");
    eventually(10, "the flag off at the edge", || async move {
        verified_flags(edge_ref, key_ref).await == json!([])
    })
    .await;
    let browser_ref = &browser;
    let flags_url = format!("{base}/flags");
    let flags_url = flags_url.as_str();
    eventually(
        10,
        "the page showing edge-a has the change",
        || async move {
            browser_ref.goto(flags_url).await.unwrap();
            text(browser_ref, "#edge-delivery .has-latest").await == "yes"
        },
    )
    .await;
    let carried = text(&browser, ".flag-change .carried-in").await;
    let applied = text(&browser, "#edge-delivery .applied").await;
    let number = |s: &str| s.trim_start_matches('#').parse::<i64>().unwrap();
    assert!(
        number(&applied) >= number(&carried),
        "{carried} / {applied}"
    );
    assert_eq!(text(&browser, ".flag-row .reach").await, "on for 0 of 1");
    screenshot(&browser, "flags.png").await;
}
