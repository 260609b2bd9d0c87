//! The admin JSON API under `/admin/api/v1/`.
//!
//! One module per resource, each with its own `router()` returning a
//! `utoipa_axum` [`OpenApiRouter`]: a handler is registered with its
//! `#[utoipa::path]`, so the OpenAPI document (`openapi.json`) cannot drift
//! from the routes. [`app`] merges them, adds the document, the JSON 404/405
//! fallbacks, the body limit and the request-id layer.
//!
//! To add a resource: write `http/<resource>.rs` with `router()` (paths
//! relative to `/admin/api/v1`), handlers whose first argument is
//! [`auth::Auth`] naming their scope (`Auth<Read<Licenses>>`), our
//! [`extract::Json`], [`extract::Path`] and [`extract::List`], answering
//! [`extract::created`] from a create, and documented with the error sets of
//! [`openapi`]; then merge its router in [`app`].

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod customers;
pub mod devices;
pub mod error;
pub mod extract;
pub mod flags;
pub mod licenses;
pub mod openapi;
pub mod products;
pub mod resources;
pub mod sessions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::{Extension, Router};
use latchkey_shared::api::ErrorCode;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use crate::config::{Config, ConfigError};
use crate::db;
use crate::http::error::ApiError;
use crate::secrets::Secrets;

/// Where the admin JSON API lives.
pub const API_PREFIX: &str = "/admin/api/v1";

/// The header carrying the request id, both ways.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

const REQUEST_ID_MAX_LEN: usize = 128;

/// What every handler shares. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub pool: PgPool,
    pub secrets: Arc<Secrets>,
    pub tokens: Arc<auth::TokenKeys>,
    pub max_body_bytes: usize,
    pub panel: Arc<crate::panel::Panel>,
}

/// The id of the request being answered, put in the request's extensions by
/// the request-id layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The largest body accepted, in bytes, for extractors to refuse a body by
/// its `Content-Length` before reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimit(pub usize);

impl AppState {
    pub fn new(pool: PgPool, config: &Config) -> Result<Self, ConfigError> {
        Ok(Self {
            pool,
            secrets: Arc::new(config.secrets()?),
            tokens: Arc::new(auth::TokenKeys::new(config)),
            max_body_bytes: config.max_body_bytes,
            panel: Arc::new(crate::panel::Panel::new(config)?),
        })
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
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
        .merge(audit::router());
    let (router, document) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest(API_PREFIX, api)
        .split_for_parts();
    let document = openapi::serve(document);
    router
        .merge(crate::panel::router(&state))
        .route(&format!("{API_PREFIX}/openapi.json"), get(document))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(Extension(BodyLimit(state.max_body_bytes)))
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// Connects, migrates, binds and serves until SIGTERM or Ctrl-C, then lets
/// requests in flight finish.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let pool = db::connect(
        config.database_url.expose_secret(),
        config.database_max_connections,
    )
    .await
    .context("connecting to DATABASE_URL")?;
    db::migrate(&pool).await.context("applying migrations")?;
    let state = AppState::new(pool.clone(), &config)?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("binding {}", config.listen_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "admin API listening");
    let jobs = crate::jobs::spawn_all(
        pool.clone(),
        crate::jobs::JobSettings {
            heartbeat_interval_secs: u32::try_from(config.heartbeat_interval_secs)
                .unwrap_or(u32::MAX),
            heartbeat_retention_months: config.heartbeat_retention_months,
            partitions_ahead_months: 3,
        },
    );
    let link = match config.link_listen_addr {
        Some(listen) => Some(start_link(pool.clone(), &config, listen)?),
        None => None,
    };
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("serving HTTP")?;
    jobs.iter().for_each(JoinHandle::abort);
    if let Some(link) = link {
        link.stop();
    }
    pool.close().await;
    tracing::info!("stopped");
    Ok(())
}

fn start_link(
    pool: PgPool,
    config: &Config,
    listen: SocketAddr,
) -> anyhow::Result<crate::link::RunningLink> {
    let key_path = config
        .signing_key_path
        .as_deref()
        .context("the edge link needs signing_key_path")?;
    let settings = crate::link::LinkSettings {
        listen,
        signer: crate::keys::load(key_path)?,
        default_grace_secs: crate::link::DEFAULT_GRACE_SECS,
        heartbeat_interval_secs: u32::try_from(config.heartbeat_interval_secs).unwrap_or(u32::MAX),
        session_token_ttl_secs: i64::try_from(config.session_token_ttl_secs).unwrap_or(i64::MAX),
        publisher: crate::link::publisher::PublisherSettings::default(),
    };
    crate::link::start(pool, &config.link_dir, settings)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

/// Takes the caller's `x-request-id` when it is sane, else makes one; puts it
/// in the request's extensions and on every response, opens the request's
/// span and logs one line per request.
async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|value| is_sane_request_id(value))
        .map(str::to_owned)
        .unwrap_or_else(|| Uuid::new_v4().to_string());
    request.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
    );
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "answered"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    response
}

/// Short, printable, and free of anything a log or header could trip on.
pub fn is_sane_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= REQUEST_ID_MAX_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not answer that method",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_must_be_sane() {
        assert!(is_sane_request_id("3f1c2a9e-7a0b-4c51-9f7e-0d1a2b3c4d5e"));
        assert!(is_sane_request_id("req_01:abc.def"));
        for bad in ["", "a b", "a\u{7f}", "é", "x\ny", &"a".repeat(129)] {
            assert!(!is_sane_request_id(bad), "{bad:?}");
        }
    }
}
