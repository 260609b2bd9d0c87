//! Imports of customers, licenses (with the keys their customers hold,
//! other systems' included) and resources, from CSV or JSON (columns and
//! rules in `db::imports`): a dry run answering every problem of the file,
//! and the apply, all or nothing; re-running a file adds nothing.

use axum::extract::State;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::context::RequestContext;
use crate::db::imports::{self, ImportReport, Kind};
use crate::http::ApiState;
use crate::http::auth::{Auth, Customers, Licenses, Resources, Write};
use crate::http::error::ApiResult;
use crate::http::extract::{ImportFile, Json};
use crate::http::openapi::{ErrorBody, Guarded, ImportBodyErrors};
use crate::progress::Progress;

const CUSTOMERS_EXAMPLE: &str = "external_id,name,email,company
crm-17,Ada Lovelace,ada@example.com,Analytical Engines Ltd
";
const LICENSES_EXAMPLE: &str =
    "key,external_id,product,customer_external_id,valid_until,device_limit,features
7KQ2M-X0RDT-9HF3W-BC4NE-8YVPG,old-1001,studio,crm-17,2027-12-31,2,export;sync
OLD-SYSTEM-KEY-00042,old-1002,studio,crm-17,,1,
";
const RESOURCES_EXAMPLE: &str = "kind,value,notes
ip,192.0.2.10,rack 4
domain,shop.example.com,
";

pub fn router() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(dry_run_customers))
        .routes(routes!(import_customers))
        .routes(routes!(dry_run_licenses))
        .routes(routes!(import_licenses))
        .routes(routes!(dry_run_resources))
        .routes(routes!(import_resources))
}

async fn dry_run(
    state: &ApiState,
    ctx: &RequestContext,
    kind: Kind,
    file: ImportFile,
) -> ApiResult<Json<ImportReport>> {
    let report = imports::dry_run(
        &state.pool,
        ctx,
        &state.secrets,
        kind,
        file.format,
        &file.text,
        &Progress::default(),
    )
    .await?;
    Ok(Json(report))
}

async fn apply(
    state: &ApiState,
    ctx: &RequestContext,
    kind: Kind,
    file: ImportFile,
) -> ApiResult<Json<ImportReport>> {
    let report = imports::apply(
        &state.pool,
        ctx,
        &state.secrets,
        kind,
        file.format,
        &file.text,
        &Progress::default(),
    )
    .await?;
    Ok(Json(report))
}

/// Checks a customers file and counts what importing it would do, writing
/// nothing: every problem, by line and column. Columns: `external_id` and
/// `name` (required), `email`, `company`, `notes`, `metadata` (a JSON
/// object). At most 5 000 lines.
#[utoipa::path(
    post,
    path = "/customers/import/dry-run",
    tag = "customers",
    request_body(content(
        (String = "text/csv", example = json!(CUSTOMERS_EXAMPLE)),
        (Vec<Object> = "application/json"),
    ), description = "The file"),
    security(("bearer" = ["customers:write"])),
    responses(
        (status = 200, description = "What the import would do, or every problem of the file", body = ImportReport),
        Guarded, ImportBodyErrors,
    )
)]
pub async fn dry_run_customers(
    auth: Auth<Write<Customers>>,
    State(state): State<ApiState>,
    file: ImportFile,
) -> ApiResult<Json<ImportReport>> {
    dry_run(&state, &auth.ctx, Kind::Customers, file).await
}

/// Imports a customers file (as the dry run reads it) in one transaction,
/// each customer audited; a file with any problem imports nothing and is
/// refused naming the first. A customer whose `external_id` an earlier
/// import made is left as it is.
#[utoipa::path(
    post,
    path = "/customers/import",
    tag = "customers",
    request_body(content(
        (String = "text/csv", example = json!(CUSTOMERS_EXAMPLE)),
        (Vec<Object> = "application/json"),
    ), description = "The file"),
    security(("bearer" = ["customers:write"])),
    responses(
        (status = 200, description = "Imported", body = ImportReport),
        Guarded, ImportBodyErrors,
        (status = 400, description = "The file has problems (the first is named; the dry run lists them all)", body = ErrorBody),
    )
)]
pub async fn import_customers(
    auth: Auth<Write<Customers>>,
    State(state): State<ApiState>,
    file: ImportFile,
) -> ApiResult<Json<ImportReport>> {
    apply(&state, &auth.ctx, Kind::Customers, file).await
}

