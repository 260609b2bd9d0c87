//! The admin panel: server-rendered HTML (askama templates compiled into the
//! binary, `control/templates/`), enhanced with htmx where it helps, every
//! asset embedded (`assets.rs`).
//!
//! Requests pass two layers before a handler: [`session::load`] finds the
//! session named by the cookie (and restarts its idle clock), then
//! [`csrf::verify`] checks the token on every state-changing request. Each
//! handler takes [`session::Viewer`] (anyone logged in) or
//! [`session::AdminUser`] (role `admin`) as its first argument, so the role
//! check is in the signature. Every protected route is registered through
//! [`Routes`], which also lists it: [`protected_routes`] is what the tests
//! walk to prove that none answers without a session.
//!
//! To add a page: a handler in the area's module taking `Viewer` or
//! `AdminUser`, a template extending `layout.html`, and one line in
//! [`router`].

pub mod api_keys;
pub mod assets;
pub mod audit;
pub mod auth;
pub mod backups;
pub mod blocked_ips;
pub mod csrf;
pub mod customers;
pub mod dashboard;
pub mod devices;
pub mod download;
pub mod edges;
pub mod error;
pub mod exports;
pub mod flags;
pub mod form;
pub mod guard;
pub mod import;
pub mod lead;
pub mod leads;
pub mod license;
pub mod license_batch;
pub mod licenses;
pub mod monitoring;
pub mod note_history;
pub mod pages;
pub mod products;
pub mod resources;
pub mod session;
pub mod sessions;
pub mod settings;
pub mod tasks;
pub mod totp;

use axum::Router;
use axum::extract::Request;
use axum::handler::Handler;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{MethodRouter, get, post};

use std::sync::Arc;

use secrecy::ExposeSecret;
use sqlx::PgPool;

use crate::backup::Backups;
use crate::config::{Config, ConfigError, PanelConfig};
use crate::secrets::Secrets;
use crate::tasks::Tasks;
use guard::LoginGuard;

use crate::traffic::Traffic;

/// What every panel handler shares. Cheap to clone.
#[derive(Clone, Debug)]
pub struct PanelState {
    pub pool: PgPool,
    pub secrets: Arc<Secrets>,
    pub config: Arc<PanelConfig>,
    pub guard: Arc<LoginGuard>,
    /// This replica's request rates, for the monitoring page's chart.
    pub traffic: Arc<Traffic>,
    pub backups: Backups,
    /// This replica's restore, if one is under way.
    pub restore: backups::Restore,
    /// This replica's long jobs, with their progress and outcomes.
    pub tasks: Tasks,
    /// The outcomes of this replica's checks and imports of files.
    pub imports: import::Finished,
    /// This replica's export files.
    pub exports: exports::Exports,
}

impl PanelState {
    /// Login counters in Redis when `REDIS_URL` is set, else in this process.
    pub fn new(pool: PgPool, config: &Config) -> Result<Self, ConfigError> {
        let guard = LoginGuard::new(&config.panel, config.redis_url.as_ref(), "latchkey").map_err(
            |error| ConfigError::Invalid {
                name: "REDIS_URL".into(),
                message: error.to_string(),
            },
        )?;
        Self::with_guard(pool, config, guard)
    }

    pub fn cookies(&self) -> session::Cookies {
        session::Cookies {
            secure: self.config.secure_cookies,
        }
    }

    /// With login counters of the caller's choosing (tests share Redis
    /// under a namespace of their own).
    pub fn with_guard(
        pool: PgPool,
        config: &Config,
        guard: LoginGuard,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            pool,
            secrets: Arc::new(config.secrets()?),
            config: Arc::new(config.panel.clone()),
            guard: Arc::new(guard),
            traffic: Arc::default(),
            backups: Backups::new(config.backups.clone(), config.database_url.expose_secret())
                .map_err(|error| ConfigError::Invalid {
                    name: "DATABASE_URL".into(),
                    message: error.to_string(),
                })?,
            restore: Arc::default(),
            tasks: Tasks::default(),
            imports: Arc::default(),
            exports: exports::Exports::new(&std::env::temp_dir()),
        })
    }
}

