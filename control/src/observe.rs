//! What operators watch: `/healthz` (the process answers), `/readyz` (it can
//! do its work: the database answers, its schema is the one this build
//! embeds, and with the edge link on, the published chain is known), and
//! `/metrics` (Prometheus text: requests and latency by route, the pool,
//! publishing and its backlog, ingest, jobs).

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
    if let Some(link) = &health.link {
        if let Some(head) = link.chain_head() {
            metrics::gauge!("latchkey_control_chain_head_sequence").set(head as f64);
        }
        match tokio::time::timeout(PROBE_TIMEOUT, health::outbox_backlog(pool)).await {
            Ok(Ok(backlog)) => {
                metrics::gauge!("latchkey_control_outbox_pending").set(backlog.pending as f64);
                metrics::gauge!("latchkey_control_publisher_lag_seconds").set(backlog.oldest_secs);
            }
            Ok(Err(error)) => tracing::warn!(%error, "reading the outbox backlog failed"),
            Err(_) => tracing::warn!("reading the outbox backlog timed out"),
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        health.metrics.render(),
    )
        .into_response()
}
