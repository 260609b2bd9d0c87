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
use latchkey_shared::api::{VerifyRequest, VerifyResponse};
use latchkey_shared::snapshot::LicenseStatus;
use latchkey_shared::{LicenseKey, MatchVerdict, version};
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
    /// Before answering, do the work any verify answer needs whatever the
    /// architecture: parse the JSON body, parse and hash the license key,
    /// canonicalize and hash the fingerprint, check the version, serialize a
    /// whole `VerifyResponse`. No lookup, routing, limits or metrics: the
    /// floor under the edge's own cost.
    #[arg(long)]
    verify_work: bool,
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
        let verify_work = args.verify_work;
        tokio::spawn(async move {
            // A client that goes away mid-request is not the ceiling's error.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(
                    TokioIo::new(stream),
                    service_fn(move |request| answer(request, verify_work)),
                )
                .await;
        });
    }
}

async fn answer(
    request: Request<Incoming>,
    verify_work: bool,
) -> Result<Response<Full<Bytes>>, Infallible> {
    // Reading the body keeps the connection reusable, as any real handler would.
    let body = request.into_body().collect().await.map(|b| b.to_bytes());
    let answer = match body {
        Ok(body) if verify_work => Bytes::from(work(&body)),
        _ => Bytes::from_static(ANSWER),
    };
    let mut response = Response::new(Full::new(answer));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

/// The verify work without the lookup (see `Args::verify_work`).
fn work(body: &[u8]) -> Vec<u8> {
    let Ok(request) = serde_json::from_slice::<VerifyRequest>(body) else {
        return br#"{"valid":false}"#.to_vec();
    };
    let key_hash = request.license_key.parse::<LicenseKey>().map(|k| k.hash());
    let fingerprint = request
        .fingerprint
        .as_ref()
        .and_then(|f| f.canonicalize().ok())
        .map(|c| c.matcher().digest());
    let minimum_ok = request
        .app_version
        .as_deref()
        .map(|v| version::check(v, None, Some("1.0.0")).is_ok());
    let answer = VerifyResponse {
        valid: key_hash.is_ok() && minimum_ok != Some(false),
        code: None,
        status: Some(LicenseStatus::Active),
        expires_at: Some(i64::from(fingerprint.is_some())),
        features: vec!["export".to_owned(), "sync".to_owned()],
        flags: Vec::new(),
        fingerprint: fingerprint.map(|_| MatchVerdict::Exact),
        heartbeat_interval_secs: 900,
        snapshot_sequence: 1,
    };
    serde_json::to_vec(&answer).expect("serializes")
}
