//! Products and their releases (`products:read|write`): create, list, read
//! and change products; add, list, publish and unpublish releases; mark the
//! minimum allowed release of a channel; and the version check, as an
//! application would see it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::db::products::{
    self, ClientConfig, NewProduct, NewRelease, Product, ProductUpdate, Release,
};
use crate::http::ApiState;
use crate::http::auth::{Auth, Products, Read, Write};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Json, List, NoFilter, Page, Pagination, Path, Query, created};
use crate::http::openapi::{BodyErrors, ErrorBody, Guarded, PathErrors, QueryErrors};

/// Longest version accepted; see [`check_version_length`].
pub const VERSION_MAX_CHARS: usize = 124;

/// The product a version check is about.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ProductSlug {
    /// The product's slug, as applications name it.
    pub slug: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VersionCheckQuery {
    /// The version the application runs; loose forms like `v2.1` are accepted.
    pub version: String,
    /// `stable` when left out.
    pub channel: Option<String>,
}

/// Mirrors `latchkey_shared::api::VersionCheckResponse`, which stays free of
/// documentation dependencies.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct VersionCheck {
    product: String,
    channel: String,
    /// The version asked about, normalised.
    current: String,
    /// The newest published release of the channel.
    latest: Option<String>,
    update_available: bool,
    /// Below the minimum allowed version: the application must update.
    update_mandatory: bool,
    minimum_allowed: Option<String>,
    download_url: Option<String>,
}

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_products, create_product))
        .routes(routes!(get_product, update_product))
        .routes(routes!(get_client_config, set_client_config))
        .routes(routes!(list_releases, add_release))
        .routes(routes!(get_release))
        .routes(routes!(publish_release))
        .routes(routes!(unpublish_release))
        .routes(routes!(mark_min_allowed, clear_min_allowed))
        .routes(routes!(version_check))
}

#[utoipa::path(
    post,
    path = "/products",
    tag = "products",
    request_body = NewProduct,
    security(("bearer" = ["products:write"])),
    responses(
        (status = 201, description = "Created", body = Product),
        Guarded, BodyErrors,
        (status = 409, description = "The slug is taken", body = ErrorBody),
    )
)]
pub async fn create_product(
    auth: Auth<Write<Products>>,
    State(state): State<ApiState>,
    Json(request): Json<NewProduct>,
) -> ApiResult<Response> {
    let product = products::create(&state.pool, &auth.ctx, &request).await?;
    tracing::info!(product_id = product.id, slug = %product.slug, "product created");
    Ok(created(&format!("/products/{}", product.id), product))
}

/// Products, by slug.
#[utoipa::path(
    get,
    path = "/products",
    tag = "products",
    params(Pagination),
    security(("bearer" = ["products:read"])),
    responses(
        (status = 200, description = "One page of products", body = Page<Product>),
        Guarded, QueryErrors,
    )
)]
pub async fn list_products(
    _auth: Auth<Read<Products>>,
    State(state): State<ApiState>,
    List { pagination, .. }: List<NoFilter>,
) -> ApiResult<Json<Page<Product>>> {
    Ok(Json(pagination.slice(products::list(&state.pool).await?)))
}

#[utoipa::path(
    get,
    path = "/products/{id}",
    tag = "products",
    params(("id" = i32, Path, description = "The product's id")),
    security(("bearer" = ["products:read"])),
    responses(
        (status = 200, description = "The product", body = Product),
        Guarded, PathErrors,
    )
)]
pub async fn get_product(
    _auth: Auth<Read<Products>>,
    State(state): State<ApiState>,
    Path(id): Path<i32>,
) -> ApiResult<Json<Product>> {
    Ok(Json(products::get(&state.pool, id).await?))
}

