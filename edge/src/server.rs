//! Running the edge: hyper with both HTTP versions, header and request
//! timeouts (a slow client cannot hold a connection), the snapshot watcher,
//! and graceful shutdown (stop accepting, let in-flight requests finish).
//!
//! Thread per core: one current-thread runtime per core, each accepting on
//! a listener of its own (`SO_REUSEPORT`, the kernel spreads connections), so
//! a connection's requests never wake another thread. The background work
//! (snapshot watcher, link, usage) runs on the caller's runtime.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use axum::extract::ConnectInfo;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, Method, Request};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use latchkey_shared::TrustedKeys;
use latchkey_shared::answer::AnswerSigner;
use latchkey_shared::api::{ErrorCode, VerifyRequest};
use latchkey_shared::forwarded::TrustedProxies;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpSocket;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::answers::{self, Answers};
use crate::config::EdgeConfig;
use crate::error::EdgeError;
use crate::extract;
use crate::limits::RateLimits;
use crate::link::{self, Link};
use crate::observe::{self, Endpoint};
use crate::routes::{self, AppState, Shared};
use crate::snapshots::{self, SnapshotStore};
use crate::usage::{self, Usage};

/// How long in-flight requests get to finish after shutdown begins.
const DRAIN: Duration = Duration::from_secs(30);
/// How long queued usage gets to reach control at shutdown before it is spooled.
const USAGE_DRAIN: Duration = Duration::from_secs(5);
/// How often recorded request durations are folded into the histogram's
/// buckets. Between upkeeps the recorder keeps every sample: unscraped, a
/// loaded edge would grow by every request it answered.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);
/// The endpoint the server answers without the router: nearly all traffic.
const VERIFY_PATH: &str = "/api/license/verify";

/// A started edge: its address and how to stop it.
#[derive(Debug)]
pub struct RunningEdge {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: watch::Sender<bool>,
    /// One per core, each with its runtime and listener.
    server: Vec<std::thread::JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

impl RunningEdge {
    /// Stops accepting, waits for in-flight requests, hands control the
    /// usage recorded (or spools it), stops the background tasks.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let threads = self.server;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
        if let Some(usage) = &self.state.usage {
            usage.drain(USAGE_DRAIN).await;
        }
        self.background.iter().for_each(JoinHandle::abort);
    }
}

/// The process-wide Prometheus recorder (installed once).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Request latency as a real histogram (aggregatable across edges), 50 µs to 1 s.
            let buckets = [
                0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.25, 1.0,
            ];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("latchkey_edge_request_duration_seconds".into()),
                    &buckets,
                )
                .expect("buckets are not empty")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may be installed (tests embedding the edge): keep ours for rendering.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// Loads the keys and the snapshot, binds, and serves in the background.
