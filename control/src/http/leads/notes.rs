//! Notes on an institution or a contact, every version kept: an edit or a
//! delete names the version it was based on, and is refused with 409 when
//! another came first. A note above [`NOTE_MAX_CHARS`] is refused with 413,
//! as a body above `max_body_bytes` is. And the search across institutions,
//! contacts and every version of every note.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use latchkey_shared::api::ErrorCode;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::db::leads::{self, NOTE_MAX_CHARS, Note, NoteSubject, NoteVersion, SearchHit};
use crate::http::ApiState;
use crate::http::auth::{Auth, Leads, Read, Write};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Json, List, NoFilter, Page, Pagination, Path, Query, created};
use crate::http::openapi::{BodyErrors, ErrorBody, Guarded, PathErrors, QueryErrors};

/// The most hits a search answers.
pub const SEARCH_MAX_LIMIT: u32 = 200;
const SEARCH_DEFAULT_LIMIT: u32 = 20;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNote {
    /// 1 to 20 000 characters; more is refused with 413.
    pub body: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteEdit {
    /// The note's `version` the edit was made on; if the note moved on
    /// since, the edit is refused with 409 (reload, merge, edit that).
    pub base_version: i32,
    /// 1 to 20 000 characters; more is refused with 413.
    pub body: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NoteBase {
    /// The note's `version` the delete was decided on (409 if it moved on).
    pub base_version: i32,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Words, in German or English (web-search syntax: "phrases", `-not`, `or`).
    pub q: String,
    /// 1 to 200; 20 when left out.
    pub limit: Option<u32>,
}

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_institution_notes, add_institution_note))
        .routes(routes!(list_contact_notes, add_contact_note))
        .routes(routes!(get_note, edit_note, delete_note))
        .routes(routes!(note_history))
        .routes(routes!(search))
}

/// The institution's notes and its contacts' (deleted contacts' too),
/// newest change first; deleted notes are in their history only.
#[utoipa::path(
    get,
    path = "/leads/institutions/{id}/notes",
    tag = "leads",
    params(("id" = Uuid, Path, description = "The institution's id"), Pagination),
    security(("bearer" = ["leads:read"])),
    responses(
        (status = 200, description = "One page of notes", body = Page<Note>),
        Guarded, PathErrors, QueryErrors,
    )
)]
pub async fn list_institution_notes(
    _auth: Auth<Read<Leads>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    List { pagination, .. }: List<NoFilter>,
) -> ApiResult<Json<Page<Note>>> {
    leads::get_institution(&state.pool, id).await?;
    Ok(Json(
        pagination.slice(leads::list_notes(&state.pool, id).await?),
    ))
}

#[utoipa::path(
    post,
    path = "/leads/institutions/{id}/notes",
    tag = "leads",
    params(("id" = Uuid, Path, description = "The institution's id")),
    request_body = NewNote,
    security(("bearer" = ["leads:write"])),
    responses(
        (status = 201, description = "Added, at version 1", body = Note),
        Guarded, PathErrors, BodyErrors,
        (status = 413, description = "Larger than `max_body_bytes`, or a note above 20 000 characters", body = ErrorBody),
    )
)]
pub async fn add_institution_note(
    auth: Auth<Write<Leads>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    Json(request): Json<NewNote>,
) -> ApiResult<Response> {
    add(&state, &auth, NoteSubject::Institution(id), &request.body).await
}

/// The contact's notes, newest change first.
#[utoipa::path(
    get,
    path = "/leads/contacts/{id}/notes",
    tag = "leads",
    params(("id" = Uuid, Path, description = "The contact's id"), Pagination),
    security(("bearer" = ["leads:read"])),
    responses(
        (status = 200, description = "One page of notes", body = Page<Note>),
        Guarded, PathErrors, QueryErrors,
    )
)]
pub async fn list_contact_notes(
    _auth: Auth<Read<Leads>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    List { pagination, .. }: List<NoFilter>,
) -> ApiResult<Json<Page<Note>>> {
    Ok(Json(
        pagination.slice(leads::list_contact_notes(&state.pool, id).await?),
    ))
}

/// A note about the contact; it shows on the institution's notes too.
#[utoipa::path(
    post,
    path = "/leads/contacts/{id}/notes",
    tag = "leads",
    params(("id" = Uuid, Path, description = "The contact's id")),
    request_body = NewNote,
    security(("bearer" = ["leads:write"])),
    responses(
        (status = 201, description = "Added, at version 1", body = Note),
        Guarded, PathErrors, BodyErrors,
        (status = 413, description = "Larger than `max_body_bytes`, or a note above 20 000 characters", body = ErrorBody),
    )
)]
pub async fn add_contact_note(
    auth: Auth<Write<Leads>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    Json(request): Json<NewNote>,
) -> ApiResult<Response> {
    add(&state, &auth, NoteSubject::Contact(id), &request.body).await
}

