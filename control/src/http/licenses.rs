//! `/admin/api/v1/licenses`: create one or a batch (the only answer that
//! carries keys, besides `reveal-key`), list and filter, read, change,
//! suspend/resume/revoke, extend, delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use latchkey_shared::snapshot::LicenseStatus;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::db::licenses::{
    self, CreatedLicense, License, LicenseFilter, LicensePatch, MAX_BATCH, NewLicense,
};
use crate::export;
use crate::http::ApiState;
use crate::http::auth::{Auth, Licenses, Read, Write};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{
    Export, ExportFormat, Json, List, Page, Pagination, Path, created, from_value,
};
use crate::http::openapi::{BodyErrors, ErrorBody, Guarded, PathErrors, QueryErrors, formats};

/// Longest `key_prefix` filter.
pub const KEY_PREFIX_MAX_CHARS: usize = 64;

/// The body of `POST /licenses` in the document: a [`NewLicense`] and
/// `count`. The body is read as a map so that `count` can be taken out
/// before the rest is read, strictly, as a `NewLicense`.
#[derive(Debug)]
pub struct CreateLicenses;

impl utoipa::PartialSchema for CreateLicenses {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::{RefOr, Schema};

        match <NewLicense as utoipa::PartialSchema>::schema() {
            RefOr::T(Schema::Object(new_license)) => {
                Schema::Object(formats::create_licenses(new_license)).into()
            }
            other => other,
        }
    }
}

impl utoipa::ToSchema for CreateLicenses {}

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
        .routes(routes!(export_licenses))
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
        Guarded, BodyErrors,
        (status = 400, description = "Invalid field, unknown product or customer", body = ErrorBody),
    )
)]
pub async fn create_licenses(
    auth: Auth<Write<Licenses>>,
    State(state): State<ApiState>,
    Json(mut body): Json<Map<String, Value>>,
) -> ApiResult<Response> {
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
    let new: NewLicense = from_value(Value::Object(body))?;
    // The table refuses a window that ends before it starts (a CHECK, which
    // would be a 500); a license starts now when `valid_from` is left out.
    if let Some(until) = new.valid_until
        && until <= new.valid_from.unwrap_or_else(OffsetDateTime::now_utc)
    {
        return Err(ApiError::invalid(
            "valid_until",
            "must be after valid_from (now, when it is left out)",
        ));
    }
    let items = licenses::create(&state.pool, &auth.ctx, &state.secrets, &new, count).await?;
    let batch_id = items.first().and_then(|created| created.license.batch_id);
    tracing::info!(count = items.len(), batch_id = ?batch_id, "licenses created");
    let location = match (batch_id, items.first()) {
        (Some(batch), _) => format!("/licenses?batch_id={batch}"),
        (None, Some(one)) => format!("/licenses/{}", one.license.id),
        (None, None) => return Err(ApiError::internal("a license create returned nothing")),
    };
    Ok(created(&location, CreatedLicenses { batch_id, items }))
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
        Guarded, QueryErrors,
    )
)]
pub async fn list_licenses(
    _auth: Auth<Read<Licenses>>,
    State(state): State<ApiState>,
    List {
        filter: query,
        pagination,
    }: List<LicenseQuery>,
) -> ApiResult<Json<Page<License>>> {
    let filter = checked(query)?;
    let (items, total) =
        licenses::list(&state.pool, &filter, pagination.page, pagination.per_page).await?;
    Ok(Json(pagination.page(items, total)))
}

/// Every license the list's filters match, as a file, newest first,
/// streamed. Keys are never exported, only their first group.
#[utoipa::path(
    get,
    path = "/licenses/export",
    tag = "licenses",
    params(
        ("format" = inline(Option<ExportFormat>), Query, description = "`csv` (the default) or `json`"),
        LicenseQuery,
    ),
    security(("bearer" = ["licenses:read"])),
    responses(
        (status = 200, description = "The rows, as `text/csv` or a JSON array",
            headers(("x-total-count" = i64, description = "How many rows the file holds")),
            content(
                (String = "text/csv"),
                (Vec<License> = "application/json"),
            )
        ),
        Guarded, QueryErrors,
    )
)]
pub async fn export_licenses(
    _auth: Auth<Read<Licenses>>,
    State(state): State<ApiState>,
    Export { format, filter }: Export<LicenseQuery>,
) -> ApiResult<Response> {
    let filter = checked(filter)?;
    let total = licenses::count(&state.pool, &filter).await?;
    let rows = licenses::stream(state.pool.clone(), &filter);
    Ok(export::download(rows, format.into(), total))
}

