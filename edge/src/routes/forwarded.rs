//! The state-changing calls. Control decides them in one transaction; until
//! the link to control carries them, the edge validates the request (so a
//! client learns of a malformed one at once) and answers `503
//! CONTROL_UNAVAILABLE`, which clients retry with backoff.

use latchkey_shared::api::{
    ActivateRequest, ActivateResponse, DeactivateRequest, DeactivateResponse, ErrorBody, ErrorCode,
    LeaseRequest, LeaseResponse, SessionEndRequest, SessionEndResponse, SessionStartRequest,
    SessionStartResponse, TransferRequest,
};
use latchkey_shared::fingerprint::Fingerprint;

use super::verify::parse_key;
use crate::error::EdgeError;
use crate::extract::Json;

fn unavailable() -> EdgeError {
    EdgeError::new(
        ErrorCode::ControlUnavailable,
        "control cannot be reached from this edge; retry later",
    )
}

fn check(license_key: &str, fingerprint: &Fingerprint) -> Result<(), EdgeError> {
    parse_key(license_key)?;
    fingerprint
        .canonicalize()
        .map_err(|e| EdgeError::invalid(e.field, e.reason))?;
    Ok(())
}

#[utoipa::path(post, path = "/api/license/activate", tag = "licenses", request_body = ActivateRequest,
    responses((status = 200, description = "Decided by control", body = ActivateResponse), (status = 400, body = ErrorBody),
              (status = 503, description = "Control cannot be reached; retry with backoff", body = ErrorBody)))]
pub async fn activate(Json(request): Json<ActivateRequest>) -> EdgeError {
    check(&request.license_key, &request.fingerprint)
        .err()
        .unwrap_or_else(unavailable)
}

#[utoipa::path(post, path = "/api/license/deactivate", tag = "licenses", request_body = DeactivateRequest,
    responses((status = 200, description = "Decided by control", body = DeactivateResponse), (status = 400, body = ErrorBody),
              (status = 503, description = "Control cannot be reached; retry with backoff", body = ErrorBody)))]
pub async fn deactivate(Json(request): Json<DeactivateRequest>) -> EdgeError {
    check(&request.license_key, &request.fingerprint)
        .err()
        .unwrap_or_else(unavailable)
}

#[utoipa::path(post, path = "/api/license/transfer", tag = "licenses", request_body = TransferRequest,
    responses((status = 200, description = "Decided by control", body = ActivateResponse), (status = 400, body = ErrorBody),
              (status = 503, description = "Control cannot be reached; retry with backoff", body = ErrorBody)))]
pub async fn transfer(Json(request): Json<TransferRequest>) -> EdgeError {
    check(&request.license_key, &request.fingerprint)
        .err()
        .unwrap_or_else(unavailable)
}

#[utoipa::path(post, path = "/api/license/lease", tag = "licenses", request_body = LeaseRequest,
    responses((status = 200, description = "Decided by control", body = LeaseResponse), (status = 400, body = ErrorBody),
              (status = 503, description = "Control cannot be reached; retry with backoff", body = ErrorBody)))]
pub async fn lease(Json(request): Json<LeaseRequest>) -> EdgeError {
    check(&request.license_key, &request.fingerprint)
        .err()
        .unwrap_or_else(unavailable)
}

#[utoipa::path(post, path = "/api/license/session/start", tag = "sessions", request_body = SessionStartRequest,
    responses((status = 200, description = "Decided by control", body = SessionStartResponse), (status = 400, body = ErrorBody),
              (status = 503, description = "Control cannot be reached; retry with backoff", body = ErrorBody)))]
pub async fn session_start(Json(request): Json<SessionStartRequest>) -> EdgeError {
    check(&request.license_key, &request.fingerprint)
        .err()
        .unwrap_or_else(unavailable)
}

#[utoipa::path(post, path = "/api/license/session/end", tag = "sessions", request_body = SessionEndRequest,
    responses((status = 200, description = "Decided by control", body = SessionEndResponse), (status = 400, body = ErrorBody),
              (status = 503, description = "Control cannot be reached; retry with backoff", body = ErrorBody)))]
pub async fn session_end(Json(request): Json<SessionEndRequest>) -> EdgeError {
    if request.session_token.is_empty()
        || request.session_token.len() > latchkey_shared::token::MAX_TOKEN_LEN
    {
        return EdgeError::invalid("session_token", "expected a session token");
    }
    unavailable()
}
