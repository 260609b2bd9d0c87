//! `/admin/api/v1/licenses`: create one or a batch (the only answer that
//! carries keys, besides `reveal-key`), list and filter, read, change,
//! suspend/resume/revoke, extend, delete.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use latchkey_shared::snapshot::LicenseStatus;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::db::api_keys::{Area, Scope};
use crate::db::licenses::{
    self, CreatedLicense, License, LicenseFilter, LicensePatch, MAX_BATCH, NewLicense,
};
use crate::http::auth::Auth;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Json, Page, Pagination, Path, Query, parse_json};
use crate::http::openapi::ErrorBody;
use crate::http::{API_PREFIX, ApiState};

const READ: Scope = Scope::read(Area::Licenses);
const WRITE: Scope = Scope::write(Area::Licenses);

/// The body of `POST /licenses`: a [`NewLicense`] and how many alike to
/// make. Documentation only: the body is read as a map so that `count` can
/// be taken out before the rest is read, strictly, as a `NewLicense`.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct CreateLicenses {
    #[serde(flatten)]
    license: NewLicense,
    /// 1 (the default) to 10000; more than 1 makes a batch sharing a `batch_id`.
    #[schema(minimum = 1, maximum = 10000)]
    count: Option<u32>,
}

/// What `POST /licenses` answers: every license with its key, shown this
/// once (an admin may reveal a key later, which is audited).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedLicenses {
    /// Set when more than one license was made.
    pub batch_id: Option<Uuid>,
    pub items: Vec<CreatedLicense>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LicenseQuery {
    /// `active`, `suspended` or `revoked`.
    #[param(value_type = Option<String>)]
    pub status: Option<LicenseStatus>,
    pub product_id: Option<i32>,
    pub customer_id: Option<Uuid>,
    pub batch_id: Option<Uuid>,
    /// The first group of a key, as lists show it (any case).
    pub key_prefix: Option<String>,
    /// Read by [`Pagination`].
    #[serde(default)]
    #[param(ignore)]
    pub page: Option<IgnoredAny>,
    #[serde(default)]
    #[param(ignore)]
    pub per_page: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtendLicense {
    /// The new end of the validity window; must be later than the current one.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub valid_until: OffsetDateTime,
}

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RevealedKey {
    pub license_id: Uuid,
    pub license_key: String,
}

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_licenses, create_licenses))
        .routes(routes!(get_license, update_license, delete_license))
        .routes(routes!(suspend_license))
        .routes(routes!(resume_license))
        .routes(routes!(revoke_license))
        .routes(routes!(extend_license))
        .routes(routes!(reveal_key))
}

/// Creates one license, or a batch of `count` alike in one transaction.
#[utoipa::path(
    post,
    path = "/licenses",
    tag = "licenses",
    request_body = CreateLicenses,
    security(("bearer" = ["licenses:write"])),
    responses(
        (status = 201, description = "Created, with their keys (shown this once)", body = CreatedLicenses),
        (status = 400, description = "Invalid field, unknown product or customer", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `licenses:write`", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
    )
)]
pub async fn create_licenses(
    auth: Auth,
    State(state): State<ApiState>,
    Json(mut body): Json<Map<String, Value>>,
) -> ApiResult<impl IntoResponse> {
    auth.require(WRITE)?;
    let count = match body.remove("count") {
        None | Some(Value::Null) => 1,
        Some(value) => value
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .filter(|n| (1..=MAX_BATCH).contains(n))
            .ok_or_else(|| {
                ApiError::invalid(
                    "count",
                    format!("must be a whole number from 1 to {MAX_BATCH}"),
                )
            })?,
    };
    let bytes = serde_json::to_vec(&body)
        .map_err(|error| ApiError::internal(format!("re-encoding a JSON object: {error}")))?;
    let new: NewLicense = parse_json(&bytes)?;
    let items = licenses::create(&state.pool, &auth.ctx, &state.secrets, &new, count).await?;
    let batch_id = items.first().and_then(|created| created.license.batch_id);
    tracing::info!(count = items.len(), batch_id = ?batch_id, "licenses created");
    let location = match (batch_id, items.first()) {
        (Some(batch), _) => format!("{API_PREFIX}/licenses?batch_id={batch}"),
        (None, Some(created)) => format!("{API_PREFIX}/licenses/{}", created.license.id),
        (None, None) => return Err(ApiError::internal("a license create returned nothing")),
    };
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(CreatedLicenses { batch_id, items }),
    ))
}