/// Fields left out (or `null`) stay as they are, but `"description": null`
/// clears it; `{}` changes nothing. The slug never changes.
#[utoipa::path(
    patch,
    path = "/products/{id}",
    tag = "products",
    params(("id" = i32, Path, description = "The product's id")),
    request_body = ProductUpdate,
    security(("bearer" = ["products:write"])),
    responses(
        (status = 200, description = "The changed product", body = Product),
        Guarded, PathErrors, BodyErrors,
    )
)]
pub async fn update_product(
    auth: Auth<Write<Products>>,
    State(state): State<ApiState>,
    Path(id): Path<i32>,
    Json(request): Json<ProductUpdate>,
) -> ApiResult<Json<Product>> {
    if request.name.is_none() && request.description.is_none() {
        // An empty merge patch changes nothing (RFC 7396): no update, no audit row.
        return Ok(Json(products::get(&state.pool, id).await?));
    }
    Ok(Json(
        products::update(&state.pool, &auth.ctx, id, &request).await?,
    ))
}

/// What the product's client applications read besides their license, as
/// edges answer it at `POST /api/license/config`.
#[utoipa::path(
    get,
    path = "/products/{id}/client-config",
    tag = "products",
    params(("id" = i32, Path, description = "The product's id")),
    security(("bearer" = ["products:read"])),
    responses(
        (status = 200, description = "The product's client configuration", body = ClientConfig),
        Guarded, PathErrors,
    )
)]
pub async fn get_client_config(
    _auth: Auth<Read<Products>>,
    State(state): State<ApiState>,
    Path(id): Path<i32>,
) -> ApiResult<Json<ClientConfig>> {
    Ok(Json(products::client_config(&state.pool, id).await?))
}

/// Replaces the client configuration whole; audited, and edges answer the
/// new one from the next snapshot.
#[utoipa::path(
    put,
    path = "/products/{id}/client-config",
    tag = "products",
    params(("id" = i32, Path, description = "The product's id")),
    request_body = ClientConfig,
    security(("bearer" = ["products:write"])),
    responses(
        (status = 200, description = "The stored client configuration", body = ClientConfig),
        Guarded, PathErrors, BodyErrors,
    )
)]
pub async fn set_client_config(
    auth: Auth<Write<Products>>,
    State(state): State<ApiState>,
    Path(id): Path<i32>,
    Json(request): Json<ClientConfig>,
) -> ApiResult<Json<ClientConfig>> {
    Ok(Json(
        products::set_client_config(&state.pool, &auth.ctx, id, &request).await?,
    ))
}

/// Adds a draft release; publish it to make it visible to applications.
#[utoipa::path(
    post,
    path = "/products/{id}/releases",
    tag = "products",
    params(("id" = i32, Path, description = "The product's id")),
    request_body = NewRelease,
    security(("bearer" = ["products:write"])),
    responses(
        (status = 201, description = "The draft release", body = Release),
        Guarded, PathErrors, BodyErrors,
        (status = 409, description = "This version already exists on this channel", body = ErrorBody),
    )
)]
pub async fn add_release(
    auth: Auth<Write<Products>>,
    State(state): State<ApiState>,
    Path(id): Path<i32>,
    Json(request): Json<NewRelease>,
) -> ApiResult<Response> {
    check_version_length(&request.version)?;
    let release = products::add_release(&state.pool, &auth.ctx, id, &request).await?;
    tracing::info!(product_id = id, release_id = %release.id, version = %release.version, "release added");
    Ok(created(&format!("/releases/{}", release.id), release))
}

/// The product's releases of every channel, drafts included, newest version first.
#[utoipa::path(
    get,
    path = "/products/{id}/releases",
    tag = "products",
    params(("id" = i32, Path, description = "The product's id"), Pagination),
    security(("bearer" = ["products:read"])),
    responses(
        (status = 200, description = "One page of releases", body = Page<Release>),
        Guarded, PathErrors, QueryErrors,
    )
)]
pub async fn list_releases(
    _auth: Auth<Read<Products>>,
    State(state): State<ApiState>,
    Path(id): Path<i32>,
    List { pagination, .. }: List<NoFilter>,
) -> ApiResult<Json<Page<Release>>> {
    Ok(Json(
        pagination.slice(products::list_releases(&state.pool, id).await?),
    ))
}

