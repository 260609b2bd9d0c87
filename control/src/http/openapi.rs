//! The OpenAPI 3.1 document of the admin API, served at
//! `GET /admin/api/v1/openapi.json` without authentication.
//!
//! Paths and their schemas come from the handlers' `#[utoipa::path]`
//! attributes, collected by each module's `OpenApiRouter`; this module adds
//! the title, the bearer security scheme, the shared error schema and the
//! error answers operations share: an operation lists [`Guarded`] and one
//! set per input it reads ([`PathErrors`], [`QueryErrors`], [`BodyErrors`],
//! [`CsvBodyErrors`]),
//! then the refusals of its own.

pub mod formats;

use std::borrow::Cow;

use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_shared::api::ErrorCode;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr};
use utoipa::{IntoResponses, Modify, OpenApi, PartialSchema, ToSchema};

/// The security scheme's name in the document.
pub const BEARER: &str = "bearer";

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "Latchkey admin API",
        description = "Manage customers, API keys, licenses, devices, sessions, resources, products, \
                       flags and leads. Authenticate with `Authorization: Bearer <API key or token>`; \
                       each operation names the scope it needs. Errors answer an `ErrorBody`. \
                       No string may contain U+0000, which PostgreSQL cannot store.",
    ),
    modifiers(&SecurityAddon),
    tags(
        (name = "auth", description = "Exchange an API key for a short-lived token"),
        (name = "customers", description = "Who licenses belong to"),
        (name = "api_keys", description = "Credentials of the admin API"),
        (name = "licenses", description = "Licenses: create (one or a batch), change, suspend, resume, revoke, extend"),
        (name = "devices", description = "The seats of a license"),
        (name = "sessions", description = "Concurrent sessions of licenses"),
        (name = "resources", description = "Pools of domains, IP addresses and phone numbers allocated to licenses"),
        (name = "products", description = "Products, their releases and the version check"),
        (name = "flags", description = "Feature flags, global or per product"),
        (name = "edges", description = "Enrolled edges and the edge configuration every snapshot carries"),
        (name = "audit", description = "Who changed what, when: read and export"),
        (name = "leads", description = "The lead CRM: institutions, their contacts with phones and e-mail addresses, \
                                         versioned notes, search, conversion to a customer, CSV import and export"),
    )
)]
pub struct ApiDoc;

/// The body of every error answer (mirrors `latchkey_shared::api::ErrorBody`,
/// which stays free of documentation dependencies).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    #[schema(value_type = ErrorCodeSchema)]
    code: String,
    message: String,
    /// The JSON path of the offending field, when one is to blame.
    field: Option<String>,
    /// Whether the same request may succeed later.
    retryable: bool,
}

/// What every operation behind a scope may answer.
#[derive(Debug, IntoResponses)]
pub enum Guarded {
    /// No or bad credentials
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The credential lacks the scope the operation names
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// Internal error; the request id identifies it in our logs
    #[response(status = 500)]
    Internal(ErrorBody),
}

/// What an operation with path parameters may answer.
#[derive(Debug, IntoResponses)]
pub enum PathErrors {
    /// A path parameter of the wrong shape; `field` names it
    #[response(status = 400)]
    Malformed(ErrorBody),
    /// Nothing has this id
    #[response(status = 404)]
    NotFound(ErrorBody),
}

/// What an operation with query parameters may answer.
#[derive(Debug, IntoResponses)]
pub enum QueryErrors {
    /// A bad or unknown query parameter; `field` names it
    #[response(status = 400)]
    Invalid(ErrorBody),
}

/// What an operation with a JSON body may answer.
#[derive(Debug, IntoResponses)]
pub enum BodyErrors {
    /// Malformed JSON or an invalid field; `field` names it
    #[response(status = 400)]
    Invalid(ErrorBody),
    /// Larger than `max_body_bytes`
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Not `Content-Type: application/json`
    #[response(status = 415)]
    NotJson(ErrorBody),
}

/// What an operation with a CSV body may answer.
#[derive(Debug, IntoResponses)]
pub enum CsvBodyErrors {
    /// Not UTF-8, or U+0000 in it
    #[response(status = 400)]
    Invalid(ErrorBody),
    /// Larger than `max_body_bytes`
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Not `Content-Type: text/csv`
    #[response(status = 415)]
    NotCsv(ErrorBody),
}

/// How an import's file can be refused before it is read.
#[derive(Debug, IntoResponses)]
pub enum ImportBodyErrors {
    /// Not UTF-8, or U+0000 in it
    #[response(status = 400)]
    Invalid(ErrorBody),
    /// Larger than `max_body_bytes`
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Neither `Content-Type: text/csv` nor `application/json`
    #[response(status = 415)]
    NotAFile(ErrorBody),
}

/// The stable error codes, as an enumeration of strings.
#[derive(Debug)]
pub struct ErrorCodeSchema;

impl PartialSchema for ErrorCodeSchema {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "Stable, machine-readable error code; never changes once released.",
            ))
            .enum_values(Some(ErrorCode::ALL.map(ErrorCode::as_str)))
            .into()
    }
}

impl ToSchema for ErrorCodeSchema {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorCode")
    }
}

#[derive(Debug)]
struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, document: &mut Document) {
        let components = document.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`lk_<prefix>_<secret>`) or a token from `POST /admin/api/v1/auth/token`. \
                         The scopes listed on an operation are those it needs; `<area>:write` implies \
                         `<area>:read` and `*` grants everything.",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document, with the formats of [`formats`], serialized once; the
/// handler answering it.
pub fn serve(
    mut document: Document,
) -> impl Fn() -> std::future::Ready<Response> + Clone + Send + Sync + 'static {
    formats::apply(&mut document);
    let body = document
        .to_json()
        .map(Bytes::from)
        .expect("the OpenAPI document serializes");
    move || {
        let mut response = (StatusCode::OK, body.clone()).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        std::future::ready(response)
    }
}
