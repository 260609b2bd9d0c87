//! `/healthz` (the process answers), `/readyz` (a verified snapshot is
//! loaded, unexpired and younger than the configured maximum age) and
//! `/metrics` (Prometheus).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use super::AppState;
use crate::snapshots::unix_now;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let Some(snapshot) = app.snapshots.current() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "ready": false, "reason": "no snapshot loaded" })),
        );
    };
    let now = unix_now();
    let age = now - snapshot.data_created_at();
    let max_age = i64::from(snapshot.config().max_snapshot_age_secs);
    let reason = if now > snapshot.expires_at() {
        Some("snapshot expired")
    } else if age > max_age {
        Some("snapshot older than the allowed age")
    } else {
        None
    };
    let body = json!({
        "ready": reason.is_none(),
        "reason": reason,
        "sequence": snapshot.sequence(),
        "age_secs": age,
        "max_age_secs": max_age,
    });
    let status = if reason.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

pub async fn metrics(State(app): State<AppState>) -> String {
    if let Some(snapshot) = app.snapshots.current() {
        metrics::gauge!("latchkey_edge_snapshot_age_seconds")
            .set((unix_now() - snapshot.data_created_at()) as f64);
    }
    app.metrics.render()
}
