//! The panel's product and flag pages over HTTP: create / edit with each
//! refusal named by its field (bad JSON in the client settings included),
//! releases published, unpublished and made the minimum, the version check
//! preview answering what `db::products::version_check` (the edges' rule)
//! answers, flags created and toggled with their audit rows, and a viewer
//! who reads everything and changes nothing.

#[allow(dead_code)]
mod support;

use axum::http::{Method, StatusCode};
use latchkey_control::app::{self, AppState};
use latchkey_control::context::RequestContext;
use latchkey_control::db::admins::Role;
use latchkey_control::db::products::{self, NewProduct, NewRelease};
use latchkey_control::db::{MIGRATOR, flags};
use latchkey_control::panel;
use serde_json::json;
use sqlx::PgPool;
use support::api::Api;
use support::config;
use support::panel::{Client, admin};

fn app(pool: &PgPool) -> axum::Router {
    app::router(AppState::new(pool.clone(), &config(&[])).unwrap())
}

async fn client(pool: &PgPool, name: &str, role: Role) -> (Client, String) {
    admin(pool, name, role).await;
    let mut client = Client::new(app(pool), "192.0.2.40");
    let csrf = client.logged_in(name).await;
    (client, csrf)
}

async fn studio(pool: &PgPool) -> i32 {
    let new = NewProduct {
        slug: "studio".into(),
        name: "Studio".into(),
        description: None,
    };
    products::create(pool, &RequestContext::system("test"), &new)
        .await
        .unwrap()
        .id
}

