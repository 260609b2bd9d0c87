//! The public client API, answered from the snapshot in memory.
//!
//! Read-only calls (verify, info, version, heartbeat) are answered here; the
//! state-changing ones validate their input and answer `503
//! CONTROL_UNAVAILABLE` until the link to control carries them.

mod client_config;
mod forwarded;
mod health;
mod openapi;
mod session;
pub(crate) mod verify;
mod version;

use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::{ArcSwap, Guard};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use latchkey_shared::KeyHash;
use latchkey_shared::api::ErrorCode;
use latchkey_shared::forwarded::TrustedProxies;
use latchkey_shared::snapshot::SnapshotState;
use metrics_exporter_prometheus::PrometheusHandle;

use crate::answers::Answers;
use crate::error::EdgeError;
use crate::limits::RateLimits;
use crate::link::Link;
use crate::snapshots::{Current, SnapshotStore};
use crate::usage::Usage;

/// What every handler shares: one `Arc`, so the per-request clone the
/// `State` extractor makes is a single reference count.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub snapshots: Arc<SnapshotStore>,
    pub limits: Arc<ArcSwap<RateLimits>>,
    /// Replaces the snapshot's limits when set.
    pub rate_limit_override: Option<u32>,
    pub trusted_proxies: TrustedProxies,
    pub metrics: PrometheusHandle,
    /// The link to control; `None` for an edge serving a snapshot file.
    pub link: Option<Arc<Link>>,
    /// Usage records for control; `None` without a link.
    pub usage: Option<Arc<Usage>>,
    /// What signs answers, once certified.
    pub answers: Arc<Answers>,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("snapshot", &self.snapshots.path())
            .finish_non_exhaustive()
    }
}

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/api/license/verify", post(verify::verify))
        .route("/api/license/info/{license_key}", get(verify::info))
        .route("/api/license/config", post(client_config::config))
        .route("/api/version/check", post(version::check))
        .route("/api/version/latest", get(version::latest))
        .route("/api/license/session/heartbeat", post(session::heartbeat))
        .route("/api/license/activate", post(forwarded::activate))
        .route("/api/license/deactivate", post(forwarded::deactivate))
        .route("/api/license/transfer", post(forwarded::transfer))
        .route("/api/license/lease", post(forwarded::lease))
        .route("/api/license/session/start", post(forwarded::session_start))
        .route("/api/license/session/end", post(forwarded::session_end))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::document))
        .fallback(|| async { EdgeError::new(ErrorCode::NotFound, "no such endpoint") })
        .method_not_allowed_fallback(|| async {
            EdgeError::new(ErrorCode::MethodNotAllowed, "method not allowed here")
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

impl AppState {
    /// The view to answer from: `503 NOT_READY` before the first snapshot,
    /// `503 SNAPSHOT_EXPIRED` past its expiry. An edge cut off from control
    /// fails closed: it never answers from state it can no longer vouch for
    /// (a license suspended meanwhile would stay valid here).
    pub fn snapshot(&self) -> Result<Current, EdgeError> {
        let snapshot = self.snapshots.borrow().ok_or_else(|| {
            EdgeError::new(ErrorCode::NotReady, "no verified snapshot loaded yet")
        })?;
        if crate::snapshots::unix_now() > snapshot.expires_at() {
            return Err(EdgeError::new(
                ErrorCode::SnapshotExpired,
                "this edge's license data has expired (control out of reach); retry, or run on the offline lease",
            ));
        }
        Ok(snapshot)
    }

    /// Applies the per-client-IP limit.
    pub fn admit_ip(&self, snapshot: &SnapshotState, ip: IpAddr) -> Result<(), EdgeError> {
        self.current_limits(snapshot).check_ip(ip).map_err(limited)
    }

    /// Applies the per-license-key limit.
    pub fn admit_key(&self, snapshot: &SnapshotState, key: &KeyHash) -> Result<(), EdgeError> {
        self.current_limits(snapshot)
            .check_key(key)
            .map_err(limited)
    }

    /// The limiters for the limits in force; rebuilt when the snapshot's
    /// configured limits change. A guard, not an `Arc` clone: no reference
    /// count shared by every worker is touched per request.
    fn current_limits(&self, snapshot: &SnapshotState) -> Guard<Arc<RateLimits>> {
        let config = snapshot.config();
        let wanted = self.rate_limit_override.map_or(
            (
                config.rate_limit_per_key_per_min,
                config.rate_limit_per_ip_per_min,
            ),
            |n| (n, n),
        );
        let limits = self.limits.load();
        if (limits.per_key_per_min, limits.per_ip_per_min) == wanted {
            return limits;
        }
        self.limits
            .store(Arc::new(RateLimits::new(wanted.0, wanted.1)));
        self.limits.load()
    }
}

fn limited(wait: std::time::Duration) -> EdgeError {
    metrics::counter!("latchkey_edge_rate_limited_total").increment(1);
    EdgeError::rate_limited(wait.as_secs_f64().ceil() as u64)
}
