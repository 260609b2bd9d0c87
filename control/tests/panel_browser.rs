//! The admin panel in headless Chromium, driven through chromedriver with
//! fantoccini: each test starts chromedriver on a free port and a control
//! server in-process on another, over a fresh database. Screenshots land in
//! `<target>/screenshots/`.
//!
//! Needs the Debian packages `chromium` and `chromium-driver`
//! (`deploy/local/test.sh` installs them); without them these tests fail
//! with a message saying so.

#[allow(dead_code)]
mod support;

use std::time::Duration;

use axum::http::StatusCode;
use fantoccini::Locator;
use latchkey_control::app::AppState;
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::admins::Role;
use serde_json::json;
use sqlx::PgPool;
use support::api::{Api, V1};
use support::browser::*;
use support::panel::admin;
use support::{config, serve};
use totp_rs::{Builder, Secret};

#[sqlx::test(migrator = "MIGRATOR")]
async fn log_in_with_totp_and_watch_the_dashboard_follow_the_api(pool: PgPool) {
    let driver = start_driver().await;
    admin(&pool, "alice", Role::Admin).await;
    let state = AppState::new(
        pool.clone(),
        &config(&[("LATCHKEY_PANEL_DASHBOARD_REFRESH_SECS", "1")]),
    )
    .unwrap();
    let base = serve(state.clone()).await;
    let browser = browser(&driver).await;

    browser.goto(&format!("{base}/")).await.unwrap();
    assert_eq!(path(&browser).await, "/login", "no session: the login page");
    screenshot(&browser, "login.png").await;
    log_in(&browser, &base, "alice").await;
    arrives(&browser, "/").await;

    // Enrol: read the secret off the page, answer with the current code.
    browser.goto(&format!("{base}/settings/2fa")).await.unwrap();
    find(&browser, "#totp-qr").await;
    screenshot(&browser, "totp_enrol.png").await;
    let secret = text(&browser, "#totp-secret").await;
    let totp = Builder::new()
        .with_secret(Secret::try_from_base32(&secret).unwrap())
        .build()
        .unwrap();
    fill(&browser, "#totp-code", &totp.generate_current().to_string()).await;
    click(&browser, "#totp-submit").await;
    let codes = text(&browser, "#recovery-codes").await;
    assert_eq!(
        codes.lines().filter(|line| !line.trim().is_empty()).count(),
        10,
        "{codes}"
    );

    // Log out, log in again: password, then a code computed here.
    click(&browser, "#logout").await;
    arrives(&browser, "/login").await;
    log_in(&browser, &base, "alice").await;
    arrives(&browser, "/login/2fa").await;
    fill(&browser, "#code", &totp.generate_current().to_string()).await;
    click(&browser, "#code-submit").await;
    arrives(&browser, "/").await;

    // A license created through the admin JSON API shows up in place.
    let before: u64 = text(&browser, "#stat-active_licenses")
        .await
        .parse()
        .unwrap();
    assert!(
        browser.find(Locator::Css("#no-2fa")).await.is_err(),
        "2FA is on: no banner"
    );
    // A reload would lose this: the number must change in the page as it is.
    browser
        .execute("window.lkMarker = 42;", vec![])
        .await
        .unwrap();
    eventually(10, "the live stream", || async {
        text(&browser, "#live-status").await.starts_with("updated")
    })
    .await;
    let api = Api::with_state(state.clone()).await;
    let product_id = api.product("studio").await;
    api.post(
        &format!("{V1}/licenses"),
        json!({ "product_id": product_id, "count": 3 }),
    )
    .await
    .ok(StatusCode::CREATED);
    eventually(15, "the dashboard to count the new licenses", || async {
        text(&browser, "#stat-active_licenses").await == (before + 3).to_string()
    })
    .await;
    assert_eq!(
        browser
            .execute("return window.lkMarker;", vec![])
            .await
            .unwrap(),
        json!(42),
        "updated in place, no reload"
    );
    screenshot(&browser, "dashboard.png").await;
    browser.close().await.unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_idle_session_is_logged_out(pool: PgPool) {
    let driver = start_driver().await;
    admin(&pool, "alice", Role::Admin).await;
    let state = AppState::new(
        pool.clone(),
        &config(&[("LATCHKEY_PANEL_IDLE_TIMEOUT_SECS", "3")]),
    )
    .unwrap();
    let base = serve(state).await;
    let browser = browser(&driver).await;
    log_in(&browser, &base, "alice").await;
    arrives(&browser, "/").await;
    browser.goto(&format!("{base}/audit")).await.unwrap();
    assert_eq!(path(&browser).await, "/audit", "still active");
    // The dashboard's stream does not count as use: stay on it past the timeout.
    browser.goto(&format!("{base}/")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    browser.goto(&format!("{base}/settings")).await.unwrap();
    assert_eq!(path(&browser).await, "/login", "logged out after 3 s idle");
    browser.close().await.unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_viewer_cannot_reach_a_mutating_form(pool: PgPool) {
    let driver = start_driver().await;
    admin(&pool, "victor", Role::Viewer).await;
    let state = AppState::new(pool.clone(), &config(&[])).unwrap();
    let base = serve(state).await;
    let browser = browser(&driver).await;
    log_in(&browser, &base, "victor").await;
    arrives(&browser, "/").await;
    browser.goto(&format!("{base}/blocked-ips")).await.unwrap();
    find(&browser, "#blocks").await;
    assert!(
        browser.find(Locator::Css("#block-form")).await.is_err(),
        "no form for a viewer"
    );
    browser.goto(&format!("{base}/settings")).await.unwrap();
    find(&browser, "#my-sessions").await;
    assert!(
        browser.find(Locator::Css("#admins")).await.is_err(),
        "no admin management"
    );
    // Posting the form by hand, with the session's CSRF token, is refused.
    let status = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];
             const token = document.querySelector('input[name=_csrf]').value;
             fetch('/blocked-ips', { method: 'POST',
               headers: { 'content-type': 'application/x-www-form-urlencoded', 'x-csrf-token': token },
               body: 'network=10.0.0.0%2F8&reason=nope' })
             .then(r => done([r.status, r.headers.get('x-error-code')]));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(status, json!([403, "FORBIDDEN"]));
    let blocks: i64 = sqlx::query_scalar("SELECT count(*) FROM blocked_ips")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(blocks, 0);
    browser.close().await.unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_api_key_made_in_the_panel_is_shown_once_and_works(pool: PgPool) {
    let driver = start_driver().await;
    admin(&pool, "alice", Role::Admin).await;
    let state = AppState::new(pool.clone(), &config(&[])).unwrap();
    let base = serve(state).await;
    let browser = browser(&driver).await;
    log_in(&browser, &base, "alice").await;
    arrives(&browser, "/").await;

    browser.goto(&format!("{base}/api-keys")).await.unwrap();
    fill(&browser, "#key-name", "billing sync").await;
    click(&browser, "#scope-customers-read").await;
    click(&browser, "#scope-licenses-write").await;
    click(&browser, "#create-key").await;
    let secret = text(&browser, "#new-key-secret").await;
    assert!(secret.starts_with("lk_"), "{secret}");
    assert_eq!(
        text(&browser, ".key-row .last-used").await,
        "never",
        "not used yet"
    );
    click(&browser, "#copy-key").await;
    eventually(5, "the copy button to copy", || async {
        text(&browser, "#copy-key").await == "Copied"
    })
    .await;
    screenshot(&browser, "api_key_created.png").await;

    // Used once, as a client of the admin API would.
    let status = browser
        .execute_async(
            "const [secret, done] = arguments;
             fetch('/admin/api/v1/customers', { headers: { authorization: 'Bearer ' + secret } })
             .then(r => done(r.status));",
            vec![json!(secret)],
        )
        .await
        .unwrap();
    assert_eq!(status, json!(200));
    browser.goto(&format!("{base}/api-keys")).await.unwrap();
    let last_used = text(&browser, ".key-row .last-used").await;
    assert!(last_used.ends_with("UTC"), "{last_used}");
    assert!(
        browser.find(Locator::Css("#new-key-secret")).await.is_err(),
        "the secret is shown only once"
    );
    assert_eq!(
        text(&browser, ".key-row td.small").await,
        "customers:read licenses:write"
    );
    screenshot(&browser, "api_keys.png").await;
    browser.close().await.unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_edge_is_enrolled_and_a_bad_config_is_named_at_its_input(pool: PgPool) {
    let driver = start_driver().await;
    admin(&pool, "alice", Role::Admin).await;
    let state = AppState::new(pool.clone(), &config(&[])).unwrap();
    let base = serve(state).await;
    let browser = browser(&driver).await;
    log_in(&browser, &base, "alice").await;
    arrives(&browser, "/").await;

    browser.goto(&format!("{base}/edges")).await.unwrap();
    fill(&browser, "#edge-form input[name=name]", "eu-west").await;
    click(&browser, "#edge-form button").await;
    let token = text(&browser, "#enrol-token-value").await;
    assert!(token.starts_with("lke_"), "{token}");
    assert_eq!(text(&browser, ".edge-row .connected").await, "not enrolled");
    screenshot(&browser, "edge_enrol_token.png").await;

    let per_key = find(&browser, "#rate_limit_per_key_per_min").await;
    per_key.clear().await.unwrap();
    per_key.send_keys("0").await.unwrap();
    click(&browser, "#save-config").await;
    let error = text(&browser, "#rate_limit_per_key_per_min-error").await;
    assert!(error.contains("from 1 to 1000000"), "{error}");
    screenshot(&browser, "edge_config_invalid.png").await;

    let per_key = find(&browser, "#rate_limit_per_key_per_min").await;
    per_key.clear().await.unwrap();
    per_key.send_keys("5").await.unwrap();
    click(&browser, "#save-config").await;
    eventually(10, "the saved config", || async {
        browser
            .find(Locator::Css("#rate_limit_per_key_per_min-error"))
            .await
            .is_err()
            && find(&browser, "#rate_limit_per_key_per_min")
                .await
                .prop("value")
                .await
                .unwrap()
                .as_deref()
                == Some("5")
    })
    .await;
    let stored = latchkey_control::db::settings::edge_config(&pool)
        .await
        .unwrap();
    assert_eq!(stored.rate_limit_per_key_per_min, 5);
    screenshot(&browser, "edges.png").await;

    // Revoking asks first.
    click(&browser, ".edge-row button.revoke").await;
    eventually(5, "the confirmation", || async {
        browser.get_alert_text().await.is_ok()
    })
    .await;
    browser.accept_alert().await.unwrap();
    // The swap replaces the row: an element found mid-swap may go stale.
    eventually(10, "the edge to show as revoked", || async {
        match browser.find(Locator::Css(".edge-row .connected")).await {
            Ok(cell) => cell.text().await.is_ok_and(|t| t == "revoked"),
            Err(_) => false,
        }
    })
    .await;
    screenshot(&browser, "edge_revoked.png").await;
    let revoked = latchkey_control::db::edges::list(&pool).await.unwrap();
    assert!(revoked[0].revoked_at.is_some());
    browser.close().await.unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn search_and_autocomplete_pick_a_customer_whose_page_shows_its_licenses(pool: PgPool) {
    let driver = start_driver().await;
    admin(&pool, "alice", Role::Admin).await;
    let state = AppState::new(pool.clone(), &config(&[])).unwrap();
    let api = Api::with_state(state.clone()).await;
    let product_id = api.product("studio").await;
    let mut ada = String::new();
    for (name, email, company) in [
        (
            "Ada Lovelace",
            "ada@analytical.example",
            "Analytical Engines",
        ),
        ("Alan Turing", "alan@bletchley.example", "Bletchley Park"),
        ("Grace Hopper", "grace@navy.example", "US Navy"),
        ("Adele Goldberg", "adele@parc.example", "Xerox PARC"),
    ] {
        let created = api
            .post(
                &format!("{V1}/customers"),
                json!({ "name": name, "email": email, "company": company }),
            )
            .await;
        let id = created.ok(StatusCode::CREATED)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        if name == "Ada Lovelace" {
            ada = id;
        }
    }
    api.post(
        &format!("{V1}/licenses"),
        json!({ "product_id": product_id, "customer_id": ada, "count": 2, "device_limit": 3 }),
    )
    .await
    .ok(StatusCode::CREATED);
    let base = serve(state).await;
    let browser = browser(&driver).await;
    log_in(&browser, &base, "alice").await;
    arrives(&browser, "/").await;

    // The server-side search: by company, the list narrows to one.
    browser.goto(&format!("{base}/customers")).await.unwrap();
    find(&browser, "#customers").await;
    screenshot(&browser, "customers.png").await;
    fill(&browser, "#customer-search", "bletchley\n").await;
    eventually(10, "the search to narrow the list", || async {
        browser
            .find_all(Locator::Css(".customer-row"))
            .await
            .map(|rows| rows.len() == 1)
            .unwrap_or(false)
    })
    .await;
    assert!(text(&browser, "#customers").await.contains("Alan Turing"));
    screenshot(&browser, "customers_search.png").await;

    // The autocomplete: typing suggests in place, a click opens the page.
    browser.goto(&format!("{base}/customers")).await.unwrap();
    fill(&browser, "#customer-search", "ad").await;
    find(&browser, "#suggest-hint").await;
    fill(&browser, "#customer-search", "a@ana").await;
    let suggestion = find(&browser, "#suggestion-list .suggestion").await;
    assert!(
        suggestion.text().await.unwrap().contains("Ada Lovelace"),
        "suggested by part of the e-mail"
    );
    assert_eq!(
        browser
            .find_all(Locator::Css("#suggestion-list .suggestion"))
            .await
            .unwrap()
            .len(),
        1
    );
    screenshot(&browser, "customers_autocomplete.png").await;
    // A refused suggestion request says so in place (a query past the
    // 256 characters the field allows, set by script).
    browser
        .execute(
            "const input = document.getElementById('customer-search');
             input.value = 'x'.repeat(300);
             input.dispatchEvent(new Event('input', { bubbles: true }));",
            vec![],
        )
        .await
        .unwrap();
    let failure = text(&browser, "#suggestions .request-error").await;
    assert!(
        failure.contains("Suggestions are unavailable") && failure.contains("INVALID_REQUEST"),
        "{failure}"
    );
    screenshot(&browser, "customers_suggest_error.png").await;
    browser
        .execute(
            "const input = document.getElementById('customer-search');
             input.value = 'a@ana';
             input.dispatchEvent(new Event('input', { bubbles: true }));",
            vec![],
        )
        .await
        .unwrap();
    let suggestion = find(&browser, "#suggestion-list .suggestion").await;
    suggestion.click().await.unwrap();
    arrives(&browser, &format!("/customers/{ada}")).await;
    assert_eq!(text(&browser, "#customer-name").await, "Ada Lovelace");
    assert_eq!(
        browser
            .find_all(Locator::Css("#customer-licenses .license-row"))
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(text(&browser, "#stat-active").await, "2");
    assert_eq!(text(&browser, "#stat-devices").await, "0 / 6");
    browser
        .execute(
            "document.getElementById('customer-licenses').scrollIntoView();",
            vec![],
        )
        .await
        .unwrap();
    screenshot(&browser, "customer.png").await;

    // Delete is refused while it has licenses, and the page says why.
    click(&browser, "#delete-customer").await;
    let refused = text(&browser, "#delete-refused").await;
    assert!(refused.contains("still has 2 license(s)"), "{refused}");
    screenshot(&browser, "customer_delete_refused.png").await;

    // A bad e-mail comes back next to its field.
    browser
        .goto(&format!("{base}/customers/{ada}/edit"))
        .await
        .unwrap();
    let email = find(&browser, "#email").await;
    email.clear().await.unwrap();
    email.send_keys("ada-at-home").await.unwrap();
    click(&browser, "#customer-submit").await;
    let error = text(&browser, "#email-error").await;
    assert!(error.contains("must be an e-mail address"), "{error}");
    screenshot(&browser, "customer_form_error.png").await;
    browser.close().await.unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_per_key_limit_saved_in_the_panel_refuses_the_sixth_verify_at_both_edges(pool: PgPool) {
    use latchkey_control::context::RequestContext;
    use latchkey_control::db::edges;
    use support::stack::{Stack, edge_settings, one_license, post, status_on, wait_for};

    let stack = Stack::start(pool.clone()).await;
    let (_, key) = one_license(&pool, 1).await;
    let mut running = Vec::new();
    for name in ["edge-a", "edge-b"] {
        let token = edges::create(&pool, &RequestContext::system("test"), name)
            .await
            .unwrap()
            .enrol_token;
        // The limits in the snapshot, not the tests' override.
        let mut settings = edge_settings(&stack.dir, stack.link_addr, name, Some(token));
        settings.rate_limit_per_min = None;
        let edge = latchkey_edge::start(settings).await.unwrap();
        wait_for(Duration::from_secs(10), || status_on(&edge, &key).is_some())
            .await
            .expect("the edge serves the license");
        running.push(edge);
    }

    let driver = start_driver().await;
    admin(&pool, "alice", Role::Admin).await;
    let base = serve(AppState::new(pool.clone(), &config(&[])).unwrap()).await;
    let browser = browser(&driver).await;
    log_in(&browser, &base, "alice").await;
    arrives(&browser, "/").await;
    browser.goto(&format!("{base}/edges")).await.unwrap();
    let per_key = find(&browser, "#rate_limit_per_key_per_min").await;
    per_key.clear().await.unwrap();
    per_key.send_keys("5").await.unwrap();
    click(&browser, "#save-config").await;

    for edge in &running {
        let limit = || {
            edge.state
                .snapshots
                .current()
                .map(|s| s.config().rate_limit_per_key_per_min)
        };
        wait_for(Duration::from_secs(10), || limit() == Some(5))
            .await
            .expect("the saved limit reaches the edge");
        for n in 1..=5 {
            let (status, answer) =
                post(edge, "/api/license/verify", json!({ "license_key": key })).await;
            assert_eq!(status, StatusCode::OK, "verify {n}: {answer}");
        }
        let (status, answer) =
            post(edge, "/api/license/verify", json!({ "license_key": key })).await;
        assert_eq!(
            (status, answer["code"].clone()),
            (StatusCode::TOO_MANY_REQUESTS, json!("RATE_LIMITED")),
            "{answer}"
        );
    }
    browser.close().await.unwrap();
    for edge in running {
        edge.stop().await;
    }
}
