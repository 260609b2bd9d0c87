//! The control plane's domain error: what a service refuses, and why.
//!
//! Every variant maps to one public [`ErrorCode`]; the HTTP layer turns it
//! into a response in one place. Database failures are not the caller's
//! fault: they surface as `Internal`, and the cause is logged once there.

use latchkey_shared::api::ErrorCode;

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Input that breaks a rule; `field` is the JSON path.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{entity} not found")]
    NotFound { entity: &'static str },
    /// A unique value already taken, or a state that does not allow the change.
    #[error("{message}")]
    Conflict {
        field: Option<String>,
        message: String,
    },
    /// A license rule refused the request (expired, device limit, …).
    #[error("{message}")]
    Refused { code: ErrorCode, message: String },
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type DomainResult<T> = Result<T, DomainError>;

impl DomainError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn refused(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::Refused {
            code,
            message: message.into(),
        }
    }

    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Conflict {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Invalid { .. } => ErrorCode::InvalidRequest,
            Self::NotFound { entity } => match *entity {
                "license" => ErrorCode::LicenseNotFound,
                "device" => ErrorCode::DeviceNotFound,
                "session" => ErrorCode::SessionNotFound,
                "product" => ErrorCode::ProductNotFound,
                _ => ErrorCode::NotFound,
            },
            Self::Conflict { .. } => ErrorCode::Conflict,
            Self::Refused { code, .. } => *code,
            Self::Database(_) | Self::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::Conflict { field, .. } => field.as_deref(),
            _ => None,
        }
    }
}

/// Turns unique-constraint violations into a [`DomainError::Conflict`]
/// naming the field, instead of a 500.
pub trait OnConstraint<T> {
    fn on_unique(self, constraint: &str, field: &str, message: &str) -> DomainResult<T>;
}

impl<T> OnConstraint<T> for Result<T, sqlx::Error> {
    fn on_unique(self, constraint: &str, field: &str, message: &str) -> DomainResult<T> {
        self.map_err(|error| match &error {
            sqlx::Error::Database(db) if db.constraint() == Some(constraint) => {
                DomainError::conflict(field, message)
            }
            _ => DomainError::Database(error),
        })
    }
}
