//! Control's probes and metrics: `/healthz`, `/readyz` (database, schema,
//! and the link's chain when the link runs) and `/metrics`.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use latchkey_control::app::{self, AppState};
use latchkey_control::config::Config;
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::api_keys::{self, Area, Scope};
use serde_json::Value;
use sqlx::PgPool;
use tower::ServiceExt;

fn config() -> Config {
    let env: BTreeMap<String, String> = [
        ("DATABASE_URL", "postgres://unused.invalid/latchkey"),
        (
            "SECRET_KEY",
            "test-secret-key-test-secret-key-test-secret-key",
        ),
        (
            "JWT_SECRET",
            "test-jwt-secret-test-jwt-secret-test-jwt-secret",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    Config::from_layers(None, &env).unwrap()
}

fn router(pool: &PgPool) -> Router {
    app::router(AppState::new(pool.clone(), &config()).unwrap())
}

async fn get(app: &Router, path: &str) -> (StatusCode, String) {
    let response = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 22)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_migrated_database_is_ready(pool: PgPool) {
    let app = router(&pool);
    assert_eq!(get(&app, "/healthz").await, (StatusCode::OK, "ok".into()));
    let (status, body) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(body["database"], true);
    assert_eq!(body["schema_applied"], body["schema_expected"]);
    assert!(body["link"].is_null(), "no link on this replica");
}

#[sqlx::test(migrations = false)]
async fn an_unmigrated_database_is_not_ready(pool: PgPool) {
    let (status, body) = get(&router(&pool), "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["ready"], false);
    assert_eq!(body["database"], true);
    assert!(body["schema_applied"].is_null());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_database_that_does_not_answer_is_not_ready(pool: PgPool) {
    let app = router(&pool);
    pool.close().await;
    let (status, body) = get(&app, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["database"], false);
    // Liveness does not depend on the database.
    assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn metrics_count_requests_by_route_pattern(pool: PgPool) {
    let app = router(&pool);
    // Unauthenticated: answered 401, counted under its route, not its path.
    let id = uuid::Uuid::new_v4();
    assert_eq!(
        get(&app, &format!("/admin/api/v1/customers/{id}")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(get(&app, "/no/such/page").await.0, StatusCode::NOT_FOUND);
    let (status, text) = get(&app, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains(
            r#"latchkey_control_http_requests_total{route="/admin/api/v1/customers/{id}",method="GET",status="401"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"latchkey_control_http_requests_total{route="unmatched",method="GET",status="404"}"#
        ),
        "{text}"
    );
    assert!(!text.contains(&id.to_string()), "ids never become labels");
    assert!(text.contains("latchkey_control_http_request_duration_seconds_bucket"));
    assert!(text.contains(r#"latchkey_control_db_pool_connections{state="idle"}"#));
    assert!(text.contains("latchkey_control_db_pool_max_connections"));
}

/// While the database cannot be reached (a restore swapping it in ends every
/// connection and refuses new ones), a request answers 503 `NOT_READY`,
/// which a client retries, not a 500.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_request_without_a_database_answers_503_not_ready(pool: PgPool) {
    let config = config();
    let secrets = config.secrets().unwrap();
    let scopes = [Scope::read(Area::Customers)];
    let key = api_keys::create_bootstrap(&pool, &secrets, "t", &scopes)
        .await
        .unwrap();
    let gone = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_secs(2))
        .connect_lazy("postgres://postgres@127.0.0.1:5432/latchkey_no_such_database")
        .unwrap();
    let app = app::router(AppState::new(gone, &config).unwrap());
    let response = app
        .oneshot(
            Request::get("/admin/api/v1/customers")
                .header("authorization", format!("Bearer {}", key.secret))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["code"], "NOT_READY", "{body}");
}
