//! The panel's customer pages over HTTP: search and keyset pages, the
//! autocomplete, the form's refusals named by field, delete refused while
//! licenses exist, the customer's page, and a viewer refused every change.

#[allow(dead_code)]
mod support;

use axum::http::{Method, StatusCode};
use latchkey_control::app::{self, AppState};
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::admins::Role;
use latchkey_control::panel;
use serde_json::json;
use sqlx::PgPool;
use support::api::{Api, V1};
use support::config;
use support::panel::{Client, admin, concrete};

fn app(pool: &PgPool) -> axum::Router {
    app::router(AppState::new(pool.clone(), &config(&[])).unwrap())
}

async fn customer(api: &Api, name: &str, email: &str, company: &str) -> String {
    let created = api
        .post(
            &format!("{V1}/customers"),
            json!({ "name": name, "email": email, "company": company }),
        )
        .await;
    created.ok(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn count(body: &str, needle: &str) -> usize {
    body.matches(needle).count()
}

fn next_link(body: &str) -> Option<String> {
    let marker = "href=\"/customers?";
    let start = body.find(marker)? + "href=\"".len();
    let end = body[start..].find('"')? + start;
    Some(body[start..end].replace("&amp;", "&"))
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_viewer_sees_customers_but_every_change_is_refused(pool: PgPool) {
    admin(&pool, "victor", Role::Viewer).await;
    let api = Api::new(pool.clone()).await;
    let id = customer(&api, "Ada Lovelace", "ada@example.com", "Analytical").await;
    let mut viewer = Client::new(app(&pool), "192.0.2.90");
    let csrf = viewer.logged_in("victor").await;

    let list = viewer.get("/customers").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert!(list.body.contains("Ada Lovelace"));
    assert!(!list.body.contains("id=\"new-customer\""), "no create link");
    let page = viewer.get(&format!("/customers/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("id=\"edit-customer\""), "no edit link");
    assert!(
        !page.body.contains("id=\"delete-form\""),
        "no delete button"
    );

    // Every mutating customer route, and the forms leading to them.
    let mutating: Vec<_> = panel::protected_routes()
        .into_iter()
        .filter(|route| route.path.starts_with("/customers"))
        .filter(|route| {
            route.method != Method::GET
                || route.path.ends_with("/new")
                || route.path.ends_with("/edit")
        })
        .collect();
    assert_eq!(mutating.len(), 5, "{mutating:?}");
    for route in mutating {
        let uri = concrete(route.path, &id);
        let form = [
            ("_csrf", csrf.as_str()),
            ("name", "Changed"),
            ("email", "x@example.com"),
        ];
        let reply = viewer.send(route.method.clone(), &uri, Some(&form)).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{} {uri}",
            route.method
        );
        assert_eq!(reply.error_code(), "FORBIDDEN", "{} {uri}", route.method);
    }
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM customers")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(names, ["Ada Lovelace"]);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn create_edit_and_refusals_named_by_field(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let mut client = Client::new(app(&pool), "192.0.2.91");
    let csrf = client.logged_in("alice").await;

    let empty = client.get("/customers").await;
    assert!(empty.body.contains("No customers yet."), "{}", empty.body);
    let form = client.get("/customers/new").await;
    assert_eq!(form.status, StatusCode::OK);

    let bad = client
        .post(
            "/customers",
            &[
                ("_csrf", &csrf),
                ("name", "Grace Hopper"),
                ("email", "grace-at-navy"),
                ("company", "US Navy"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert_eq!(bad.error_code(), "INVALID_REQUEST");
    assert!(
        bad.body.contains(
            "id=\"email-error\">E-mail must be an e-mail address like name@example.com</span>"
        ),
        "{}",
        bad.body
    );
    assert!(bad.body.contains("aria-describedby=\"email-error\""));
    assert!(
        bad.body.contains("value=\"grace-at-navy\"") && bad.body.contains("value=\"US Navy\""),
        "what was entered is kept"
    );
    assert!(
        !bad.body.contains("id=\"name-error\""),
        "only the field at fault"
    );
    let blank = client
        .post("/customers", &[("_csrf", &csrf), ("name", "  ")])
        .await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST);
    assert!(
        blank
            .body
            .contains("id=\"name-error\">Name must be 1 to 256 characters")
    );

    let created = client
        .post(
            "/customers",
            &[
                ("_csrf", &csrf),
                ("name", "Grace Hopper"),
                ("email", "grace@navy.example"),
                ("company", "US Navy"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let page_uri = created.location().to_owned();
    let id = page_uri.trim_start_matches("/customers/").to_owned();
    let page = client.get(&page_uri).await;
    assert!(page.body.contains("Grace Hopper") && page.body.contains("grace@navy.example"));
    assert!(page.body.contains("No licenses for this customer yet."));
    assert!(page.body.contains("id=\"stat-last-seen\">never"));

    let edit = client.get(&format!("{page_uri}/edit")).await;
    assert!(edit.body.contains("value=\"grace@navy.example\""));
    let bad_edit = client
        .post(
            &page_uri,
            &[("_csrf", &csrf), ("name", "Grace"), ("email", "a b@c.de")],
        )
        .await;
    assert_eq!(bad_edit.status, StatusCode::BAD_REQUEST);
    assert!(bad_edit.body.contains("id=\"email-error\""));
    let saved = client
        .post(
            &page_uri,
            &[
                ("_csrf", &csrf),
                ("name", "Rear Admiral Hopper"),
                ("email", ""),
                ("company", "US Navy"),
                ("notes", "COBOL"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let row: (String, Option<String>, Option<String>) =
        sqlx::query_as("SELECT name, email, notes FROM customers WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        row,
        ("Rear Admiral Hopper".into(), None, Some("COBOL".into()))
    );
    let actions: Vec<String> =
        sqlx::query_scalar("SELECT action FROM audit_log WHERE entity_id = $1 ORDER BY at, id")
            .bind(&id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(actions, ["customer.create", "customer.update"]);

    let missing = client
        .get("/customers/00000000-0000-0000-0000-000000000000")
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let deleted = client
        .post(&format!("{page_uri}/delete"), &[("_csrf", &csrf)])
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(deleted.location(), "/customers");
    assert_eq!(client.get(&page_uri).await.status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn delete_is_refused_while_licenses_exist_and_the_page_shows_them(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let api = Api::new(pool.clone()).await;
    let id = customer(&api, "Acme Corp", "ops@acme.example", "Acme").await;
    let product_id = api.product("studio").await;
    let created = api
        .post(
            &format!("{V1}/licenses"),
            json!({ "product_id": product_id, "customer_id": id, "count": 3, "device_limit": 2 }),
        )
        .await;
    let first = created.ok(StatusCode::CREATED)["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    api.post(
        &format!("{V1}/licenses/{first}/suspend"),
        json!({ "reason": "unpaid" }),
    )
    .await
    .ok(StatusCode::OK);

    let mut client = Client::new(app(&pool), "192.0.2.92");
    let csrf = client.logged_in("alice").await;
    let page = client.get(&format!("/customers/{id}")).await;
    assert_eq!(
        count(&page.body, "class=\"license-row\""),
        3,
        "{}",
        page.body
    );
    assert!(page.body.contains("id=\"stat-active\">2<"), "{}", page.body);
    assert!(page.body.contains("id=\"stat-suspended\">1<"));
    assert!(page.body.contains("id=\"stat-devices\">0 / 6<"));
    assert!(page.body.contains("Studio"), "the product's name");

    let refused = client
        .post(&format!("/customers/{id}/delete"), &[("_csrf", &csrf)])
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(refused.error_code(), "CONFLICT");
    assert!(
        refused.body.contains(
            "id=\"delete-refused\">Not deleted: the customer still has 3 license(s): delete or reassign them first."
        ),
        "{}",
        refused.body
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn search_pages_by_keyset_and_the_autocomplete_suggests(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let api = Api::new(pool.clone()).await;
    for i in 0..60 {
        customer(
            &api,
            &format!("Person {i:02}"),
            &format!("p{i}@mail.example"),
            if i % 2 == 0 { "Evenco" } else { "Oddworks" },
        )
        .await;
    }
    let mut client = Client::new(app(&pool), "192.0.2.93");
    client.logged_in("alice").await;

    // 60 customers: a full page of 50, then 10, each once.
    let first = client.get("/customers").await;
    assert_eq!(count(&first.body, "class=\"customer-row\""), 50);
    let next = next_link(&first.body).expect("an older page");
    let second = client.get(&next).await;
    assert_eq!(count(&second.body, "class=\"customer-row\""), 10, "{next}");
    assert!(!second.body.contains("id=\"next-page\""));
    for i in 0..60 {
        let name = format!(">Person {i:02}<");
        assert_eq!(
            count(&first.body, &name) + count(&second.body, &name),
            1,
            "{name}"
        );
    }

    // Company, e-mail and name, any case; the query is kept in the next link.
    let odd = client.get("/customers?q=ODDWORKS").await;
    assert_eq!(count(&odd.body, "class=\"customer-row\""), 30);
    assert!(next_link(&odd.body).is_none());
    let by_mail = client.get("/customers?q=p7%40mail").await;
    assert_eq!(count(&by_mail.body, "class=\"customer-row\""), 1);
    let none = client.get("/customers?q=nobody").await;
    assert!(
        none.body.contains("No customer matches “nobody”"),
        "{}",
        none.body
    );
    let bad_cursor = client.get("/customers?after=yesterday").await;
    assert_eq!(bad_cursor.status, StatusCode::BAD_REQUEST);

    let suggest = client.get("/customers/suggest?q=person%204").await;
    assert_eq!(suggest.status, StatusCode::OK);
    assert_eq!(
        count(&suggest.body, "class=\"suggestion\""),
        8,
        "{}",
        suggest.body
    );
    let one = client.get("/customers/suggest?q=Person%2042").await;
    assert_eq!(count(&one.body, "class=\"suggestion\""), 1);
    assert!(one.body.contains("p42@mail.example"));
    let nothing = client.get("/customers/suggest?q=zzz").await;
    assert!(nothing.body.contains("No customer matches “zzz”."));
    let blank = client.get("/customers/suggest?q=").await;
    assert!(!blank.body.contains("<li"), "nothing typed: no list");
    let short = client.get("/customers/suggest?q=pe").await;
    assert!(short.body.contains("id=\"suggest-hint\""), "{}", short.body);
    assert!(!short.body.contains("<li"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_search_finds_matches_beyond_the_newest_window_in_order(pool: PgPool) {
    use latchkey_control::db::customers;
    // 6 000 customers, newest first by number; every 1 000th is a "needle",
    // the oldest (beyond the first step's window of 5 000) among them.
    sqlx::query(
        "INSERT INTO customers (name, company, created_at)
         SELECT 'Customer ' || i, CASE WHEN i % 1000 = 0 THEN 'Needle Works' END,
                now() - (i || ' seconds')::interval
           FROM generate_series(1, 6000) i",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (page, next) = customers::list_page(&pool, Some("needle"), None, 4)
        .await
        .unwrap();
    let names: Vec<_> = page.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Customer 1000",
            "Customer 2000",
            "Customer 3000",
            "Customer 4000"
        ]
    );
    let (rest, last) = customers::list_page(&pool, Some("needle"), next, 4)
        .await
        .unwrap();
    let names: Vec<_> = rest.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["Customer 5000", "Customer 6000"],
        "found past the window"
    );
    assert!(last.is_none());
    // A common term: every page full, in order, across the window's edge.
    let mut cursor = None;
    let mut seen = 0;
    for _ in 0..3 {
        let (page, next) = customers::list_page(&pool, Some("customer 4"), cursor, 500)
            .await
            .unwrap();
        seen += page.len();
        assert!(page.windows(2).all(|w| w[0].created_at > w[1].created_at));
        cursor = next;
    }
    // "Customer 4", "Customer 4x", "4xx" and "4xxx": 1 + 10 + 100 + 1000.
    assert_eq!(seen, 1111);
    assert!(cursor.is_none());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn delete_with_its_licenses_is_one_audited_transaction_reaching_edges(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let api = Api::new(pool.clone()).await;
    let id = customer(&api, "Initech", "bill@initech.example", "Initech").await;
    let other = customer(&api, "Globex", "hank@globex.example", "Globex").await;
    let product_id = api.product("studio").await;
    for (owner, count) in [(&id, 3), (&other, 1)] {
        api.post(
            &format!("{V1}/licenses"),
            json!({ "product_id": product_id, "customer_id": owner, "count": count }),
        )
        .await
        .ok(StatusCode::CREATED);
    }
    let ids: Vec<uuid::Uuid> =
        sqlx::query_scalar("SELECT id FROM licenses WHERE customer_id = $1::uuid ORDER BY id")
            .bind(&id)
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut client = Client::new(app(&pool), "192.0.2.94");
    let csrf = client.logged_in("alice").await;
    let page = client.get(&format!("/customers/{id}")).await;
    assert!(page.body.contains("id=\"with-licenses\""));

    let odd = client
        .post(
            &format!("/customers/{id}/delete"),
            &[("_csrf", &csrf), ("with_licenses", "maybe")],
        )
        .await;
    assert_eq!(odd.status, StatusCode::BAD_REQUEST);
    let deleted = client
        .post(
            &format!("/customers/{id}/delete"),
            &[("_csrf", &csrf), ("with_licenses", "yes")],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.body);

    let left: Vec<String> = sqlx::query_scalar("SELECT name FROM customers")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(left, ["Globex"], "the other customer and its license stay");
    let licenses: i64 = sqlx::query_scalar("SELECT count(*) FROM licenses")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(licenses, 1);
    // One request: an audit row per license, then the customer's.
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT action, entity_id FROM audit_log
          WHERE request_id = (SELECT request_id FROM audit_log WHERE action = 'customer.delete')
          ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut expected: Vec<(String, Option<String>)> = ids
        .iter()
        .map(|license| ("license.delete".to_owned(), Some(license.to_string())))
        .collect();
    expected.push(("customer.delete".to_owned(), Some(id.clone())));
    assert_eq!(rows, expected);
    // Edges learn of each removal through the outbox.
    let removed: Vec<String> = sqlx::query_scalar(
        "SELECT entity_id FROM snapshot_outbox
          WHERE entity_kind = 'license' AND key_hash IS NOT NULL ORDER BY entity_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut expected: Vec<String> = ids.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(removed, expected);
}