/// Licenses, newest first, filtered. Keys are never listed, only their first group.
#[utoipa::path(
    get,
    path = "/licenses",
    tag = "licenses",
    params(LicenseQuery, Pagination),
    security(("bearer" = ["licenses:read"])),
    responses(
        (status = 200, description = "One page of licenses", body = Page<License>),
        (status = 400, description = "Bad parameter", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `licenses:read`", body = ErrorBody),
    )
)]
pub async fn list_licenses(
    auth: Auth,
    State(state): State<ApiState>,
    Query(query): Query<LicenseQuery>,
    pagination: Pagination,
) -> ApiResult<Json<Page<License>>> {
    auth.require(READ)?;
    if query.key_prefix.as_ref().is_some_and(|p| p.len() > 64) {
        return Err(ApiError::invalid("key_prefix", "at most 64 characters"));
    }
    let filter = LicenseFilter {
        status: query.status,
        product_id: query.product_id,
        customer_id: query.customer_id,
        batch_id: query.batch_id,
        key_prefix: query.key_prefix,
    };
    let (items, total) =
        licenses::list(&state.pool, &filter, pagination.page, pagination.per_page).await?;
    Ok(Json(pagination.page(items, total)))
}

#[utoipa::path(
    get,
    path = "/licenses/{id}",
    tag = "licenses",
    params(("id" = Uuid, Path, description = "The license's id")),
    security(("bearer" = ["licenses:read"])),
    responses(
        (status = 200, description = "The license", body = License),
        (status = 400, description = "Malformed id", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `licenses:read`", body = ErrorBody),
        (status = 404, description = "No such license", body = ErrorBody),
    )
)]
pub async fn get_license(
    auth: Auth,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<License>> {
    auth.require(READ)?;
    Ok(Json(licenses::get(&state.pool, id).await?))
}

/// Fields left out stay as they are; `null` clears `customer_id`,
/// `valid_until` and `grace_period_secs`.
#[utoipa::path(
    patch,
    path = "/licenses/{id}",
    tag = "licenses",
    params(("id" = Uuid, Path, description = "The license's id")),
    request_body = LicensePatch,
    security(("bearer" = ["licenses:write"])),
    responses(
        (status = 200, description = "The changed license", body = License),
        (status = 400, description = "Invalid field or nothing to change", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `licenses:write`", body = ErrorBody),
        (status = 404, description = "No such license", body = ErrorBody),
    )
)]
pub async fn update_license(
    auth: Auth,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    Json(patch): Json<LicensePatch>,
) -> ApiResult<Json<License>> {
    auth.require(WRITE)?;
    if is_empty(&patch) {
        return Err(ApiError::new(
            latchkey_shared::api::ErrorCode::InvalidRequest,
            "nothing to change: give at least one field",
        ));
    }
    Ok(Json(
        licenses::update(&state.pool, &auth.ctx, id, &patch).await?,
    ))
}

