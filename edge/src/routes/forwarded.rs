//! The state-changing calls. Control decides them in one transaction: the
//! edge validates the request (a client learns of a malformed one at once),
//! applies its rate limits, forwards the call over the link and relays
//! control's answer. No link, or no answer in time: `503
//! CONTROL_UNAVAILABLE`, which clients retry with backoff (an activation
//! retried with its idempotency key takes one seat, however often it comes).

use axum::extract::State;
use latchkey_shared::KeyHash;
use latchkey_shared::api::{
    ActivateRequest, ActivateResponse, DeactivateRequest, DeactivateResponse, ErrorBody, ErrorCode,
    LeaseRequest, LeaseResponse, SessionEndRequest, SessionEndResponse, SessionStartRequest,
    SessionStartResponse, TransferRequest,
};
use latchkey_shared::fingerprint::Fingerprint;
use latchkey_shared::link::{Call, Reply};
use latchkey_shared::token::{self, SessionClaims};
use latchkey_shared::usage::{UsageKind, UsageRecord};
use uuid::Uuid;

use super::AppState;
use super::verify::key_hash;
use crate::client_ip::ClientIp;
use crate::error::EdgeError;
use crate::extract::Json;
use crate::snapshots::unix_now;
use crate::usage;

/// What control's end of a forwarded call may answer besides its verdict.
/// This and [`Malformed`] exist for the OpenAPI document only.
#[allow(dead_code, reason = "read by the IntoResponses derive, never built")]
#[derive(Debug, utoipa::IntoResponses)]
pub enum ControlErrors {
    /// Control failed to decide (INTERNAL)
    #[response(status = 500)]
    Internal(ErrorBody),
    /// Control cannot be reached (CONTROL_UNAVAILABLE); retry with backoff
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// A forwarded call's input, refused here before control is asked.
#[allow(dead_code, reason = "read by the IntoResponses derive, never built")]
#[derive(Debug, utoipa::IntoResponses)]
pub enum Malformed {
    /// Malformed request: INVALID_REQUEST or INVALID_LICENSE_KEY, with the field
    #[response(status = 400)]
    Malformed(ErrorBody),
}

fn unavailable(why: impl std::fmt::Display) -> EdgeError {
    EdgeError::new(
        ErrorCode::ControlUnavailable,
        format!("control cannot be reached from this edge ({why}); retry later"),
    )
}

/// The license key and fingerprint checks, then the rate limits.
fn admit(
    app: &AppState,
    ip: std::net::IpAddr,
    license_key: &str,
    fingerprint: &Fingerprint,
) -> Result<KeyHash, EdgeError> {
    let snapshot = app.snapshots.current();
    let key = key_hash(snapshot.as_deref(), license_key)?;
    fingerprint
        .canonicalize()
        .map_err(|e| EdgeError::invalid(e.field, e.reason))?;
    if let Some(snapshot) = snapshot {
        app.admit_ip(&snapshot, ip)?;
        app.admit_key(&snapshot, &key)?;
    }
    Ok(key)
}

/// An activation for another product than the license's is refused here,
/// as verify refuses it: the snapshot knows the license's product.
fn check_product(app: &AppState, key: &KeyHash, product: Option<&str>) -> Result<(), EdgeError> {
    let (Some(slug), Some(snapshot)) = (product, app.snapshots.current()) else {
        return Ok(());
    };
    let Some(license) = snapshot.license(key) else {
        return Ok(());
    };
    if snapshot
        .product(license.product_id())
        .is_some_and(|p| p.slug == slug)
    {
        return Ok(());
    }
    Err(EdgeError {
        field: Some("product".into()),
        ..EdgeError::new(
            ErrorCode::ProductMismatch,
            "this license is for another product",
        )
    })
}

/// Counts an event control decided in the usage stream (the license found
/// through the edge's snapshot).
fn record(
    app: &AppState,
    kind: UsageKind,
    key: &KeyHash,
    device_id: Option<Uuid>,
    session_id: Option<Uuid>,
) {
    let (Some(usage), Some(snapshot)) = (&app.usage, app.snapshots.current()) else {
        return;
    };
    if let Some(license) = snapshot.license(key) {
        usage.record(UsageRecord {
            device_id,
            ..usage::now(kind, license.license_id(), session_id)
        });
    }
}

/// Forwards the call and hands back control's answer of the kind the call
/// expects; a refusal is relayed with its code.
async fn forward<T: TryFrom<Reply, Error = Reply>>(
    app: &AppState,
    call: Call,
) -> Result<axum::Json<T>, EdgeError> {
    let link = app
        .link
        .as_ref()
        .ok_or_else(|| unavailable("this edge has no link configured"))?;
    let reply = link.call(&call).await.map_err(unavailable)?;
    match T::try_from(reply) {
        Ok(answer) => Ok(axum::Json(answer)),
        Err(Reply::Refused(body)) => Err(EdgeError::from(body)),
        Err(other) => {
            tracing::error!(reply = ?other, "control answered a call with another kind of reply");
            Err(EdgeError::new(
                ErrorCode::Internal,
                "unexpected answer from control",
            ))
        }
    }
}

#[utoipa::path(post, path = "/api/license/activate", tag = "licenses", request_body = ActivateRequest,
    responses(
        (status = 200, description = "Decided by control", body = ActivateResponse),
        Malformed,
        (status = 403, description = "Refused by a license rule (PRODUCT_MISMATCH here; license state, DEVICE_LIMIT_REACHED, … from control)", body = ErrorBody),
        (status = 404, description = "No such license (LICENSE_NOT_FOUND)", body = ErrorBody),
        (status = 409, description = "A concurrent change to the same seat (CONFLICT)", body = ErrorBody),
        ControlErrors,
    ))]
