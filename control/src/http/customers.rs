//! `/admin/api/v1/customers`: list and search, create, read, change, delete.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::db::customers::{self, Customer, CustomerChanges, NewCustomer};
use crate::export;
use crate::http::ApiState;
use crate::http::auth::{Auth, Customers, Read, Write};
use crate::http::error::ApiResult;
use crate::http::extract::{
    Export, ExportFormat, Json, List, Page, Pagination, Path, created, present,
};
use crate::http::openapi::{BodyErrors, ErrorBody, Guarded, PathErrors, QueryErrors};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomer {
    /// 1 to 256 characters.
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub company: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
    /// A JSON object; `{}` when left out.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// Fields left out stay as they are, and so do `name` and `metadata` given
/// as `null`; `null` clears `email`, `company` or `notes`. `{}` changes nothing.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCustomer {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub email: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub company: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub notes: Option<Option<String>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CustomerSearch {
    /// Part of the name, the e-mail address or the company (any case).
    pub q: Option<String>,
}

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_customers, create_customer))
        .routes(routes!(export_customers))
        .routes(routes!(get_customer, update_customer, delete_customer))
}

/// Customers, newest first, optionally searched.
#[utoipa::path(
    get,
    path = "/customers",
    tag = "customers",
    params(CustomerSearch, Pagination),
    security(("bearer" = ["customers:read"])),
    responses(
        (status = 200, description = "One page of customers", body = Page<Customer>),
        Guarded, QueryErrors,
    )
)]
pub async fn list_customers(
    _auth: Auth<Read<Customers>>,
    State(state): State<ApiState>,
    List {
        filter: search,
        pagination,
    }: List<CustomerSearch>,
) -> ApiResult<Json<Page<Customer>>> {
    let (items, total) = customers::list(
        &state.pool,
        search.q.as_deref(),
        pagination.limit(),
        pagination.offset(),
    )
    .await?;
    Ok(Json(pagination.page(items, total)))
}

/// Every customer the search matches (all without `q`), as a file, newest
/// first, streamed.
#[utoipa::path(
    get,
    path = "/customers/export",
    tag = "customers",
    params(
        ("format" = inline(Option<ExportFormat>), Query, description = "`csv` (the default) or `json`"),
        CustomerSearch,
    ),
    security(("bearer" = ["customers:read"])),
    responses(
        (status = 200, description = "The rows, as `text/csv` or a JSON array",
            headers(("x-total-count" = i64, description = "How many rows the file holds")),
            content(
                (String = "text/csv"),
                (Vec<Customer> = "application/json"),
            )
        ),
        Guarded, QueryErrors,
    )
)]
pub async fn export_customers(
    _auth: Auth<Read<Customers>>,
    State(state): State<ApiState>,
    Export { format, filter }: Export<CustomerSearch>,
) -> ApiResult<Response> {
    let total = customers::count(&state.pool, filter.q.as_deref()).await?;
    let rows = customers::stream(state.pool.clone(), filter.q.as_deref())?;
    Ok(export::download(rows, format.into(), total))
}

#[utoipa::path(
    post,
    path = "/customers",
    tag = "customers",
    request_body = CreateCustomer,
    security(("bearer" = ["customers:write"])),
    responses(
        (status = 201, description = "Created", body = Customer),
        Guarded, BodyErrors,
    )
)]
pub async fn create_customer(
    auth: Auth<Write<Customers>>,
    State(state): State<ApiState>,
    Json(request): Json<CreateCustomer>,
) -> ApiResult<Response> {
    let customer = customers::create(
        &state.pool,
        &auth.ctx,
        NewCustomer {
            name: request.name,
            email: request.email,
            company: request.company,
            notes: request.notes,
            metadata: request.metadata,
        },
    )
    .await?;
    Ok(created(&format!("/customers/{}", customer.id), customer))
}

#[utoipa::path(
    get,
    path = "/customers/{id}",
    tag = "customers",
    params(("id" = Uuid, Path, description = "The customer's id")),
    security(("bearer" = ["customers:read"])),
    responses(
        (status = 200, description = "The customer", body = Customer),
        Guarded, PathErrors,
    )
)]
pub async fn get_customer(
    _auth: Auth<Read<Customers>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Customer>> {
    Ok(Json(customers::get(&state.pool, id).await?))
}

#[utoipa::path(
    patch,
    path = "/customers/{id}",
    tag = "customers",
    params(("id" = Uuid, Path, description = "The customer's id")),
    request_body = UpdateCustomer,
    security(("bearer" = ["customers:write"])),
    responses(
        (status = 200, description = "The changed customer", body = Customer),
        Guarded, PathErrors, BodyErrors,
    )
)]
pub async fn update_customer(
    auth: Auth<Write<Customers>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    Json(request): Json<UpdateCustomer>,
) -> ApiResult<Json<Customer>> {
    let changes = CustomerChanges {
        name: request.name,
        email: request.email,
        company: request.company,
        notes: request.notes,
        metadata: request.metadata,
    };
    if changes.name.is_none()
        && changes.email.is_none()
        && changes.company.is_none()
        && changes.notes.is_none()
        && changes.metadata.is_none()
    {
        // An empty merge patch changes nothing (RFC 7396): no update, no audit row.
        return Ok(Json(customers::get(&state.pool, id).await?));
    }
    Ok(Json(
        customers::update(&state.pool, &auth.ctx, id, changes).await?,
    ))
}

/// Refused with 409 while licenses still belong to the customer.
#[utoipa::path(
    delete,
    path = "/customers/{id}",
    tag = "customers",
    params(("id" = Uuid, Path, description = "The customer's id")),
    security(("bearer" = ["customers:write"])),
    responses(
        (status = 204, description = "Deleted"),
        Guarded, PathErrors,
        (status = 409, description = "The customer still has licenses", body = ErrorBody),
    )
)]
pub async fn delete_customer(
    auth: Auth<Write<Customers>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    customers::delete(&state.pool, &auth.ctx, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