/// Checks a licenses file and counts what importing it would do, writing
/// nothing. Columns: `key` and `product` (a slug) required; `external_id`,
/// `customer_external_id` or `customer_email`, `kind`, `status`,
/// `valid_from`, `valid_until` (RFC 3339 or a date), `device_limit`,
/// `session_limit`, `grace_period_secs`, `allow_session_takeover`,
/// `features` (separated by `;`), `metadata`. A key that is not one of
/// ours is imported as a legacy key, which edges verify like any other.
#[utoipa::path(
    post,
    path = "/licenses/import/dry-run",
    tag = "licenses",
    request_body(content(
        (String = "text/csv", example = json!(LICENSES_EXAMPLE)),
        (Vec<Object> = "application/json"),
    ), description = "The file"),
    security(("bearer" = ["licenses:write"])),
    responses(
        (status = 200, description = "What the import would do, or every problem of the file", body = ImportReport),
        Guarded, ImportBodyErrors,
    )
)]
pub async fn dry_run_licenses(
    auth: Auth<Write<Licenses>>,
    State(state): State<ApiState>,
    file: ImportFile,
) -> ApiResult<Json<ImportReport>> {
    dry_run(&state, &auth.ctx, Kind::Licenses, file).await
}

/// Imports a licenses file in one transaction, each license audited and
/// published to the edges; a file with any problem imports nothing. A key
/// some license holds already is left as it is.
#[utoipa::path(
    post,
    path = "/licenses/import",
    tag = "licenses",
    request_body(content(
        (String = "text/csv", example = json!(LICENSES_EXAMPLE)),
        (Vec<Object> = "application/json"),
    ), description = "The file"),
    security(("bearer" = ["licenses:write"])),
    responses(
        (status = 200, description = "Imported", body = ImportReport),
        Guarded, ImportBodyErrors,
        (status = 400, description = "The file has problems (the first is named; the dry run lists them all)", body = ErrorBody),
        (status = 409, description = "Another import took one of its external ids meanwhile", body = ErrorBody),
    )
)]
pub async fn import_licenses(
    auth: Auth<Write<Licenses>>,
    State(state): State<ApiState>,
    file: ImportFile,
) -> ApiResult<Json<ImportReport>> {
    apply(&state, &auth.ctx, Kind::Licenses, file).await
}

/// Checks a resources file and counts what importing it would do, writing
/// nothing. Columns: `kind` (`domain`, `ip` or `phone`) and `value`
/// required, `notes`.
#[utoipa::path(
    post,
    path = "/resources/import/dry-run",
    tag = "resources",
    request_body(content(
        (String = "text/csv", example = json!(RESOURCES_EXAMPLE)),
        (Vec<Object> = "application/json"),
    ), description = "The file"),
    security(("bearer" = ["resources:write"])),
    responses(
        (status = 200, description = "What the import would do, or every problem of the file", body = ImportReport),
        Guarded, ImportBodyErrors,
    )
)]
pub async fn dry_run_resources(
    auth: Auth<Write<Resources>>,
    State(state): State<ApiState>,
    file: ImportFile,
) -> ApiResult<Json<ImportReport>> {
    dry_run(&state, &auth.ctx, Kind::Resources, file).await
}

/// Imports a resources file into the pools in one transaction, each value
/// audited; a value already in its pool is left as it is.
#[utoipa::path(
    post,
    path = "/resources/import",
    tag = "resources",
    request_body(content(
        (String = "text/csv", example = json!(RESOURCES_EXAMPLE)),
        (Vec<Object> = "application/json"),
    ), description = "The file"),
    security(("bearer" = ["resources:write"])),
    responses(
        (status = 200, description = "Imported", body = ImportReport),
        Guarded, ImportBodyErrors,
        (status = 400, description = "The file has problems (the first is named; the dry run lists them all)", body = ErrorBody),
    )
)]
pub async fn import_resources(
    auth: Auth<Write<Resources>>,
    State(state): State<ApiState>,
    file: ImportFile,
) -> ApiResult<Json<ImportReport>> {
    apply(&state, &auth.ctx, Kind::Resources, file).await
}
