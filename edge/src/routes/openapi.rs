//! The client API's OpenAPI document, generated from the handlers'
//! annotations and the shared types' schemas; served at `/openapi.json`.
//!
//! Each handler documents the answers it decides itself. The ones the
//! plumbing gives every route are added here, in one place, as the code
//! gives them: the request timeout (`server.rs`), the rate limits, and for
//! a JSON body the extractor's 415, 413 and 400 (`extract.rs`).
//! `tests/openapi_conformance.rs` holds the document to the server.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use latchkey_shared::api::ErrorBody;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{Content, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi, ToSchema};

#[derive(OpenApi)]
#[openapi(
    info(title = "Latchkey client API", description = "License verification, activation, sessions and version checks, answered by Latchkey edges."),
    paths(
        super::verify::verify,
        super::verify::info,
        super::client_config::config,
        super::version::check,
        super::version::latest,
        super::session::heartbeat,
        super::forwarded::activate,
        super::forwarded::deactivate,
        super::forwarded::transfer,
        super::forwarded::lease,
        super::forwarded::session_start,
        super::forwarded::session_end,
    ),
    modifiers(&EveryRouteAnswers),
    tags((name = "licenses"), (name = "sessions"), (name = "versions"))
)]
pub struct ClientApi;

/// The document as served: generated once.
static DOCUMENT: LazyLock<Vec<u8>> =
    LazyLock::new(|| serde_json::to_vec(&document_json()).expect("the document serializes"));

pub async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.as_slice(),
    )
}

/// The document, with what utoipa's schema model cannot say added to it:
/// the rule that a fingerprint reports at least one usable component; and
/// the signed answers' headers, which every operation has (`answers.rs`).
pub fn document_json() -> serde_json::Value {
    let mut document = serde_json::to_value(ClientApi::openapi()).expect("the document serializes");
    let fingerprint = &mut document["components"]["schemas"]["Fingerprint"];
    assert!(fingerprint.is_object(), "Fingerprint is in the document");
    fingerprint["anyOf"] = latchkey_shared::schema::fingerprint_usable_any_of();
    add_signed_answer_headers(&mut document);
    document
}

/// The nonce a client may send, and the certificate and signature every
/// answer to it then carries (when the edge has a certified key).
fn add_signed_answer_headers(document: &mut serde_json::Value) {
    use latchkey_shared::answer::{CERTIFICATE_HEADER, NONCE_HEADER, SIGNATURE_HEADER};
    use serde_json::json;
    let nonce = json!({
        "name": NONCE_HEADER,
        "in": "header",
        "required": false,
        "description": "A random value (16 to 128 base64url characters) the answer is signed over, with the certificate and signature headers; a malformed one is refused (400)",
        "schema": { "type": "string", "pattern": "^[A-Za-z0-9_-]{16,128}$" },
    });
    let signed = json!({
        CERTIFICATE_HEADER: {
            "description": "The edge's answer key, certified by the license signing key (a token of kind `edge`); with a nonce only",
            "schema": { "type": "string" },
        },
        SIGNATURE_HEADER: {
            "description": "base64url Ed25519 signature, by the certified key, over the nonce, the path, the request body's BLAKE3 digest, the status and the body; with a nonce only",
            "schema": { "type": "string" },
        },
    });
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for operation in paths
        .values_mut()
        .filter_map(|item| item.as_object_mut())
        .flat_map(|item| item.iter_mut())
        .filter(|(method, _)| matches!(method.as_str(), "get" | "post"))
        .map(|(_, operation)| operation)
    {
        match operation["parameters"].as_array_mut() {
            Some(parameters) => parameters.push(nonce.clone()),
            None => operation["parameters"] = json!([nonce]),
        }
        let Some(responses) = operation["responses"].as_object_mut() else {
            continue;
        };
        for response in responses.values_mut() {
            let headers = &mut response["headers"];
            if headers.is_null() {
                *headers = json!({});
            }
            for (name, header) in signed.as_object().into_iter().flatten() {
                headers[name] = header.clone();
            }
        }
    }
}

struct EveryRouteAnswers;

impl Modify for EveryRouteAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for operation in [&mut item.get, &mut item.post].into_iter().flatten() {
                add_plumbing_answers(operation);
            }
        }
    }
}

fn add_plumbing_answers(operation: &mut Operation) {
    let has_body = operation.request_body.is_some();
    let responses = &mut operation.responses.responses;
    let mut add = |status: &str, response: Response| {
        responses
            .entry(status.to_owned())
            .or_insert(RefOr::T(response));
    };
    if has_body {
        add(
            "400",
            error("The body is not JSON of the request's schema (INVALID_REQUEST, with the field)"),
        );
        add(
            "413",
            error("The body is larger than the edge accepts (PAYLOAD_TOO_LARGE)"),
        );
        add(
            "415",
            error("The body is not sent as application/json (UNSUPPORTED_MEDIA_TYPE)"),
        );
    }
    add(
        "400",
        error(
            "Malformed input: here, an x-latchkey-nonce that is not 16 to 128 base64url characters (INVALID_REQUEST, with the field)",
        ),
    );
    add(
        "408",
        error("Not answered within the edge's request timeout (REQUEST_TIMEOUT); retry"),
    );
    let mut limited = error(
        "Over the rate limit of the license key or the client IP (RATE_LIMITED); retry after Retry-After seconds",
    );
    limited.headers.insert(
        "Retry-After".to_owned(),
        RefOr::T(
            HeaderBuilder::new()
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1)),
                ))
                .description(Some("Seconds until a retry may be admitted"))
                .build(),
        ),
    );
    add("429", limited);
}

fn error(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            Content::new(Some(Ref::from_schema_name(ErrorBody::name()))),
        )
        .build()
}
