//! The HTTP server under the app: hyper directly rather than `axum::serve`,
//! because `axum::serve` has no header read timeout, and a client sending
//! its headers a byte a minute (slowloris) would hold a connection for ever.
//! Headers must arrive within `header` (which also closes idle keep-alive
//! connections); the answer must start within `request` (a streamed body,
//! like the dashboard's events, may go on after that).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use latchkey_shared::api::ErrorCode;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower::ServiceExt;

use crate::http::error::ApiError;

#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub request: Duration,
    /// How long requests in flight may take to finish once stopping.
    pub drain: Duration,
}

/// Serves until `stop` fires, then lets open requests finish within the
/// drain time.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    timeouts: Timeouts,
    stop: oneshot::Receiver<()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let router = router.clone();
                let service = service_fn(move |request| {
                    answer(router.clone(), request, peer, timeouts.request)
                });
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let connection = graceful.watch(connection.into_owned());
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            _ = &mut stop => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(timeouts.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still open after the drain time; closing them");
    }
}

async fn answer(
    router: Router,
    mut request: Request<Incoming>,
    peer: SocketAddr,
    limit: Duration,
) -> Result<Response, Infallible> {
    request.extensions_mut().insert(ConnectInfo(peer));
    Ok(
        match tokio::time::timeout(limit, router.oneshot(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(never)) => match never {},
            Err(_) => ApiError::new(ErrorCode::RequestTimeout, "the request took too long")
                .into_response(),
        },
    )
}
