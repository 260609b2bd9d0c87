//! The one place an error becomes an HTTP answer.
//!
//! Client errors (4xx) answer an [`ErrorBody`] with the stable code, a
//! message and the offending field. A domain refusal becomes its body through
//! [`DomainError::to_body`], the mapping the panel and the link use too (it
//! logs a server-side cause once); errors made here with a cause log it when
//! answered.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_shared::api::{ErrorBody, ErrorCode};

use crate::error::{DomainError, INTERNAL_MESSAGE};

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError {
    code: ErrorCode,
    message: String,
    field: Option<String>,
    /// What went wrong inside, for the log only.
    cause: Option<String>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            cause: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message).with_field(field)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn internal(cause: impl Into<String>) -> Self {
        Self {
            cause: Some(cause.into()),
            ..Self::new(ErrorCode::Internal, "internal error")
        }
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }
}

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> Self {
        Self::from(error.to_body())
    }
}

impl From<ErrorBody> for ApiError {
    fn from(body: ErrorBody) -> Self {
        Self {
            code: body.code,
            message: body.message,
            field: body.field,
            cause: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = if status.is_server_error() {
            if let Some(cause) = &self.cause {
                tracing::error!(code = %self.code, error = %cause, "request failed");
            }
            let message = match self.code {
                ErrorCode::Internal => INTERNAL_MESSAGE,
                _ => "service unavailable: retry later",
            };
            ErrorBody::new(self.code, message)
        } else {
            let mut body = ErrorBody::new(self.code, self.message);
            body.field = self.field;
            body
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"latchkey-admin\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> ErrorBody {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn client_errors_keep_their_code_message_and_field() {
        let response = ApiError::from(DomainError::invalid("email", "bad shape")).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = body_of(response).await;
        assert_eq!(body.code, ErrorCode::InvalidRequest);
        assert_eq!(body.field.as_deref(), Some("email"));
        assert_eq!(body.message, "bad shape");
        assert!(!body.retryable);
    }

    #[tokio::test]
    async fn server_errors_hide_their_cause() {
        let response =
            ApiError::from(DomainError::Internal("secret detail".into())).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = body_of(response).await;
        assert_eq!(body.code, ErrorCode::Internal);
        assert!(!body.message.contains("secret detail"));
        assert!(body.retryable);
    }

    #[tokio::test]
    async fn unauthorized_names_the_scheme() {
        let response = ApiError::unauthorized("no").into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(response.headers().contains_key(header::WWW_AUTHENTICATE));
    }
}
