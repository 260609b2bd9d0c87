//! The panel's import page: a check listing every problem by line and
//! column, an import refused with the same list and nothing written, the
//! fixed file imported, and the page closed to read-only viewers.

#[allow(dead_code)]
mod support;

use axum::http::StatusCode;
use latchkey_control::app::{self, AppState};
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::admins::Role;
use sqlx::PgPool;
use support::config;
use support::panel::{Client, admin};

fn client(pool: &PgPool, ip: &str) -> Client {
    Client::new(
        app::router(AppState::new(pool.clone(), &config(&[])).unwrap()),
        ip,
    )
}

async fn customers(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The job's page once it is done, and where it is.
struct Done {
    body: String,
    status: StatusCode,
    location: String,
}

/// Posts the import form for customers and follows its redirect to the
/// job's page until the job is done: its outcome.
async fn import(panel: &mut Client, csrf: &str, file: &str, action: &str) -> Done {
    let form = [
        ("_csrf", csrf),
        ("kind", "customers"),
        ("file", file),
        ("action", action),
    ];
    let posted = panel.post("/import", &form).await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER, "{}", posted.body);
    let job = posted.location().to_owned();
    assert!(job.starts_with("/import?task="), "{job}");
    for _ in 0..200 {
        let page = panel.get(&job).await;
        if !page.body.contains("data-task-events") {
            return Done {
                body: page.body,
                status: page.status,
                location: job,
            };
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the job at {job} did not finish");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_file_is_checked_then_imported_all_or_nothing(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let mut panel = client(&pool, "192.0.2.41");
    let csrf = panel.logged_in("alice").await;

    let page = panel.get("/import").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"import-form\""));
    assert!(
        page.body.contains("customer_external_id"),
        "the columns are listed"
    );

    let broken = "external_id,name,email\nc-1,Ada,ada@example.com\nc-2,Bob,not-an-address\nc-3,,\n";
    let checked = import(&mut panel, &csrf, broken, "check").await;
    assert_eq!(checked.status, StatusCode::OK, "{}", checked.body);
    assert_eq!(
        checked.body.matches("class=\"problem-row\"").count(),
        2,
        "{}",
        checked.body
    );
    assert!(
        checked
            .body
            .contains("<td>3</td><td><code>email</code></td>")
    );
    assert!(
        checked
            .body
            .contains("<td>4</td><td><code>name</code></td>")
    );
    assert_eq!(customers(&pool).await, 0);

    let refused = import(&mut panel, &csrf, broken, "import").await;
    assert_eq!(refused.status, StatusCode::OK);
    assert!(
        refused.body.contains("nothing was imported"),
        "{}",
        refused.body
    );
    assert_eq!(refused.body.matches("class=\"problem-row\"").count(), 2);
    assert_eq!(customers(&pool).await, 0);

    let json = r#"[{"external_id":"c-1","name":"Ada"},{"external_id":"c-2","name":"Bob"}]"#;
    let imported = import(&mut panel, &csrf, json, "import").await;
    assert!(
        imported.body.contains("id=\"import-applied\""),
        "{}",
        imported.body
    );
    assert!(imported.body.contains("<li>2 created</li>"));
    assert_eq!(customers(&pool).await, 2);

    // The job's event stream ends with its outcome.
    let task = imported.location.trim_start_matches("/import?task=");
    let events = panel.get(&format!("/tasks/{task}/events")).await;
    assert_eq!(events.status, StatusCode::OK);
    assert!(events.body.contains("event: finished"), "{}", events.body);
    assert!(
        events
            .body
            .contains(r#""outcome":{"state":"succeeded","message":"2 line(s) imported"}"#),
        "{}",
        events.body
    );
    assert!(
        events
            .body
            .contains(r#""stage":"writing","unit":"lines","done":2,"total":2"#)
    );
    let unknown = panel
        .get(&format!("/tasks/{}/events", uuid::Uuid::nil()))
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    admin(&pool, "vera", Role::Viewer).await;
    let mut viewer = client(&pool, "192.0.2.42");
    viewer.logged_in("vera").await;
    assert_eq!(viewer.get("/import").await.status, StatusCode::FORBIDDEN);
}
