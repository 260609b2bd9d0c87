//! Exports of every list through the admin API and the panel: the same rows
//! as the list, every matching one (not a page), CSV columns that are the
//! JSON fields, and cells a spreadsheet would run defused.

#[allow(dead_code)]
mod support;

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use latchkey_control::app::{self, AppState};
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::admins::Role;
use latchkey_control::demo;
use latchkey_control::secrets::Secrets;
use serde_json::{Value, json};
use sqlx::PgPool;
use support::api::Api;
use support::config;
use support::panel::{Client, admin};

const V1: &str = "/admin/api/v1";

/// One export as (CSV lines parsed, JSON rows, x-total-count).
async fn export(api: &Api, path: &str) -> (Vec<Vec<String>>, Vec<Value>, i64) {
    let get = |format: &str| {
        let glue = if path.contains('?') { '&' } else { '?' };
        Request::get(format!("{V1}{path}{glue}format={format}"))
            .header(header::AUTHORIZATION, format!("Bearer {}", api.admin))
            .body(Body::empty())
            .unwrap()
    };
    let (status, headers, csv) = api.bytes(get("csv")).await;
    assert_eq!(status, StatusCode::OK, "{path}: {csv:?}");
    assert_eq!(headers[header::CONTENT_TYPE], "text/csv; charset=utf-8");
    let total: i64 = headers["x-total-count"].to_str().unwrap().parse().unwrap();
    let lines = csv::Reader::from_reader(&csv[..])
        .records()
        .map(|record| record.unwrap().iter().map(str::to_owned).collect())
        .collect::<Vec<Vec<String>>>();
    let header_line = csv::Reader::from_reader(&csv[..])
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let (status, headers, json) = api.bytes(get("json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let rows: Vec<Value> = serde_json::from_slice(&json).unwrap();
    assert_eq!(rows.len() as i64, total, "{path}: JSON holds every row");
    assert_eq!(lines.len() as i64, total, "{path}: CSV holds every row");
    if let Some(first) = rows.first() {
        let fields: BTreeSet<&str> = first
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let columns: BTreeSet<&str> = header_line.iter().map(String::as_str).collect();
        assert_eq!(columns, fields, "{path}: one CSV column per JSON field");
    }
    let mut with_header = vec![header_line];
    with_header.extend(lines);
    (with_header, rows, total)
}

fn ids(rows: &[Value]) -> Vec<Value> {
    rows.iter().map(|row| row["id"].clone()).collect()
}

/// The demo's licenses with seats and sessions as clients would have made
/// them, three IP addresses and an institution; the API over it.
async fn seeded(pool: &PgPool) -> Api {
    let secrets = Secrets::new("0123456789abcdef0123456789abcdef-secret").unwrap();
    demo::seed(pool, &secrets, 240).await.unwrap();
    // Seats and sessions as clients would have made them (the demo makes
    // none): two machines on each full license, the second of the first
    // ten deactivated; a session on each, a third of them ended.
    sqlx::query(
        "INSERT INTO devices (license_id, fingerprint_hash, digest, components, name, status, deactivated_at, ip)
         SELECT l.id, sha256((l.id::text || m)::bytea), substr(sha256(m::text::bytea), 1, 28),
                jsonb_build_object('machine_id', m), 'host-' || m,
                CASE WHEN m = 2 AND n <= 10 THEN 'deactivated' ELSE 'active' END,
                CASE WHEN m = 2 AND n <= 10 THEN now() END, '198.51.100.7'
           FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM licenses WHERE device_limit = 2) l,
                generate_series(1, 2) AS m",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO sessions (license_id, device_id, started_at, token_expires_at, ended_at, end_reason)
         SELECT license_id, id, now() - n * interval '1 minute', now() + interval '1 hour',
                CASE WHEN n % 3 = 0 THEN now() END, CASE WHEN n % 3 = 0 THEN 'client' END
           FROM (SELECT *, row_number() OVER (ORDER BY id) AS n FROM devices) d",
    )
    .execute(pool)
    .await
    .unwrap();
    let api = Api::new(pool.clone()).await;
    api.post(
        &format!("{V1}/resources"),
        json!({ "kind": "ip", "values": ["192.0.2.1", "192.0.2.2", "192.0.2.3"] }),
    )
    .await
    .ok(StatusCode::CREATED);
    api.post(
        &format!("{V1}/leads/institutions"),
        json!({ "name": "Gymnasium Nord", "tags": ["school", "nrw"] }),
    )
    .await
    .ok(StatusCode::CREATED);
    api
}

/// Every list's export holds exactly what its list holds over all its
/// pages, in the list's order, with the list's filters.
#[sqlx::test(migrator = "MIGRATOR")]
async fn every_list_exports_every_matching_row(pool: PgPool) {
    let api = seeded(&pool).await;

    // Each list, read whole through its pages, against its export.
    for (list, export_path) in [
        ("/customers", "/customers/export"),
        ("/licenses", "/licenses/export"),
        (
            "/licenses?status=suspended",
            "/licenses/export?status=suspended",
        ),
        ("/sessions", "/sessions/export"),
        ("/sessions?open=true", "/sessions/export?open=true"),
        ("/resources?kind=ip", "/resources/export?kind=ip"),
        (
            "/audit?action=license.create",
            "/audit/export?action=license.create",
        ),
        (
            "/leads/institutions?tag=school",
            "/leads/institutions/export?tag=school",
        ),
    ] {
        let mut listed = Vec::new();
        let mut page = 1;
        loop {
            let glue = if list.contains('?') { '&' } else { '?' };
            let reply = api
                .get(&format!("{V1}{list}{glue}page={page}&per_page=100"))
                .await;
            let items = reply.ok(StatusCode::OK)["items"]
                .as_array()
                .unwrap()
                .clone();
            if items.is_empty() {
                break;
            }
            listed.extend(items);
            page += 1;
        }
        let (_, rows, total) = export(&api, export_path).await;
        assert!(total > 0, "{export_path}: the seed has rows for it");
        assert_eq!(
            ids(&rows),
            ids(&listed),
            "{export_path}: the list's rows, in order"
        );
        assert_eq!(rows, listed, "{export_path}: each row as the list shows it");
    }

    // Devices: every license's, or one license's, deactivated ones too.
    let full: i64 = sqlx::query_scalar("SELECT count(*) FROM licenses WHERE device_limit = 2")
        .fetch_one(&pool)
        .await
        .unwrap();
    let (_, all, total) = export(&api, "/devices/export").await;
    assert_eq!(total, 2 * full - 10, "active devices only by default");
    let (_, _, total) = export(&api, "/devices/export?include_inactive=true").await;
    assert_eq!(total, 2 * full);
    let license = all[0]["license_id"].as_str().unwrap().to_owned();
    let listed = api
        .get(&format!(
            "{V1}/licenses/{license}/devices?include_inactive=true"
        ))
        .await;
    let (_, one, _) = export(
        &api,
        &format!("/devices/export?license_id={license}&include_inactive=true"),
    )
    .await;
    assert_eq!(&Value::Array(one), listed.ok(StatusCode::OK));

    // A filter the list refuses, the export refuses the same way.
    api.get(&format!("{V1}/licenses/export?status=lost"))
        .await
        .expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some("status"));
    api.get(&format!("{V1}/customers/export?format=xml"))
        .await
        .expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some("format"));
}

