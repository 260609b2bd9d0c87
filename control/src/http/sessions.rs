//! `/admin/api/v1/sessions`: list (`sessions:read`), terminate (`sessions:write`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::db::sessions::{self, Session};
use crate::export;
use crate::http::ApiState;
use crate::http::auth::{Auth, Read, Sessions, Write};
use crate::http::error::ApiResult;
use crate::http::extract::{Export, ExportFormat, Json, List, Page, Pagination, Path};
use crate::http::openapi::{ErrorBody, Guarded, PathErrors, QueryErrors};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SessionQuery {
    /// Only sessions that have not ended; every session by default.
    #[serde(default)]
    pub open: bool,
    pub license_id: Option<Uuid>,
}

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_sessions))
        .routes(routes!(export_sessions))
        .routes(routes!(terminate_session))
}

/// Sessions, most recently started first.
#[utoipa::path(
    get,
    path = "/sessions",
    tag = "sessions",
    params(SessionQuery, Pagination),
    security(("bearer" = ["sessions:read"])),
    responses(
        (status = 200, description = "One page of sessions", body = Page<Session>),
        Guarded, QueryErrors,
    )
)]
pub async fn list_sessions(
    _auth: Auth<Read<Sessions>>,
    State(state): State<ApiState>,
    List {
        filter: query,
        pagination,
    }: List<SessionQuery>,
) -> ApiResult<Json<Page<Session>>> {
    let (items, total) = sessions::list(
        &state.pool,
        query.open,
        query.license_id,
        pagination.page,
        pagination.per_page,
    )
    .await?;
    Ok(Json(pagination.page(items, total)))
}

/// Every session the list's filters match, as a file, most recently
/// started first, streamed.
#[utoipa::path(
    get,
    path = "/sessions/export",
    tag = "sessions",
    params(
        ("format" = inline(Option<ExportFormat>), Query, description = "`csv` (the default) or `json`"),
        SessionQuery,
    ),
    security(("bearer" = ["sessions:read"])),
    responses(
        (status = 200, description = "The rows, as `text/csv` or a JSON array",
            headers(("x-total-count" = i64, description = "How many rows the file holds")),
            content(
                (String = "text/csv"),
                (Vec<Session> = "application/json"),
            )
        ),
        Guarded, QueryErrors,
    )
)]
pub async fn export_sessions(
    _auth: Auth<Read<Sessions>>,
    State(state): State<ApiState>,
    Export { format, filter }: Export<SessionQuery>,
) -> ApiResult<Response> {
    let total = sessions::count(&state.pool, filter.open, filter.license_id).await?;
    let rows = sessions::stream(state.pool.clone(), filter.open, filter.license_id);
    Ok(export::download(rows, format.into(), total))
}

/// Ends a live session now; edges refuse its token from the next snapshot on.
#[utoipa::path(
    post,
    path = "/sessions/{id}/terminate",
    tag = "sessions",
    params(("id" = Uuid, Path, description = "The session's id")),
    security(("bearer" = ["sessions:write"])),
    responses(
        (status = 204, description = "Terminated"),
        Guarded, PathErrors,
        (status = 409, description = "The session has already ended", body = ErrorBody),
    )
)]
pub async fn terminate_session(
    auth: Auth<Write<Sessions>>,
    State(state): State<ApiState>,
    Path(id): Path<Uuid>,
) -> ApiResult<StatusCode> {
    // The service answers the row as it was before it ended: not worth
    // showing, so the answer is empty.
    let session = sessions::terminate(&state.pool, &auth.ctx, id).await?;
    tracing::info!(session_id = %id, license_id = %session.license_id, "session terminated");
    Ok(StatusCode::NO_CONTENT)
}
