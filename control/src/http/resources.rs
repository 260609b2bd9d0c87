//! Resource pools (`resources:read|write`): add values in bulk, list and
//! read them with their history, allocate to a license, release, quarantine.

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::db::resources::{
    self, BulkAdded, HistoryEntry, Resource, ResourceFilter, ResourceKind, ResourceStatus,
};
use crate::export;
use crate::http::ApiState;
use crate::http::auth::{Auth, Read, Resources, Write};
use crate::http::error::ApiResult;
use crate::http::extract::{Export, ExportFormat, Json, List, Page, Pagination, Path, created};
use crate::http::openapi::{BodyErrors, ErrorBody, Guarded, PathErrors, QueryErrors, formats};

/// 1 to 65536 values of one kind; its schema says what each kind's look
/// like ([`formats::add_resources`]).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddResources {
    pub kind: ResourceKind,
    pub values: Vec<String>,
}

impl utoipa::PartialSchema for AddResources {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        formats::add_resources().into()
    }
}

impl utoipa::ToSchema for AddResources {}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocateResources {
    pub kind: ResourceKind,
    /// 1 to 10000; all or nothing.
    pub count: u32,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReleaseResource {
    /// Rest the resource until then instead of making it available at once.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub quarantine_until: Option<OffsetDateTime>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuarantineResource {
    /// In the future.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub until: OffsetDateTime,
}

/// A resource and every state it went through, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ResourceDetail {
    #[serde(flatten)]
    pub resource: Resource,
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ResourceQuery {
    pub kind: Option<ResourceKind>,
    pub status: Option<ResourceStatus>,
    pub license_id: Option<Uuid>,
}

impl From<ResourceQuery> for ResourceFilter {
    fn from(query: ResourceQuery) -> Self {
        Self {
            kind: query.kind,
            status: query.status,
            license_id: query.license_id,
            search: None,
        }
    }
}

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_resources, add_resources))
        .routes(routes!(export_resources))
        .routes(routes!(get_resource))
        .routes(routes!(allocate_resources))
        .routes(routes!(release_resource))
        .routes(routes!(quarantine_resource))
}

/// Adds values to a pool in one statement; the first invalid value refuses
/// the whole call, naming `values[i]`.
#[utoipa::path(
    post,
    path = "/resources",
    tag = "resources",
    request_body = AddResources,
    security(("bearer" = ["resources:write"])),
    responses(
        (status = 201, description = "How many were added and skipped; `Location` lists the pool", body = BulkAdded),
        Guarded, BodyErrors,
    )
)]
pub async fn add_resources(
    auth: Auth<Write<Resources>>,
    State(state): State<ApiState>,
    Json(request): Json<AddResources>,
) -> ApiResult<Response> {
    let added = resources::add_bulk(&state.pool, &auth.ctx, request.kind, &request.values).await?;
    tracing::info!(
        kind = request.kind.as_str(),
        added = added.added,
        skipped = added.skipped,
        "resources added"
    );
    Ok(created(
        &format!("/resources?kind={}", request.kind.as_str()),
        added,
    ))
}

/// Resources, oldest first, filtered.
#[utoipa::path(
    get,
    path = "/resources",
    tag = "resources",
    params(ResourceQuery, Pagination),
    security(("bearer" = ["resources:read"])),
    responses(
        (status = 200, description = "One page of resources", body = Page<Resource>),
        Guarded, QueryErrors,
    )
)]
pub async fn list_resources(
    _auth: Auth<Read<Resources>>,
    State(state): State<ApiState>,
    List {
        filter: query,
        pagination,
    }: List<ResourceQuery>,
) -> ApiResult<Json<Page<Resource>>> {
    let filter = query.into();
    let page = resources::list(&state.pool, &filter, pagination.page, pagination.per_page).await?;
    Ok(Json(pagination.page(page.items, page.total)))
}

