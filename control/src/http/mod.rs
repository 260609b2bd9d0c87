//! The admin JSON API under `/admin/api/v1/`.
//!
//! One module per resource, each with its own `router()` returning a
//! `utoipa_axum` [`OpenApiRouter`]: a handler is registered with its
//! `#[utoipa::path]`, so the OpenAPI document (`openapi.json`) cannot drift
//! from the routes. [`router`] merges them and adds the document; the app
//! (`crate::app`) adds the layers every request passes.
//!
//! To add a resource: write `http/<resource>.rs` with `router()` (paths
//! relative to `/admin/api/v1`), handlers whose first argument is
//! [`auth::Auth`] naming their scope (`Auth<Read<Licenses>>`), our
//! [`extract::Json`], [`extract::Path`] and [`extract::List`], answering
//! [`extract::created`] from a create, and documented with the error sets of
//! [`openapi`]; then merge its router in [`router`].

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod customers;
pub mod devices;
pub mod edges;
pub mod error;
pub mod extract;
pub mod flags;
pub mod imports;
pub mod leads;
pub mod licenses;
pub mod openapi;
pub mod products;
pub mod resources;
pub mod sessions;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use latchkey_shared::api::ErrorCode;
use sqlx::PgPool;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::config::{Config, ConfigError};
use crate::http::error::ApiError;
use crate::secrets::Secrets;

/// Where the admin JSON API lives.
pub const API_PREFIX: &str = "/admin/api/v1";

/// What every API handler shares. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ApiState {
    pub pool: PgPool,
    pub secrets: Arc<Secrets>,
    pub tokens: Arc<auth::TokenKeys>,
}

/// The largest body accepted, in bytes, for extractors to refuse a body by
/// its `Content-Length` before reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit(pub usize);

impl ApiState {
    pub fn new(pool: PgPool, config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            pool,
            secrets: Arc::new(config.secrets()?),
            tokens: Arc::new(auth::TokenKeys::new(config)),
        })
    }
}

/// The admin API's routes and its OpenAPI document, under [`API_PREFIX`].
pub fn router(state: ApiState) -> Router {
    let api = OpenApiRouter::new()
        .merge(auth::router())
        .merge(customers::router())
        .merge(api_keys::router())
        .merge(licenses::router())
        .merge(devices::router())
        .merge(sessions::router())
        .merge(resources::router())
        .merge(products::router())
        .merge(flags::router())
        .merge(edges::router())
        .merge(audit::router())
        .merge(leads::router())
        .merge(imports::router());
    let (router, document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest(API_PREFIX, api)
        .split_for_parts();
    let document = openapi::serve(document);
    router
        .route(&format!("{API_PREFIX}/openapi.json"), get(document))
        .with_state(state)
}

/// The JSON 404 of every path no router knows.
pub async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

/// The JSON 405 of a known path asked with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not answer that method",
    )
}
