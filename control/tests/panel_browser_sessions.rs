//! The live session monitor in headless Chromium, with a real edge linked
//! to control: a session started at the edge shows up in the open page
//! within 2 s without a reload, and terminating it from the page makes its
//! next heartbeat at the edge fail. Screenshots `sessions*.png` land in
//! `<target>/screenshots/`.

#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use fantoccini::Locator;
use latchkey_control::app::AppState;
use latchkey_control::context::RequestContext;
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::admins::Role;
use latchkey_control::db::customers::{self, NewCustomer};
use latchkey_control::db::licenses::{self, NewLicense};
use latchkey_control::secrets::Secrets;
use latchkey_edge::RunningEdge;
use latchkey_shared::LicenseKey;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::browser::*;
use support::panel::admin;
use support::stack::{Stack, machine, post, status_on, wait_for};
use support::{config, serve};
use uuid::Uuid;

/// A license of product Studio for customer Ada; its key.
async fn license(pool: &PgPool) -> String {
    let ctx = RequestContext::system("test");
    let product_id: i32 = sqlx::query_scalar(
        "INSERT INTO products (slug, name) VALUES ('studio', 'Studio') RETURNING id",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let customer = customers::create(
        pool,
        &ctx,
        NewCustomer {
            name: "Ada Lovelace".into(),
            email: None,
            company: Some("Analytical Engines".into()),
            notes: None,
            metadata: None,
        },
    )
    .await
    .unwrap();
    let template: NewLicense = serde_json::from_value(json!({
        "product_id": product_id,
        "customer_id": customer.id,
        "device_limit": 3,
    }))
    .unwrap();
    let secrets = Secrets::new("test-secret-key-test-secret-key-test-secret-key").unwrap();
    licenses::create(pool, &ctx, &secrets, &template, 1)
        .await
        .unwrap()
        .remove(0)
        .license_key
}

/// Activates machine `n` at the edge, waits for its seat to reach the
/// edge, and starts a session there; answers the session's start.
async fn start_session(edge: &RunningEdge, key: &str, n: u32) -> Value {
    let activate = json!({
        "license_key": key, "fingerprint": machine(n),
        "device_name": format!("workstation {n}"), "idempotency_key": format!("seat-{n}"),
    });
    let (status, seat) = post(edge, "/api/license/activate", activate).await;
    assert_eq!(status, StatusCode::OK, "{seat}");
    let hash = key.parse::<LicenseKey>().unwrap().hash();
    wait_for(Duration::from_secs(5), || {
        edge.state
            .snapshots
            .current()
            .and_then(|s| s.license(&hash).map(|l| l.devices().len()))
            >= Some(n as usize)
    })
    .await
    .expect("the seat reached the edge");
    let start = json!({ "license_key": key, "fingerprint": machine(n), "app_version": "3.1.4" });
    let (status, session) = post(edge, "/api/license/session/start", start).await;
    assert_eq!(status, StatusCode::OK, "{session}");
    session
}

async fn heartbeat(edge: &RunningEdge, session: &Value, n: u32) -> (StatusCode, Value) {
    let beat = json!({ "session_token": session["session_token"], "fingerprint": machine(n) });
    post(edge, "/api/license/session/heartbeat", beat).await
}

fn id_of(session: &Value) -> Uuid {
    session["session_id"].as_str().unwrap().parse().unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_session_started_at_an_edge_appears_live_and_terminating_it_refuses_its_next_heartbeat(
    pool: PgPool,
) {
    let driver = start_driver().await;
    let stack = Stack::start(pool.clone()).await;
    let key = license(&pool).await;
    let edge = stack.edge("edge-a", true).await;
    wait_for(Duration::from_secs(10), || status_on(&edge, &key).is_some())
        .await
        .expect("the edge serves the license");
    admin(&pool, "alice", Role::Admin).await;
    let base = serve(AppState::new(pool.clone(), &config(&[])).unwrap()).await;
    let browser = browser(&driver).await;
    log_in(&browser, &base, "alice").await;
    arrives(&browser, "/").await;

    browser.goto(&format!("{base}/sessions")).await.unwrap();
    eventually(10, "the stream to connect", || async {
        text(&browser, "#live-status").await == "live"
    })
    .await;
    assert!(
        text(&browser, "#session-rows")
            .await
            .contains("No active sessions"),
        "the empty state"
    );
    screenshot(&browser, "sessions_empty.png").await;
    // A reload would lose this: the row must arrive in the page as it is.
    browser
        .execute("window.lkMarker = 7;", vec![])
        .await
        .unwrap();

    let session = start_session(&edge, &key, 1).await;
    let started = Instant::now();
    let row = format!("#session-{}", id_of(&session));
    while browser.find(Locator::Css(&row)).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the new session's row within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let shown = started.elapsed();
    assert_eq!(
        browser
            .execute("return window.lkMarker;", vec![])
            .await
            .unwrap(),
        json!(7),
        "shown in place, no reload"
    );
    let cells = text(&browser, &row).await;
    for expected in ["Ada Lovelace", "Studio", "workstation 1", "3.1.4", "edge-a"] {
        assert!(cells.contains(expected), "{expected} in {cells}");
    }
    let (status, beat) = heartbeat(&edge, &session, 1).await;
    assert_eq!(status, StatusCode::OK, "{beat}");

    // A second session whose client went quiet past the reaper's deadline
    // (twice the 900 s interval) is marked overdue, live.
    let quiet = start_session(&edge, &key, 2).await;
    // First its start event from the edge, which would move the time forward.
    eventually(5, "the edge's usage batch", || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM license_heartbeats WHERE session_id = $1",
        )
        .bind(id_of(&quiet))
        .fetch_one(&pool)
        .await
        .unwrap()
            > 0
    })
    .await;
    sqlx::query(
        "UPDATE sessions SET last_heartbeat_at = now() - interval '32 minutes' WHERE id = $1",
    )
    .bind(id_of(&quiet))
    .execute(&pool)
    .await
    .unwrap();
    let quiet_row = format!("#session-{}", id_of(&quiet));
    eventually(5, "the overdue mark", || async {
        browser
            .find(Locator::Css(&format!("{quiet_row} .overdue-mark")))
            .await
            .is_ok()
    })
    .await;
    assert!(
        text(&browser, &format!("{quiet_row} .overdue-mark"))
            .await
            .starts_with("overdue 2 min")
    );

    // Tick the first, let an update pass (the quiet one's mark counts the
    // seconds), and the tick is still there.
    let ticked = || async {
        browser
            .execute(
                "return [...document.querySelectorAll('#session-rows input:checked')].length;",
                vec![],
            )
            .await
            .unwrap()
    };
    click(&browser, "#select-all").await;
    assert_eq!(ticked().await, json!(2), "select all");
    click(&browser, "#select-all").await;
    assert_eq!(ticked().await, json!(0));
    click(&browser, &format!("{row} input[type=checkbox]")).await;
    let mark = text(&browser, &format!("{quiet_row} .overdue-mark")).await;
    eventually(5, "an update of the list", || async {
        text(&browser, &format!("{quiet_row} .overdue-mark")).await != mark
    })
    .await;
    let still = find(&browser, &format!("{row} input[type=checkbox]"))
        .await
        .prop("checked")
        .await
        .unwrap();
    assert_eq!(still.as_deref(), Some("true"), "the selection survives");
    assert_eq!(ticked().await, json!(1));
    screenshot(&browser, "sessions_live.png").await;

    click(&browser, "#terminate-selected").await;
    arrives(&browser, "/sessions/terminate").await;
    assert!(
        text(&browser, "#terminate-list")
            .await
            .contains("workstation 1")
    );
    screenshot(&browser, "sessions_confirm.png").await;
    click(&browser, "#terminate-confirm").await;
    arrives(&browser, "/sessions").await;
    assert!(
        text(&browser, "#terminated")
            .await
            .starts_with("Terminated 1 session(s)")
    );
    assert!(browser.find(Locator::Css(&row)).await.is_err());
    find(&browser, &quiet_row).await;
    screenshot(&browser, "sessions_terminated.png").await;

    // The end reaches the edge's snapshot; the next heartbeat there fails.
    let id = id_of(&session);
    wait_for(Duration::from_secs(5), || {
        edge.state
            .snapshots
            .current()
            .is_some_and(|s| s.is_session_revoked(&id))
    })
    .await
    .expect("the terminated session reached the edge");
    let (status, refused) = heartbeat(&edge, &session, 1).await;
    assert_eq!(
        (status, refused["code"].clone()),
        (StatusCode::FORBIDDEN, json!("SESSION_REVOKED")),
        "{refused}"
    );
    let (status, _) = heartbeat(&edge, &quiet, 2).await;
    assert_eq!(status, StatusCode::OK, "the other session runs on");
    println!("a new session's row appeared after {shown:?}");
    browser.close().await.unwrap();
    edge.stop().await;
}
