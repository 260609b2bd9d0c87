//! A JSON body extractor whose every rejection is an [`EdgeError`] with our
//! code: 415 for another content type, 413 past the body limit, 400 with the
//! JSON path of the offending field for anything that does not parse.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use latchkey_shared::api::ErrorCode;
use serde::de::DeserializeOwned;

use crate::error::EdgeError;

#[derive(Debug)]
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = EdgeError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        if !is_json {
            return Err(EdgeError::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as application/json",
            ));
        }
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection: BytesRejection| {
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        EdgeError::new(ErrorCode::PayloadTooLarge, "the request body is too large")
                    } else {
                        EdgeError::new(
                            ErrorCode::InvalidRequest,
                            "the request body could not be read",
                        )
                    }
                })?;
        parse(&bytes).map(Json)
    }
}

pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, EdgeError> {
    // The fast parse first; only a failed one is parsed again to find the field.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        EdgeError::invalid(field, error.inner().to_string())
    })
}