async fn actions(pool: &PgPool, entity_id: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT action FROM audit_log WHERE entity_id = $1 ORDER BY at, id")
        .bind(entity_id)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// The product page's preview for `version` on `channel`.
async fn preview(client: &mut Client, id: i32, version: &str, channel: &str) -> String {
    let page = client
        .get(&format!(
            "/products/{id}?version={version}&channel={channel}"
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.body
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn products_are_created_and_edited_with_each_refusal_named(pool: PgPool) {
    let (mut admin, csrf) = client(&pool, "ada", Role::Admin).await;
    let empty = admin.get("/products").await;
    assert!(empty.body.contains("No products yet"), "{}", empty.body);

    let bad = admin
        .post(
            "/products",
            &[("_csrf", &csrf), ("slug", "-Studio"), ("name", "Studio")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("id=\"slug-error\""), "{}", bad.body);
    assert!(
        bad.body.contains("value=\"Studio\""),
        "what was typed stays"
    );

    let created = admin
        .post(
            "/products",
            &[("_csrf", &csrf), ("slug", "studio"), ("name", "Studio")],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let id: i32 = created
        .location()
        .trim_start_matches("/products/")
        .parse()
        .unwrap();
    let taken = admin
        .post(
            "/products",
            &[("_csrf", &csrf), ("slug", "studio"), ("name", "Again")],
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    assert!(taken.body.contains("id=\"slug-error\""), "{}", taken.body);

    let edited = admin
        .post(
            &format!("/products/{id}"),
            &[
                ("_csrf", &csrf),
                ("name", "Studio Pro"),
                ("description", "DAW"),
            ],
        )
        .await;
    assert_eq!(edited.status, StatusCode::SEE_OTHER, "{}", edited.body);
    let page = admin.get(&format!("/products/{id}")).await;
    assert!(page.body.contains("Studio Pro") && page.body.contains("DAW"));
    assert!(page.body.contains("No releases yet"), "{}", page.body);
    let blank = admin
        .post(
            &format!("/products/{id}"),
            &[("_csrf", &csrf), ("name", " ")],
        )
        .await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST);
    assert!(blank.body.contains("id=\"name-error\""), "{}", blank.body);

    // The client configuration: each bad field named, what was typed kept.
    let config = format!("/products/{id}/config");
    let refused = |field: &'static str, value: &'static str| {
        let mut form = vec![
            ("heartbeat_interval_secs", "300"),
            ("grace_period_secs", ""),
            ("features", "export, sync"),
            ("settings", r#"{"theme": "dark"}"#),
        ];
        for entry in &mut form {
            if entry.0 == field {
                entry.1 = value;
            }
        }
        form
    };
    for (field, value, says) in [
        ("settings", r#"{"theme": "dark""#, "not valid JSON"),
        ("settings", "[1, 2]", "must be a JSON object"),
        ("heartbeat_interval_secs", "5", "from 10 to 86400"),
        ("grace_period_secs", "soon", "a whole number"),
        ("features", "export, Sync!", "features[1]"),
    ] {
        let mut form = refused(field, value);
        form.push(("_csrf", &csrf));
        let reply = admin.post(&config, &form).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{field}={value}");
        assert!(
            reply.body.contains(&format!("id=\"{field}-error\"")) && reply.body.contains(says),
            "{field}={value}: {}",
            reply.body
        );
        assert_eq!(reply.error_code(), "INVALID_REQUEST");
    }
    let huge = format!(
        r#"{{"blob": "{}"}}"#,
        "x".repeat(products::MAX_CLIENT_SETTINGS)
    );
    let reply = admin
        .post(&config, &[("_csrf", &csrf), ("settings", &huge)])
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.contains("id=\"settings-error\""));

    let mut form = refused("", "");
    form.push(("_csrf", &csrf));
    let saved = admin.post(&config, &form).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let stored = products::client_config(&pool, id).await.unwrap();
    assert_eq!(stored.heartbeat_interval_secs, Some(300));
    assert_eq!(stored.grace_period_secs, None);
    assert_eq!(stored.features, ["export", "sync"]);
    assert_eq!(stored.settings, json!({"theme": "dark"}));

    assert_eq!(
        actions(&pool, &id.to_string()).await,
        ["product.create", "product.update", "product.client_config"],
        "refusals write nothing"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn releases_change_what_the_preview_answers(pool: PgPool) {
    let id = studio(&pool).await;
    let (mut admin, csrf) = client(&pool, "ada", Role::Admin).await;
    let releases = format!("/products/{id}/releases");
    let bad = admin
        .post(
            &releases,
            &[
                ("_csrf", &csrf),
                ("version", "banana"),
                ("channel", "stable"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("id=\"version-error\""), "{}", bad.body);
    let bad_url = admin
        .post(
            &releases,
            &[
                ("_csrf", &csrf),
                ("version", "1.0"),
                ("download_url", "ftp://x"),
            ],
        )
        .await;
    assert!(bad_url.body.contains("id=\"download_url-error\""));
    for version in ["1.0", "2.0"] {
        let added = admin
            .post(
                &releases,
                &[
                    ("_csrf", &csrf),
                    ("version", version),
                    ("channel", "stable"),
                    ("download_url", "https://dl.example.com/studio"),
                    ("notes", "Faster"),
                ],
            )
            .await;
        assert_eq!(added.status, StatusCode::SEE_OTHER, "{}", added.body);
    }
    let listed = products::list_releases(&pool, id).await.unwrap();
    let (two, one) = (listed[0].id, listed[1].id);

    // Drafts are not offered.
    let body = preview(&mut admin, id, "1.5", "stable").await;
    assert!(body.contains("Up to date"), "{body}");
    assert!(body.contains("no published release on this channel"));

    let post = |path: String| (path, [("_csrf", csrf.clone())]);
    for (path, form) in [
        post(format!("/releases/{two}/publish")),
        post(format!("/releases/{one}/publish")),
    ] {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(admin.post(&path, &form).await.status, StatusCode::SEE_OTHER);
    }
    let body = preview(&mut admin, id, "1.5", "stable").await;
    assert!(body.contains("Update available"), "{body}");
    assert!(body.contains("id=\"preview-latest\">2.0.0<"), "{body}");

    let csrf_form = [("_csrf", csrf.as_str())];
    let marked = admin
        .post(&format!("/releases/{two}/min-allowed"), &csrf_form)
        .await;
    assert_eq!(marked.status, StatusCode::SEE_OTHER);
    let body = preview(&mut admin, id, "1.5", "stable").await;
    assert!(body.contains("Update required"), "{body}");
    assert!(body.contains("id=\"preview-minimum\">2.0.0<"));
    // One rule: the preview shows what the version check answers, also on
    // a channel with no release of its own.
    for (version, channel) in [("1.5", "stable"), ("v2", "stable"), ("0.1", "beta")] {
        let answer = products::version_check(&pool, "studio", version, Some(channel))
            .await
            .unwrap();
        let body = preview(&mut admin, id, version, channel).await;
        assert!(
            body.contains(&format!(
                "id=\"preview-mandatory\">{}<",
                answer.update_mandatory
            )) && body.contains(&format!(
                "id=\"preview-available\">{}<",
                answer.update_available
            )),
            "{version} on {channel}: {answer:?}"
        );
    }
    let bad = preview(&mut admin, id, "latest", "stable").await;
    assert!(bad.contains("id=\"preview-version-error\""), "{bad}");

    // The minimum cannot be unpublished: the page says why, with 409.
    let refused = admin
        .post(&format!("/releases/{two}/unpublish"), &csrf_form)
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused.body.contains("id=\"release-refused\""),
        "{}",
        refused.body
    );
    let cleared = admin
        .post(&format!("/releases/{two}/clear-min-allowed"), &csrf_form)
        .await;
    assert_eq!(cleared.status, StatusCode::SEE_OTHER);
    let unpublished = admin
        .post(&format!("/releases/{two}/unpublish"), &csrf_form)
        .await;
    assert_eq!(unpublished.status, StatusCode::SEE_OTHER);
    let body = preview(&mut admin, id, "0.9", "stable").await;
    assert!(body.contains("id=\"preview-latest\">1.0.0<"), "{body}");
    assert!(body.contains("id=\"preview-minimum\"><span class=\"muted\">none"));

    assert_eq!(
        actions(&pool, &two.to_string()).await,
        [
            "release.add",
            "release.publish",
            "release.mark_min_allowed",
            "release.clear_min_allowed",
            "release.unpublish"
        ]
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn flags_are_created_toggled_and_audited(pool: PgPool) {
    let api = Api::new(pool.clone()).await;
    api.license(json!({ "device_limit": 1 })).await;
    let product_id = products::get_by_slug(&pool, "studio").await.unwrap().id;
    let (mut admin, csrf) = client(&pool, "ada", Role::Admin).await;
    let empty = admin.get("/flags").await;
    assert!(
        empty.body.contains("No feature flags yet"),
        "{}",
        empty.body
    );
    assert!(empty.body.contains("id=\"no-deliveries\""));

    let product = product_id.to_string();
    let bad = admin
        .post(
            "/flags",
            &[
                ("_csrf", &csrf),
                ("key", "New Editor"),
                ("product_id", &product),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("id=\"key-error\""), "{}", bad.body);
    let bad = admin
        .post(
            "/flags",
            &[
                ("_csrf", &csrf),
                ("key", "editor"),
                ("rollout_percent", "150"),
            ],
        )
        .await;
    assert!(
        bad.body.contains("id=\"rollout_percent-error\""),
        "{}",
        bad.body
    );

    let created = admin
        .post(
            "/flags",
            &[
                ("_csrf", &csrf),
                ("key", "new-editor"),
                ("product_id", &product),
                ("rollout_percent", "100"),
            ],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    assert_eq!(created.location(), format!("/flags?product={product_id}"));
    let flag = flags::list(&pool).await.unwrap().remove(0);
    assert!(!flag.enabled);
    let page = admin.get(created.location()).await;
    assert!(page.body.contains("on for 0 of 1"), "{}", page.body);
    // No publisher runs here: the change waits for its snapshot.
    assert!(page.body.contains("not published yet"), "{}", page.body);

    let toggled = admin
        .post(
            &format!("/flags/{}/toggle", flag.id),
            &[("_csrf", &csrf), ("enabled", "true")],
        )
        .await;
    assert_eq!(toggled.status, StatusCode::SEE_OTHER);
    assert!(flags::get(&pool, flag.id).await.unwrap().enabled);
    let page = admin.get("/flags").await;
    assert!(page.body.contains("on for 1 of 1"), "{}", page.body);
    let (before, after): (serde_json::Value, serde_json::Value) = sqlx::query_as(
        "SELECT before, after FROM audit_log WHERE action = 'flag.update' AND entity_id = $1",
    )
    .bind(flag.id.to_string())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        (before["enabled"].clone(), after["enabled"].clone()),
        (json!(false), json!(true))
    );
    let outboxed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM snapshot_outbox WHERE entity_kind = 'flags' AND entity_id = $1",
    )
    .bind(flag.id.to_string())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(outboxed, 2, "create and toggle each reach the edges");

    let edit = format!("/flags/{}", flag.id);
    let bad = admin
        .post(
            &edit,
            &[
                ("_csrf", &csrf),
                ("enabled", "on"),
                ("rollout_percent", "-1"),
            ],
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body.contains("id=\"rollout_percent-error\""),
        "{}",
        bad.body
    );
    let edited = admin
        .post(
            &edit,
            &[
                ("_csrf", &csrf),
                ("rollout_percent", "0"),
                ("description", "v2"),
            ],
        )
        .await;
    assert_eq!(edited.status, StatusCode::SEE_OTHER);
    let deleted = admin
        .post(&format!("/flags/{}/delete", flag.id), &[("_csrf", &csrf)])
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER);
    assert_eq!(
        actions(&pool, &flag.id.to_string()).await,
        ["flag.create", "flag.update", "flag.update", "flag.delete"]
    );
    let page = admin.get("/flags").await;
    assert!(page.body.contains("a deleted flag"), "{}", page.body);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_viewer_reads_products_and_flags_but_changes_nothing(pool: PgPool) {
    let id = studio(&pool).await;
    let ctx = RequestContext::system("test");
    let release = products::add_release(
        &pool,
        &ctx,
        id,
        &NewRelease {
            version: "1.0".into(),
            channel: "stable".into(),
            download_url: None,
            notes: None,
        },
    )
    .await
    .unwrap();
    let flag = flags::create(
        &pool,
        &ctx,
        &serde_json::from_value(json!({ "key": "beta-ui" })).unwrap(),
    )
    .await
    .unwrap();
    let (mut viewer, csrf) = client(&pool, "victor", Role::Viewer).await;
    for page in [
        "/products",
        &format!("/products/{id}?version=1.0"),
        "/flags",
    ] {
        let reply = viewer.get(page).await;
        assert_eq!(reply.status, StatusCode::OK, "{page}");
        for control in [
            "id=\"new-product\"",
            "id=\"edit-product\"",
            "id=\"save-config\"",
            "id=\"release-form\"",
            "class=\"small publish\"",
            "id=\"flag-form\"",
            "class=\"small toggle\"",
        ] {
            assert!(!reply.body.contains(control), "{page} shows {control}");
        }
    }
    assert!(
        viewer
            .get(&format!("/products/{id}?version=0.5"))
            .await
            .body
            .contains("id=\"preview-answer\"")
    );

    let routes: Vec<_> = panel::protected_routes()
        .into_iter()
        .filter(|r| {
            ["/products", "/releases", "/flags"]
                .iter()
                .any(|p| r.path.starts_with(p))
        })
        .filter(|r| {
            r.method == Method::POST || r.path.ends_with("/new") || r.path.ends_with("/edit")
        })
        .collect();
    assert_eq!(routes.len(), 15, "{routes:?}");
    for route in routes {
        let target = if route.path.starts_with("/releases") {
            release.id.to_string()
        } else if route.path.starts_with("/flags") {
            flag.id.to_string()
        } else {
            id.to_string()
        };
        let uri = route.path.replace("{id}", &target);
        let reply = viewer
            .send(
                route.method.clone(),
                &uri,
                Some(&[("_csrf", &csrf), ("enabled", "true"), ("name", "x")]),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{} {uri}",
            route.method
        );
        assert_eq!(reply.error_code(), "FORBIDDEN", "{uri}");
    }
    assert!(!flags::get(&pool, flag.id).await.unwrap().enabled);
}
