//! The panel's monitoring page: edges with their lag, the alerts control
//! computes itself from the database (edge silent, publisher lagging,
//! partition missing), Alertmanager's alerts when it is configured (and a
//! banner with control's own when it does not answer), the request chart.

#[allow(dead_code)]
mod support;

use axum::Router;
use axum::routing::get;
use latchkey_control::app::{self, AppState};
use latchkey_control::context::RequestContext;
use latchkey_control::db::admins::Role;
use latchkey_control::db::{MIGRATOR, edges};
use serde_json::json;
use sqlx::PgPool;
use support::config;
use support::panel::{Client, admin};

async fn page(state: AppState) -> String {
    let mut client = Client::new(app::router(state), "192.0.2.70");
    client.logged_in("ada").await;
    let reply = client.get("/monitoring").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

async fn enrolled(pool: &PgPool, name: &str, seen_secs_ago: i64) {
    edges::create(pool, &RequestContext::system("test"), name)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE edges SET enrolled_at = now(), snapshot_sequence = 0,
                last_seen_at = now() - make_interval(secs => $2)
          WHERE name = $1",
    )
    .bind(name)
    .bind(seen_secs_ago as f64)
    .execute(pool)
    .await
    .unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn control_computes_its_alerts_from_the_database(pool: PgPool) {
    admin(&pool, "ada", Role::Viewer).await;
    let state = AppState::new(pool.clone(), &config(&[])).unwrap();
    let quiet = page(state.clone()).await;
    assert!(quiet.contains("id=\"no-alerts\""), "{quiet}");
    assert!(quiet.contains("From control."));
    assert!(quiet.contains("id=\"traffic-empty\""));

    enrolled(&pool, "edge-up", 5).await;
    enrolled(&pool, "edge-silent", 600).await;
    // A change waiting two minutes: the publisher is not publishing.
    sqlx::query(
        "INSERT INTO snapshot_outbox (entity_kind, entity_id, created_at)
         VALUES ('config', 'edge_config', now() - interval '2 minutes')",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Requests between two samples draw the chart.
    state.panel.traffic.sample(0);
    for status in [200, 200, 200, 500] {
        state.panel.traffic.record(status);
    }
    state.panel.traffic.sample(10);

    let body = page(state).await;
    assert!(body.contains("LatchkeyEdgeLinkDown"), "{body}");
    assert!(body.contains("edge edge-silent has not been heard from"));
    assert!(!body.contains("edge edge-up has not"));
    assert!(body.contains("LatchkeyPublisherLagging"));
    assert!(!body.contains("LatchkeyHeartbeatPartitionMissing"));
    assert!(body.contains("id=\"edge-edge-up\""));
    assert!(body.contains("id=\"outbox-pending\">1<"));
    assert!(body.contains("class=\"series-requests\""));
    assert!(body.contains("id=\"rate-errors\">0.10<"), "{body}");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_missing_partition_fires_and_alertmanager_replaces_the_computed_alerts(pool: PgPool) {
    admin(&pool, "ada", Role::Admin).await;
    // Next month's partition gone (the migration made it, the job would
    // make it again).
    sqlx::query(
        "DO $$ BEGIN EXECUTE format('DROP TABLE license_heartbeats_%s',
           to_char(date_trunc('month', now()) + interval '1 month', 'YYYY_MM')); END $$",
    )
    .execute(&pool)
    .await
    .unwrap();
    let none = AppState::new(pool.clone(), &config(&[])).unwrap();
    let body = page(none).await;
    assert!(body.contains("LatchkeyHeartbeatPartitionMissing"), "{body}");

    let alertmanager = Router::new().route(
        "/api/v2/alerts",
        get(|| async {
            axum::Json(json!([{
                "labels": { "alertname": "LatchkeyVerifyLatency", "severity": "warning", "edge": "edge-1" },
                "annotations": { "summary": "verify p99 above 50 ms on edge-1" },
                "startsAt": "2026-12-02T09:00:00Z",
                "status": { "state": "active" }
            }]))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, alertmanager).await.unwrap() });
    let grafana = [
        ("LATCHKEY_PANEL_ALERTMANAGER_URL", url.as_str()),
        ("LATCHKEY_PANEL_GRAFANA_URL", "https://grafana.example.com/"),
    ];
    let configured = AppState::new(pool.clone(), &config(&grafana)).unwrap();
    let body = page(configured).await;
    assert!(body.contains("From Alertmanager."), "{body}");
    assert!(body.contains("LatchkeyVerifyLatency"));
    assert!(body.contains("verify p99 above 50 ms on edge-1"));
    assert!(body.contains("2026-12-02 09:00:00 UTC"));
    assert!(
        !body.contains("LatchkeyHeartbeatPartitionMissing"),
        "Alertmanager's list, not control's"
    );
    assert!(body.contains("href=\"https://grafana.example.com/d/latchkey-overview\""));

    // Nothing listening there: control's own, and the page says why.
    let dead = [("LATCHKEY_PANEL_ALERTMANAGER_URL", "http://127.0.0.1:9")];
    let body = page(AppState::new(pool.clone(), &config(&dead)).unwrap()).await;
    assert!(body.contains("id=\"alertmanager-error\""), "{body}");
    assert!(body.contains("LatchkeyHeartbeatPartitionMissing"));
}
