//! The PostgreSQL reference: verify answered the way the seed did, from one
//! indexed query per request through a connection pool. It parses the same
//! `VerifyRequest`, parses and hashes the key with [`LicenseKey`], looks the
//! hash up in `bench_licenses` (primary key) and applies status, expiry,
//! product and feature rules. It does not apply the device matching rule
//! (the table has no devices), so it does a little less than the edge.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use latchkey_shared::LicenseKey;
use latchkey_shared::api::{ErrorBody, ErrorCode, VerifyRequest, VerifyResponse};
use latchkey_shared::snapshot::{EdgeConfig, LicenseStatus};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::verify::{BENCH_PRODUCT_ID, BENCH_PRODUCT_SLUG, VERIFY_PATH};

const MAX_BODY_BYTES: usize = 64 * 1024;
/// How the bench finds this server's PostgreSQL backends in
/// `pg_stat_activity`, to charge their CPU time to the baseline.
pub const APPLICATION_NAME: &str = "latchkey-bench-baseline";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Pooled PostgreSQL connections.
    #[arg(long, default_value_t = 16)]
    pool_size: u32,
}

/// One row of `bench_licenses`, as the one query returns it.
type Row = (String, Option<OffsetDateTime>, i32, i32, Vec<String>);

/// Serves until killed; `database_url` (the global `--database-url`) holds `bench_licenses`.
pub async fn serve(database_url: &str, args: Args) -> anyhow::Result<()> {
    let options = PgConnectOptions::from_str(database_url)
        .context("parsing the baseline database URL")?
        .application_name(APPLICATION_NAME);
    let pool = PgPoolOptions::new()
        .max_connections(args.pool_size)
        .min_connections(args.pool_size)
        .connect_with(options)
        .await
        .context("connecting to the baseline database")?;
    let pool = Arc::new(pool);
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
        let pool = pool.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let pool = pool.clone();
                async move { Ok::<_, Infallible>(route(&pool, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn route(pool: &PgPool, request: Request<Incoming>) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/readyz") => json(StatusCode::OK, br#"{"ready":true}"#.to_vec()),
        (&Method::POST, VERIFY_PATH) => verify(pool, request).await,
        _ => error(ErrorBody::new(ErrorCode::NotFound, "no such endpoint")),
    }
}

async fn verify(pool: &PgPool, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => return error(ErrorBody::new(ErrorCode::PayloadTooLarge, "body too large")),
    };
    let request: VerifyRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return error(ErrorBody::new(ErrorCode::InvalidRequest, e.to_string())),
    };
    let key: LicenseKey = match request.license_key.parse() {
        Ok(key) => key,
        Err(e) => {
            return error(
                ErrorBody::new(ErrorCode::InvalidLicenseKey, e.to_string())
                    .with_field("license_key"),
            );
        }
    };
    if let Some(fingerprint) = &request.fingerprint
        && let Err(e) = fingerprint.canonicalize()
    {
        return error(
            ErrorBody::new(ErrorCode::InvalidRequest, e.to_string())
                .with_field(format!("fingerprint.{}", e.field)),
        );
    }
    let row: Option<Row> = match sqlx::query_as(
        "SELECT status, valid_until, product_id, device_limit, features
           FROM bench_licenses WHERE key_hash = $1",
    )
    .bind(&key.hash().0[..])
    .fetch_optional(pool)
    .await
    {
        Ok(row) => row,
        Err(e) => return error(ErrorBody::new(ErrorCode::Internal, e.to_string())),
    };
    let answer = decide(&request, row, OffsetDateTime::now_utc());
    match serde_json::to_vec(&answer) {
        Ok(body) => json(StatusCode::OK, body),
        Err(e) => error(ErrorBody::new(ErrorCode::Internal, e.to_string())),
    }
}

/// The license rules the seed applied to the row it found.
fn decide(request: &VerifyRequest, row: Option<Row>, now: OffsetDateTime) -> VerifyResponse {
    let mut answer = VerifyResponse {
        valid: false,
        code: None,
        status: None,
        expires_at: None,
        features: Vec::new(),
        flags: Vec::new(),
        fingerprint: None,
        heartbeat_interval_secs: EdgeConfig::default().heartbeat_interval_secs,
        snapshot_sequence: 0,
    };
    let Some((status, valid_until, product_id, _device_limit, features)) = row else {
        answer.code = Some(ErrorCode::LicenseNotFound);
        return answer;
    };
    let status = LicenseStatus::try_from(status).unwrap_or(LicenseStatus::Suspended);
    answer.status = Some(status);
    answer.expires_at = valid_until.map(OffsetDateTime::unix_timestamp);
    answer.code = match status {
        LicenseStatus::Suspended => Some(ErrorCode::LicenseSuspended),
        LicenseStatus::Revoked => Some(ErrorCode::LicenseRevoked),
        LicenseStatus::Active if valid_until.is_some_and(|until| until <= now) => {
            Some(ErrorCode::LicenseExpired)
        }
        LicenseStatus::Active
            if request.product.as_deref().is_some_and(|slug| {
                slug != BENCH_PRODUCT_SLUG || product_id != BENCH_PRODUCT_ID as i32
            }) =>
        {
            Some(ErrorCode::ProductMismatch)
        }
        LicenseStatus::Active
            if request
                .feature
                .as_ref()
                .is_some_and(|feature| !features.contains(feature)) =>
        {
            Some(ErrorCode::FeatureNotAllowed)
        }
        LicenseStatus::Active => None,
    };
    answer.valid = answer.code.is_none();
    answer.features = features;
    answer
}

fn error(body: ErrorBody) -> Response<Full<Bytes>> {
    let status = StatusCode::from_u16(body.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    json(
        status,
        serde_json::to_vec(&body).unwrap_or_else(|_| b"{}".to_vec()),
    )
}

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(product: Option<&str>, feature: Option<&str>) -> VerifyRequest {
        VerifyRequest {
            license_key: String::new(),
            fingerprint: None,
            product: product.map(str::to_owned),
            app_version: None,
            feature: feature.map(str::to_owned),
        }
    }

    fn row(status: &str, valid_until: Option<OffsetDateTime>) -> Option<Row> {
        Some((
            status.to_owned(),
            valid_until,
            BENCH_PRODUCT_ID as i32,
            3,
            vec!["export".to_owned()],
        ))
    }

    #[test]
    fn the_seed_rules_decide_from_the_row() {
        let now = OffsetDateTime::now_utc();
        let later = Some(now + time::Duration::days(1));
        let code = |request: VerifyRequest, row| decide(&request, row, now).code;
        assert_eq!(
            code(request(Some("bench"), Some("export")), row("active", later)),
            None
        );
        assert_eq!(code(request(None, None), row("active", None)), None);
        assert_eq!(
            code(request(None, None), None),
            Some(ErrorCode::LicenseNotFound)
        );
        assert_eq!(
            code(request(None, None), row("active", Some(now))),
            Some(ErrorCode::LicenseExpired)
        );
        assert_eq!(
            code(request(None, None), row("suspended", later)),
            Some(ErrorCode::LicenseSuspended)
        );
        assert_eq!(
            code(request(Some("other"), None), row("active", later)),
            Some(ErrorCode::ProductMismatch)
        );
        assert_eq!(
            code(request(None, Some("teams")), row("active", later)),
            Some(ErrorCode::FeatureNotAllowed)
        );
        assert!(decide(&request(None, None), row("active", later), now).valid);
    }
}
