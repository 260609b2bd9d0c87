//! `POST /api/version/check` and `GET /api/version/latest`.

use axum::extract::{Query, State};
use latchkey_shared::api::{
    ErrorBody, ErrorCode, VersionCheckRequest, VersionCheckResponse, VersionLatestQuery,
    VersionLatestResponse,
};
use latchkey_shared::snapshot::{ChannelRelease, Product, SnapshotState};
use latchkey_shared::version;

use super::AppState;
use crate::client_ip::ClientIp;
use crate::error::EdgeError;
use crate::extract::Json;

const DEFAULT_CHANNEL: &str = "stable";

#[utoipa::path(post, path = "/api/version/check", tag = "versions", request_body = VersionCheckRequest,
    responses(
        (status = 200, description = "Whether this version may run and what is newer", body = VersionCheckResponse),
        (status = 400, description = "Malformed request, or not a version (INVALID_VERSION)", body = ErrorBody),
        (status = 404, description = "Unknown product (PRODUCT_NOT_FOUND)", body = ErrorBody),
        (status = 503, description = "No snapshot loaded yet (NOT_READY), or the edge's snapshot expired (SNAPSHOT_EXPIRED)", body = ErrorBody),
    ))]
pub async fn check(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(request): Json<VersionCheckRequest>,
) -> Result<axum::Json<VersionCheckResponse>, EdgeError> {
    let snapshot = app.snapshot()?;
    app.admit_ip(&snapshot, ip)?;
    let invalid_version = |e: version::VersionError| EdgeError {
        field: Some("version".into()),
        ..EdgeError::new(ErrorCode::InvalidVersion, e.to_string())
    };
    // Malformed is malformed, whichever product it names.
    let current = version::parse_version(&request.version).map_err(invalid_version)?;
    let channel = request.channel.as_deref().unwrap_or(DEFAULT_CHANNEL);
    let (product, _) = find(&snapshot, &request.product, channel)?;
    let answer = version::answer(product, &current, channel).map_err(invalid_version)?;
    Ok(axum::Json(answer))
}

#[utoipa::path(get, path = "/api/version/latest", tag = "versions",
    params(
        ("product" = String, Query, description = "Product slug", example = "studio"),
        ("channel" = Option<String>, Query, description = "Release channel (default stable)", example = "stable"),
    ),
    responses(
        (status = 200, description = "The latest release on the channel", body = VersionLatestResponse),
        (status = 400, description = "Malformed query: `product` missing or an unknown parameter (INVALID_REQUEST)", body = ErrorBody),
        (status = 404, description = "Unknown product (PRODUCT_NOT_FOUND) or no release on the channel (NOT_FOUND)", body = ErrorBody),
        (status = 503, description = "No snapshot loaded yet (NOT_READY), or the edge's snapshot expired (SNAPSHOT_EXPIRED)", body = ErrorBody),
    ))]
pub async fn latest(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    query: Result<Query<VersionLatestQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::Json<VersionLatestResponse>, EdgeError> {
    let Query(query) = query.map_err(|e| EdgeError::invalid("query", e.body_text()))?;
    let snapshot = app.snapshot()?;
    app.admit_ip(&snapshot, ip)?;
    let channel = query.channel.as_deref().unwrap_or(DEFAULT_CHANNEL);
    let (product, release) = find(&snapshot, &query.product, channel)?;
    let release = release.ok_or_else(|| {
        EdgeError::new(
            ErrorCode::NotFound,
            format!("{} has no published release on {channel}", product.slug),
        )
    })?;
    Ok(axum::Json(VersionLatestResponse {
        product: product.slug.clone(),
        channel: channel.to_owned(),
        version: release.version.clone(),
        download_url: release.download_url.clone(),
        published_at: release.published_at,
    }))
}

fn find<'a>(
    snapshot: &'a SnapshotState,
    slug: &str,
    channel: &str,
) -> Result<(&'a Product, Option<&'a ChannelRelease>), EdgeError> {
    let product = snapshot.product_by_slug(slug).ok_or_else(|| EdgeError {
        field: Some("product".into()),
        ..EdgeError::new(ErrorCode::ProductNotFound, format!("no product {slug:?}"))
    })?;
    Ok((
        product,
        product.channels.iter().find(|c| c.channel == channel),
    ))
}
