//! `POST /api/license/verify` and `GET /api/license/info/{license_key}`.

use std::net::IpAddr;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use latchkey_shared::api::{ErrorBody, ErrorCode, LicenseInfo, VerifyRequest, VerifyResponse};
use latchkey_shared::snapshot::{LicenseStatus, LicenseView, SnapshotState, flags_on};
use latchkey_shared::{KeyHash, LegacyKey, LicenseKey, MatchVerdict, version};

use super::AppState;
use crate::client_ip::ClientIp;
use crate::error::EdgeError;
use crate::extract::Json;
use crate::snapshots::unix_now;

#[utoipa::path(post, path = "/api/license/verify", tag = "licenses", request_body = VerifyRequest,
    responses(
        (status = 200, description = "The verdict; `valid: false` carries the reason code", body = VerifyResponse),
        (status = 400, description = "Malformed request: INVALID_REQUEST, INVALID_LICENSE_KEY or INVALID_VERSION, with the field", body = ErrorBody),
        (status = 503, description = "No snapshot loaded yet (NOT_READY), or the edge's snapshot expired (SNAPSHOT_EXPIRED)", body = ErrorBody),
    ))]
pub async fn verify(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(request): Json<VerifyRequest>,
) -> Result<axum::Json<VerifyResponse>, EdgeError> {
    answer(&app, ip, &request).map(axum::Json)
}

/// The verify answer to `request` from `ip`: the route above's, and the
/// server's, which answers this endpoint without the router (`server.rs`).
pub fn answer(
    app: &AppState,
    ip: IpAddr,
    request: &VerifyRequest,
) -> Result<VerifyResponse, EdgeError> {
    let snapshot = app.snapshot()?;
    app.admit_ip(&snapshot, ip)?;
    let hash = key_hash(Some(&snapshot), &request.license_key)?;
    app.admit_key(&snapshot, &hash)?;
    let license = snapshot.license(&hash);
    let now = unix_now();
    let answer = decide(&snapshot, license, request, now)?;
    if let (Some(usage), Some(license)) = (&app.usage, license) {
        usage.verified(license.license_id(), now);
    }
    Ok(answer)
}

#[utoipa::path(get, path = "/api/license/info/{license_key}", tag = "licenses",
    params(("license_key" = LicenseKey, Path, description = "The license key")),
    responses(
        (status = 200, description = "What the client may see of its license", body = LicenseInfo),
        (status = 400, description = "Not a license key (INVALID_LICENSE_KEY)", body = ErrorBody),
        (status = 404, description = "No such license (LICENSE_NOT_FOUND)", body = ErrorBody),
        (status = 503, description = "No snapshot loaded yet (NOT_READY), or the edge's snapshot expired (SNAPSHOT_EXPIRED)", body = ErrorBody),
    ))]
