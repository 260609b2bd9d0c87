//! Contacts of an institution and their details (phones and e-mail
//! addresses, at most one primary of each kind). A deleted contact is gone
//! from here; its notes stay on its institution.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::db::leads::{
    self, Contact, ContactInput, ContactWithDetails, Detail, DetailInput, DetailKind,
};
use crate::http::ApiState;
use crate::http::auth::{Auth, Leads, Read, Write};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Json, List, NoFilter, Page, Pagination, Path, created, present};
use crate::http::openapi::{BodyErrors, ErrorBody, Guarded, PathErrors, QueryErrors, formats};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewContact {
    /// 1 to 256 characters.
    pub full_name: String,
    /// Their role at the institution.
    #[serde(default)]
    pub title: Option<String>,
}

/// Fields left out stay as they are, and so does `full_name` given as
/// `null`; `null` clears `title`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactPatch {
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub title: Option<Option<String>>,
}

/// A phone (E.164 once spaces, dashes, dots and parentheses are dropped)
/// or an e-mail address; its schema ([`formats::new_detail`]) says each
/// kind's shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDetail {
    pub kind: DetailKind,
    pub value: String,
    #[serde(default)]
    pub label: Option<String>,
    /// Takes the mark from the contact's other primary of this kind.
    #[serde(default)]
    pub is_primary: bool,
}

impl utoipa::PartialSchema for NewDetail {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        formats::new_detail().into()
    }
}

impl utoipa::ToSchema for NewDetail {}

/// Fields left out stay as they are; `kind` and `value` go together (a
/// value's shape depends on its kind); `null` clears `label`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetailPatch {
    #[serde(default)]
    pub kind: Option<DetailKind>,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default, deserialize_with = "present")]
    pub label: Option<Option<String>>,
    #[serde(default)]
    pub is_primary: Option<bool>,
}

impl utoipa::PartialSchema for DetailPatch {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        formats::detail_patch().into()
    }
}

impl utoipa::ToSchema for DetailPatch {}

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_contacts, create_contact))
        .routes(routes!(get_contact, update_contact, delete_contact))
        .routes(routes!(add_detail))
        .routes(routes!(update_detail, delete_detail))
}

/// The institution's contacts, by name.
#[utoipa::path(
    get,
    path = "/leads/institutions/{id}/contacts",
    tag = "leads",
    params(("id" = Uuid, Path, description = "The institution's id"), Pagination),
    security(("bearer" = ["leads:read"])),
    responses(
        (status = 200, description = "One page of contacts", body = Page<Contact>),
        Guarded, PathErrors, QueryErrors,
    )
)]
pub async fn list_contacts(
    _auth: Auth<Read<Leads>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    List { pagination, .. }: List<NoFilter>,
) -> ApiResult<Json<Page<Contact>>> {
    leads::get_institution(&state.pool, id).await?;
    let contacts = leads::list_contacts(&state.pool, id).await?;
    Ok(Json(pagination.slice(contacts)))
}

#[utoipa::path(
    post,
    path = "/leads/institutions/{id}/contacts",
    tag = "leads",
    params(("id" = Uuid, Path, description = "The institution's id")),
    request_body = NewContact,
    security(("bearer" = ["leads:write"])),
    responses(
        (status = 201, description = "Created", body = Contact),
        Guarded, PathErrors, BodyErrors,
    )
)]
pub async fn create_contact(
    auth: Auth<Write<Leads>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    Json(request): Json<NewContact>,
) -> ApiResult<Response> {
    let input = ContactInput {
        full_name: request.full_name,
        title: request.title,
    };
    let contact = leads::create_contact(&state.pool, &auth.ctx, id, input).await?;
    Ok(created(&format!("/leads/contacts/{}", contact.id), contact))
}