/// A note as it stands; a deleted one answers its tombstone (empty `body`,
/// `deleted_at` set).
#[utoipa::path(
    get,
    path = "/leads/notes/{id}",
    tag = "leads",
    params(("id" = Uuid, Path, description = "The note's id")),
    security(("bearer" = ["leads:read"])),
    responses(
        (status = 200, description = "The note", body = Note),
        Guarded, PathErrors,
    )
)]
pub async fn get_note(
    _auth: Auth<Read<Leads>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Note>> {
    Ok(Json(leads::get_note(&state.pool, id).await?))
}

/// A new version of the note, made on `base_version`.
#[utoipa::path(
    patch,
    path = "/leads/notes/{id}",
    tag = "leads",
    params(("id" = Uuid, Path, description = "The note's id")),
    request_body = NoteEdit,
    security(("bearer" = ["leads:write"])),
    responses(
        (status = 200, description = "The note at its new version", body = Note),
        Guarded, PathErrors, BodyErrors,
        (status = 409, description = "`base_version` is stale (another edit came first) or the note is deleted", body = ErrorBody),
        (status = 413, description = "Larger than `max_body_bytes`, or a note above 20 000 characters", body = ErrorBody),
    )
)]
pub async fn edit_note(
    auth: Auth<Write<Leads>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    Json(request): Json<NoteEdit>,
) -> ApiResult<Json<Note>> {
    check_size(&request.body)?;
    let note = leads::edit_note(
        &state.pool,
        &auth.ctx,
        id,
        request.base_version,
        &request.body,
    )
    .await?;
    Ok(Json(note))
}

/// Deletes the note by a tombstone version; every earlier version stays in
/// its history.
#[utoipa::path(
    delete,
    path = "/leads/notes/{id}",
    tag = "leads",
    params(("id" = Uuid, Path, description = "The note's id"), NoteBase),
    security(("bearer" = ["leads:write"])),
    responses(
        (status = 204, description = "Deleted"),
        Guarded, PathErrors, QueryErrors,
        (status = 409, description = "`base_version` is stale, or the note is deleted already", body = ErrorBody),
    )
)]
pub async fn delete_note(
    auth: Auth<Write<Leads>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
    Query(base): Query<NoteBase>,
) -> ApiResult<StatusCode> {
    leads::delete_note(&state.pool, &auth.ctx, id, base.base_version).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Every version of the note, oldest first, a delete's tombstone last.
#[utoipa::path(
    get,
    path = "/leads/notes/{id}/history",
    tag = "leads",
    params(("id" = Uuid, Path, description = "The note's id")),
    security(("bearer" = ["leads:read"])),
    responses(
        (status = 200, description = "Its versions", body = Vec<NoteVersion>),
        Guarded, PathErrors,
    )
)]
pub async fn note_history(
    _auth: Auth<Read<Leads>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Vec<NoteVersion>>> {
    Ok(Json(leads::note_history(&state.pool, id).await?))
}

/// The best hits for the words among institutions, contacts and every
/// version of every note, best first (German and English stemming).
#[utoipa::path(
    get,
    path = "/leads/search",
    tag = "leads",
    params(SearchQuery),
    security(("bearer" = ["leads:read"])),
    responses(
        (status = 200, description = "The hits", body = Vec<SearchHit>),
        Guarded, QueryErrors,
    )
)]
pub async fn search(
    _auth: Auth<Read<Leads>>,
    State(state): State<ApiState>,
    Query(query): Query<SearchQuery>,
) -> ApiResult<Json<Vec<SearchHit>>> {
    let limit = query.limit.unwrap_or(SEARCH_DEFAULT_LIMIT);
    if !(1..=SEARCH_MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be a whole number from 1 to {SEARCH_MAX_LIMIT}"),
        ));
    }
    Ok(Json(leads::search(&state.pool, &query.q, limit).await?))
}

async fn add(
    state: &ApiState,
    auth: &Auth<Write<Leads>>,
    subject: NoteSubject,
    body: &str,
) -> ApiResult<Response> {
    check_size(body)?;
    let note = leads::add_note(&state.pool, &auth.ctx, subject, body).await?;
    Ok(created(&format!("/leads/notes/{}", note.id), note))
}

/// A note too long is refused as a body too large is: 413, here naming
/// `body`. The service refuses it too (400): the panel shows that at its field.
fn check_size(body: &str) -> ApiResult<()> {
    if body.chars().count() > NOTE_MAX_CHARS {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("a note holds at most {NOTE_MAX_CHARS} characters"),
        )
        .with_field("body"));
    }
    Ok(())
}