/// With no valid snapshot the edge still starts but is not ready (`/readyz`
/// 503, API calls `503 NOT_READY`) until a valid file appears.
pub async fn start(config: EdgeConfig) -> anyhow::Result<RunningEdge> {
    // The recorder before anything records: the cached snapshot's gauges and
    // the usage counters registered at zero are set once, below.
    let metrics = metrics_handle();
    let mut trusted = TrustedKeys::new();
    for path in &config.trusted_keys {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("reading trusted key {}", path.display()))?;
        trusted
            .insert_pem(&pem)
            .with_context(|| format!("loading trusted key {}", path.display()))?;
    }
    // Read before binding: an unreadable token file stops the edge here.
    let enrol_token = config.link.resolve_enrol_token()?;
    let (store, link) = match (&config.snapshot, &config.link.data_dir) {
        (Some(file), _) => (SnapshotStore::new(file.clone(), trusted), None),
        (None, Some(dir)) => (
            SnapshotStore::cached_in(dir, trusted),
            Some(Arc::new(Link::new(Duration::from_millis(
                config.link.call_timeout_ms,
            )))),
        ),
        (None, None) => anyhow::bail!("give --snapshot, or --control with --data-dir"),
    };
    let store = Arc::new(store);
    let usage = link
        .as_ref()
        .map(|_| Arc::new(Usage::new(config.link.usage())));
    let loaded = if link.is_some() {
        store.load_cache()
    } else {
        store.load()
    };
    match loaded {
        Ok(state) => {
            snapshots::record_loaded(&state);
            tracing::info!(
                sequence = state.sequence(),
                licenses = state.base_license_count(),
                "snapshot loaded"
            );
        }
        Err(error) if link.is_some() => {
            tracing::info!(error = %error, "no cached snapshot: not ready until control sends one");
        }
        Err(error) => {
            metrics::counter!("latchkey_edge_snapshot_rejected_total", "reason" => error.reason())
                .increment(1);
            tracing::error!(error = %error, "no valid snapshot: not ready until one arrives");
        }
    }
    let answers = Arc::new(Answers::configured(
        config.answer_key.as_deref(),
        config.answer_certificate.as_deref(),
        link.is_some(),
        store.trusted(),
    )?);
    let initial = config.rate_limit_per_min.unwrap_or(100);
    let state = AppState::new(Shared {
        snapshots: store.clone(),
        limits: Arc::new(ArcSwap::from_pointee(RateLimits::new(initial, initial))),
        rate_limit_override: config.rate_limit_per_min,
        trusted_proxies: TrustedProxies::from_addrs(&config.trusted_proxies),
        metrics,
        link: link.clone(),
        usage: usage.clone(),
        answers: answers.clone(),
    });
    let app = Served {
        router: routes::router(state.clone(), config.max_body_bytes),
        state: state.clone(),
        max_body_bytes: config.max_body_bytes,
    };

    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let sockets =
        bind(config.listen, cores).with_context(|| format!("binding {}", config.listen))?;
    let addr = sockets[0].local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let timeouts = Timeouts {
        header: config.header_timeout(),
        request: config.request_timeout(),
    };
    let mut server = Vec::with_capacity(cores);
    let mut listening = Vec::with_capacity(cores);
    for (core, socket) in sockets.into_iter().enumerate() {
        let (app, stopped) = (app.clone(), stopped.clone());
        let (ready, ready_seen) = oneshot::channel();
        listening.push(ready_seen);
        server.push(
            std::thread::Builder::new()
                .name(format!("edge-http-{core}"))
                .spawn(move || serve_on_this_thread(socket, app, timeouts, stopped, ready))
                .context("starting a server thread")?,
        );
    }
    // Every listener listens before the edge says it is started: a client
    // connecting at once is never refused.
    for ready in listening {
        ready
            .await
            .context("a server thread stopped while starting")??;
    }
    let limits = state.limits.clone();
    let mut background = vec![tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(60));
        loop {
            ticks.tick().await;
            limits.load().forget_idle();
        }
    })];
    let recorder = state.metrics.clone();
    background.push(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(METRICS_UPKEEP);
        loop {
            ticks.tick().await;
            recorder.run_upkeep();
        }
    }));
    background.push(tokio::spawn(snapshots::watch_expiry(store.clone())));
    match (link, &usage) {
        (Some(link), Some(usage)) => {
            background.push(tokio::spawn(usage::cut_periodically(usage.clone())));
            background.push(tokio::spawn(usage::send(usage.clone(), link.clone())));
            background.push(tokio::spawn(link::run(
                link,
                config.link.clone(),
                enrol_token,
                store,
                answers,
            )));
        }
        _ => background.push(tokio::spawn(
            store.watch(Duration::from_millis(config.reload_check_ms)),
        )),
    }
    tracing::info!(%addr, "edge listening");
    Ok(RunningEdge {
        addr,
        state,
        stop,
        server,
        background,
    })
}

/// Runs until SIGTERM or Ctrl-C, then shuts down gracefully.
pub async fn serve(config: EdgeConfig) -> anyhow::Result<()> {
    let edge = start(config).await?;
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    edge.stop().await;
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct Timeouts {
    /// To read a request's headers; also how long an idle keep-alive
    /// connection stays open.
    header: Duration,
    /// From the headers read to the answer written.
    request: Duration,
}

/// What the server answers with: the router, and what the endpoint it
/// answers itself needs.
#[derive(Clone)]
struct Served {
    router: axum::Router,
    state: AppState,
    max_body_bytes: usize,
}

/// What every request of one connection needs, in one `Arc` per
/// connection: the per-request clone touches no cache line that other
/// connections (and workers) share, as a clone of the router would.
struct Connection {
    served: Served,
    peer: SocketAddr,
    request_timeout: Duration,
}

/// `cores` sockets bound to `listen` with `SO_REUSEPORT`: the first picks
/// the port when `listen` asks for any, the others take the same.
fn bind(listen: SocketAddr, cores: usize) -> std::io::Result<Vec<TcpSocket>> {
    let mut addr = listen;
    let mut sockets = Vec::with_capacity(cores);
    for _ in 0..cores {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(addr)?;
        addr = socket.local_addr()?;
        sockets.push(socket);
    }
    Ok(sockets)
}

/// One core's server: a current-thread runtime accepting on `socket` until
/// `stopped`, then draining its connections.
fn serve_on_this_thread(
    socket: TcpSocket,
    app: Served,
    timeouts: Timeouts,
    stopped: watch::Receiver<bool>,
    ready: oneshot::Sender<anyhow::Result<()>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(anyhow::Error::from(error).context("building a runtime")));
            return;
        }
    };
    runtime.block_on(async move {
        match socket.listen(1024) {
            Ok(listener) => {
                let _ = ready.send(Ok(()));
                accept_loop(listener, app, timeouts, stopped).await;
            }
            Err(error) => {
                let _ = ready.send(Err(anyhow::Error::from(error).context("listening")));
            }
        }
    });
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Served,
    timeouts: Timeouts,
    mut stopped: watch::Receiver<bool>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(30)));
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let connection = Arc::new(Connection {
                    served: app.clone(),
                    peer,
                    request_timeout: timeouts.request,
                });
                let service = service_fn(move |request| answer(connection.clone(), request));
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection.into_owned());
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within the drain time");
    }
}