/// Every resource the list's filters match, as a file, oldest first,
/// streamed.
#[utoipa::path(
    get,
    path = "/resources/export",
    tag = "resources",
    params(
        ("format" = inline(Option<ExportFormat>), Query, description = "`csv` (the default) or `json`"),
        ResourceQuery,
    ),
    security(("bearer" = ["resources:read"])),
    responses(
        (status = 200, description = "The rows, as `text/csv` or a JSON array",
            headers(("x-total-count" = i64, description = "How many rows the file holds")),
            content(
                (String = "text/csv"),
                (Vec<Resource> = "application/json"),
            )
        ),
        Guarded, QueryErrors,
    )
)]
pub async fn export_resources(
    _auth: Auth<Read<Resources>>,
    State(state): State<ApiState>,
    Export { format, filter }: Export<ResourceQuery>,
) -> ApiResult<Response> {
    let filter = filter.into();
    let total = resources::count(&state.pool, &filter).await?;
    let rows = resources::stream(state.pool.clone(), &filter);
    Ok(export::download(rows, format.into(), total))
}

#[utoipa::path(
    get,
    path = "/resources/{id}",
    tag = "resources",
    params(("id" = i64, Path, description = "The resource's id")),
    security(("bearer" = ["resources:read"])),
    responses(
        (status = 200, description = "The resource and its history", body = ResourceDetail),
        Guarded, PathErrors,
    )
)]
pub async fn get_resource(
    _auth: Auth<Read<Resources>>,
    State(state): State<ApiState>,
    Path(id): Path<i64>,
) -> ApiResult<Json<ResourceDetail>> {
    let resource = resources::get(&state.pool, id).await?;
    let history = resources::history(&state.pool, id).await?;
    Ok(Json(ResourceDetail { resource, history }))
}

/// Hands `count` available resources of `kind` to the license, all or
/// nothing (409 naming `count` when too few are available).
#[utoipa::path(
    post,
    path = "/licenses/{id}/resources",
    tag = "resources",
    params(("id" = Uuid, Path, description = "The license's id")),
    request_body = AllocateResources,
    security(("bearer" = ["resources:write"])),
    responses(
        (status = 200, description = "The allocated resources", body = Vec<Resource>),
        Guarded, PathErrors, BodyErrors,
        (status = 409, description = "Too few available, or the license is revoked", body = ErrorBody),
    )
)]
pub async fn allocate_resources(
    auth: Auth<Write<Resources>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    Json(request): Json<AllocateResources>,
) -> ApiResult<Json<Vec<Resource>>> {
    let allocated =
        resources::allocate(&state.pool, &auth.ctx, id, request.kind, request.count).await?;
    tracing::info!(license_id = %id, kind = request.kind.as_str(), count = allocated.len(), "resources allocated");
    Ok(Json(allocated))
}

/// Takes an allocated resource back: available again, or quarantined until
/// `quarantine_until`. Send `{}` for the former.
#[utoipa::path(
    post,
    path = "/resources/{id}/release",
    tag = "resources",
    params(("id" = i64, Path, description = "The resource's id")),
    request_body = ReleaseResource,
    security(("bearer" = ["resources:write"])),
    responses(
        (status = 200, description = "The released resource", body = Resource),
        Guarded, PathErrors, BodyErrors,
        (status = 409, description = "Not allocated", body = ErrorBody),
    )
)]
pub async fn release_resource(
    auth: Auth<Write<Resources>>,
    State(state): State<ApiState>,
    Path(id): Path<i64>,
    Json(request): Json<ReleaseResource>,
) -> ApiResult<Json<Resource>> {
    let resource = resources::release(&state.pool, &auth.ctx, id, request.quarantine_until).await?;
    tracing::info!(
        resource_id = id,
        status = resource.status.as_str(),
        "resource released"
    );
    Ok(Json(resource))
}

/// Rests an available or quarantined resource until `until`.
#[utoipa::path(
    post,
    path = "/resources/{id}/quarantine",
    tag = "resources",
    params(("id" = i64, Path, description = "The resource's id")),
    request_body = QuarantineResource,
    security(("bearer" = ["resources:write"])),
    responses(
        (status = 200, description = "The quarantined resource", body = Resource),
        Guarded, PathErrors, BodyErrors,
        (status = 409, description = "Allocated: release it first", body = ErrorBody),
    )
)]
pub async fn quarantine_resource(
    auth: Auth<Write<Resources>>,
    State(state): State<ApiState>,
    Path(id): Path<i64>,
    Json(request): Json<QuarantineResource>,
) -> ApiResult<Json<Resource>> {
    let resource = resources::quarantine(&state.pool, &auth.ctx, id, request.until).await?;
    tracing::info!(resource_id = id, "resource quarantined");
    Ok(Json(resource))
}
