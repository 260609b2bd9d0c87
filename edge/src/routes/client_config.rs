//! `POST /api/license/config`: the client configuration of a license's
//! product, as the snapshot carries it.

use axum::extract::State;
use latchkey_shared::api::{ClientConfigRequest, ClientConfigResponse, ErrorBody, ErrorCode};

use super::AppState;
use super::verify::key_hash;
use crate::client_ip::ClientIp;
use crate::error::EdgeError;
use crate::extract::Json;

/// Answered for any license the snapshot holds, whatever its state, as
/// `info` is: a suspended client still needs to know how often to ask again.
#[utoipa::path(post, path = "/api/license/config", tag = "licenses", request_body = ClientConfigRequest,
    responses(
        (status = 200, description = "The license's product's client configuration", body = ClientConfigResponse),
        (status = 400, description = "Malformed request: INVALID_REQUEST or INVALID_LICENSE_KEY, with the field", body = ErrorBody),
        (status = 404, description = "No such license (LICENSE_NOT_FOUND), or its product is not in the snapshot (PRODUCT_NOT_FOUND)", body = ErrorBody),
        (status = 503, description = "No snapshot loaded yet (NOT_READY), or the edge's snapshot expired (SNAPSHOT_EXPIRED)", body = ErrorBody),
    ))]
pub async fn config(
    State(app): State<AppState>,
    ClientIp(ip): ClientIp,
    Json(request): Json<ClientConfigRequest>,
) -> Result<axum::Json<ClientConfigResponse>, EdgeError> {
    let snapshot = app.snapshot()?;
    app.admit_ip(&snapshot, ip)?;
    let hash = key_hash(Some(&snapshot), &request.license_key)?;
    app.admit_key(&snapshot, &hash)?;
    let license = snapshot
        .license(&hash)
        .ok_or_else(|| EdgeError::new(ErrorCode::LicenseNotFound, "no such license"))?;
    let product = snapshot.product(license.product_id()).ok_or_else(|| {
        EdgeError::new(
            ErrorCode::ProductNotFound,
            "the license's product is not in the snapshot",
        )
    })?;
    // Control writes the text from a JSON object (`db::products`), so only a
    // snapshot of another writer could fail here.
    let settings = serde_json::from_str(&product.client.settings_json).map_err(|e| {
        EdgeError::new(
            ErrorCode::Internal,
            format!("the product's settings are not a JSON object: {e}"),
        )
    })?;
    Ok(axum::Json(ClientConfigResponse {
        product: product.slug.clone(),
        heartbeat_interval_secs: product.heartbeat_interval_secs(snapshot.config()),
        grace_period_secs: product
            .grace_period_secs(license.grace_period_secs(), snapshot.config()),
        features: product.client.features.clone(),
        settings,
        snapshot_sequence: snapshot.sequence(),
    }))
}
