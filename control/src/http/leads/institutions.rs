//! Institutions: the filtered list (stage, owner, tag, full-text `q`) in
//! pages and as a file, create, read, change, delete, and the conversion to
//! a customer.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::db::customers::{Customer, NewCustomer};
use crate::db::leads::{self, Institution, InstitutionFilter, InstitutionInput, TAGS_MAX};
use crate::export;
use crate::http::ApiState;
use crate::http::auth::{Auth, Customers, Leads, Read, Write};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{
    Export, ExportFormat, Json, List, Page, Pagination, Path, created, present,
};
use crate::http::openapi::{BodyErrors, ErrorBody, Guarded, PathErrors, QueryErrors};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInstitution {
    /// 1 to 256 characters.
    pub name: String,
    /// Its type: school, university, hospital, …
    #[serde(default)]
    pub kind: Option<String>,
    /// `http(s)://` and a host.
    #[serde(default)]
    pub website: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub address: Option<String>,
    /// The pipeline stage; `new` when left out.
    #[serde(default)]
    pub stage: Option<String>,
    /// The admin who looks after it.
    #[serde(default)]
    pub owner_id: Option<Uuid>,
    /// Stored lower-case, each once; at most 32.
    #[serde(default)]
    pub tags: Vec<String>,
    /// A JSON object of the operator's own keys; `{}` when left out.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub extra: Option<Value>,
}

/// Fields left out stay as they are, and so do `name`, `stage`, `tags` and
/// `extra` given as `null`; `null` clears the others. `{}` changes nothing.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstitutionPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub kind: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub website: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub country: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub city: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub address: Option<Option<String>>,
    #[serde(default)]
    pub stage: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Uuid>)]
    pub owner_id: Option<Option<Uuid>>,
    /// Replaces the tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub extra: Option<Value>,
}

/// The list's filters, which the export takes too.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct InstitutionQuery {
    /// The pipeline stage.
    pub stage: Option<String>,
    /// The admin who looks after them.
    pub owner_id: Option<Uuid>,
    /// One tag (any case).
    pub tag: Option<String>,
    /// Words the institution, one of its contacts or one of its notes (any
    /// version) says, in German or English (web-search syntax: "phrases",
    /// `-not`, `or`); empty is no filter.
    pub q: Option<String>,
}

impl From<InstitutionQuery> for InstitutionFilter {
    fn from(query: InstitutionQuery) -> Self {
        Self {
            stage: query.stage,
            owner_id: query.owner_id,
            tag: query.tag,
            q: query.q.filter(|q| !q.trim().is_empty()),
        }
    }
}

/// The customer to make; each field left out is the institution's, or empty.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConvertInstitution {
    /// The institution's name when left out.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub company: Option<String>,
    #[serde(default)]
    pub notes: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// A converted institution and the customer it became.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Converted {
    pub institution: Institution,
    pub customer: Customer,
}

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_institutions, create_institution))
        .routes(routes!(export_institutions))
        .routes(routes!(
            get_institution,
            update_institution,
            delete_institution
        ))
        .routes(routes!(convert_institution))
}

/// Institutions, newest first, filtered.
#[utoipa::path(
    get,
    path = "/leads/institutions",
    tag = "leads",
    params(InstitutionQuery, Pagination),
    security(("bearer" = ["leads:read"])),
    responses(
        (status = 200, description = "One page of institutions", body = Page<Institution>),
        Guarded, QueryErrors,
    )
)]
pub async fn list_institutions(
    _auth: Auth<Read<Leads>>,
    State(state): State<ApiState>,
    List {
        filter: query,
        pagination,
    }: List<InstitutionQuery>,
) -> ApiResult<Json<Page<Institution>>> {
    let (items, total) = leads::list_institutions_counted(
        &state.pool,
        &query.into(),
        pagination.limit(),
        pagination.offset(),
    )
    .await?;
    Ok(Json(pagination.page(items, total)))
}

/// The filtered list as a file, newest first, every matching institution,
/// streamed; `x-total-count` says how many. In CSV, tags are separated by `;`, `extra` is JSON
/// text, and a cell a spreadsheet would run as a formula starts with `'`.
#[utoipa::path(
    get,
    path = "/leads/institutions/export",
    tag = "leads",
    params(
        ("format" = inline(Option<ExportFormat>), Query, description = "`csv` (the default) or `json`"),
        InstitutionQuery,
    ),
    security(("bearer" = ["leads:read"])),
    responses(
        (status = 200, description = "The institutions, as `text/csv` or a JSON array",
            headers(
                ("x-total-count" = i64, description = "How many rows the file holds"),
            ),
            content(
                (String = "text/csv"),
                (Vec<Institution> = "application/json"),
            )
        ),
        Guarded, QueryErrors,
    )
)]
pub async fn export_institutions(
    _auth: Auth<Read<Leads>>,
    State(state): State<ApiState>,
    Export { format, filter }: Export<InstitutionQuery>,
) -> ApiResult<Response> {
    let filter = filter.into();
    let total = leads::count_institutions(&state.pool, &filter).await?;
    let rows = leads::stream_institutions(state.pool.clone(), &filter)?;
    Ok(export::download(rows, format.into(), total))
}