pub async fn activate(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(request): Json<ActivateRequest>,
) -> Result<axum::Json<ActivateResponse>, EdgeError> {
    let key = admit(&app, ip, &request.license_key, &request.fingerprint)?;
    check_product(&app, &key, request.product.as_deref())?;
    let call = Call::Activate {
        request,
        client_ip: Some(ip),
    };
    let answer: axum::Json<ActivateResponse> = forward(&app, call).await?;
    record(
        &app,
        UsageKind::Activation,
        &key,
        Some(answer.device_id),
        None,
    );
    Ok(answer)
}

#[utoipa::path(post, path = "/api/license/deactivate", tag = "licenses", request_body = DeactivateRequest,
    responses(
        (status = 200, description = "Decided by control", body = DeactivateResponse),
        Malformed,
        (status = 403, description = "Refused by a license rule (license suspended, revoked, expired or not yet valid; FINGERPRINT_MISMATCH, DEVICE_LIMIT_REACHED, …)", body = ErrorBody),
        (status = 404, description = "No such license (LICENSE_NOT_FOUND) or no seat for this machine (DEVICE_NOT_FOUND)", body = ErrorBody),
        ControlErrors,
    ))]
pub async fn deactivate(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(request): Json<DeactivateRequest>,
) -> Result<axum::Json<DeactivateResponse>, EdgeError> {
    admit(&app, ip, &request.license_key, &request.fingerprint)?;
    forward(&app, Call::Deactivate { request }).await
}

#[utoipa::path(post, path = "/api/license/transfer", tag = "licenses", request_body = TransferRequest,
    responses(
        (status = 200, description = "Decided by control", body = ActivateResponse),
        Malformed,
        (status = 403, description = "Refused by a license rule (license suspended, revoked, expired or not yet valid; FINGERPRINT_MISMATCH, DEVICE_LIMIT_REACHED, …)", body = ErrorBody),
        (status = 404, description = "No such license (LICENSE_NOT_FOUND) or device (DEVICE_NOT_FOUND)", body = ErrorBody),
        (status = 409, description = "A concurrent change to the same seat (CONFLICT)", body = ErrorBody),
        ControlErrors,
    ))]
