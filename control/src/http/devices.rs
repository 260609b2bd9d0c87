//! A license's seats: list them (`devices:read`), free one (`devices:write`).

use axum::extract::State;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::db::devices::{self, Device};
use crate::db::licenses;
use crate::http::ApiState;
use crate::http::auth::{Auth, Devices, Read, Write};
use crate::http::error::ApiResult;
use crate::http::extract::{Json, Path, Query};
use crate::http::openapi::{Guarded, PathErrors, QueryErrors};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceQuery {
    /// Also list deactivated devices; only active ones by default.
    #[serde(default)]
    pub include_inactive: bool,
}

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_devices))
        .routes(routes!(deactivate_device))
}

/// The license's devices, oldest first.
#[utoipa::path(
    get,
    path = "/licenses/{id}/devices",
    tag = "devices",
    params(("id" = Uuid, Path, description = "The license's id"), DeviceQuery),
    security(("bearer" = ["devices:read"])),
    responses(
        (status = 200, description = "The devices", body = Vec<Device>),
        Guarded, PathErrors, QueryErrors,
    )
)]
pub async fn list_devices(
    _auth: Auth<Read<Devices>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    Query(query): Query<DeviceQuery>,
) -> ApiResult<Json<Vec<Device>>> {
    // An unknown license is a 404, not an empty list.
    licenses::get(&state.pool, id).await?;
    Ok(Json(
        devices::list_for_license(&state.pool, id, query.include_inactive).await?,
    ))
}

/// Frees the device's seat and ends its sessions.
#[utoipa::path(
    post,
    path = "/devices/{id}/deactivate",
    tag = "devices",
    params(("id" = Uuid, Path, description = "The device's id")),
    security(("bearer" = ["devices:write"])),
    responses(
        (status = 200, description = "The deactivated device", body = Device),
        Guarded, PathErrors,
    )
)]
pub async fn deactivate_device(
    auth: Auth<Write<Devices>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Device>> {
    let device = devices::deactivate_by_id(&state.pool, &auth.ctx, id).await?;
    tracing::info!(device_id = %id, license_id = %device.license_id, "device deactivated");
    Ok(Json(device))
}
