//! `POST /api/license/session/heartbeat`: the token is checked offline with
//! the trusted keys, the machine sending it against the one the session was
//! started on (the token names its fingerprint hash), and its session
//! against the snapshot's revocations.

use axum::extract::State;
use latchkey_shared::api::{ErrorBody, ErrorCode, HeartbeatRequest, HeartbeatResponse};
use latchkey_shared::snapshot::LicenseStatus;
use latchkey_shared::token::{self, SessionClaims, TokenError};
use latchkey_shared::usage::UsageKind;

use super::AppState;
use crate::client_ip::ClientIp;
use crate::error::EdgeError;
use crate::extract::Json;
use crate::snapshots::unix_now;
use crate::usage;

#[utoipa::path(post, path = "/api/license/session/heartbeat", tag = "sessions", request_body = HeartbeatRequest,
    responses(
        (status = 200, description = "The session is alive; the next heartbeat is due in `next_heartbeat_secs`", body = HeartbeatResponse),
        (status = 400, description = "Malformed request", body = ErrorBody),
        (status = 401, description = "Not a valid session token (INVALID_TOKEN)", body = ErrorBody),
        (status = 403, description = "Session expired or revoked, sent from another machine than the one that started it (SESSION_DEVICE_MISMATCH), or the license suspended, revoked or expired", body = ErrorBody),
        (status = 404, description = "The session's license no longer exists (LICENSE_NOT_FOUND)", body = ErrorBody),
        (status = 503, description = "No snapshot loaded yet (NOT_READY), or the edge's snapshot expired (SNAPSHOT_EXPIRED)", body = ErrorBody),
    ))]
pub async fn heartbeat(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(request): Json<HeartbeatRequest>,
) -> Result<axum::Json<HeartbeatResponse>, EdgeError> {
    let snapshot = app.snapshot()?;
    app.admit_ip(&snapshot, ip)?;
    let now = unix_now();
    let claims: SessionClaims = token::verify(&request.session_token, app.snapshots.trusted(), now)
        .map_err(|error| match error {
            TokenError::Expired { .. } => {
                EdgeError::new(ErrorCode::SessionExpired, "the session token has expired")
            }
            other => EdgeError {
                field: Some("session_token".into()),
                ..EdgeError::new(ErrorCode::InvalidToken, other.to_string())
            },
        })?;
    app.admit_key(&snapshot, &claims.key_hash)?;
    let machine = request
        .fingerprint
        .canonicalize()
        .map_err(|e| EdgeError::invalid(e.field, e.reason))?;
    if machine.hash() != claims.fingerprint {
        return Err(EdgeError {
            field: Some("fingerprint".into()),
            ..EdgeError::new(
                ErrorCode::SessionDeviceMismatch,
                "this session was started on another machine",
            )
        });
    }
    if snapshot.is_session_revoked(&claims.session_id) {
        return Err(EdgeError::new(
            ErrorCode::SessionRevoked,
            "the session has ended",
        ));
    }
    let license = snapshot.license(&claims.key_hash).ok_or_else(|| {
        EdgeError::new(
            ErrorCode::LicenseNotFound,
            "the session's license no longer exists",
        )
    })?;
    match license.status() {
        LicenseStatus::Suspended => {
            return Err(EdgeError::new(
                ErrorCode::LicenseSuspended,
                "the license is suspended",
            ));
        }
        LicenseStatus::Revoked => {
            return Err(EdgeError::new(
                ErrorCode::LicenseRevoked,
                "the license is revoked",
            ));
        }
        LicenseStatus::Active => {}
    }
    if license.valid_until().is_some_and(|until| until <= now) {
        return Err(EdgeError::new(
            ErrorCode::LicenseExpired,
            "the license has expired",
        ));
    }
    if let Some(usage) = &app.usage {
        usage.record(usage::now(
            UsageKind::Heartbeat,
            claims.license_id,
            Some(claims.session_id),
        ));
    }
    Ok(axum::Json(HeartbeatResponse {
        session_id: claims.session_id,
        next_heartbeat_secs: snapshot
            .product(license.product_id())
            .map_or(snapshot.config().heartbeat_interval_secs, |p| {
                p.heartbeat_interval_secs(snapshot.config())
            }),
        expires_at: claims.expires_at,
    }))
}
