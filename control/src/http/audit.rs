//! `/admin/api/v1/audit` (`audit:read`): the audit log, newest first and
//! filtered, and the same view exported as CSV or JSON.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::audit::{self, AuditEntry, AuditFilter};
use crate::export;
use crate::http::ApiState;
use crate::http::auth::{Audit, Auth, Read};
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Export, ExportFormat, Json, List, Page, Pagination};
use crate::http::openapi::{Guarded, QueryErrors};

/// Longest text filter value accepted.
pub const MAX_FILTER_CHARS: usize = 256;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// The acting API key's id (or admin's).
    pub actor_id: Option<String>,
    /// Like `license.suspend`.
    pub action: Option<String>,
    /// Like `license`; best given with `entity_id`.
    pub entity_kind: Option<String>,
    pub entity_id: Option<String>,
    /// The `x-request-id` of the request that made the change.
    pub request_id: Option<String>,
    /// RFC 3339, inclusive.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<OffsetDateTime>,
    /// RFC 3339, exclusive.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<OffsetDateTime>,
}

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit))
        .routes(routes!(export_audit))
}

/// Audit rows, newest first, filtered.
#[utoipa::path(
    get,
    path = "/audit",
    tag = "audit",
    params(AuditQuery, Pagination),
    security(("bearer" = ["audit:read"])),
    responses(
        (status = 200, description = "One page of audit rows", body = Page<AuditEntry>),
        Guarded, QueryErrors,
    )
)]
pub async fn list_audit(
    _auth: Auth<Read<Audit>>,
    State(state): State<ApiState>,
    List {
        filter: query,
        pagination,
    }: List<AuditQuery>,
) -> ApiResult<Json<Page<AuditEntry>>> {
    let filter = checked(query)?;
    let (items, total) =
        audit::list(&state.pool, &filter, pagination.page, pagination.per_page).await?;
    Ok(Json(pagination.page(items, total)))
}

/// The filtered view as a file, newest first, every matching row,
/// streamed; `x-total-count` says how many. In CSV, `before` and `after` are JSON text, and a
/// cell that a spreadsheet would run as a formula starts with `'`.
#[utoipa::path(
    get,
    path = "/audit/export",
    tag = "audit",
    params(
        ("format" = inline(Option<ExportFormat>), Query, description = "`csv` (the default) or `json`"),
        AuditQuery,
    ),
    security(("bearer" = ["audit:read"])),
    responses(
        (status = 200, description = "The rows, as `text/csv` or a JSON array",
            headers(("x-total-count" = i64, description = "How many rows the file holds")),
            content(
                (String = "text/csv"),
                (Vec<AuditEntry> = "application/json"),
            )
        ),
        Guarded, QueryErrors,
    )
)]
pub async fn export_audit(
    _auth: Auth<Read<Audit>>,
    State(state): State<ApiState>,
    Export { format, filter }: Export<AuditQuery>,
) -> ApiResult<Response> {
    let filter = checked(filter)?;
    let total = audit::count(&state.pool, &filter).await?;
    let rows = audit::stream(state.pool.clone(), &filter);
    Ok(export::download(rows, format.into(), total))
}

/// The query's filters, refusing text too long to be a real value.
fn checked(query: AuditQuery) -> ApiResult<AuditFilter> {
    let filter = AuditFilter {
        actor_id: query.actor_id,
        action: query.action,
        entity_kind: query.entity_kind,
        entity_id: query.entity_id,
        request_id: query.request_id,
        from: query.from,
        to: query.to,
    };
    for (field, value) in [
        ("actor_id", &filter.actor_id),
        ("action", &filter.action),
        ("entity_kind", &filter.entity_kind),
        ("entity_id", &filter.entity_id),
        ("request_id", &filter.request_id),
    ] {
        if value
            .as_ref()
            .is_some_and(|v| v.is_empty() || v.chars().count() > MAX_FILTER_CHARS)
        {
            return Err(ApiError::invalid(
                field,
                format!("must be 1 to {MAX_FILTER_CHARS} characters"),
            ));
        }
    }
    Ok(filter)
}