/// Refuses the license to clients until it is resumed.
#[utoipa::path(
    post,
    path = "/licenses/{id}/suspend",
    tag = "licenses",
    params(("id" = Uuid, Path, description = "The license's id")),
    security(("bearer" = ["licenses:write"])),
    responses(
        (status = 200, description = "The suspended license", body = License),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `licenses:write`", body = ErrorBody),
        (status = 404, description = "No such license", body = ErrorBody),
        (status = 409, description = "The license is revoked", body = ErrorBody),
    )
)]
pub async fn suspend_license(
    auth: Auth,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<License>> {
    set_status(auth, state, id, LicenseStatus::Suspended).await
}

#[utoipa::path(
    post,
    path = "/licenses/{id}/resume",
    tag = "licenses",
    params(("id" = Uuid, Path, description = "The license's id")),
    security(("bearer" = ["licenses:write"])),
    responses(
        (status = 200, description = "The active license", body = License),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `licenses:write`", body = ErrorBody),
        (status = 404, description = "No such license", body = ErrorBody),
        (status = 409, description = "The license is revoked: that is final", body = ErrorBody),
    )
)]
pub async fn resume_license(
    auth: Auth,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<License>> {
    set_status(auth, state, id, LicenseStatus::Active).await
}

/// Final: ends the license's open sessions, and it can never be resumed.
#[utoipa::path(
    post,
    path = "/licenses/{id}/revoke",
    tag = "licenses",
    params(("id" = Uuid, Path, description = "The license's id")),
    security(("bearer" = ["licenses:write"])),
    responses(
        (status = 200, description = "The revoked license", body = License),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `licenses:write`", body = ErrorBody),
        (status = 404, description = "No such license", body = ErrorBody),
    )
)]
pub async fn revoke_license(
    auth: Auth,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<License>> {
    set_status(auth, state, id, LicenseStatus::Revoked).await
}

/// Moves the end of the validity window later.
#[utoipa::path(
    post,
    path = "/licenses/{id}/extend",
    tag = "licenses",
    params(("id" = Uuid, Path, description = "The license's id")),
    request_body = ExtendLicense,
    security(("bearer" = ["licenses:write"])),
    responses(
        (status = 200, description = "The extended license", body = License),
        (status = 400, description = "Not later than now, or the license never expires", body = ErrorBody),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `licenses:write`", body = ErrorBody),
        (status = 404, description = "No such license", body = ErrorBody),
    )
)]
pub async fn extend_license(
    auth: Auth,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    Json(request): Json<ExtendLicense>,
) -> ApiResult<Json<License>> {
    auth.require(WRITE)?;
    Ok(Json(
        licenses::extend(&state.pool, &auth.ctx, id, request.valid_until).await?,
    ))
}

/// Ends the license's sessions, frees its resources and deletes it.
#[utoipa::path(
    delete,
    path = "/licenses/{id}",
    tag = "licenses",
    params(("id" = Uuid, Path, description = "The license's id")),
    security(("bearer" = ["licenses:write"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `licenses:write`", body = ErrorBody),
        (status = 404, description = "No such license", body = ErrorBody),
    )
)]
pub async fn delete_license(
    auth: Auth,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    auth.require(WRITE)?;
    licenses::delete(&state.pool, &auth.ctx, id).await?;
    tracing::info!(license_id = %id, "license deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The key in clear again. Needs `licenses:write`, and every call is audited.
#[utoipa::path(
    post,
    path = "/licenses/{id}/reveal-key",
    tag = "licenses",
    params(("id" = Uuid, Path, description = "The license's id")),
    security(("bearer" = ["licenses:write"])),
    responses(
        (status = 200, description = "The license key", body = RevealedKey),
        (status = 401, description = "No or bad credentials", body = ErrorBody),
        (status = 403, description = "Lacks `licenses:write`", body = ErrorBody),
        (status = 404, description = "No such license", body = ErrorBody),
    )
)]
pub async fn reveal_key(
    auth: Auth,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<RevealedKey>> {
    auth.require(WRITE)?;
    let license_key = licenses::reveal_key(&state.pool, &auth.ctx, &state.secrets, id).await?;
    tracing::info!(license_id = %id, "license key revealed");
    Ok(Json(RevealedKey {
        license_id: id,
        license_key,
    }))
}

async fn set_status(
    auth: Auth,
    state: ApiState,
    id: Uuid,
    status: LicenseStatus,
) -> ApiResult<Json<License>> {
    auth.require(WRITE)?;
    let license = licenses::set_status(&state.pool, &auth.ctx, id, status).await?;
    tracing::info!(license_id = %id, status = status.as_str(), "license status set");
    Ok(Json(license))
}

fn is_empty(patch: &LicensePatch) -> bool {
    let LicensePatch {
        customer_id,
        kind,
        valid_until,
        device_limit,
        session_limit,
        allow_session_takeover,
        grace_period_secs,
        seat_change_limit,
        seat_change_window_secs,
        features,
        usage_limits,
        metadata,
    } = patch;
    customer_id.is_none()
        && kind.is_none()
        && valid_until.is_none()
        && device_limit.is_none()
        && session_limit.is_none()
        && allow_session_takeover.is_none()
        && grace_period_secs.is_none()
        && seat_change_limit.is_none()
        && seat_change_window_secs.is_none()
        && features.is_none()
        && usage_limits.is_none()
        && metadata.is_none()
}
