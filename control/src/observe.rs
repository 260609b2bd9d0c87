//! What operators watch: `/healthz` (the process answers), `/readyz` (it can
//! do its work: the database answers, its schema is the one this build
//! embeds, and with the edge link on, the published chain is known), and
//! `/metrics` (Prometheus text: requests and latency by route, the pool,
//! publishing and its backlog, ingest, jobs).

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use sqlx::PgPool;

use crate::db::health;
use crate::link::LinkStatus;
use crate::traffic::Traffic;

/// A readiness probe that waits longer than this has its answer: not ready.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_DURATION: &str = "latchkey_control_http_request_duration_seconds";

/// What the probes read. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Health {
    pool: PgPool,
    link: Option<LinkStatus>,
    metrics: PrometheusHandle,
}

impl Health {
    pub fn new(pool: PgPool, link: Option<LinkStatus>) -> Self {
        Self {
            pool,
            link,
            metrics: metrics_handle(),
        }
    }
}

/// The process-wide Prometheus recorder, installed once.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(REQUEST_DURATION.into()), &buckets)
                .expect("buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // A test process may embed an edge whose recorder came first:
            // then ours still renders, with what this crate recorded.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

pub fn router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(render))
        .with_state(health)
}

/// Counts and times every request by its route pattern (never the raw
/// path: ids would make a series per row), and counts it in `traffic` for
/// the monitoring page.
pub async fn count_requests(
    State(traffic): State<Arc<Traffic>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    traffic.record(response.status().as_u16());
    let status = response.status().as_u16().to_string();
    metrics::histogram!(REQUEST_DURATION, "route" => route.clone())
        .record(started.elapsed().as_secs_f64());
    metrics::counter!(
        "latchkey_control_http_requests_total",
        "route" => route,
        "method" => method,
        "status" => status
    )
    .increment(1);
    response
}

#[derive(Debug, Serialize)]
struct Readiness {
    ready: bool,
    database: bool,
    schema_expected: Option<i64>,
    schema_applied: Option<i64>,
    /// `None` when this replica runs no edge link.
    link: Option<LinkReadiness>,
}

#[derive(Debug, Serialize)]
struct LinkReadiness {
    publishing: bool,
    chain_head: Option<u64>,
}

async fn ready(State(health): State<Health>) -> Response {
    let schema = tokio::time::timeout(PROBE_TIMEOUT, health::schema(&health.pool))
        .await
        .ok()
        .and_then(Result::ok);
    let link = health.link.as_ref().map(|link| LinkReadiness {
        publishing: link.is_publishing(),
        chain_head: link.chain_head(),
    });
    let ready = schema.as_ref().is_some_and(health::SchemaState::is_current)
        && link.as_ref().is_none_or(|link| link.chain_head.is_some());
    let body = Readiness {
        ready,
        database: schema.is_some(),
        schema_expected: schema.as_ref().map(|s| s.expected),
        schema_applied: schema.and_then(|s| s.applied),
        link,
    };
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// Gauges read at scrape time, then the recorder's text.
async fn render(State(health): State<Health>) -> Response {
    let pool = &health.pool;
    let idle = pool.num_idle() as f64;
    metrics::gauge!("latchkey_control_db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("latchkey_control_db_pool_connections", "state" => "in_use")
        .set(f64::from(pool.size()) - idle);
    metrics::gauge!("latchkey_control_db_pool_max_connections")
        .set(f64::from(pool.options().get_max_connections()));
    if let Some(open) = scrape_read("open sessions", health::open_sessions(pool)).await {
        metrics::gauge!("latchkey_control_sessions_open").set(open as f64);
    }
    let mut edge_lags = None;
    if let Some(link) = &health.link {
        if let Some(head) = link.chain_head() {
            metrics::gauge!("latchkey_control_chain_head_sequence").set(head as f64);
        }
        if let Some(backlog) = scrape_read("the outbox backlog", health::outbox_backlog(pool)).await
        {
            metrics::gauge!("latchkey_control_outbox_pending").set(backlog.pending as f64);
            metrics::gauge!("latchkey_control_publisher_lag_seconds").set(backlog.oldest_secs);
        }
        edge_lags = scrape_read("the edges' lag", health::edge_lags(pool)).await;
    }
    let mut text = health.metrics.render();
    if let Some(lags) = edge_lags {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&edge_lag_text(&lags));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// A scrape-time read, bounded by the probe timeout; a failure is logged
/// and the gauge keeps its last value.
async fn scrape_read<T>(
    what: &str,
    read: impl Future<Output = Result<T, sqlx::Error>>,
) -> Option<T> {
    match tokio::time::timeout(PROBE_TIMEOUT, read).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(error)) => {
            tracing::warn!(%error, "reading {what} for /metrics failed");
            None
        }
        Err(_) => {
            tracing::warn!("reading {what} for /metrics timed out");
            None
        }
    }
}

/// `latchkey_control_edge_propagation_lag_seconds{edge}`, written here
/// rather than through the recorder, which keeps every series it was ever
/// given: a revoked edge's last lag would stay exported (and alerting) until
/// a restart. Written fresh at each scrape, only current edges appear.
fn edge_lag_text(lags: &[health::EdgeLag]) -> String {
    let mut text = String::from(
        "# HELP latchkey_control_edge_propagation_lag_seconds Age of the oldest published snapshot the edge has not applied.\n\
         # TYPE latchkey_control_edge_propagation_lag_seconds gauge\n",
    );
    for lag in lags {
        let name = lag
            .name
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        text.push_str(&format!(
            "latchkey_control_edge_propagation_lag_seconds{{edge=\"{name}\"}} {}\n",
            lag.lag_secs
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_lags_are_exposition_lines_with_escaped_names() {
        let lags = [
            health::EdgeLag {
                name: "edge-1".into(),
                lag_secs: 0.0,
            },
            health::EdgeLag {
                name: "a \"quoted\" \\ name\n".into(),
                lag_secs: 12.5,
            },
        ];
        let text = edge_lag_text(&lags);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                r#"latchkey_control_edge_propagation_lag_seconds{edge="edge-1"} 0"#,
                r#"latchkey_control_edge_propagation_lag_seconds{edge="a \"quoted\" \\ name\n"} 12.5"#,
            ]
        );
        assert!(text.contains("# TYPE latchkey_control_edge_propagation_lag_seconds gauge\n"));
    }
}
