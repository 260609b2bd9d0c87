//! The ceiling: the fastest any HTTP/1.1 JSON endpoint can answer on this
//! machine with hyper and tokio. It answers every request, whatever its
//! method or path, with the same small JSON body: no routing, no parsing, no
//! lookup. The edge's throughput divided by this one is the share the edge
//! keeps once its own work is added.

use std::convert::Infallible;
use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

/// What the ceiling answers; `"valid":true` so the load generator's check of
/// each answer costs the same against every server.
const ANSWER: &[u8] = br#"{"valid":true}"#;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
}

pub async fn serve(args: Args) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let mut terminate = signal(SignalKind::terminate()).context("watching SIGTERM")?;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted.context("accepting")?,
            _ = terminate.recv() => return Ok(()),
        };
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            // A client that goes away mid-request is not the ceiling's error.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}

async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Reading the body keeps the connection reusable, as any real handler would.
    let _ = request.into_body().collect().await;
    let mut response = Response::new(Full::new(Bytes::from_static(ANSWER)));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}
