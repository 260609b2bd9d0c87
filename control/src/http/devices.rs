//! A license's seats: list them (`devices:read`), free one (`devices:write`).

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::db::devices::{self, Device, DeviceFilter};
use crate::db::licenses;
use crate::export;
use crate::http::ApiState;
use crate::http::auth::{Auth, Devices, Read, Write};
use crate::http::error::ApiResult;
use crate::http::extract::{Export, ExportFormat, Json, Path, Query};
use crate::http::openapi::{Guarded, PathErrors, QueryErrors};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceQuery {
    /// Also list deactivated devices; only active ones by default.
    #[serde(default)]
    pub include_inactive: bool,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeviceExportQuery {
    /// One license's devices; every license's by default.
    pub license_id: Option<Uuid>,
    /// Also deactivated devices; only active ones by default.
    #[serde(default)]
    pub include_inactive: bool,
}

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_devices))
        .routes(routes!(export_devices))
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

/// Every device (or one license's), as a file, oldest first, streamed.
#[utoipa::path(
    get,
    path = "/devices/export",
    tag = "devices",
    params(
        ("format" = inline(Option<ExportFormat>), Query, description = "`csv` (the default) or `json`"),
        DeviceExportQuery,
    ),
    security(("bearer" = ["devices:read"])),
    responses(
        (status = 200, description = "The rows, as `text/csv` or a JSON array",
            headers(("x-total-count" = i64, description = "How many rows the file holds")),
            content(
                (String = "text/csv"),
                (Vec<Device> = "application/json"),
            )
        ),
        Guarded, QueryErrors,
    )
)]
pub async fn export_devices(
    _auth: Auth<Read<Devices>>,
    State(state): State<ApiState>,
    Export { format, filter }: Export<DeviceExportQuery>,
) -> ApiResult<Response> {
    let filter = DeviceFilter {
        license_id: filter.license_id,
        include_inactive: filter.include_inactive,
    };
    let total = devices::count(&state.pool, filter).await?;
    Ok(export::download(
        devices::stream(state.pool.clone(), filter),
        format.into(),
        total,
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