#[utoipa::path(
    post,
    path = "/leads/institutions",
    tag = "leads",
    request_body = NewInstitution,
    security(("bearer" = ["leads:write"])),
    responses(
        (status = 201, description = "Created", body = Institution),
        Guarded, BodyErrors,
    )
)]
pub async fn create_institution(
    auth: Auth<Write<Leads>>,
    State(state): State<ApiState>,
    Json(request): Json<NewInstitution>,
) -> ApiResult<Response> {
    check_tag_count(&request.tags)?;
    let input = InstitutionInput {
        name: request.name,
        kind: request.kind,
        website: request.website,
        country: request.country,
        city: request.city,
        address: request.address,
        stage: request.stage,
        owner_id: request.owner_id,
        tags: request.tags,
        extra: request.extra,
    };
    let institution = leads::create_institution(&state.pool, &auth.ctx, input).await?;
    tracing::info!(institution_id = %institution.id, "lead institution created");
    Ok(created(
        &format!("/leads/institutions/{}", institution.id),
        institution,
    ))
}

#[utoipa::path(
    get,
    path = "/leads/institutions/{id}",
    tag = "leads",
    params(("id" = Uuid, Path, description = "The institution's id")),
    security(("bearer" = ["leads:read"])),
    responses(
        (status = 200, description = "The institution", body = Institution),
        Guarded, PathErrors,
    )
)]
pub async fn get_institution(
    _auth: Auth<Read<Leads>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Institution>> {
    Ok(Json(leads::get_institution(&state.pool, id).await?))
}

#[utoipa::path(
    patch,
    path = "/leads/institutions/{id}",
    tag = "leads",
    params(("id" = Uuid, Path, description = "The institution's id")),
    request_body = InstitutionPatch,
    security(("bearer" = ["leads:write"])),
    responses(
        (status = 200, description = "The changed institution", body = Institution),
        Guarded, PathErrors, BodyErrors,
    )
)]
pub async fn update_institution(
    auth: Auth<Write<Leads>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    Json(patch): Json<InstitutionPatch>,
) -> ApiResult<Json<Institution>> {
    if let Some(tags) = &patch.tags {
        check_tag_count(tags)?;
    }
    let current = leads::get_institution(&state.pool, id).await?;
    let before = InstitutionInput::from(&current);
    let after = patch.onto(before.clone());
    if after == before {
        // Nothing to change (RFC 7396's `{}` among it): no update, no audit row.
        return Ok(Json(current));
    }
    Ok(Json(
        leads::update_institution(&state.pool, &auth.ctx, id, after).await?,
    ))
}

/// Deletes the institution with its contacts and notes; a customer it
/// became stays.
#[utoipa::path(
    delete,
    path = "/leads/institutions/{id}",
    tag = "leads",
    params(("id" = Uuid, Path, description = "The institution's id")),
    security(("bearer" = ["leads:write"])),
    responses(
        (status = 204, description = "Deleted"),
        Guarded, PathErrors,
    )
)]
pub async fn delete_institution(
    auth: Auth<Write<Leads>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    leads::delete_institution(&state.pool, &auth.ctx, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes the institution a customer, in one transaction: the customer is
/// created (by the customers' rules), the institution links it and moves
/// to `won`. Send `{}` to name the customer after the institution. Needs
/// both scopes: it makes a customer.
#[utoipa::path(
    post,
    path = "/leads/institutions/{id}/convert",
    tag = "leads",
    params(("id" = Uuid, Path, description = "The institution's id")),
    request_body = ConvertInstitution,
    security(("bearer" = ["leads:write", "customers:write"])),
    responses(
        (status = 201, description = "Converted; `Location` names the customer", body = Converted),
        Guarded, PathErrors, BodyErrors,
        (status = 409, description = "Converted already", body = ErrorBody),
    )
)]
pub async fn convert_institution(
    auth: Auth<Write<Leads>>,
    _customers: Auth<Write<Customers>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    Json(request): Json<ConvertInstitution>,
) -> ApiResult<Response> {
    let name = match request.name {
        Some(name) => name,
        None => leads::get_institution(&state.pool, id).await?.name,
    };
    let customer = NewCustomer {
        name,
        email: request.email,
        company: request.company,
        notes: request.notes,
        metadata: request.metadata,
    };
    let (institution, customer) =
        leads::convert_to_customer(&state.pool, &auth.ctx, id, customer).await?;
    tracing::info!(institution_id = %id, customer_id = %customer.id, "lead converted");
    Ok(created(
        &format!("/customers/{}", customer.id),
        Converted {
            institution,
            customer,
        },
    ))
}

impl InstitutionPatch {
    /// The input with the patch's fields applied.
    fn onto(self, mut input: InstitutionInput) -> InstitutionInput {
        fn set<T>(field: &mut T, value: Option<T>) {
            if let Some(value) = value {
                *field = value;
            }
        }
        set(&mut input.name, self.name);
        set(&mut input.kind, self.kind);
        set(&mut input.website, self.website);
        set(&mut input.country, self.country);
        set(&mut input.city, self.city);
        set(&mut input.address, self.address);
        set(&mut input.owner_id, self.owner_id);
        set(&mut input.tags, self.tags);
        if self.stage.is_some() {
            input.stage = self.stage;
        }
        if self.extra.is_some() {
            input.extra = self.extra;
        }
        input
    }
}

/// At most [`TAGS_MAX`] tags as sent: the service counts them once
/// lower-cased and deduplicated, which a schema's `maxItems` cannot say.
fn check_tag_count(tags: &[String]) -> ApiResult<()> {
    if tags.len() > TAGS_MAX {
        return Err(ApiError::invalid(
            "tags",
            format!("must be at most {TAGS_MAX} tags"),
        ));
    }
    Ok(())
}