/// One protected route: a method and its path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PanelRoute {
    pub method: Method,
    pub path: &'static str,
}

/// Registers protected routes and remembers them.
struct Routes {
    router: Router<PanelState>,
    listed: Vec<PanelRoute>,
}

impl Routes {
    fn new() -> Self {
        Self {
            router: Router::new(),
            listed: Vec::new(),
        }
    }

    fn get<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, PanelState>,
        T: 'static,
    {
        self.add(Method::GET, path, get(handler))
    }

    fn post<H, T>(self, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, PanelState>,
        T: 'static,
    {
        self.add(Method::POST, path, post(handler))
    }

    fn add(mut self, method: Method, path: &'static str, route: MethodRouter<PanelState>) -> Self {
        self.router = self.router.route(path, route);
        self.listed.push(PanelRoute { method, path });
        self
    }
}

fn protected() -> Routes {
    Routes::new()
        .get("/", dashboard::page)
        .get("/events/dashboard", dashboard::events)
        .get("/customers", customers::list)
        .get("/customers/export", customers::export)
        .post("/customers", customers::create)
        .get("/customers/suggest", customers::suggest)
        .get("/customers/new", customers::new_form)
        .get("/customers/{id}", customers::show)
        .post("/customers/{id}", customers::update)
        .get("/customers/{id}/edit", customers::edit_form)
        .post("/customers/{id}/delete", customers::delete)
        .get("/licenses", licenses::list)
        .get("/licenses/export", licenses::export)
        .post("/licenses/bulk/preview", licenses::bulk_preview)
        .post("/licenses/bulk", licenses::bulk_apply)
        .get("/licenses/{id}/quick", licenses::quick_form)
        .post("/licenses/{id}/quick", licenses::quick_save)
        .post("/licenses", license::create)
        .get("/licenses/new", license::new_form)
        .get("/licenses/batch", license_batch::form)
        .post("/licenses/batch", license_batch::create)
        .get("/licenses/{id}", license::show)
        .post("/licenses/{id}", license::update)
        .get("/licenses/{id}/edit", license::edit_form)
        .post("/licenses/{id}/reveal", license::reveal)
        .get("/licenses/{id}/devices/export", devices::export)
        .post(
            "/licenses/{id}/devices/{device_id}/deactivate",
            devices::deactivate,
        )
        .get(
            "/licenses/{id}/devices/{device_id}/transfer",
            devices::transfer_form,
        )
        .post(
            "/licenses/{id}/devices/{device_id}/transfer",
            devices::transfer,
        )
        .get("/sessions", sessions::list)
        .get("/sessions/export", sessions::export)
        .get("/events/sessions", sessions::events)
        .get("/sessions/terminate", sessions::confirm)
        .post("/sessions/terminate", sessions::terminate)
        .get("/resources", resources::list)
        .get("/resources/export", resources::export)
        .post("/resources", resources::add)
        .post("/resources/allocate", resources::allocate)
        .get("/resources/{id}", resources::show)
        .post("/resources/{id}/release", resources::release)
        .post("/resources/{id}/quarantine", resources::quarantine)
        .get("/products", products::list)
        .post("/products", products::create)
        .get("/products/new", products::new_form)
        .get("/products/{id}", products::show)
        .post("/products/{id}", products::update)
        .get("/products/{id}/edit", products::edit_form)
        .post("/products/{id}/config", products::set_config)
        .post("/products/{id}/releases", products::add_release)
        .post("/releases/{id}/publish", products::publish)
        .post("/releases/{id}/unpublish", products::unpublish)
        .post("/releases/{id}/min-allowed", products::mark_min_allowed)
        .post(
            "/releases/{id}/clear-min-allowed",
            products::clear_min_allowed,
        )
        .get("/flags", flags::list)
        .post("/flags", flags::create)
        .get("/flags/{id}/edit", flags::edit_form)
        .post("/flags/{id}", flags::update)
        .post("/flags/{id}/toggle", flags::toggle)
        .post("/flags/{id}/delete", flags::delete)
        .get("/leads", leads::list)
        .get("/leads/export", leads::export)
        .post("/leads", leads::create)
        .get("/leads/search", leads::search)
        .get("/leads/board", leads::board)
        .get("/leads/new", leads::new_form)
        .get("/leads/{id}", lead::show)
        .post("/leads/{id}", lead::update)
        .post("/leads/{id}/stage", leads::move_stage)
        .get("/leads/{id}/convert", lead::convert_form)
        .post("/leads/{id}/convert", lead::convert)
        .post("/leads/{id}/contacts", lead::add_contact)
        .post("/leads/{id}/notes", lead::add_note)
        .post("/leads/contacts/{id}", lead::update_contact)
        .post("/leads/contacts/{id}/delete", lead::delete_contact)
        .post("/leads/contacts/{id}/details", lead::add_detail)
        .post("/leads/details/{id}", lead::update_detail)
        .post("/leads/details/{id}/delete", lead::delete_detail)
        .get("/leads/notes/{id}", note_history::show)
        .post("/leads/notes/{id}", lead::edit_note)
        .post("/leads/notes/{id}/delete", lead::delete_note)
        .get("/monitoring", monitoring::page)
        .get("/backups", backups::page)
        .post("/backups", backups::create)
        .post("/backups/{id}/delete", backups::delete)
        .post("/backups/{id}/restore", backups::verify)
        .post("/backups/restore/swap", backups::swap)
        .post("/backups/restore/discard", backups::discard)
        .get("/tasks/{id}/events", tasks::events)
        .get("/exports/{id}", exports::page)
        .get("/exports/{id}/file", exports::file)
        .get("/import", import::page)
        .post("/import", import::submit)
        .get("/audit", audit::page)
        .get("/audit/export", audit::export)
        .get("/blocked-ips", blocked_ips::page)
        .post("/blocked-ips", blocked_ips::add)
        .post("/blocked-ips/{id}/lift", blocked_ips::lift)
        .get("/api-keys", api_keys::page)
        .post("/api-keys", api_keys::create)
        .post("/api-keys/{id}/revoke", api_keys::revoke)
        .get("/edges", edges::page)
        .post("/edges", edges::create)
        .post("/edges/{id}/revoke", edges::revoke)
        .post("/edges/config", edges::set_config)
        .get("/settings", settings::page)
        .post("/settings/sessions/{id}/revoke", settings::revoke_session)
        .post(
            "/settings/admins/{id}/reset-2fa",
            settings::reset_two_factor,
        )
        .get("/settings/2fa", totp::enrol_page)
        .post("/settings/2fa", totp::confirm)
        .post("/logout", auth::logout)
}

/// Every protected route, for tests and docs.
pub fn protected_routes() -> Vec<PanelRoute> {
    protected().listed
}

/// The panel's routes with their layers; merged into the app at `/`.
pub fn router(state: PanelState) -> Router {
    protected()
        .router
        .route("/login", get(auth::login_page).post(auth::login))
        .route(
            "/login/2fa",
            get(auth::second_factor_page).post(auth::second_factor),
        )
        .layer(middleware::from_fn_with_state(state.clone(), csrf::verify))
        .layer(middleware::from_fn_with_state(state.clone(), session::load))
        .layer(middleware::from_fn(page_headers))
        .route(assets::ROUTE, get(assets::serve))
        .with_state(state)
}

/// Pages are never framed (clickjacking), load only our own assets, and are
/// not cached: they show sessions, codes and audit data.
async fn page_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}
