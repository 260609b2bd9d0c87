//! One license in the panel over HTTP: its page, the create and edit forms
//! naming the bad field, batches by count and by a CSV of customers (a bad
//! line named by its number, nothing created), revealing a key (audited,
//! refused to a viewer), and a device deactivated and transferred from the
//! page with the seat changes listed.

#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;

use axum::http::StatusCode;
use latchkey_control::app::{self, AppState};
use latchkey_control::context::RequestContext;
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::admins::Role;
use latchkey_control::db::devices::{self, LeaseIssuer, SeatRequest};
use latchkey_control::db::licenses::{self, NewLicense};
use latchkey_control::secrets::Secrets;
use latchkey_shared::SigningKeyPair;
use latchkey_shared::fingerprint::{CanonicalFingerprint, Fingerprint};
use sqlx::PgPool;
use support::config;
use support::panel::{Client, admin};
use uuid::Uuid;

fn app(pool: &PgPool) -> axum::Router {
    app::router(AppState::new(pool.clone(), &config(&[])).unwrap())
}

/// The app's own secrets, so the panel can open the keys tests seal.
fn secrets() -> Secrets {
    config(&[]).secrets().unwrap()
}

async fn product(pool: &PgPool) -> i32 {
    sqlx::query_scalar("INSERT INTO products (slug, name) VALUES ('studio', 'Studio') RETURNING id")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn license(pool: &PgPool, device_limit: i32) -> (Uuid, String) {
    let product_id = product(pool).await;
    let new: NewLicense = serde_json::from_value(serde_json::json!({
        "product_id": product_id,
        "device_limit": device_limit,
        "features": ["export"],
        "usage_limits": { "exports": 100 },
    }))
    .unwrap();
    let created = licenses::create(pool, &RequestContext::system("test"), &secrets(), &new, 1)
        .await
        .unwrap();
    (created[0].license.id, created[0].license_key.clone())
}

fn machine(n: u32) -> CanonicalFingerprint {
    Fingerprint {
        system_uuid: Some(Uuid::from_u128(u128::from(n) + 1).to_string()),
        machine_id: None,
        cpu_id: Some(format!("cpu-{n}")),
        macs: vec![format!("02:00:00:00:00:{n:02x}")],
        extra: BTreeMap::new(),
    }
    .canonicalize()
    .unwrap()
}

/// A client activates machine `n`, as an edge would forward it.
async fn activate(pool: &PgPool, key: &str, n: u32) -> Uuid {
    let issuer = LeaseIssuer {
        signer: SigningKeyPair::from_seed([5; 32]),
    };
    let request = SeatRequest {
        key: key.parse().unwrap(),
        fingerprint: machine(n),
        device_name: Some(format!("laptop-{n}")),
        app_version: Some("2.4.0".into()),
        ip: Some("198.51.100.7".parse().unwrap()),
        idempotency_key: None,
    };
    devices::activate(pool, &RequestContext::system("test"), &issuer, &request)
        .await
        .unwrap()
        .device_id
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

/// The license fields as the create form sends them by default.
fn fields<'a>(csrf: &'a str, product_id: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("_csrf", csrf),
        ("product_id", product_id),
        ("kind", "full"),
        ("device_limit", "2"),
        ("session_limit", "1"),
        ("seat_change_limit", "3"),
        ("seat_change_window_days", "30"),
    ]
}