/// The query's filters, refusing a key prefix too long to be one.
fn checked(query: LicenseQuery) -> ApiResult<LicenseFilter> {
    if query
        .key_prefix
        .as_ref()
        .is_some_and(|p| p.chars().count() > KEY_PREFIX_MAX_CHARS)
    {
        return Err(ApiError::invalid(
            "key_prefix",
            format!("at most {KEY_PREFIX_MAX_CHARS} characters"),
        ));
    }
    Ok(LicenseFilter {
        status: query.status,
        product_id: query.product_id,
        customer_id: query.customer_id,
        batch_id: query.batch_id,
        key_prefix: query.key_prefix,
        ..LicenseFilter::default()
    })
}

#[utoipa::path(
    get,
    path = "/licenses/{id}",
    tag = "licenses",
    params(("id" = Uuid, Path, description = "The license's id")),
    security(("bearer" = ["licenses:read"])),
    responses(
        (status = 200, description = "The license", body = License),
        Guarded, PathErrors,
    )
)]
pub async fn get_license(
    _auth: Auth<Read<Licenses>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<License>> {
    Ok(Json(licenses::get(&state.pool, id).await?))
}

/// Fields left out (or `null`) stay as they are, but `null` clears
/// `customer_id`, `valid_until` and `grace_period_secs`; `{}` changes nothing.
#[utoipa::path(
    patch,
    path = "/licenses/{id}",
    tag = "licenses",
    params(("id" = Uuid, Path, description = "The license's id")),
    request_body = LicensePatch,
    security(("bearer" = ["licenses:write"])),
    responses(
        (status = 200, description = "The changed license", body = License),
        Guarded, PathErrors, BodyErrors,
    )
)]
pub async fn update_license(
    auth: Auth<Write<Licenses>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    Json(patch): Json<LicensePatch>,
) -> ApiResult<Json<License>> {
    if is_empty(&patch) {
        // An empty merge patch changes nothing (RFC 7396): no update, no audit row.
        return Ok(Json(licenses::get(&state.pool, id).await?));
    }
    // As at creation: the window must end after it starts.
    if let Some(Some(until)) = patch.valid_until
        && until <= licenses::get(&state.pool, id).await?.valid_from
    {
        return Err(ApiError::invalid(
            "valid_until",
            "must be after the license's valid_from",
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
        Guarded, PathErrors,
        (status = 409, description = "The license is revoked", body = ErrorBody),
    )
)]
pub async fn suspend_license(
    auth: Auth<Write<Licenses>>,
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
        Guarded, PathErrors,
        (status = 409, description = "The license is revoked: that is final", body = ErrorBody),
    )
)]
pub async fn resume_license(
    auth: Auth<Write<Licenses>>,
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
        Guarded, PathErrors,
    )
)]
pub async fn revoke_license(
    auth: Auth<Write<Licenses>>,
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
        Guarded, PathErrors, BodyErrors,
        (status = 400, description = "Not later than now, or the license never expires", body = ErrorBody),
    )
)]
pub async fn extend_license(
    auth: Auth<Write<Licenses>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    Json(request): Json<ExtendLicense>,
) -> ApiResult<Json<License>> {
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
        Guarded, PathErrors,
    )
)]
pub async fn delete_license(
    auth: Auth<Write<Licenses>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
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
        Guarded, PathErrors,
    )
)]
pub async fn reveal_key(
    auth: Auth<Write<Licenses>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<RevealedKey>> {
    let license_key = licenses::reveal_key(&state.pool, &auth.ctx, &state.secrets, id).await?;
    tracing::info!(license_id = %id, "license key revealed");
    Ok(Json(RevealedKey {
        license_id: id,
        license_key,
    }))
}

async fn set_status(
    auth: Auth<Write<Licenses>>,
    state: ApiState,
    id: Uuid,
    status: LicenseStatus,
) -> ApiResult<Json<License>> {
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
