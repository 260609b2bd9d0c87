//! The panel's backups page against the real PostgreSQL and `pg_dump`:
//! back up now (a background job the page polls), restore into a verified
//! scratch copy, a swap refused without two-factor login and with a wrong
//! code, then swapped in on the admin's current code.

#[allow(dead_code)]
mod support;

use std::time::Duration;

use latchkey_control::app::{self, AppState};
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::admins::Role;
use sqlx::{Connection, PgConnection, PgPool};
use support::config;
use support::panel::{Client, admin, enrol_totp};
use uuid::Uuid;

fn with_database(name: &str) -> String {
    let server = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let (base, _) = server.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

/// Reloads the page until it shows `wanted` (the jobs run in the background).
async fn page_showing(client: &mut Client, wanted: &str) -> String {
    for _ in 0..100 {
        let page = client.get("/backups").await;
        assert_eq!(page.status, 200, "{}", page.body);
        if page.body.contains(wanted) {
            return page.body;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("/backups never showed {wanted:?}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn back_up_now_then_restore_it_on_a_second_factor(pool: PgPool) {
    admin(&pool, "ada", Role::Admin).await;
    let url = with_database(pool.connect_options().get_database().unwrap());
    let dir = std::env::temp_dir().join(format!("latchkey-panel-backups-{}", Uuid::new_v4()));
    let state = AppState::new(
        pool.clone(),
        &config(&[
            ("DATABASE_URL", url.as_str()),
            ("LATCHKEY_BACKUPS_DIR", dir.to_str().unwrap()),
        ]),
    )
    .unwrap();
    let mut client = Client::new(app::router(state), "192.0.2.80");
    client.logged_in("ada").await;

    let empty = client.get("/backups").await;
    assert!(empty.body.contains("No backups yet."), "{}", empty.body);
    assert!(empty.body.contains("No schedule"));
    let started = client.post("/backups", &[("_csrf", &empty.csrf())]).await;
    assert_eq!(started.location(), "/backups", "{}", started.body);
    let done = page_showing(&mut client, "class=\"status\">done").await;
    let id: Uuid = sqlx::query_scalar("SELECT id FROM backups")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(done.contains(&format!("data-id=\"{id}\"")));
    assert!(done.contains("SHA-256"));

    let csrf = client.get("/backups").await.csrf();
    let verifying = client
        .post(&format!("/backups/{id}/restore"), &[("_csrf", &csrf)])
        .await;
    assert_eq!(verifying.location(), "/backups", "{}", verifying.body);
    let verified = page_showing(&mut client, "<strong>Verified.</strong>").await;
    assert!(verified.contains("id=\"swap-form\""));

    // No second factor on the account: no swap.
    let csrf = client.get("/backups").await.csrf();
    let refused = client
        .post(
            "/backups/restore/swap",
            &[("_csrf", &csrf), ("code", "123456")],
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("needs two-factor login"),
        "{}",
        refused.body
    );

    let totp = enrol_totp(&mut client).await;
    let csrf = client.get("/backups").await.csrf();
    let wrong = format!(
        "{:06}",
        (totp.generate_current().to_string().parse::<u32>().unwrap() + 1) % 1_000_000
    );
    let refused = client
        .post(
            "/backups/restore/swap",
            &[("_csrf", &csrf), ("code", &wrong)],
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("not your current two-factor code"));

    // A change after the backup, which the restore sets aside.
    sqlx::query(
        "INSERT INTO blocked_ips (network, reason) VALUES ('203.0.113.0/24', 'after the backup')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let code = totp.generate_current().to_string();
    let swapping = client
        .post(
            "/backups/restore/swap",
            &[("_csrf", &csrf), ("code", &code)],
        )
        .await;
    assert_eq!(swapping.location(), "/backups", "{}", swapping.body);
    // The session was in the dump: the same admin is still logged in.
    let restored = page_showing(&mut client, "<strong>Restored</strong>").await;
    let blocks: i64 = sqlx::query_scalar("SELECT count(*) FROM blocked_ips")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(blocks, 0, "the live database is the backup's");

    let previous = restored
        .split("kept as <code>")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap()
        .to_owned();
    let mut server = PgConnection::connect(&with_database("postgres"))
        .await
        .unwrap();
    sqlx::query(&format!("DROP DATABASE \"{previous}\" WITH (FORCE)"))
        .execute(&mut server)
        .await
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