/// CSV cells: lists separated by `;`, nested values as JSON text, and a
/// value a spreadsheet would evaluate starting with `'`.
#[sqlx::test(migrator = "MIGRATOR")]
async fn csv_cells_are_flat_and_defused(pool: PgPool) {
    let api = Api::new(pool).await;
    api.post(
        &format!("{V1}/customers"),
        json!({
            "name": "=HYPERLINK(\"http://evil.example\")",
            "company": "@SUM(A1)",
            "metadata": { "crm": 7 },
        }),
    )
    .await
    .ok(StatusCode::CREATED);
    let (lines, _, _) = export(&api, "/customers/export").await;
    let column = |name: &str| lines[0].iter().position(|c| c == name).unwrap();
    let row = &lines[1];
    assert_eq!(row[column("name")], "'=HYPERLINK(\"http://evil.example\")");
    assert_eq!(row[column("company")], "'@SUM(A1)");
    assert_eq!(row[column("metadata")], r#"{"crm":7}"#);
    assert_eq!(row[column("email")], "", "null is an empty cell");

    api.post(
        &format!("{V1}/leads/institutions"),
        json!({ "name": "Klinikum Süd", "tags": ["hospital", "bw"] }),
    )
    .await
    .ok(StatusCode::CREATED);
    let (lines, _, _) = export(&api, "/leads/institutions/export").await;
    let tags = lines[0].iter().position(|c| c == "tags").unwrap();
    assert_eq!(lines[1][tags], "hospital;bw", "as the import reads them");
}

/// The panel's export buttons send the page's filters; the files are the
/// API's, byte for byte, for a read-only viewer too.
#[sqlx::test(migrator = "MIGRATOR")]
async fn the_panel_exports_what_its_pages_list(pool: PgPool) {
    let api = seeded(&pool).await;
    admin(&pool, "vera", Role::Viewer).await;
    let router = app::router(AppState::new(pool.clone(), &config(&[])).unwrap());
    let mut panel = Client::new(router.clone(), "192.0.2.31");
    panel.logged_in("vera").await;
    let license: String = sqlx::query_scalar(
        "SELECT license_id::text FROM devices ORDER BY first_seen_at, id LIMIT 1",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    for (page, api_path) in [
        (
            "/customers/export?q=demo&after=x",
            "/customers/export?q=demo",
        ),
        (
            "/licenses/export?status=suspended&sort=oldest",
            "/licenses/export?status=suspended",
        ),
        ("/sessions/export", "/sessions/export?open=true"),
        (
            "/resources/export?kind=ip&page=2",
            "/resources/export?kind=ip",
        ),
        (
            "/leads/export?tag=school",
            "/leads/institutions/export?tag=school",
        ),
        (
            "/audit/export?action=license.create",
            "/audit/export?action=license.create",
        ),
        (
            &format!("/licenses/{license}/devices/export"),
            &format!("/devices/export?license_id={license}&include_inactive=true"),
        ),
    ] {
        for format in ["csv", "json"] {
            let asked = format!("{page}&format={format}").replacen("export&", "export?", 1);
            let (from_panel, file) = panel.export(&asked).await;
            assert!(file.starts_with("/exports/"), "{asked} went to {file}");
            assert_eq!(
                from_panel.status,
                StatusCode::OK,
                "{page}: {}",
                from_panel.body
            );
            let (status, _, from_api) = api
                .bytes(
                    Request::get(format!("{V1}{api_path}&format={format}"))
                        .header(header::AUTHORIZATION, format!("Bearer {}", api.admin))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                from_panel.body.as_bytes(),
                &from_api[..],
                "{page} as {format}"
            );
            assert!(from_panel.body.len() > 10, "{page}: not empty");
        }
    }
    let refused = panel.get("/licenses/export?format=xml").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);

    // An export file is its admin's: another admin is not shown it.
    let (_, file) = panel.export("/customers/export?format=csv").await;
    admin(&pool, "alice", Role::Admin).await;
    let mut other = Client::new(router, "192.0.2.32");
    other.logged_in("alice").await;
    assert_eq!(other.get(&file).await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        panel.get(&file).await.status,
        StatusCode::OK,
        "its own admin's"
    );
}