pub async fn transfer(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(request): Json<TransferRequest>,
) -> Result<axum::Json<ActivateResponse>, EdgeError> {
    admit(&app, ip, &request.license_key, &request.fingerprint)?;
    let call = Call::Transfer {
        request,
        client_ip: Some(ip),
    };
    forward(&app, call).await
}

#[utoipa::path(post, path = "/api/license/lease", tag = "licenses", request_body = LeaseRequest,
    responses(
        (status = 200, description = "Decided by control", body = LeaseResponse),
        Malformed,
        (status = 403, description = "Refused by a license rule (license suspended, revoked, expired or not yet valid; FINGERPRINT_MISMATCH, DEVICE_LIMIT_REACHED, …)", body = ErrorBody),
        (status = 404, description = "No such license (LICENSE_NOT_FOUND) or no seat for this machine (DEVICE_NOT_FOUND)", body = ErrorBody),
        ControlErrors,
    ))]
pub async fn lease(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(request): Json<LeaseRequest>,
) -> Result<axum::Json<LeaseResponse>, EdgeError> {
    admit(&app, ip, &request.license_key, &request.fingerprint)?;
    forward(&app, Call::Lease { request }).await
}

#[utoipa::path(post, path = "/api/license/session/start", tag = "sessions", request_body = SessionStartRequest,
    responses(
        (status = 200, description = "Decided by control", body = SessionStartResponse),
        Malformed,
        (status = 403, description = "Refused by a license rule (license suspended, revoked, expired or not yet valid; FINGERPRINT_MISMATCH, …)", body = ErrorBody),
        (status = 404, description = "No such license (LICENSE_NOT_FOUND)", body = ErrorBody),
        (status = 409, description = "The session limit is reached and takeover was not asked for or is not allowed (SESSION_ACTIVE_ELSEWHERE)", body = ErrorBody),
        ControlErrors,
    ))]
pub async fn session_start(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(request): Json<SessionStartRequest>,
) -> Result<axum::Json<SessionStartResponse>, EdgeError> {
    let key = admit(&app, ip, &request.license_key, &request.fingerprint)?;
    let call = Call::SessionStart {
        request,
        client_ip: Some(ip),
    };
    let answer: axum::Json<SessionStartResponse> = forward(&app, call).await?;
    record(
        &app,
        UsageKind::SessionStart,
        &key,
        None,
        Some(answer.session_id),
    );
    Ok(answer)
}

#[utoipa::path(post, path = "/api/license/session/end", tag = "sessions", request_body = SessionEndRequest,
    responses(
        (status = 200, description = "Decided by control", body = SessionEndResponse),
        (status = 400, description = "Malformed request, or no session token", body = ErrorBody),
        (status = 401, description = "Not a valid session token (INVALID_TOKEN)", body = ErrorBody),
        (status = 403, description = "The session token has expired (SESSION_EXPIRED)", body = ErrorBody),
        (status = 404, description = "No such session (SESSION_NOT_FOUND)", body = ErrorBody),
        ControlErrors,
    ))]
pub async fn session_end(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(request): Json<SessionEndRequest>,
) -> Result<axum::Json<SessionEndResponse>, EdgeError> {
    if request.session_token.is_empty() || request.session_token.len() > token::MAX_TOKEN_LEN {
        return Err(EdgeError::invalid(
            "session_token",
            "expected a session token",
        ));
    }
    if let Some(snapshot) = app.snapshots.current() {
        app.admit_ip(&snapshot, ip)?;
    }
    let claims: Option<SessionClaims> =
        token::verify(&request.session_token, app.snapshots.trusted(), unix_now()).ok();
    let answer = forward(&app, Call::SessionEnd { request }).await?;
    if let (Some(usage), Some(claims)) = (&app.usage, claims) {
        usage.record(usage::now(
            UsageKind::SessionEnd,
            claims.license_id,
            Some(claims.session_id),
        ));
    }
    Ok(answer)
}