fn with<'a>(
    mut form: Vec<(&'a str, &'a str)>,
    name: &'a str,
    value: &'a str,
) -> Vec<(&'a str, &'a str)> {
    form.retain(|(key, _)| *key != name);
    form.push((name, value));
    form
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_page_shows_state_limits_usage_devices_sessions_resources_and_audit(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let (id, key) = license(&pool, 2).await;
    activate(&pool, &key, 1).await;
    sqlx::query("INSERT INTO resources (kind, value, status, license_id, allocated_at) VALUES ('ip', '10.0.0.1', 'allocated', $1, now())")
        .bind(id)
        .execute(&pool)
        .await
        .unwrap();
    let mut client = Client::new(app(&pool), "192.0.2.10");
    client.logged_in("alice").await;

    let page = client.get(&format!("/licenses/{id}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let body = &page.body;
    assert!(body.contains(&key[..5]), "the key's first group");
    assert!(!body.contains(&key), "never the whole key unasked");
    assert!(body.contains("id=\"license-state\">active<"), "{body}");
    assert!(body.contains("1 of 2 in use"));
    assert!(
        body.contains("unlimited at once; a new one over the limit is refused"),
        "the session rule"
    );
    assert!(body.contains("<code>export</code>"), "features");
    assert!(
        body.contains("<code>exports</code></td><td>0</td><td>100</td>"),
        "usage: {body}"
    );
    assert!(body.contains("laptop-1"));
    assert!(body.contains("198.51.100.7"), "the device's IP");
    assert!(body.contains("2.4.0"), "the app version");
    assert!(body.contains("cpu-1"), "fingerprint components");
    assert!(body.contains("10.0.0.1"), "the allocated resource");
    assert!(body.contains("license.create"), "the audit trail");
    assert!(body.contains("device.activate"), "its devices' audit rows");
    assert!(body.contains("No session is open."));
    assert!(body.contains("id=\"edit-license\""));

    let missing = client.get(&format!("/licenses/{}", Uuid::new_v4())).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn create_and_edit_name_the_bad_field_and_save_through_the_domain(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let product_id = product(&pool).await.to_string();
    let mut client = Client::new(app(&pool), "192.0.2.11");
    let csrf = client.logged_in("alice").await;

    let form = client.get("/licenses/new").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("Studio"), "products to choose from");

    for (field, value, message) in [
        (
            "device_limit",
            "-1",
            "device_limit-error\">Device limit must be between 0 and 1000000",
        ),
        (
            "device_limit",
            "two",
            "device_limit-error\">Device limit must be a whole number",
        ),
        ("session_limit", "70000", "session_limit-error"),
        (
            "valid_until",
            "next year",
            "valid_until-error\">Valid until must be a date and time",
        ),
        ("features", "Bad Name", "features-error"),
        ("usage_limits", "exports 10", "usage_limits-error"),
        (
            "customer",
            "nobody@example.com",
            "customer-error\">Customer matches no customer",
        ),
        (
            "seat_change_window_days",
            "0",
            "seat_change_window_days-error",
        ),
    ] {
        let reply = client
            .post("/licenses", &with(fields(&csrf, &product_id), field, value))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{field}={value}");
        assert_eq!(reply.error_code(), "INVALID_REQUEST");
        assert!(
            reply.body.contains(message),
            "{field}={value}: {}",
            reply.body
        );
        assert!(
            reply.body.contains(&format!("value=\"{value}\"")) || field == "usage_limits",
            "what was entered stays"
        );
    }
    assert_eq!(count(&pool, "SELECT count(*) FROM licenses").await, 0);

    let created = client
        .post(
            "/licenses",
            &with(
                with(fields(&csrf, &product_id), "features", "export, sync"),
                "valid_until",
                "2030-01-31T23:59",
            ),
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let id = created
        .location()
        .trim_start_matches("/licenses/")
        .to_owned();
    let page = client.get(created.location()).await;
    assert!(page.body.contains("0 of 2 in use"));
    assert!(
        page.body.contains("until 2030-01-31 23:59:00 UTC"),
        "{}",
        page.body
    );
    assert!(page.body.contains("<code>export</code> <code>sync</code>"));

    let edit = client.get(&format!("/licenses/{id}/edit")).await;
    assert_eq!(edit.status, StatusCode::OK);
    assert!(
        edit.body.contains("value=\"2030-01-31T23:59\""),
        "the form holds the license"
    );
    let refused = client
        .post(
            &format!("/licenses/{id}"),
            &with(
                fields(&csrf, &product_id),
                "valid_until",
                "2000-01-01T00:00",
            ),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        refused
            .body
            .contains("valid_until-error\">Valid until must be after valid_from"),
        "{}",
        refused.body
    );
    let saved = client
        .post(
            &format!("/licenses/{id}"),
            &with(fields(&csrf, &product_id), "device_limit", "5"),
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let limit: i32 = sqlx::query_scalar("SELECT device_limit FROM licenses WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(limit, 5);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM audit_log WHERE action = 'license.update'"
        )
        .await,
        1
    );

    // Two customers share an address: the form names the newer by its id,
    // so saving it unchanged keeps the license where it is.
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO customers (name, email, created_at) VALUES ('Old', 'shared@example.com', now() - interval '1 day'),
                ('New', 'shared@example.com', now()) RETURNING id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let newer = ids[1].to_string();
    let owned = client
        .post(
            "/licenses",
            &with(fields(&csrf, &product_id), "customer", &newer),
        )
        .await;
    assert_eq!(owned.status, StatusCode::SEE_OTHER, "{}", owned.body);
    let edit = client.get(&format!("{}/edit", owned.location())).await;
    assert!(
        edit.body.contains(&format!("value=\"{newer}\"")),
        "{}",
        edit.body
    );
    let by_address = client
        .post(
            "/licenses",
            &with(fields(&csrf, &product_id), "customer", "SHARED@example.com"),
        )
        .await;
    let page = client.get(by_address.location()).await;
    assert!(
        page.body.contains(">Old</a>"),
        "an address names its oldest customer"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_batch_by_count_shows_each_key_once_with_a_csv(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let product_id = product(&pool).await.to_string();
    let mut client = Client::new(app(&pool), "192.0.2.12");
    let csrf = client.logged_in("alice").await;

    let bad = client
        .post(
            "/licenses/batch",
            &with(fields(&csrf, &product_id), "count", "0"),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body
            .contains("count-error\">Number must be between 1 and 10000"),
        "{}",
        bad.body
    );

    let done = client
        .post(
            "/licenses/batch",
            &with(fields(&csrf, &product_id), "count", "12"),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(count(&pool, "SELECT count(*) FROM licenses").await, 12);
    assert_eq!(done.body.matches("class=\"created-key\"").count(), 12);
    let csv = data_url_csv(&done.body);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "license_key,license_id,customer_email,customer_name"
    );
    assert_eq!(lines.len(), 13);
    for line in &lines[1..] {
        let key = line.split(',').next().unwrap();
        assert!(done.body.contains(key), "the CSV holds the keys shown");
        let hash = key.parse::<latchkey_shared::LicenseKey>().unwrap().hash();
        let found = count_bytes(&pool, &hash.0).await;
        assert_eq!(found, 1, "each key is a license's");
    }
}

async fn count_bytes(pool: &PgPool, hash: &[u8]) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM licenses WHERE key_hash = $1")
        .bind(hash)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The CSV behind the page's download link.
fn data_url_csv(body: &str) -> String {
    use base64::Engine;
    let marker = "href=\"data:text/csv;charset=utf-8;base64,";
    let start = body.find(marker).expect("a download link") + marker.len();
    let end = body[start..].find('"').unwrap() + start;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&body[start..end])
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_batch_by_csv_matches_or_creates_customers_and_a_bad_line_creates_nothing(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let product_id = product(&pool).await.to_string();
    sqlx::query("INSERT INTO customers (name, email) VALUES ('Ada Known', 'ADA@example.com')")
        .execute(&pool)
        .await
        .unwrap();
    let mut client = Client::new(app(&pool), "192.0.2.13");
    let csrf = client.logged_in("alice").await;

    // As a browser sends a textarea: CRLF line ends.
    let bad = "email,name,company\r\nnew1@example.com,New One,Acme\r\nnot-an-address,Broken,\r\nnew2@example.com,,\r\n";
    let refused = client
        .post(
            "/licenses/batch",
            &with(fields(&csrf, &product_id), "customers", bad),
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("customers-error\">Customers: line 3: email must be an e-mail address"),
        "{}",
        refused.body
    );
    assert!(
        refused.body.contains("not-an-address"),
        "the list stays in the form"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM licenses").await, 0);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM customers").await,
        1,
        "no customer created"
    );

    let both = client
        .post(
            "/licenses/batch",
            &with(
                with(fields(&csrf, &product_id), "customers", "a@example.com"),
                "count",
                "3",
            ),
        )
        .await;
    assert!(
        both.body
            .contains("count-error\">Number leave empty when customers are listed"),
        "{}",
        both.body
    );

    // A formula in a name reaches the CSV defused.
    let good = "email,name,company\nada@EXAMPLE.com,Ignored,\nnew1@example.com,=HYPERLINK(\"x\"),Acme\nnew2@example.com,,\nnew1@example.com,Again,\n";
    let done = client
        .post(
            "/licenses/batch",
            &with(fields(&csrf, &product_id), "customers", good),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(count(&pool, "SELECT count(*) FROM licenses").await, 4);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM customers").await,
        3,
        "two new, one known"
    );
    assert_eq!(
        count(&pool, "SELECT count(DISTINCT customer_id) FROM licenses").await,
        3
    );
    let ada: i64 = count(
        &pool,
        "SELECT count(*) FROM licenses l JOIN customers c ON c.id = l.customer_id WHERE c.name = 'Ada Known'",
    )
    .await;
    assert_eq!(ada, 1, "an address of any case is the known customer");
    let named: String =
        sqlx::query_scalar("SELECT name FROM customers WHERE email = 'new2@example.com'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(named, "new2@example.com", "no name: the address");
    let csv = data_url_csv(&done.body);
    assert_eq!(csv.lines().count(), 5);

    // A list longer than most forms (over 64 KiB) goes through whole.
    let long: String = (0..1500)
        .map(|i| format!("customer-number-{i:05}@long-list.example.com,Customer Number {i}\n"))
        .collect();
    assert!(long.len() > 64 * 1024);
    let done = client
        .post(
            "/licenses/batch",
            &with(fields(&csrf, &product_id), "customers", &long),
        )
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(data_url_csv(&done.body).lines().count(), 1501);
    assert!(
        csv.contains(",new1@example.com,\"'=HYPERLINK(\"\"x\"\")\"\n"),
        "{csv}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn revealing_a_key_is_audited_and_refused_to_a_viewer(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    admin(&pool, "victor", Role::Viewer).await;
    let (id, key) = license(&pool, 1).await;
    let device = activate(&pool, &key, 1).await;

    let mut viewer = Client::new(app(&pool), "192.0.2.14");
    let csrf = viewer.logged_in("victor").await;
    let page = viewer.get(&format!("/licenses/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    for control in [
        "reveal-form",
        "edit-license",
        "deactivate-form",
        "class=\"button small transfer\"",
    ] {
        assert!(!page.body.contains(control), "a viewer gets no {control}");
    }
    assert!(page.body.contains("laptop-1"), "but reads the devices");
    for uri in [
        format!("/licenses/{id}/reveal"),
        format!("/licenses/{id}"),
        "/licenses".to_owned(),
        "/licenses/batch".to_owned(),
        format!("/licenses/{id}/devices/{device}/deactivate"),
        format!("/licenses/{id}/devices/{device}/transfer"),
    ] {
        let reply = viewer.post(&uri, &[("_csrf", &csrf), ("count", "1")]).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "POST {uri}");
        assert_eq!(reply.error_code(), "FORBIDDEN");
    }
    for uri in [
        "/licenses/new".to_owned(),
        "/licenses/batch".to_owned(),
        format!("/licenses/{id}/edit"),
    ] {
        assert_eq!(
            viewer.get(&uri).await.status,
            StatusCode::FORBIDDEN,
            "GET {uri}"
        );
    }
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM audit_log WHERE action = 'license.reveal_key'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM devices WHERE status = 'active'"
        )
        .await,
        1
    );

    let mut alice = Client::new(app(&pool), "192.0.2.15");
    let csrf = alice.logged_in("alice").await;
    let revealed = alice
        .post(&format!("/licenses/{id}/reveal"), &[("_csrf", &csrf)])
        .await;
    assert_eq!(revealed.status, StatusCode::OK, "{}", revealed.body);
    assert!(
        revealed
            .body
            .contains(&format!("id=\"revealed-key\">{key}<")),
        "{}",
        revealed.body
    );
    let (actor, entity): (String, String) = sqlx::query_as(
        "SELECT actor_name, entity_id FROM audit_log WHERE action = 'license.reveal_key'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((actor.as_str(), entity), ("alice", id.to_string()));
    let again = alice.get(&format!("/licenses/{id}")).await;
    assert!(
        !again.body.contains(&key),
        "shown once, on the answer to the reveal"
    );
    assert!(
        again.body.contains("license.reveal_key"),
        "in the license's trail"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn deactivate_and_transfer_from_the_page_are_listed_as_seat_changes(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let (id, key) = license(&pool, 2).await;
    let first = activate(&pool, &key, 1).await;
    let second = activate(&pool, &key, 2).await;
    let mut client = Client::new(app(&pool), "192.0.2.16");
    let csrf = client.logged_in("alice").await;

    let page = client.get(&format!("/licenses/{id}")).await;
    assert!(
        page.body
            .contains("No device has been deactivated or transferred.")
    );
    assert!(
        page.body.contains("hx-confirm=\"Deactivate laptop-1?"),
        "deactivating asks first"
    );

    let done = client
        .post(
            &format!("/licenses/{id}/devices/{first}/deactivate"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), format!("/licenses/{id}#devices"));
    let again = client
        .post(
            &format!("/licenses/{id}/devices/{first}/deactivate"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.body);
    assert_eq!(again.error_code(), "DEVICE_NOT_FOUND");
    assert!(
        again.body.contains("id=\"refusal\""),
        "said on the license's page"
    );
    let elsewhere = client
        .post(
            &format!("/licenses/{}/devices/{second}/deactivate", Uuid::new_v4()),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(
        elsewhere.status,
        StatusCode::NOT_FOUND,
        "a device of another license"
    );

    // Transfer the second seat: a bad component is named, a machine that
    // holds a seat already is refused, then it moves.
    let uri = format!("/licenses/{id}/devices/{second}/transfer");
    let form = client.get(&uri).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.body.contains("laptop-2"));
    let bad = client
        .post(&uri, &[("_csrf", &csrf), ("system_uuid", "not a uuid")])
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body
            .contains("system_uuid-error\">System UUID: expected a UUID"),
        "{}",
        bad.body
    );
    let empty = client.post(&uri, &[("_csrf", &csrf)]).await;
    assert!(
        empty
            .body
            .contains("id=\"form-error\">Not transferred: give at least one usable component"),
        "{}",
        empty.body
    );
    let own = machine(2);
    let held = client
        .post(
            &uri,
            &[
                ("_csrf", &csrf),
                ("system_uuid", own.system_uuid.as_deref().unwrap()),
                ("cpu_id", "cpu-2"),
                ("macs", "02:00:00:00:00:02"),
            ],
        )
        .await;
    assert_eq!(held.status, StatusCode::CONFLICT, "{}", held.body);
    assert!(held.body.contains("already holds a seat"));
    let moved = client
        .post(
            &uri,
            &[
                ("_csrf", &csrf),
                ("system_uuid", &Uuid::from_u128(99).to_string()),
                ("macs", "02:00:00:00:00:63"),
                ("device_name", "new desktop"),
            ],
        )
        .await;
    assert_eq!(moved.status, StatusCode::SEE_OTHER, "{}", moved.body);

    let page = client.get(&format!("/licenses/{id}")).await;
    let body = &page.body;
    assert!(body.contains("1 of 2 in use"), "{body}");
    assert!(body.contains("new desktop"));
    let changes = body
        .split("id=\"seat-changes\"")
        .nth(1)
        .unwrap()
        .split("</table>")
        .next()
        .unwrap();
    assert_eq!(
        changes.matches("class=\"seat-change\"").count(),
        2,
        "{changes}"
    );
    assert!(
        changes.contains("<td>transfer</td><td>admin</td><td>laptop-2</td><td>new desktop</td>"),
        "{changes}"
    );
    assert!(
        changes.contains("<td>deactivate</td><td>admin</td><td>laptop-1</td>"),
        "{changes}"
    );
    assert!(body.contains("device.transfer"), "audited");
    // An admin's changes leave the client's budget whole.
    let client_changes = count(
        &pool,
        "SELECT count(*) FROM device_transfers WHERE initiated_by = 'client'",
    )
    .await;
    assert_eq!(client_changes, 0);
}
