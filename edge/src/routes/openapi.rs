//! The client API's OpenAPI document, generated from the handlers'
//! annotations and the shared types' schemas; served at `/openapi.json`.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(title = "Latchkey client API", description = "License verification, activation, sessions and version checks, answered by Latchkey edges."),
    paths(
        super::verify::verify,
        super::verify::info,
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
    tags((name = "licenses"), (name = "sessions"), (name = "versions"))
)]
pub struct ClientApi;

pub async fn document() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(ClientApi::openapi())
}