#[utoipa::path(
    get,
    path = "/releases/{id}",
    tag = "products",
    params(("id" = Uuid, Path, description = "The release's id")),
    security(("bearer" = ["products:read"])),
    responses(
        (status = 200, description = "The release", body = Release),
        Guarded, PathErrors,
    )
)]
pub async fn get_release(
    _auth: Auth<Read<Products>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Release>> {
    Ok(Json(products::get_release(&state.pool, id).await?))
}

/// Publishes a draft now; publishing a published release changes nothing.
#[utoipa::path(
    post,
    path = "/releases/{id}/publish",
    tag = "products",
    params(("id" = Uuid, Path, description = "The release's id")),
    security(("bearer" = ["products:write"])),
    responses(
        (status = 200, description = "The published release", body = Release),
        Guarded, PathErrors,
    )
)]
pub async fn publish_release(
    auth: Auth<Write<Products>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Release>> {
    Ok(Json(products::publish(&state.pool, &auth.ctx, id).await?))
}

/// Turns a release back into a draft; refused for the minimum allowed one.
#[utoipa::path(
    post,
    path = "/releases/{id}/unpublish",
    tag = "products",
    params(("id" = Uuid, Path, description = "The release's id")),
    security(("bearer" = ["products:write"])),
    responses(
        (status = 200, description = "The draft release", body = Release),
        Guarded, PathErrors,
        (status = 409, description = "It is the minimum allowed release", body = ErrorBody),
    )
)]
pub async fn unpublish_release(
    auth: Auth<Write<Products>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Release>> {
    Ok(Json(products::unpublish(&state.pool, &auth.ctx, id).await?))
}

/// Makes a published release the minimum allowed of its channel, replacing
/// the previous one.
#[utoipa::path(
    post,
    path = "/releases/{id}/min-allowed",
    tag = "products",
    params(("id" = Uuid, Path, description = "The release's id")),
    security(("bearer" = ["products:write"])),
    responses(
        (status = 200, description = "The minimum allowed release", body = Release),
        Guarded, PathErrors,
        (status = 409, description = "The release is a draft", body = ErrorBody),
    )
)]
pub async fn mark_min_allowed(
    auth: Auth<Write<Products>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Release>> {
    Ok(Json(
        products::mark_min_allowed(&state.pool, &auth.ctx, id).await?,
    ))
}

/// Leaves the release's channel without a minimum.
#[utoipa::path(
    delete,
    path = "/releases/{id}/min-allowed",
    tag = "products",
    params(("id" = Uuid, Path, description = "The release's id")),
    security(("bearer" = ["products:write"])),
    responses(
        (status = 204, description = "Cleared (or was not set)"),
        Guarded, PathErrors,
    )
)]
pub async fn clear_min_allowed(
    auth: Auth<Write<Products>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    products::clear_min_allowed(&state.pool, &auth.ctx, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What an application running `version` on `channel` would be told.
#[utoipa::path(
    get,
    path = "/products/{slug}/version-check",
    tag = "products",
    params(ProductSlug, VersionCheckQuery),
    security(("bearer" = ["products:read"])),
    responses(
        (status = 200, description = "The answer", body = VersionCheck),
        Guarded, PathErrors, QueryErrors,
        (status = 400, description = "Bad version or channel", body = ErrorBody),
    )
)]
pub async fn version_check(
    _auth: Auth<Read<Products>>,
    State(state): State<ApiState>,
    Path(ProductSlug { slug }): Path<ProductSlug>,
    Query(query): Query<VersionCheckQuery>,
) -> ApiResult<Json<latchkey_shared::api::VersionCheckResponse>> {
    check_version_length(&query.version)?;
    Ok(Json(
        products::version_check(&state.pool, &slug, &query.version, query.channel.as_deref())
            .await?,
    ))
}

/// A version is stored and compared in its normalised form, which may be
/// `.0.0` longer than the text given and must stay within the 128
/// characters a version may have.
fn check_version_length(version: &str) -> ApiResult<()> {
    if version.chars().count() > VERSION_MAX_CHARS {
        return Err(ApiError::invalid(
            "version",
            format!("at most {VERSION_MAX_CHARS} characters"),
        ));
    }
    Ok(())
}
