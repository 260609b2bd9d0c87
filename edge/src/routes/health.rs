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
    let readiness = Readiness::of(&app);
    let body = match &readiness.snapshot {
        None => json!({ "ready": false, "reason": readiness.reason }),
        Some(snapshot) => json!({
            "ready": readiness.is_ready(),
            "reason": readiness.reason,
            "sequence": snapshot.sequence,
            "age_secs": snapshot.age_secs,
            "max_age_secs": snapshot.max_age_secs,
        }),
    };
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body))
}

/// Gauges read at scrape time (readiness by `/readyz`'s rule, so an alert
/// and the probe cannot disagree; the spool's size on disk), then the
/// recorder's text.
pub async fn metrics(State(app): State<AppState>) -> String {
    let readiness = Readiness::of(&app);
    metrics::gauge!("latchkey_edge_ready").set(f64::from(u8::from(readiness.is_ready())));
    if let Some(snapshot) = &readiness.snapshot {
        metrics::gauge!("latchkey_edge_snapshot_age_seconds").set(snapshot.age_secs as f64);
    }
    if let Some(spool) = app.usage.as_ref().and_then(|usage| usage.spool()) {
        metrics::gauge!("latchkey_edge_usage_spool_bytes").set(spool.used_bytes as f64);
        metrics::gauge!("latchkey_edge_usage_spool_max_bytes").set(spool.max_bytes as f64);
    }
    app.metrics.render()
}

/// Whether the edge may answer from what it holds, and why not.
struct Readiness {
    snapshot: Option<Held>,
    reason: Option<&'static str>,
}

struct Held {
    sequence: u64,
    age_secs: i64,
    max_age_secs: i64,
}

impl Readiness {
    fn of(app: &AppState) -> Self {
        let Some(snapshot) = app.snapshots.current() else {
            return Self {
                snapshot: None,
                reason: Some("no snapshot loaded"),
            };
        };
        let now = unix_now();
        let held = Held {
            sequence: snapshot.sequence(),
            age_secs: now - snapshot.data_created_at(),
            max_age_secs: i64::from(snapshot.config().max_snapshot_age_secs),
        };
        let reason = if now > snapshot.expires_at() {
            Some("snapshot expired")
        } else if held.age_secs > held.max_age_secs {
            Some("snapshot older than the allowed age")
        } else {
            None
        };
        Self {
            snapshot: Some(held),
            reason,
        }
    }

    fn is_ready(&self) -> bool {
        self.reason.is_none()
    }
}
