//! The panel's resource pools over HTTP: bulk add reported line by line
//! (nothing added on a malformed line unless asked), a CIDR block and a
//! phone range, the cap, allocation all or nothing, release, quarantine,
//! a resource's history, filters and search, and a viewer refused every
//! change.

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
use support::panel::{Client, Reply, admin};

fn app(pool: &PgPool) -> axum::Router {
    app::router(AppState::new(pool.clone(), &config(&[])).unwrap())
}

async fn admin_client(pool: &PgPool) -> (Client, String) {
    admin(pool, "alice", Role::Admin).await;
    let mut client = Client::new(app(pool), "192.0.2.93");
    let csrf = client.logged_in("alice").await;
    (client, csrf)
}

async fn paste(
    client: &mut Client,
    csrf: &str,
    kind: &str,
    values: &str,
    add_valid: bool,
) -> Reply {
    let mut form = vec![("_csrf", csrf), ("kind", kind), ("values", values)];
    if add_valid {
        form.push(("add_valid", "yes"));
    }
    client.post("/resources", &form).await
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

async fn allocate(client: &mut Client, csrf: &str, license: &str, count: &str) -> Reply {
    client
        .post(
            "/resources/allocate",
            &[
                ("_csrf", csrf),
                ("license_id", license),
                ("kind", "ip"),
                ("count", count),
            ],
        )
        .await
}

/// Releases resource `id`, to rest `days` days unless empty.
async fn release(client: &mut Client, csrf: &str, id: i64, days: &str) -> Reply {
    let uri = format!("/resources/{id}/release");
    client
        .post(&uri, &[("_csrf", csrf), ("quarantine_days", days)])
        .await
}

async fn quarantine(client: &mut Client, csrf: &str, id: i64, days: &str) -> Reply {
    let uri = format!("/resources/{id}/quarantine");
    client.post(&uri, &[("_csrf", csrf), ("days", days)]).await
}

/// The text of the report's row for `line`.
fn report_line(body: &str, line: usize) -> &str {
    let marker = format!("id=\"line-{line}\"");
    let start = body
        .find(&marker)
        .unwrap_or_else(|| panic!("no line {line} in {body}"));
    let end = body[start..].find("</tr>").unwrap() + start;
    &body[start..end]
}

fn rows(body: &str) -> usize {
    body.matches("class=\"resource-row\"").count()
}

/// The number shown in a pool's card for `class` (`free-count`, …).
fn pool_count(body: &str, kind: &str, class: &str) -> String {
    let card = &body[body.find(&format!("id=\"pool-{kind}\"")).unwrap()..];
    let marker = format!("class=\"{class}\">");
    let start = card.find(&marker).unwrap() + marker.len();
    card[start..start + card[start..].find('<').unwrap()].to_owned()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn bulk_add_reports_each_line_and_adds_nothing_on_a_bad_one_unless_asked(pool: PgPool) {
    let api = Api::new(pool.clone()).await;
    api.post(
        &format!("{V1}/resources"),
        json!({ "kind": "ip", "values": ["192.0.2.9"] }),
    )
    .await
    .ok(StatusCode::CREATED);
    let (mut client, csrf) = admin_client(&pool).await;
    let text = "192.0.2.1\n192.0.2.2\nnot-an-ip\n 192.0.2.1 \n192.0.2.9\n\n198.51.100.7/24\n";

    let refused = paste(&mut client, &csrf, "ip", text, false).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(refused.error_code(), "INVALID_REQUEST");
    let body = &refused.body;
    assert!(body.contains("Nothing added to IP addresses"), "{body}");
    assert!(body.contains("6 line(s), 2 malformed: <strong>nothing was added</strong>. The valid lines would add 2 new value(s)"), "{body}");
    assert!(report_line(body, 1).contains("1 new"));
    assert!(
        report_line(body, 3).contains("Malformed: &#34;not-an-ip&#34; is not an IP address"),
        "{}",
        report_line(body, 3)
    );
    assert!(report_line(body, 4).contains("already on line 1, skipped"));
    assert!(report_line(body, 5).contains("already in the pool (192.0.2.9), skipped"));
    assert!(
        !body.contains("id=\"line-6\""),
        "a blank line is no line of the report"
    );
    assert!(report_line(body, 7).contains("the block starts at 198.51.100.0/24"));
    assert!(body.contains("id=\"bulk-values-error\">Values: nothing was added"));
    assert!(
        body.contains("not-an-ip\n 192.0.2.1"),
        "the paste is kept to fix"
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM resources").await, 1);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM audit_log WHERE action = 'resource.add_bulk' AND actor_kind = 'admin'").await,
        0,
        "a refusal changes nothing"
    );

    let added = paste(&mut client, &csrf, "ip", text, true).await;
    assert_eq!(added.status, StatusCode::OK, "{}", added.body);
    assert!(
        added.body.contains("Added 2 to IP addresses"),
        "{}",
        added.body
    );
    assert!(added.body.contains(
        "2 added, 2 skipped as repeats or already in the pool, 2 malformed (left out, as asked)"
    ));
    assert!(report_line(&added.body, 2).contains("1 added"));
    let values: Vec<String> = sqlx::query_scalar("SELECT value FROM resources ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(values, ["192.0.2.9", "192.0.2.1", "192.0.2.2"]);
    let audit: serde_json::Value = sqlx::query_scalar(
        "SELECT after FROM audit_log WHERE action = 'resource.add_bulk' AND actor_kind = 'admin'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(audit["added"], 2);
    assert_eq!(audit["invalid_lines"], 2);
    assert_eq!(pool_count(&added.body, "ip", "free-count"), "3");

    // The form's other refusals, each at its field.
    let empty = paste(&mut client, &csrf, "ip", " \n\n", false).await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert!(
        empty
            .body
            .contains("id=\"bulk-values-error\">Values: give at least one value")
    );
    let no_pool = paste(&mut client, &csrf, "fax", "1", false).await;
    assert_eq!(no_pool.status, StatusCode::BAD_REQUEST);
    assert!(
        no_pool
            .body
            .contains("id=\"bulk-kind-error\">Pool: choose a pool")
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_cidr_block_and_a_phone_range_expand_within_the_cap(pool: PgPool) {
    let (mut client, csrf) = admin_client(&pool).await;

    let block = paste(&mut client, &csrf, "ip", "198.51.100.0/24", false).await;
    assert_eq!(block.status, StatusCode::OK, "{}", block.body);
    assert!(report_line(&block.body, 1).contains("256 values: 256 added"));
    assert_eq!(pool_count(&block.body, "ip", "free-count"), "256");
    let ends: Vec<String> = sqlx::query_scalar(
        "SELECT value FROM resources WHERE value IN ('198.51.100.0', '198.51.100.255') ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        ends,
        ["198.51.100.0", "198.51.100.255"],
        "network and broadcast included"
    );

    let phones = paste(
        &mut client,
        &csrf,
        "phone",
        "+4930123400-+4930123499\n+49 30 123450",
        false,
    )
    .await;
    assert_eq!(phones.status, StatusCode::OK, "{}", phones.body);
    assert!(report_line(&phones.body, 1).contains("100 values: 100 added"));
    assert!(report_line(&phones.body, 2).contains("already on line 1"));
    assert_eq!(pool_count(&phones.body, "phone", "free-count"), "100");

    // A block overlapping the pool: only the new addresses are added.
    let overlap = paste(
        &mut client,
        &csrf,
        "ip",
        "198.51.100.252/30\n198.51.101.0/31",
        false,
    )
    .await;
    let line = report_line(&overlap.body, 1);
    assert!(
        line.contains("4 values: ")
            && line.contains(
                "4 already in the pool (198.51.100.252, 198.51.100.253, 198.51.100.254, …), skipped"
            ),
        "{line}"
    );
    assert!(report_line(&overlap.body, 2).contains("2 values: 2 added"));
    assert_eq!(
        count(&pool, "SELECT count(*) FROM resources WHERE kind = 'ip'").await,
        258
    );

    let too_big = paste(&mut client, &csrf, "ip", "10.0.0.0/8", false).await;
    assert_eq!(too_big.status, StatusCode::BAD_REQUEST);
    assert!(
        report_line(&too_big.body, 1)
            .contains("holds 16777216 addresses; one bulk add takes at most 65536")
    );
    let over_cap = paste(&mut client, &csrf, "ip", "10.0.0.0/16\n10.1.0.0/16", false).await;
    assert_eq!(over_cap.status, StatusCode::BAD_REQUEST);
    assert!(
        over_cap
            .body
            .contains("id=\"bulk-values-error\">Values: one bulk add takes at most 65536 values"),
        "{}",
        over_cap.body
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM resources WHERE kind = 'ip'").await,
        258
    );

    // Exactly the cap: a /16 in one paste.
    let at_cap = paste(&mut client, &csrf, "ip", "10.0.0.0/16", false).await;
    assert_eq!(at_cap.status, StatusCode::OK, "{}", at_cap.body);
    assert!(report_line(&at_cap.body, 1).contains("65536 values: 65536 added"));
    assert_eq!(pool_count(&at_cap.body, "ip", "free-count"), "65794");

    // The API keeps its rule: single values, the first bad one named.
    let api = Api::new(pool.clone()).await;
    api.post(
        &format!("{V1}/resources"),
        json!({ "kind": "ip", "values": ["192.0.2.1", "192.0.2.0/31"] }),
    )
    .await
    .expect(
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
        Some("values[1]"),
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn allocate_all_or_nothing_then_release_quarantine_and_history(pool: PgPool) {
    let api = Api::new(pool.clone()).await;
    let (license_id, _) = api.license(json!({})).await;
    let (mut client, csrf) = admin_client(&pool).await;
    paste(&mut client, &csrf, "ip", "192.0.2.0/30\n192.0.2.4", false).await;
    let too_many = allocate(&mut client, &csrf, &license_id, "6").await;
    assert_eq!(too_many.status, StatusCode::CONFLICT, "{}", too_many.body);
    assert_eq!(too_many.error_code(), "CONFLICT");
    assert!(
        too_many.body.contains(
            "id=\"allocate-count-error\">How many: asked for 6 ip resources, only 5 available"
        ),
        "{}",
        too_many.body
    );
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM resources WHERE status = 'allocated'"
        )
        .await,
        0
    );
    let bad_id = allocate(&mut client, &csrf, "nope", "1").await;
    assert_eq!(bad_id.status, StatusCode::BAD_REQUEST);
    assert!(
        bad_id
            .body
            .contains("id=\"allocate-license-error\">License id must be a license id")
    );
    assert!(
        bad_id.body.contains("value=\"nope\""),
        "what was entered is kept"
    );
    let unknown = allocate(&mut client, &csrf, &uuid::Uuid::new_v4().to_string(), "1").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(
        unknown
            .body
            .contains("id=\"allocate-license-error\">License id names no license")
    );
    let zero = allocate(&mut client, &csrf, &license_id, "0").await;
    assert_eq!(zero.status, StatusCode::BAD_REQUEST);
    assert!(
        zero.body.contains(
            "id=\"allocate-count-error\">How many: must be a whole number from 1 to 10000"
        )
    );

    let granted = allocate(&mut client, &csrf, &license_id, "3").await;
    assert_eq!(granted.status, StatusCode::SEE_OTHER, "{}", granted.body);
    assert_eq!(
        granted.location(),
        format!("/resources?license={license_id}&allocated=3")
    );
    let mine = client.get(granted.location()).await;
    assert_eq!(mine.status, StatusCode::OK);
    assert!(
        mine.body
            .contains("Allocated 3 resource(s) to this license")
    );
    assert_eq!(rows(&mine.body), 3);
    assert_eq!(
        mine.body
            .matches(&format!("class=\"license\">{license_id}</a>"))
            .count(),
        3
    );
    assert_eq!(pool_count(&mine.body, "ip", "allocated-count"), "3");
    assert!(mine.body.contains("60.0%"), "3 of 5 allocated");

    let first: i64 = count(
        &pool,
        "SELECT min(id) FROM resources WHERE status = 'allocated'",
    )
    .await;
    let page = format!("/resources/{first}");
    let bad_days = release(&mut client, &csrf, first, "soon").await;
    assert_eq!(bad_days.status, StatusCode::BAD_REQUEST);
    assert!(
        bad_days.body.contains(
            "id=\"release-days-error\">Days must be a whole number of days from 1 to 3650"
        )
    );
    let released = release(&mut client, &csrf, first, "").await;
    assert_eq!(released.status, StatusCode::SEE_OTHER, "{}", released.body);
    let again = release(&mut client, &csrf, first, "").await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(
        again
            .body
            .contains("id=\"change-refused\">Not changed: resource"),
        "{}",
        again.body
    );
    let rested = quarantine(&mut client, &csrf, first, "7").await;
    assert_eq!(rested.status, StatusCode::SEE_OTHER, "{}", rested.body);

    let shown = client.get(&page).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(shown.body.contains("id=\"resource-status\">quarantined"));
    assert!(shown.body.contains("id=\"quarantined-until\">"));
    let actions: Vec<&str> = shown
        .body
        .match_indices("class=\"action\">")
        .map(|(at, m)| {
            let rest = &shown.body[at + m.len()..];
            &rest[..rest.find('<').unwrap()]
        })
        .collect();
    assert_eq!(actions, ["added", "allocated", "released", "quarantined"]);
    assert!(
        shown
            .body
            .contains(&format!("<a href=\"/resources?license={license_id}\">")),
        "the history names the license"
    );
    let second: i64 = count(
        &pool,
        "SELECT min(id) FROM resources WHERE status = 'allocated'",
    )
    .await;
    let kept = release(&mut client, &csrf, second, "30").await;
    assert_eq!(kept.status, StatusCode::SEE_OTHER);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM resources WHERE status = 'quarantined'"
        )
        .await,
        2
    );

    let audited: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log WHERE actor_kind = 'admin' AND action LIKE 'resource.%' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        audited,
        [
            "resource.add_bulk",
            "resource.allocate",
            "resource.release",
            "resource.quarantine",
            "resource.release"
        ]
    );
    assert_eq!(
        client.get("/resources/abc").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        client.get("/resources/999999").await.status,
        StatusCode::NOT_FOUND
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn filters_and_search(pool: PgPool) {
    let api = Api::new(pool.clone()).await;
    let (license_id, _) = api.license(json!({})).await;
    let (mut client, csrf) = admin_client(&pool).await;
    paste(
        &mut client,
        &csrf,
        "domain",
        "mail.example.com\nshop.example.org\nexample.net",
        false,
    )
    .await;
    paste(
        &mut client,
        &csrf,
        "phone",
        "+14155550100-+14155550104",
        false,
    )
    .await;
    api.post(
        &format!("{V1}/licenses/{license_id}/resources"),
        json!({ "kind": "phone", "count": 2 }),
    )
    .await
    .ok(StatusCode::OK);

    assert_eq!(rows(&client.get("/resources").await.body), 8);
    assert_eq!(rows(&client.get("/resources?kind=domain").await.body), 3);
    assert_eq!(
        rows(&client.get("/resources?status=allocated").await.body),
        2
    );
    assert_eq!(
        rows(
            &client
                .get("/resources?status=available&kind=phone")
                .await
                .body
        ),
        3
    );
    assert_eq!(
        rows(
            &client
                .get(&format!("/resources?license={license_id}"))
                .await
                .body
        ),
        2
    );
    let search = client.get("/resources?q=EXAMPLE.O").await;
    assert_eq!(rows(&search.body), 1);
    assert!(search.body.contains("shop.example.org"));
    assert_eq!(
        rows(
            &client
                .get("/resources?q=%2B1%20415%20555%200103")
                .await
                .body
        ),
        1,
        "spaces ignored"
    );
    assert_eq!(
        rows(&client.get("/resources?q=%25").await.body),
        0,
        "% is no wildcard"
    );
    let none = client.get("/resources?kind=ip").await;
    assert!(none.body.contains("No resource matches these filters."));

    let bad = client.get("/resources?license=someone").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body
            .contains("id=\"filter-license-error\">License id must be a license id")
    );
    let bad_status = client.get("/resources?status=lost").await;
    assert_eq!(bad_status.status, StatusCode::BAD_REQUEST);
    assert!(bad_status.body.contains("Status is not a status"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_viewer_reads_pools_but_every_change_is_refused(pool: PgPool) {
    let api = Api::new(pool.clone()).await;
    let (license_id, _) = api.license(json!({})).await;
    api.post(
        &format!("{V1}/resources"),
        json!({ "kind": "domain", "values": ["a.example.com", "b.example.com"] }),
    )
    .await
    .ok(StatusCode::CREATED);
    api.post(
        &format!("{V1}/licenses/{license_id}/resources"),
        json!({ "kind": "domain", "count": 1 }),
    )
    .await
    .ok(StatusCode::OK);
    admin(&pool, "victor", Role::Viewer).await;
    let mut viewer = Client::new(app(&pool), "192.0.2.94");
    let csrf = viewer.logged_in("victor").await;

    let list = viewer.get("/resources").await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert_eq!(rows(&list.body), 2);
    assert_eq!(pool_count(&list.body, "domain", "allocated-count"), "1");
    for control in ["id=\"bulk-form\"", "id=\"allocate-form\""] {
        assert!(!list.body.contains(control), "no {control} for a viewer");
    }
    let id: i64 = count(&pool, "SELECT min(id) FROM resources").await;
    let page = viewer.get(&format!("/resources/{id}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("id=\"history\""));
    for control in ["id=\"release-form\"", "id=\"quarantine-form\""] {
        assert!(!page.body.contains(control), "no {control} for a viewer");
    }

    let mutating: Vec<_> = panel::protected_routes()
        .into_iter()
        .filter(|route| route.path.starts_with("/resources") && route.method != Method::GET)
        .collect();
    assert_eq!(mutating.len(), 4, "{mutating:?}");
    for route in mutating {
        let uri = route.path.replace("{id}", &id.to_string());
        let form = [
            ("_csrf", csrf.as_str()),
            ("kind", "domain"),
            ("values", "c.example.com"),
            ("license_id", license_id.as_str()),
            ("count", "1"),
            ("days", "3"),
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
    let (total, allocated): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE status = 'allocated') FROM resources",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((total, allocated), (2, 1), "nothing changed");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn two_admins_pasting_the_same_block_at_once_add_it_once(pool: PgPool) {
    let (mut first, first_csrf) = admin_client(&pool).await;
    admin(&pool, "bob", Role::Admin).await;
    let mut second = Client::new(app(&pool), "192.0.2.95");
    let second_csrf = second.logged_in("bob").await;

    let (a, b) = tokio::join!(
        paste(&mut first, &first_csrf, "ip", "203.0.113.0/24", false),
        paste(&mut second, &second_csrf, "ip", "203.0.113.0/24", false),
    );
    assert_eq!((a.status, b.status), (StatusCode::OK, StatusCode::OK));
    assert_eq!(count(&pool, "SELECT count(*) FROM resources").await, 256);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM resource_history WHERE action = 'added'"
        )
        .await,
        256,
        "each address added once"
    );
    // Whoever came second reports the block as skipped, not as added.
    let added: i64 = count(
        &pool,
        "SELECT coalesce(sum((after->>'added')::bigint), 0)::bigint FROM audit_log
          WHERE action = 'resource.add_bulk'",
    )
    .await;
    assert_eq!(added, 256);
}
