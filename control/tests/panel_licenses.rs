//! The panel's license list over HTTP: filters, sorts, keyset pages that
//! neither repeat nor skip a row, the empty and no-match states, the quick
//! edit with its refusals named at their field, bulk operations (the count
//! in the confirmation, one audit and outbox row per license, skips
//! reported, one transaction), and a viewer refused every change.

#[allow(dead_code)]
mod support;

use std::collections::HashSet;

use axum::http::{Method, StatusCode};
use latchkey_control::app::{self, AppState};
use latchkey_control::context::RequestContext;
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::admins::Role;
use latchkey_control::db::licenses::{self, NewLicense};
use latchkey_control::panel;
use latchkey_control::secrets::Secrets;
use latchkey_shared::snapshot::LicenseStatus;
use serde_json::json;
use sqlx::PgPool;
use support::config;
use support::panel::{Client, admin};
use uuid::Uuid;

fn app(pool: &PgPool) -> axum::Router {
    app::router(AppState::new(pool.clone(), &config(&[])).unwrap())
}

async fn product(pool: &PgPool, slug: &str) -> i32 {
    sqlx::query_scalar("INSERT INTO products (slug, name) VALUES ($1, $1) RETURNING id")
        .bind(slug)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// `count` licenses alike (one batch when more than one); their ids.
async fn licenses_of(pool: &PgPool, template: serde_json::Value, count: usize) -> Vec<Uuid> {
    let new: NewLicense = serde_json::from_value(template).unwrap();
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
    .map(|created| created.license.id)
    .collect()
}

async fn set_status(pool: &PgPool, id: Uuid, status: LicenseStatus) {
    licenses::set_status(pool, &RequestContext::system("test"), id, status)
        .await
        .unwrap();
}

/// The license ids of a list page's rows, in order.
fn row_ids(body: &str) -> Vec<Uuid> {
    body.split("<tr class=\"license-row\" id=\"license-")
        .skip(1)
        .map(|rest| rest[..36].parse().unwrap())
        .collect()
}

fn next_link(body: &str) -> Option<String> {
    let at = body.find("\" id=\"next-page\"")?;
    let start = body[..at].rfind("href=\"")? + "href=\"".len();
    Some(body[start..at].replace("&#38;", "&").replace("&amp;", "&"))
}

async fn audit_count(pool: &PgPool, action: &str, entity_id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = $1 AND entity_id = $2")
        .bind(action)
        .bind(entity_id.to_string())
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn status_of(pool: &PgPool, id: Uuid) -> String {
    sqlx::query_scalar("SELECT status FROM licenses WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn filters_pick_exactly_the_licenses_asked_for(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let studio = product(&pool, "studio").await;
    let player = product(&pool, "player").await;
    let customer: Uuid =
        sqlx::query_scalar("INSERT INTO customers (name) VALUES ('Ada Lovelace') RETURNING id")
            .fetch_one(&pool)
            .await
            .unwrap();
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::days(10))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let full = licenses_of(&pool, json!({ "product_id": studio }), 3).await;
    let trial = licenses_of(
        &pool,
        json!({ "product_id": player, "kind": "trial", "customer_id": customer }),
        1,
    )
    .await[0];
    let expiring = licenses_of(
        &pool,
        json!({ "product_id": player, "valid_until": soon }),
        1,
    )
    .await[0];
    set_status(&pool, full[0], LicenseStatus::Suspended).await;
    let batch: Uuid = sqlx::query_scalar("SELECT batch_id FROM licenses WHERE id = $1")
        .bind(full[1])
        .fetch_one(&pool)
        .await
        .unwrap();
    let prefix: String = sqlx::query_scalar("SELECT key_prefix FROM licenses WHERE id = $1")
        .bind(trial)
        .fetch_one(&pool)
        .await
        .unwrap();

    let mut client = Client::new(app(&pool), "192.0.2.10");
    client.logged_in("alice").await;
    let set = |ids: &[Uuid]| ids.iter().copied().collect::<HashSet<_>>();
    let cases: Vec<(String, HashSet<Uuid>)> = vec![
        ("status=suspended".into(), set(&[full[0]])),
        (format!("product={player}"), set(&[trial, expiring])),
        ("kind=trial".into(), set(&[trial])),
        ("expiring=30".into(), set(&[expiring])),
        (format!("batch={batch}"), set(&full)),
        (format!("customer={customer}"), set(&[trial])),
        // Any case, part of the first group, or the group of a whole key.
        (format!("key={}", prefix[..3].to_lowercase()), set(&[trial])),
        (format!("key={prefix}-AAAAA-BBBBB"), set(&[trial])),
        (format!("status=active&product={studio}"), set(&full[1..])),
    ];
    for (query, expected) in cases {
        let page = client.get(&format!("/licenses?{query}")).await;
        assert_eq!(page.status, StatusCode::OK, "{query}: {}", page.body);
        // Three random key groups could share their first characters with
        // the trial's: only a key filter may find more than expected.
        let found = set(&row_ids(&page.body));
        if query.starts_with("key=") {
            assert!(found.is_superset(&expected), "{query}: {found:?}");
        } else {
            assert_eq!(found, expected, "{query}");
        }
    }
    let customer_page = client.get(&format!("/licenses?customer={customer}")).await;
    assert!(
        customer_page
            .body
            .contains("Customer: <a href=\"/customers/")
    );
    assert!(customer_page.body.contains("Ada Lovelace"));

    // Valid until, soonest first: the dated one before every perpetual one.
    let sorted = client.get("/licenses?sort=valid_until").await;
    assert_eq!(row_ids(&sorted.body)[0], expiring);
    // Oldest first is newest first reversed.
    let newest = row_ids(&client.get("/licenses").await.body);
    let mut oldest = row_ids(&client.get("/licenses?sort=oldest").await.body);
    oldest.reverse();
    assert_eq!(newest, oldest);

    for (query, field) in [
        ("status=lost", "status"),
        ("expiring=soon", "expiring"),
        ("batch=12", "batch"),
        ("sort=price", "sort"),
        ("key=%25", "key"),
        ("after=junk", "after"),
    ] {
        let refused = client.get(&format!("/licenses?{query}")).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(refused.error_code(), "INVALID_REQUEST");
        assert!(refused.body.contains(field), "{query}: {}", refused.body);
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn keyset_pages_neither_repeat_nor_skip_in_any_sort(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let studio = product(&pool, "studio").await;
    // One batch: 70 licenses with the same created_at (ties broken by id),
    // 60 more with ends (some equal) and perpetual ones among them.
    let mut all = licenses_of(&pool, json!({ "product_id": studio }), 70).await;
    for days in [5, 5, 9] {
        let until = (time::OffsetDateTime::now_utc() + time::Duration::days(days))
            .replace_nanosecond(0)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        all.extend(
            licenses_of(
                &pool,
                json!({ "product_id": studio, "valid_until": until }),
                20,
            )
            .await,
        );
    }
    let all: HashSet<Uuid> = all.into_iter().collect();
    let mut client = Client::new(app(&pool), "192.0.2.11");
    client.logged_in("alice").await;
    for sort in ["newest", "oldest", "valid_until"] {
        let mut seen = Vec::new();
        let mut uri = format!("/licenses?sort={sort}");
        let mut pages = 0;
        loop {
            let page = client.get(&uri).await;
            assert_eq!(page.status, StatusCode::OK, "{uri}: {}", page.body);
            seen.extend(row_ids(&page.body));
            pages += 1;
            assert!(
                pages <= 3,
                "{sort}: page {pages} at {uri}, {} rows seen",
                seen.len()
            );
            match next_link(&page.body) {
                Some(next) => uri = next,
                None => break,
            }
        }
        assert_eq!(pages, 3, "{sort}: 130 rows, 50 a page");
        let unique: HashSet<Uuid> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "{sort}: a row repeated");
        assert_eq!(unique, all, "{sort}: a row skipped");
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_empty_list_and_a_filter_with_no_match_say_so(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let mut client = Client::new(app(&pool), "192.0.2.12");
    client.logged_in("alice").await;
    let empty = client.get("/licenses").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.body.contains("No licenses yet"), "{}", empty.body);
    assert!(!empty.body.contains("not yet"), "the placeholder is gone");

    let studio = product(&pool, "studio").await;
    licenses_of(&pool, json!({ "product_id": studio }), 1).await;
    let none = client.get("/licenses?status=revoked").await;
    assert!(none.body.contains("No license matches these filters"));
    assert!(none.body.contains("id=\"clear-filters\""));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_viewer_sees_the_list_without_controls_and_every_change_is_refused(pool: PgPool) {
    admin(&pool, "victor", Role::Viewer).await;
    let studio = product(&pool, "studio").await;
    let id = licenses_of(&pool, json!({ "product_id": studio }), 1).await[0].to_string();
    let mut viewer = Client::new(app(&pool), "192.0.2.13");
    let csrf = viewer.logged_in("victor").await;

    let list = viewer.get("/licenses").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert!(list.body.contains(&format!("href=\"/licenses/{id}\"")));
    for control in ["id=\"bulk-form\"", "class=\"pick\"", "quick-edit"] {
        assert!(!list.body.contains(control), "{control} shown to a viewer");
    }

    let mine: Vec<_> = panel::protected_routes()
        .into_iter()
        .filter(|route| route.path.starts_with("/licenses/bulk") || route.path.ends_with("/quick"))
        .collect();
    assert_eq!(mine.len(), 4, "{mine:?}");
    for route in mine {
        let uri = route.path.replace("{id}", &id);
        let form = [
            ("_csrf", csrf.as_str()),
            ("op", "suspend"),
            ("scope", "selected"),
            ("id", id.as_str()),
            ("status", "suspended"),
            ("valid_until", ""),
            ("device_limit", "1"),
        ];
        let reply = if route.method == Method::GET {
            viewer.get(&uri).await
        } else {
            viewer.post(&uri, &form).await
        };
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{} {uri}",
            route.method
        );
        assert_eq!(reply.error_code(), "FORBIDDEN");
    }
    assert_eq!(status_of(&pool, id.parse().unwrap()).await, "active");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn quick_edit_saves_in_place_and_names_the_field_it_refuses(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let studio = product(&pool, "studio").await;
    let id = licenses_of(&pool, json!({ "product_id": studio, "device_limit": 2 }), 1).await[0];
    let revoked = licenses_of(&pool, json!({ "product_id": studio }), 1).await[0];
    set_status(&pool, revoked, LicenseStatus::Revoked).await;
    let mut client = Client::new(app(&pool), "192.0.2.14");
    let csrf = client.logged_in("alice").await;
    let uri = format!("/licenses/{id}/quick");

    let editing = client.get(&uri).await;
    assert_eq!(editing.status, StatusCode::OK);
    assert!(
        editing.body.starts_with("<tr"),
        "a row, not a page: {}",
        editing.body
    );
    assert!(editing.body.contains("id=\"quick-valid-until\""));
    let cancel = client.get(&format!("{uri}?cancel=1")).await;
    assert!(cancel.body.contains("quick-edit"), "the plain row again");

    let save = |status: &'static str, until: &'static str, limit: &'static str| {
        [
            ("_csrf", csrf.clone()),
            ("status", status.into()),
            ("valid_until", until.into()),
            ("device_limit", limit.into()),
        ]
    };
    for ((status, until, limit), error_id, code) in [
        (
            ("active", "", "many"),
            "device-limit-error",
            "INVALID_REQUEST",
        ),
        (
            ("active", "", "-1"),
            "device-limit-error",
            "INVALID_REQUEST",
        ),
        (
            ("active", "next week", "2"),
            "valid-until-error",
            "INVALID_REQUEST",
        ),
        // Before the license's start.
        (
            ("active", "2001-01-01", "2"),
            "valid-until-error",
            "INVALID_REQUEST",
        ),
        (("lost", "", "2"), "status-error", "INVALID_REQUEST"),
    ] {
        let form = save(status, until, limit);
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let refused = client.post(&uri, &form).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{form:?}: {}",
            refused.body
        );
        assert_eq!(refused.error_code(), code);
        assert!(
            refused.body.contains(&format!("id=\"{error_id}\"")),
            "{form:?}: {}",
            refused.body
        );
        assert!(
            refused.body.contains(&format!("value=\"{until}\"")),
            "what was typed stays"
        );
    }
    // A revoked license stays revoked: said at the status.
    let back = client
        .post(
            &format!("/licenses/{revoked}/quick"),
            &[
                ("_csrf", &csrf),
                ("status", "active"),
                ("valid_until", ""),
                ("device_limit", "1"),
            ],
        )
        .await;
    assert_eq!(back.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(back.error_code(), "CONFLICT");
    assert!(back.body.contains("id=\"status-error\""));
    assert!(back.body.contains("stays revoked"));
    assert_eq!(
        audit_count(&pool, "license.update", id).await,
        0,
        "nothing saved"
    );

    let saved = client
        .post(
            &uri,
            &[
                ("_csrf", &csrf),
                ("status", "suspended"),
                ("valid_until", "2031-05-17"),
                ("device_limit", "7"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.body);
    assert!(
        saved.body.contains("2031-05-17 23:59:59 UTC"),
        "{}",
        saved.body
    );
    assert!(saved.body.contains(">7<"));
    assert!(saved.body.contains("quick-edit"), "the plain row");
    let license = licenses::get(&pool, id).await.unwrap();
    assert_eq!(
        (license.status, license.device_limit),
        (LicenseStatus::Suspended, 7)
    );
    assert_eq!(audit_count(&pool, "license.suspend", id).await, 1);
    assert_eq!(audit_count(&pool, "license.update", id).await, 1);
    let actor: String = sqlx::query_scalar(
        "SELECT actor_name FROM audit_log WHERE action = 'license.update' AND entity_id = $1",
    )
    .bind(id.to_string())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(actor, "alice");

    // Saved again as shown (the time to the minute): nothing changes.
    let again = client
        .post(
            &uri,
            &[
                ("_csrf", &csrf),
                ("status", "suspended"),
                ("valid_until", "2031-05-17 23:59"),
                ("device_limit", "7"),
            ],
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(audit_count(&pool, "license.update", id).await, 1);
    assert_eq!(
        licenses::get(&pool, id).await.unwrap().valid_until,
        license.valid_until
    );
}

fn form<'a>(csrf: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![("_csrf", csrf)];
    form.extend_from_slice(extra);
    form
}

/// The count in a confirmation's heading.
fn confirmed_count(body: &str) -> i64 {
    let marker = "<input type=\"hidden\" name=\"expected\" value=\"";
    let start = body
        .find(marker)
        .unwrap_or_else(|| panic!("no confirmation: {body}"))
        + marker.len();
    body[start..start + body[start..].find('"').unwrap()]
        .parse()
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_bulk_suspension_by_filter_counts_first_and_audits_each_license(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let studio = product(&pool, "studio").await;
    let player = product(&pool, "player").await;
    let ids = licenses_of(&pool, json!({ "product_id": studio }), 5).await;
    let other = licenses_of(&pool, json!({ "product_id": player }), 1).await[0];
    set_status(&pool, ids[0], LicenseStatus::Revoked).await;
    set_status(&pool, ids[1], LicenseStatus::Suspended).await;
    let mut client = Client::new(app(&pool), "192.0.2.15");
    let csrf = client.logged_in("alice").await;
    let studio = studio.to_string();
    let fields = [
        ("op", "suspend"),
        ("scope", "matching"),
        ("product", studio.as_str()),
    ];

    let preview = client
        .post("/licenses/bulk/preview", &form(&csrf, &fields))
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    assert!(
        preview.body.contains("Suspend 3 license(s)?"),
        "{}",
        preview.body
    );
    assert!(
        preview
            .body
            .contains("Among licenses matching product studio.")
    );
    assert!(preview.body.contains("1 already suspended"));
    assert!(
        preview
            .body
            .contains("1 revoked: a revoked license stays revoked")
    );
    assert_eq!(confirmed_count(&preview.body), 3);
    let outbox_before: i64 = sqlx::query_scalar("SELECT count(*) FROM snapshot_outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    for id in &ids[2..] {
        assert_eq!(
            status_of(&pool, *id).await,
            "active",
            "the preview changes nothing"
        );
    }

    let mut apply = form(&csrf, &fields);
    apply.push(("expected", "3"));
    let done = client.post("/licenses/bulk", &apply).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(
        done.body.contains("Suspended 3 license(s)."),
        "{}",
        done.body
    );
    assert!(!done.body.contains("id=\"bulk-changed\""));
    for id in &ids[1..] {
        assert_eq!(status_of(&pool, *id).await, "suspended");
    }
    assert_eq!(status_of(&pool, ids[0]).await, "revoked");
    assert_eq!(status_of(&pool, other).await, "active", "another product");
    for id in &ids[2..] {
        assert_eq!(
            audit_count(&pool, "license.suspend", *id).await,
            1,
            "one audit row each"
        );
    }
    assert_eq!(
        audit_count(&pool, "license.suspend", ids[1]).await,
        1,
        "the earlier one only"
    );
    let request_ids: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT request_id) FROM audit_log WHERE action = 'license.suspend' AND actor_name = 'alice'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(request_ids, 1, "one request");
    let outbox_after: i64 = sqlx::query_scalar("SELECT count(*) FROM snapshot_outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        outbox_after - outbox_before,
        3,
        "an outbox row per license for the edges"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_bulk_operation_reports_what_changed_since_its_confirmation(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let studio = product(&pool, "studio").await;
    let ids = licenses_of(
        &pool,
        json!({ "product_id": studio, "valid_until": "2030-01-01T00:00:00Z" }),
        3,
    )
    .await;
    let perpetual = licenses_of(&pool, json!({ "product_id": studio }), 1).await[0];
    let mut client = Client::new(app(&pool), "192.0.2.16");
    let csrf = client.logged_in("alice").await;
    let picked: Vec<String> = ids
        .iter()
        .chain([&perpetual])
        .map(Uuid::to_string)
        .collect();
    let mut fields = vec![("op", "extend"), ("days", "30"), ("scope", "selected")];
    fields.extend(picked.iter().map(|id| ("id", id.as_str())));

    let preview = client
        .post("/licenses/bulk/preview", &form(&csrf, &fields))
        .await;
    assert!(
        preview.body.contains("Extend 3 license(s) by 30 day(s)?"),
        "{}",
        preview.body
    );
    assert!(preview.body.contains("1 perpetual: nothing to extend"));
    // Meanwhile one of them is deleted.
    licenses::delete(&pool, &RequestContext::system("test"), ids[0])
        .await
        .unwrap();
    let mut apply = form(&csrf, &fields);
    apply.push(("expected", "3"));
    let done = client.post("/licenses/bulk", &apply).await;
    assert!(
        done.body.contains("Extended 2 license(s) by 30 day(s)."),
        "{}",
        done.body
    );
    assert!(
        done.body.contains("id=\"bulk-changed\""),
        "says the count moved"
    );
    for id in &ids[1..] {
        let until = licenses::get(&pool, *id)
            .await
            .unwrap()
            .valid_until
            .unwrap();
        assert_eq!(until.date().to_string(), "2030-01-31");
        assert_eq!(audit_count(&pool, "license.extend", *id).await, 1);
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_bulk_operation_is_one_transaction(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let studio = product(&pool, "studio").await;
    let ids = licenses_of(
        &pool,
        json!({ "product_id": studio, "valid_until": "2030-01-01T00:00:00Z" }),
        3,
    )
    .await;
    // The last one locked (ids in order) cannot be extended by a year.
    let mut sorted = ids.clone();
    sorted.sort();
    sqlx::query("UPDATE licenses SET valid_until = '9999-06-01T00:00:00Z' WHERE id = $1")
        .bind(sorted[2])
        .execute(&pool)
        .await
        .unwrap();
    let mut client = Client::new(app(&pool), "192.0.2.17");
    let csrf = client.logged_in("alice").await;
    let studio = studio.to_string();
    let fields = [
        ("op", "extend"),
        ("days", "365"),
        ("scope", "matching"),
        ("product", studio.as_str()),
    ];
    let refused = client.post("/licenses/bulk", &form(&csrf, &fields)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert!(
        refused
            .body
            .contains("after the year 9999: nothing was changed"),
        "{}",
        refused.body
    );
    for id in &sorted[..2] {
        let until = licenses::get(&pool, *id)
            .await
            .unwrap()
            .valid_until
            .unwrap();
        assert_eq!(until.year(), 2030, "the earlier ones rolled back too");
        assert_eq!(audit_count(&pool, "license.extend", *id).await, 0);
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_bulk_operation_needs_a_selection_and_a_bound(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let studio = product(&pool, "studio").await;
    let ids = licenses_of(&pool, json!({ "product_id": studio }), 2).await;
    let mut client = Client::new(app(&pool), "192.0.2.18");
    let csrf = client.logged_in("alice").await;
    for (fields, says) in [
        (
            vec![("op", "suspend"), ("scope", "selected")],
            "select at least one license",
        ),
        (
            vec![("op", "suspend"), ("scope", "matching")],
            "choose “every license” to mean it",
        ),
        (
            vec![
                ("op", "suspend"),
                ("scope", "matching"),
                ("status", "revoked"),
            ],
            "no license matches",
        ),
        (
            vec![
                ("op", "extend"),
                ("days", "0"),
                ("scope", "matching"),
                ("everything", "yes"),
            ],
            "days",
        ),
        (
            vec![
                ("op", "device_limit"),
                ("device_limit", "-3"),
                ("scope", "matching"),
                ("everything", "yes"),
            ],
            "device_limit",
        ),
    ] {
        for uri in ["/licenses/bulk/preview", "/licenses/bulk"] {
            let refused = client.post(uri, &form(&csrf, &fields)).await;
            assert_eq!(
                refused.status,
                StatusCode::BAD_REQUEST,
                "{uri} {fields:?}: {}",
                refused.body
            );
            assert!(
                refused.body.contains(says),
                "{uri} {fields:?}: {}",
                refused.body
            );
        }
    }
    for id in &ids {
        assert_eq!(status_of(&pool, *id).await, "active");
    }
    // Asked for in so many words, "everything" is every license.
    let every = [
        ("op", "device_limit"),
        ("device_limit", "4"),
        ("scope", "matching"),
        ("everything", "yes"),
    ];
    let preview = client
        .post("/licenses/bulk/preview", &form(&csrf, &every))
        .await;
    assert!(
        preview
            .body
            .contains("Set the device limit of 2 license(s) to 4?"),
        "{}",
        preview.body
    );
    let done = client.post("/licenses/bulk", &form(&csrf, &every)).await;
    assert!(
        done.body
            .contains("Set the device limit of 2 license(s) to 4.")
    );
    for id in &ids {
        assert_eq!(licenses::get(&pool, *id).await.unwrap().device_limit, 4);
        assert_eq!(audit_count(&pool, "license.update", *id).await, 1);
    }
    // Deleted in bulk: each with its audit row.
    let picked: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let mut delete = vec![("op", "delete"), ("scope", "selected")];
    delete.extend(picked.iter().map(|id| ("id", id.as_str())));
    let deleted = client.post("/licenses/bulk", &form(&csrf, &delete)).await;
    assert!(
        deleted.body.contains("Deleted 2 license(s)"),
        "{}",
        deleted.body
    );
    for id in &ids {
        assert!(licenses::get(&pool, *id).await.is_err());
        assert_eq!(audit_count(&pool, "license.delete", *id).await, 1);
    }
}
