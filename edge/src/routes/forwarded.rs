//! The state-changing calls. Control decides them in one transaction; until
//! the link to control carries them, the edge validates the request (so a
//! client learns of a malformed one at once) and answers `503
//! CONTROL_UNAVAILABLE`, which clients retry with backoff.

use latchkey_shared::api::{
    ActivateRequest, DeactivateRequest, ErrorCode, LeaseRequest, SessionEndRequest,
    SessionStartRequest, TransferRequest,
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

pub async fn activate(Json(request): Json<ActivateRequest>) -> EdgeError {
    check(&request.license_key, &request.fingerprint)
        .err()
        .unwrap_or_else(unavailable)
}

pub async fn deactivate(Json(request): Json<DeactivateRequest>) -> EdgeError {
    check(&request.license_key, &request.fingerprint)
        .err()
        .unwrap_or_else(unavailable)
}

pub async fn transfer(Json(request): Json<TransferRequest>) -> EdgeError {
    check(&request.license_key, &request.fingerprint)
        .err()
        .unwrap_or_else(unavailable)
}

pub async fn lease(Json(request): Json<LeaseRequest>) -> EdgeError {
    check(&request.license_key, &request.fingerprint)
        .err()
        .unwrap_or_else(unavailable)
}

pub async fn session_start(Json(request): Json<SessionStartRequest>) -> EdgeError {
    check(&request.license_key, &request.fingerprint)
        .err()
        .unwrap_or_else(unavailable)
}

pub async fn session_end(Json(request): Json<SessionEndRequest>) -> EdgeError {
    if request.session_token.is_empty()
        || request.session_token.len() > latchkey_shared::token::MAX_TOKEN_LEN
    {
        return EdgeError::invalid("session_token", "expected a session token");
    }
    unavailable()
}