pub async fn info(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    license_key: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<LicenseInfo>, EdgeError> {
    // A segment that is not UTF-8 once decoded gets our 400, not axum's text.
    let Path(license_key) =
        license_key.map_err(|e| EdgeError::invalid("license_key", e.body_text()))?;
    let snapshot = app.snapshot()?;
    app.admit_ip(&snapshot, ip)?;
    let hash = key_hash(Some(&snapshot), &license_key)?;
    app.admit_key(&snapshot, &hash)?;
    let license = snapshot
        .license(&hash)
        .ok_or_else(|| EdgeError::new(ErrorCode::LicenseNotFound, "no such license"))?;
    let now = unix_now();
    Ok(axum::Json(LicenseInfo {
        status: license.status(),
        kind: license.kind(),
        product: snapshot
            .product(license.product_id())
            .map(|p| p.slug.clone()),
        valid_from: license.valid_from(),
        valid_until: license.valid_until(),
        expired: license.valid_until().is_some_and(|until| until <= now),
        features: license.features(),
        device_limit: license.device_limit(),
        devices_used: license.devices().len() as u32,
        session_limit: license.session_limit(),
        snapshot_sequence: snapshot.sequence(),
    }))
}

/// The hash a client's key is found by: ours, else a legacy key (imported
/// from another licensing system) that `snapshot` holds. A text that is
/// neither gets our format's error, so a mistyped key of ours is named as
/// such rather than passing as some unknown legacy key. Without a snapshot
/// (a forwarded call before the first one loaded) a legacy key is let
/// through for control to decide.
pub fn key_hash(snapshot: Option<&SnapshotState>, text: &str) -> Result<KeyHash, EdgeError> {
    let ours = match text.parse::<LicenseKey>() {
        Ok(key) => return Ok(key.hash()),
        Err(error) => error,
    };
    if let Ok(legacy) = LegacyKey::parse(text) {
        let hash = legacy.hash();
        if snapshot.is_none_or(|snapshot| snapshot.license(&hash).is_some()) {
            return Ok(hash);
        }
    }
    Err(EdgeError {
        field: Some("license_key".into()),
        ..EdgeError::new(ErrorCode::InvalidLicenseKey, ours.to_string())
    })
}

/// The verdict on a well-formed request: `valid: false` with the code for
/// every license-state reason; `Err` only for malformed input, whatever
/// the license (the request is checked whole before any verdict).
/// `license` is the request key's license in `snapshot`, looked up once by
/// the caller (which counts the verification against it too).
pub fn decide(
    snapshot: &SnapshotState,
    license: Option<LicenseView<'_>>,
    request: &VerifyRequest,
    now: i64,
) -> Result<VerifyResponse, EdgeError> {
    let fingerprint = request
        .fingerprint
        .as_ref()
        .map(|f| f.canonicalize())
        .transpose()
        .map_err(|e| EdgeError::invalid(e.field, e.reason))?;
    let invalid_version = |e: version::VersionError| EdgeError {
        field: Some("app_version".into()),
        ..EdgeError::new(ErrorCode::InvalidVersion, e.to_string())
    };
    let app_version = request
        .app_version
        .as_deref()
        .map(version::parse_version)
        .transpose()
        .map_err(invalid_version)?;
    let mut answer = VerifyResponse {
        valid: false,
        code: None,
        status: None,
        expires_at: None,
        features: Vec::new(),
        flags: Vec::new(),
        fingerprint: None,
        heartbeat_interval_secs: snapshot.config().heartbeat_interval_secs,
        snapshot_sequence: snapshot.sequence(),
    };
    let refuse = |mut answer: VerifyResponse, code| {
        answer.code = Some(code);
        Ok(answer)
    };
    let Some(license) = license else {
        return refuse(answer, ErrorCode::LicenseNotFound);
    };
    let product = snapshot.product(license.product_id());
    if let Some(product) = product {
        answer.heartbeat_interval_secs = product.heartbeat_interval_secs(snapshot.config());
    }
    answer.status = Some(license.status());
    answer.expires_at = license.valid_until();
    match license.status() {
        LicenseStatus::Suspended => return refuse(answer, ErrorCode::LicenseSuspended),
        LicenseStatus::Revoked => return refuse(answer, ErrorCode::LicenseRevoked),
        LicenseStatus::Active => {}
    }
    if now < license.valid_from() {
        return refuse(answer, ErrorCode::LicenseNotYetValid);
    }
    if license.valid_until().is_some_and(|until| until <= now) {
        return refuse(answer, ErrorCode::LicenseExpired);
    }
    if let Some(slug) = &request.product
        && product.is_none_or(|p| &p.slug != slug)
    {
        return refuse(answer, ErrorCode::ProductMismatch);
    }
    if let Some(canonical) = &fingerprint {
        let verdict = license.match_device(canonical);
        let matched = verdict != MatchVerdict::Different;
        answer.fingerprint = Some(verdict);
        if !matched {
            return refuse(answer, ErrorCode::FingerprintMismatch);
        }
    }
    if let Some(app_version) = &app_version
        && let Some(minimum) = snapshot.min_allowed_version(license.product_id())
    {
        // Control writes a release's version there: only a snapshot of
        // another writer could fail, and that is not the client's error.
        let minimum = minimum.map_err(|e| {
            EdgeError::new(
                ErrorCode::Internal,
                format!("the product's minimum version in the snapshot: {e}"),
            )
        })?;
        if app_version < minimum {
            return refuse(answer, ErrorCode::VersionNotAllowed);
        }
    }
    if license.usage_exhausted() {
        return refuse(answer, ErrorCode::UsageLimitReached);
    }
    if let Some(feature) = &request.feature
        && !license.has_feature(feature)
    {
        return refuse(answer, ErrorCode::FeatureNotAllowed);
    }
    answer.valid = true;
    answer.features = license.features();
    answer.flags = flags_on(snapshot.flags(), license.product_id(), &license.key_hash());
    Ok(answer)
}
