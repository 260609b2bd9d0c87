//! `/admin/api/v1/api-keys`: make (the secret is answered once), list, read,
//! revoke. A key can grant only scopes its maker holds, so `api_keys:write`
//! is no way up to `*`.

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::db::api_keys::{self, ApiKey, NewApiKey, Scopes};
use crate::http::ApiState;
use crate::http::auth::{ApiKeys, Auth, Read, Write};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Json, List, NoFilter, Page, Pagination, Path, created};
use crate::http::openapi::{BodyErrors, ErrorBody, Guarded, PathErrors, QueryErrors};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// 1 to 128 characters, to tell keys apart.
    pub name: String,
    /// `*`, or `<area>:read` / `<area>:write` for areas customers, licenses,
    /// devices, sessions, resources, products, flags, api_keys, audit.
    pub scopes: Vec<String>,
    /// When the key stops working; never when left out.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<OffsetDateTime>,
}

/// A new key. `secret` is shown this once and never again.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedApiKey {
    pub api_key: ApiKey,
    /// The whole key, `lk_<prefix>_<secret>`.
    pub secret: String,
}

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(get_api_key))
        .routes(routes!(revoke_api_key))
}

/// Keys, newest first: prefixes and scopes, never secrets.
#[utoipa::path(
    get,
    path = "/api-keys",
    tag = "api_keys",
    params(Pagination),
    security(("bearer" = ["api_keys:read"])),
    responses(
        (status = 200, description = "One page of keys", body = Page<ApiKey>),
        Guarded, QueryErrors,
    )
)]
pub async fn list_api_keys(
    _auth: Auth<Read<ApiKeys>>,
    State(state): State<ApiState>,
    List { pagination, .. }: List<NoFilter>,
) -> ApiResult<Json<Page<ApiKey>>> {
    let (items, total) =
        api_keys::list(&state.pool, pagination.limit(), pagination.offset()).await?;
    Ok(Json(pagination.page(items, total)))
}

#[utoipa::path(
    post,
    path = "/api-keys",
    tag = "api_keys",
    request_body = CreateApiKey,
    security(("bearer" = ["api_keys:write"])),
    responses(
        (status = 201, description = "Created; the secret is in this answer only", body = CreatedApiKey),
        Guarded, BodyErrors,
        (status = 403, description = "Lacks `api_keys:write` or a scope it tries to grant", body = ErrorBody),
    )
)]
pub async fn create_api_key(
    auth: Auth<Write<ApiKeys>>,
    State(state): State<ApiState>,
    Json(request): Json<CreateApiKey>,
) -> ApiResult<Response> {
    let scopes = Scopes::parse(&request.scopes)
        .map_err(|(index, message)| ApiError::invalid(format!("scopes[{index}]"), message))?;
    let made = api_keys::create(
        &state.pool,
        &state.secrets,
        &auth.ctx,
        &auth.principal.scopes,
        NewApiKey {
            name: request.name,
            scopes,
            expires_at: request.expires_at,
        },
    )
    .await?;
    tracing::info!(api_key_id = %made.key.id, "API key created");
    Ok(created(
        &format!("/api-keys/{}", made.key.id),
        CreatedApiKey {
            api_key: made.key,
            secret: made.secret,
        },
    ))
}

#[utoipa::path(
    get,
    path = "/api-keys/{id}",
    tag = "api_keys",
    params(("id" = Uuid, Path, description = "The key's id")),
    security(("bearer" = ["api_keys:read"])),
    responses(
        (status = 200, description = "The key", body = ApiKey),
        Guarded, PathErrors,
    )
)]
pub async fn get_api_key(
    _auth: Auth<Read<ApiKeys>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<ApiKey>> {
    Ok(Json(api_keys::get(&state.pool, id).await?))
}

/// Stops a key (and the tokens made from it) at once. The caller must hold
/// every scope the key has: 403 otherwise.
#[utoipa::path(
    post,
    path = "/api-keys/{id}/revoke",
    tag = "api_keys",
    params(("id" = Uuid, Path, description = "The key's id")),
    security(("bearer" = ["api_keys:write"])),
    responses(
        (status = 200, description = "The revoked key", body = ApiKey),
        Guarded, PathErrors,
        (status = 409, description = "Already revoked", body = ErrorBody),
    )
)]
pub async fn revoke_api_key(
    auth: Auth<Write<ApiKeys>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<ApiKey>> {
    let key = api_keys::revoke(&state.pool, &auth.ctx, &auth.principal.scopes, id).await?;
    tracing::info!(api_key_id = %id, "API key revoked");
    Ok(Json(key))
}