/// A contact with its phones and e-mail addresses.
#[utoipa::path(
    get,
    path = "/leads/contacts/{id}",
    tag = "leads",
    params(("id" = Uuid, Path, description = "The contact's id")),
    security(("bearer" = ["leads:read"])),
    responses(
        (status = 200, description = "The contact", body = ContactWithDetails),
        Guarded, PathErrors,
    )
)]
pub async fn get_contact(
    _auth: Auth<Read<Leads>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<ContactWithDetails>> {
    Ok(Json(leads::get_contact(&state.pool, id).await?))
}

#[utoipa::path(
    patch,
    path = "/leads/contacts/{id}",
    tag = "leads",
    params(("id" = Uuid, Path, description = "The contact's id")),
    request_body = ContactPatch,
    security(("bearer" = ["leads:write"])),
    responses(
        (status = 200, description = "The changed contact", body = Contact),
        Guarded, PathErrors, BodyErrors,
    )
)]
pub async fn update_contact(
    auth: Auth<Write<Leads>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    Json(patch): Json<ContactPatch>,
) -> ApiResult<Json<Contact>> {
    let current = leads::get_contact(&state.pool, id).await?.contact;
    if patch.full_name.is_none() && patch.title.is_none() {
        return Ok(Json(current));
    }
    let input = ContactInput {
        full_name: patch.full_name.unwrap_or(current.full_name),
        title: patch.title.unwrap_or(current.title),
    };
    Ok(Json(
        leads::update_contact(&state.pool, &auth.ctx, id, input).await?,
    ))
}

/// Deletes the contact: it leaves lists and search; its notes stay, with
/// their history, on its institution.
#[utoipa::path(
    delete,
    path = "/leads/contacts/{id}",
    tag = "leads",
    params(("id" = Uuid, Path, description = "The contact's id")),
    security(("bearer" = ["leads:write"])),
    responses(
        (status = 204, description = "Deleted"),
        Guarded, PathErrors,
    )
)]
pub async fn delete_contact(
    auth: Auth<Write<Leads>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    leads::delete_contact(&state.pool, &auth.ctx, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Adds a phone or an e-mail address; a bad one is refused naming `phone`
/// or `email`, one the contact has already is a 409.
#[utoipa::path(
    post,
    path = "/leads/contacts/{id}/details",
    tag = "leads",
    params(("id" = Uuid, Path, description = "The contact's id")),
    request_body = NewDetail,
    security(("bearer" = ["leads:write"])),
    responses(
        (status = 201, description = "Added", body = Detail),
        Guarded, PathErrors, BodyErrors,
        (status = 409, description = "The contact has this one already", body = ErrorBody),
    )
)]
pub async fn add_detail(
    auth: Auth<Write<Leads>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    Json(request): Json<NewDetail>,
) -> ApiResult<Response> {
    let input = DetailInput {
        kind: request.kind,
        value: request.value,
        label: request.label,
        is_primary: request.is_primary,
    };
    let detail = leads::add_detail(&state.pool, &auth.ctx, id, input).await?;
    Ok(created(&format!("/leads/details/{}", detail.id), detail))
}

#[utoipa::path(
    patch,
    path = "/leads/details/{id}",
    tag = "leads",
    params(("id" = i64, Path, description = "The detail's id")),
    request_body = DetailPatch,
    security(("bearer" = ["leads:write"])),
    responses(
        (status = 200, description = "The changed detail", body = Detail),
        Guarded, PathErrors, BodyErrors,
        (status = 409, description = "The contact has this one already", body = ErrorBody),
    )
)]
pub async fn update_detail(
    auth: Auth<Write<Leads>>,
    State(state): State<ApiState>,
    Path(id): Path<i64>,
    Json(patch): Json<DetailPatch>,
) -> ApiResult<Json<Detail>> {
    let current = leads::get_detail(&state.pool, id).await?;
    let (kind, value) = match (patch.kind, patch.value) {
        (Some(kind), Some(value)) => (kind, value),
        (None, None) if patch.label.is_none() && patch.is_primary.is_none() => {
            return Ok(Json(current));
        }
        (None, None) => (DetailKind::parse(&current.kind)?, current.value),
        (Some(_), None) => return Err(ApiError::invalid("value", "is needed with `kind`")),
        (None, Some(_)) => return Err(ApiError::invalid("kind", "is needed with `value`")),
    };
    let input = DetailInput {
        kind,
        value,
        label: patch.label.unwrap_or(current.label),
        is_primary: patch.is_primary.unwrap_or(current.is_primary),
    };
    Ok(Json(
        leads::update_detail(&state.pool, &auth.ctx, id, input).await?,
    ))
}

#[utoipa::path(
    delete,
    path = "/leads/details/{id}",
    tag = "leads",
    params(("id" = i64, Path, description = "The detail's id")),
    security(("bearer" = ["leads:write"])),
    responses(
        (status = 204, description = "Deleted"),
        Guarded, PathErrors,
    )
)]
pub async fn delete_detail(
    auth: Auth<Write<Leads>>,
    State(state): State<ApiState>,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    leads::delete_detail(&state.pool, &auth.ctx, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
