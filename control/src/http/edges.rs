//! `/admin/api/v1/edges` and `/admin/api/v1/edge-config` (`edges:read|write`):
//! the enrolled edges with what each applied, and the edge configuration
//! every snapshot carries. A change is audited and reaches every edge with
//! the next delta; edges apply it without a restart.

use axum::extract::State;
use latchkey_shared::snapshot::EdgeConfig;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::edges::{self, Edge};
use crate::db::settings;
use crate::http::ApiState;
use crate::http::auth::{Auth, Edges, Read, Write};
use crate::http::error::ApiResult;
use crate::http::extract::Json;
use crate::http::openapi::{BodyErrors, Guarded};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_edges))
        .routes(routes!(get_edge_config, set_edge_config))
}

/// The edge configuration, every field required: a `PUT` replaces it whole.
/// Bounds in `db::settings::EDGE_CONFIG_BOUNDS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EdgeSettings {
    pub rate_limit_per_key_per_min: u32,
    pub rate_limit_per_ip_per_min: u32,
    /// For products that do not set their own.
    pub heartbeat_interval_secs: u32,
    /// For licenses and products that do not set their own.
    pub grace_period_secs: u32,
    /// An edge whose newest snapshot data is older than this is not ready.
    pub max_snapshot_age_secs: u32,
}

impl From<EdgeConfig> for EdgeSettings {
    fn from(config: EdgeConfig) -> Self {
        Self {
            rate_limit_per_key_per_min: config.rate_limit_per_key_per_min,
            rate_limit_per_ip_per_min: config.rate_limit_per_ip_per_min,
            heartbeat_interval_secs: config.heartbeat_interval_secs,
            grace_period_secs: config.grace_period_secs,
            max_snapshot_age_secs: config.max_snapshot_age_secs,
        }
    }
}

impl From<EdgeSettings> for EdgeConfig {
    fn from(settings: EdgeSettings) -> Self {
        Self {
            rate_limit_per_key_per_min: settings.rate_limit_per_key_per_min,
            rate_limit_per_ip_per_min: settings.rate_limit_per_ip_per_min,
            heartbeat_interval_secs: settings.heartbeat_interval_secs,
            grace_period_secs: settings.grace_period_secs,
            max_snapshot_age_secs: settings.max_snapshot_age_secs,
        }
    }
}

/// Every edge by name, revoked ones included, with the snapshot sequence it
/// last applied.
#[utoipa::path(
    get,
    path = "/edges",
    tag = "edges",
    security(("bearer" = ["edges:read"])),
    responses(
        (status = 200, description = "The edges", body = Vec<Edge>),
        Guarded,
    )
)]
pub async fn list_edges(
    _auth: Auth<Read<Edges>>,
    State(state): State<ApiState>,
) -> ApiResult<Json<Vec<Edge>>> {
    Ok(Json(edges::list(&state.pool).await?))
}

#[utoipa::path(
    get,
    path = "/edge-config",
    tag = "edges",
    security(("bearer" = ["edges:read"])),
    responses(
        (status = 200, description = "The edge configuration", body = EdgeSettings),
        Guarded,
    )
)]
pub async fn get_edge_config(
    _auth: Auth<Read<Edges>>,
    State(state): State<ApiState>,
) -> ApiResult<Json<EdgeSettings>> {
    Ok(Json(settings::edge_config(&state.pool).await?.into()))
}

#[utoipa::path(
    put,
    path = "/edge-config",
    tag = "edges",
    request_body = EdgeSettings,
    security(("bearer" = ["edges:write"])),
    responses(
        (status = 200, description = "The stored edge configuration", body = EdgeSettings),
        Guarded, BodyErrors,
    )
)]
pub async fn set_edge_config(
    auth: Auth<Write<Edges>>,
    State(state): State<ApiState>,
    Json(request): Json<EdgeSettings>,
) -> ApiResult<Json<EdgeSettings>> {
    let stored = settings::set_edge_config(&state.pool, &auth.ctx, &request.into()).await?;
    Ok(Json(stored.into()))
}
