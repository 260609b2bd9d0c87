//! `/admin/api/v1/flags`: feature flags, global or per product
//! (`flags:read|write`). Every change reaches edges with the next snapshot.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::db::flags::{self, FeatureFlag, FlagUpdate, NewFlag};
use crate::error::{DomainError, Entity};
use crate::http::ApiState;
use crate::http::auth::{Auth, Flags, Read, Write};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Json, List, NoFilter, Page, Pagination, Path, created};
use crate::http::openapi::{BodyErrors, ErrorBody, Guarded, PathErrors, QueryErrors};

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_flags, create_flag))
        .routes(routes!(get_flag, update_flag, delete_flag))
}

#[utoipa::path(
    post,
    path = "/flags",
    tag = "flags",
    request_body = NewFlag,
    security(("bearer" = ["flags:write"])),
    responses(
        (status = 201, description = "Created", body = FeatureFlag),
        Guarded, BodyErrors,
        (status = 400, description = "Invalid field or unknown product", body = ErrorBody),
        (status = 409, description = "The key is taken for this product", body = ErrorBody),
    )
)]
pub async fn create_flag(
    auth: Auth<Write<Flags>>,
    State(state): State<ApiState>,
    Json(request): Json<NewFlag>,
) -> ApiResult<Response> {
    let flag = flags::create(&state.pool, &auth.ctx, &request)
        .await
        .map_err(|error| match error {
            // A product named in the body is a field of the request, as it
            // is for licenses, not the resource addressed.
            DomainError::NotFound(Entity::Product) => {
                ApiError::invalid("product_id", "no such product")
            }
            other => other.into(),
        })?;
    tracing::info!(flag_id = %flag.id, key = %flag.key, "flag created");
    Ok(created(&format!("/flags/{}", flag.id), flag))
}

/// Every flag by key, global ones before per-product ones.
#[utoipa::path(
    get,
    path = "/flags",
    tag = "flags",
    params(Pagination),
    security(("bearer" = ["flags:read"])),
    responses(
        (status = 200, description = "One page of flags", body = Page<FeatureFlag>),
        Guarded, QueryErrors,
    )
)]
pub async fn list_flags(
    _auth: Auth<Read<Flags>>,
    State(state): State<ApiState>,
    List { pagination, .. }: List<NoFilter>,
) -> ApiResult<Json<Page<FeatureFlag>>> {
    Ok(Json(pagination.slice(flags::list(&state.pool).await?)))
}

#[utoipa::path(
    get,
    path = "/flags/{id}",
    tag = "flags",
    params(("id" = Uuid, Path, description = "The flag's id")),
    security(("bearer" = ["flags:read"])),
    responses(
        (status = 200, description = "The flag", body = FeatureFlag),
        Guarded, PathErrors,
    )
)]
pub async fn get_flag(
    _auth: Auth<Read<Flags>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<FeatureFlag>> {
    Ok(Json(flags::get(&state.pool, id).await?))
}

/// Fields left out (or `null`) stay as they are, but `"description": null`
/// clears it; `{}` changes nothing. Key and product are the flag's identity
/// and do not change.
#[utoipa::path(
    patch,
    path = "/flags/{id}",
    tag = "flags",
    params(("id" = Uuid, Path, description = "The flag's id")),
    request_body = FlagUpdate,
    security(("bearer" = ["flags:write"])),
    responses(
        (status = 200, description = "The changed flag", body = FeatureFlag),
        Guarded, PathErrors, BodyErrors,
    )
)]
pub async fn update_flag(
    auth: Auth<Write<Flags>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    Json(request): Json<FlagUpdate>,
) -> ApiResult<Json<FeatureFlag>> {
    if request == FlagUpdate::default() {
        // An empty merge patch changes nothing (RFC 7396): no update, no audit row.
        return Ok(Json(flags::get(&state.pool, id).await?));
    }
    Ok(Json(
        flags::update(&state.pool, &auth.ctx, id, &request).await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/flags/{id}",
    tag = "flags",
    params(("id" = Uuid, Path, description = "The flag's id")),
    security(("bearer" = ["flags:write"])),
    responses(
        (status = 204, description = "Deleted"),
        Guarded, PathErrors,
    )
)]
pub async fn delete_flag(
    auth: Auth<Write<Flags>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    let flag = flags::delete(&state.pool, &auth.ctx, id).await?;
    tracing::info!(flag_id = %id, key = %flag.key, "flag deleted");
    Ok(StatusCode::NO_CONTENT)
}
