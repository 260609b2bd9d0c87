//! The CSV import of institutions with their contacts (columns and rules in
//! `db::leads`' `import` module): a dry run answering every problem of the
//! file, and the apply, all or nothing.

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::leads::{self, ImportReport};
use crate::http::ApiState;
use crate::http::auth::{Auth, Leads, Write};
use crate::http::error::ApiResult;
use crate::http::extract::{Csv, Json};
use crate::http::openapi::{CsvBodyErrors, ErrorBody, Guarded};

/// A file for the document to show.
const EXAMPLE: &str = "external_id,institution,kind,tags,contact,title,emails,phones
crm-7,Gymnasium Nord,school,school;nrw,Berta Klein,IT-Leitung,berta@gym-nord.de,+49 228 1234567
crm-7,Gymnasium Nord,,,Anton Adler,,anton@gym-nord.de;a.adler@gym-nord.de,
";

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(dry_run))
        .routes(routes!(apply))
}

/// Checks a file and counts what importing it would do, writing nothing:
/// every problem, by line and column. The first line names the columns
/// (any order, any case; `institution` is required): `external_id`,
/// `institution`, `kind`, `stage`, `website`, `country`, `city`, `address`,
/// `tags`, `contact`, `title`, `emails`, `phones`; lists are separated by
/// `;`. One line per contact; lines with the same `external_id` (or, without
/// one, the same institution name) are one institution. At most 5 000 lines.
#[utoipa::path(
    post,
    path = "/leads/import/dry-run",
    tag = "leads",
    request_body(content = String, content_type = "text/csv", description = "The file", example = json!(EXAMPLE)),
    security(("bearer" = ["leads:write"])),
    responses(
        (status = 200, description = "What the import would do, or every problem of the file", body = ImportReport),
        Guarded, CsvBodyErrors,
    )
)]
pub async fn dry_run(
    auth: Auth<Write<Leads>>,
    State(state): State<ApiState>,
    Csv(csv): Csv,
) -> ApiResult<Json<ImportReport>> {
    Ok(Json(
        leads::dry_run_import(&state.pool, &auth.ctx, &csv).await?,
    ))
}

/// Imports a file (as the dry run reads it) in one transaction, each change
/// audited; a file with any problem imports nothing and is refused naming
/// the first. Importing the same file again changes nothing more: an
/// import only adds and fills, never clears or removes.
#[utoipa::path(
    post,
    path = "/leads/import",
    tag = "leads",
    request_body(content = String, content_type = "text/csv", description = "The file", example = json!(EXAMPLE)),
    security(("bearer" = ["leads:write"])),
    responses(
        (status = 200, description = "Imported", body = ImportReport),
        Guarded, CsvBodyErrors,
        (status = 400, description = "The file has problems (the first is named; the dry run lists them all), or is not UTF-8", body = ErrorBody),
        (status = 409, description = "Another import made an institution under one of its external ids meanwhile", body = ErrorBody),
    )
)]
pub async fn apply(
    auth: Auth<Write<Leads>>,
    State(state): State<ApiState>,
    Csv(csv): Csv,
) -> ApiResult<Json<ImportReport>> {
    Ok(Json(
        leads::apply_import(&state.pool, &auth.ctx, &csv).await?,
    ))
}
