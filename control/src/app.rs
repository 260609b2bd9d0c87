//! The composition root: the one place that knows every part of a running
//! control plane. [`AppState`] and [`router`] make the HTTP application (the
//! admin API, the panel, the probes, and the layers every request passes);
//! [`start`] connects and migrates the database, starts the jobs and the
//! edge link, and serves until [`Running::stop`].
//!
//! Below it, `http`, `panel`, `link` and `jobs` do not know each other; all
//! of them call into `db`. See ARCHITECTURE.md for the direction.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::{Extension, Router};
use latchkey_shared::forwarded::TrustedProxies;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::Instrument;
use uuid::Uuid;

use crate::config::{Config, ConfigError};
use crate::context::{RequestId, X_REQUEST_ID, is_sane_request_id};
use crate::http::{self, ApiState, BodyLimit};
use crate::link::{self, LinkSettings, LinkStatus, RunningLink};
use crate::observe::{self, Health};
use crate::panel::{self, PanelState};
use crate::traffic::{self, Traffic};
use crate::{db, jobs, keys, server};

/// How long requests in flight may take to finish once stopping.
const DRAIN: Duration = Duration::from_secs(10);

/// Everything the HTTP application holds. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub api: ApiState,
    pub panel: PanelState,
    pub health: Health,
    pub max_body_bytes: usize,
    pub trusted_proxies: TrustedProxies,
}

impl AppState {
    /// The state of a replica without the edge link.
    pub fn new(pool: PgPool, config: &Config) -> Result<Self, ConfigError> {
        Self::with_link(pool, config, None)
    }

    pub fn with_link(
        pool: PgPool,
        config: &Config,
        link: Option<LinkStatus>,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            api: ApiState::new(pool.clone(), config)?,
            panel: PanelState::new(pool.clone(), config)?,
            health: Health::new(pool, link),
            max_body_bytes: config.max_body_bytes,
            trusted_proxies: config.trusted_proxies.clone(),
        })
    }
}

/// The whole HTTP application: the admin API under `/admin/api/v1`, the
/// panel at `/`, the probes; JSON 404/405 for anything else.
pub fn router(state: AppState) -> Router {
    let traffic = state.panel.traffic.clone();
    http::router(state.api)
        .merge(panel::router(state.panel))
        .merge(observe::router(state.health))
        .fallback(http::not_found)
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            traffic,
            observe::count_requests,
        ))
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(Extension(BodyLimit(state.max_body_bytes)))
        .layer(Extension(state.trusted_proxies))
        .layer(middleware::from_fn(request_id))
}

/// A started control plane.
#[derive(Debug)]
pub struct Running {
    /// Where the admin API and the panel listen.
    pub http_addr: SocketAddr,
    /// Where edges connect, when the link is on.
    pub link_addr: Option<SocketAddr>,
    pool: PgPool,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<()>,
    jobs: Vec<JoinHandle<()>>,
    link: Option<RunningLink>,
}

/// Connects, migrates, starts the jobs and the link, binds and serves in
/// the background.
pub async fn start(config: &Config) -> anyhow::Result<Running> {
    // The recorder before anything records: the publisher sets its leader
    // gauge once, when it takes the lock, and the panel registers its login
    // counters at zero; sent to no recorder, they would never be exported.
    observe::metrics_handle();
    let pool = db::connect(
        config.database_url.expose_secret(),
        config.database_max_connections,
    )
    .await
    .context("connecting to DATABASE_URL")?;
    db::migrate(&pool).await.context("applying migrations")?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .with_context(|| format!("binding {}", config.listen_addr))?;
    let http_addr = listener.local_addr()?;
    let link = match config.link_listen_addr {
        Some(listen) => Some(start_link(pool.clone(), config, listen)?),
        None => None,
    };
    let state = AppState::with_link(
        pool.clone(),
        config,
        link.as_ref().map(|l| l.status.clone()),
    )?;
    let mut jobs = jobs::spawn_all(
        pool.clone(),
        jobs::JobSettings {
            heartbeat_retention_months: config.heartbeat_retention_months,
            partitions_ahead_months: 3,
            backups: state.panel.backups.clone(),
        },
    );
    jobs.push(tokio::spawn(sample_traffic(state.panel.traffic.clone())));
    let (shutdown, stopped) = oneshot::channel::<()>();
    let timeouts = server::Timeouts {
        header: Duration::from_secs(config.header_timeout_secs),
        request: Duration::from_secs(config.request_timeout_secs),
        drain: DRAIN,
    };
    let server = tokio::spawn(server::serve(listener, router(state), timeouts, stopped));
    tracing::info!(addr = %http_addr, "admin API and panel listening");
    if !config.panel.secure_cookies {
        tracing::warn!(
            "panel cookies are not Secure: behind TLS, set public_url to the https:// address admins use"
        );
    }
    Ok(Running {
        http_addr,
        link_addr: link.as_ref().map(|l| l.addr),
        pool,
        shutdown,
        server,
        jobs,
        link,
    })
}

impl Running {
    /// Stops taking requests, lets those in flight finish (at most
    /// [`DRAIN`]: an open dashboard stream would wait for ever), then stops
    /// the link and the jobs and closes the pool.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.shutdown.send(());
        self.server.await.context("the HTTP server task")?;
        if let Some(link) = self.link {
            link.stop();
        }
        self.jobs.iter().for_each(JoinHandle::abort);
        self.pool.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Samples the request counts for the monitoring page's chart, until aborted.
async fn sample_traffic(traffic: Arc<Traffic>) {
    let mut every = tokio::time::interval(traffic::SAMPLE_EVERY);
    loop {
        every.tick().await;
        traffic.sample(time::OffsetDateTime::now_utc().unix_timestamp());
    }
}

/// Starts, serves until SIGTERM or Ctrl-C, then stops.
pub async fn serve(config: &Config) -> anyhow::Result<()> {
    let running = start(config).await?;
    shutdown_signal().await;
    running.stop().await
}

fn start_link(pool: PgPool, config: &Config, listen: SocketAddr) -> anyhow::Result<RunningLink> {
    let key_path = config
        .signing_key_path
        .as_deref()
        .context("the edge link needs signing_key_path")?;
    let settings = LinkSettings {
        listen,
        signer: keys::load(key_path)?,
        session_token_ttl_secs: i64::try_from(config.session_token_ttl_secs).unwrap_or(i64::MAX),
        publisher: link::publisher::PublisherSettings::default(),
    };
    link::start(pool, &config.link_dir, settings)
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