/// One request, under the request timeout, counted and timed. Done here
/// rather than as router middleware: no boxed future and no registry lookup
/// per request. Verify, nearly all traffic, is answered without the router
/// (its matching and per-request clones showed in a profile); every other
/// endpoint goes through it.
async fn answer(
    connection: Arc<Connection>,
    request: Request<Incoming>,
) -> Result<Response, Infallible> {
    let direct = request.method() == Method::POST && request.uri().path() == VERIFY_PATH;
    let endpoint = if direct {
        Endpoint::VERIFY
    } else {
        Endpoint::of(request.uri().path())
    };
    let started = Instant::now();
    let served = &connection.served;
    let work = async {
        let nonce = match answers::nonce(request.headers()) {
            Ok(nonce) => nonce,
            Err(error) => return error.into_response(),
        };
        match nonce.zip(served.state.answers.signer()) {
            Some((nonce, signer)) => {
                signed(served, connection.peer, direct, request, &nonce, &signer).await
            }
            None => unsigned(served, connection.peer, direct, request).await,
        }
    };
    let response = match tokio::time::timeout(connection.request_timeout, work).await {
        Ok(response) => response,
        Err(_) => {
            EdgeError::new(ErrorCode::RequestTimeout, "the request took too long").into_response()
        }
    };
    observe::record(endpoint, response.status(), started.elapsed());
    Ok(response)
}

/// The answer as it is: verify by hand, the rest through the router.
async fn unsigned(
    served: &Served,
    peer: SocketAddr,
    direct: bool,
    request: Request<Incoming>,
) -> Response {
    if !direct {
        return through_router(served, peer, request).await;
    }
    if let Err(error) = extract::require_json(request.headers()) {
        return error.into_response();
    }
    let (parts, body) = request.into_parts();
    match extract::read_body(body, served.max_body_bytes).await {
        Ok(body) => verify(served, peer, &parts.headers, &body),
        Err(error) => error.into_response(),
    }
}

/// Any endpoint but the verify the server answers itself.
async fn through_router<B>(served: &Served, peer: SocketAddr, mut request: Request<B>) -> Response
where
    B: hyper::body::Body<Data = axum::body::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    request.extensions_mut().insert(ConnectInfo(peer));
    match served.router.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The answer signed over the client's nonce, the path, the request body
/// (read whole first, to be digested) and the answer's body.
async fn signed(
    served: &Served,
    peer: SocketAddr,
    direct: bool,
    request: Request<Incoming>,
    nonce: &str,
    signer: &AnswerSigner,
) -> Response {
    let path = request.uri().path().to_owned();
    let (parts, body) = request.into_parts();
    let body = match extract::read_body(body, served.max_body_bytes).await {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let response = if direct {
        match extract::require_json(&parts.headers) {
            Ok(()) => verify(served, peer, &parts.headers, &body),
            Err(error) => error.into_response(),
        }
    } else {
        let request = Request::from_parts(parts, axum::body::Body::from(body.clone()));
        through_router(served, peer, request).await
    };
    answers::sign(signer, nonce, &path, &body, response).await
}

/// `POST /api/license/verify` as the router would answer it (its content
/// type and body limit checked by the caller): the client IP, the JSON
/// body, then the route's answer.
fn verify(served: &Served, peer: SocketAddr, headers: &HeaderMap, body: &[u8]) -> Response {
    let ip = crate::client_ip::client_ip(&served.state, peer, headers);
    let answer = extract::parse::<VerifyRequest>(body)
        .and_then(|request| routes::verify::answer(&served.state, ip, &request));
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => return error.into_response(),
    };
    // Into a buffer the size of a typical answer, and that straight into the
    // body: axum's `Json` grows a smaller one through a `BytesMut` writer and
    // adds its header as a response part.
    let mut json = Vec::with_capacity(256);
    if let Err(error) = serde_json::to_writer(&mut json, &answer) {
        return EdgeError::new(ErrorCode::Internal, error.to_string()).into_response();
    }
    let mut response = Response::new(axum::body::Body::from(json));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
