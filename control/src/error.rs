//! The control plane's domain error: what a service refuses, and why.
//!
//! Every variant maps to one public [`ErrorCode`], and [`DomainError::to_body`]
//! is the one place a refusal becomes what a client sees: the admin API, the
//! panel and the edge link all answer through it. Database failures are not
//! the caller's fault: they surface as `Internal`, and their cause chain is
//! logged there, once.

use latchkey_shared::api::{ErrorBody, ErrorCode};

/// What a lookup did not find. Its error code is chosen here by the type,
/// so a new entity cannot silently fall back to a generic code by a typo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Admin,
    ApiKey,
    Backup,
    Block,
    Customer,
    Device,
    Edge,
    Flag,
    LeadContact,
    LeadDetail,
    LeadInstitution,
    LeadNote,
    License,
    Product,
    Release,
    Resource,
    Session,
}

impl Entity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::ApiKey => "api key",
            Self::Backup => "backup",
            Self::Block => "block",
            Self::Customer => "customer",
            Self::Device => "device",
            Self::Edge => "edge",
            Self::Flag => "flag",
            Self::LeadContact => "contact",
            Self::LeadDetail => "contact detail",
            Self::LeadInstitution => "institution",
            Self::LeadNote => "note",
            Self::License => "license",
            Self::Product => "product",
            Self::Release => "release",
            Self::Resource => "resource",
            Self::Session => "session",
        }
    }

    /// The code a client sees; the client API has its own codes for the
    /// entities an application names.
    pub fn not_found_code(self) -> ErrorCode {
        match self {
            Self::License => ErrorCode::LicenseNotFound,
            Self::Device => ErrorCode::DeviceNotFound,
            Self::Session => ErrorCode::SessionNotFound,
            Self::Product => ErrorCode::ProductNotFound,
            Self::Admin
            | Self::ApiKey
            | Self::Backup
            | Self::Block
            | Self::Customer
            | Self::Edge
            | Self::Flag
            | Self::LeadContact
            | Self::LeadDetail
            | Self::LeadInstitution
            | Self::LeadNote
            | Self::Release
            | Self::Resource => ErrorCode::NotFound,
        }
    }
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Input that breaks a rule; `field` is the JSON path.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("{0} not found")]
    NotFound(Entity),
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
            Self::NotFound(entity) => entity.not_found_code(),
            Self::Conflict { .. } => ErrorCode::Conflict,
            Self::Refused { code, .. } => *code,
            Self::Database(error) if unavailable(error) => ErrorCode::NotReady,
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

    /// The answer a client sees. A server-side failure answers a generic
    /// message and logs its whole cause chain here, once, inside the
    /// caller's span (which carries the request id).
    pub fn to_body(&self) -> ErrorBody {
        let code = self.code();
        let message = match self {
            Self::Database(error) if unavailable(error) => {
                tracing::warn!(code = %code, error = %cause_chain(self), "database unavailable");
                UNAVAILABLE_MESSAGE.to_owned()
            }
            Self::Database(_) | Self::Internal(_) => {
                tracing::error!(code = %code, error = %cause_chain(self), "request failed");
                INTERNAL_MESSAGE.to_owned()
            }
            Self::Invalid { message, .. } => message.clone(),
            other => other.to_string(),
        };
        ErrorBody {
            field: self.field().map(str::to_owned),
            ..ErrorBody::new(code, message)
        }
    }
}

/// What a client reads while the database cannot be reached.
pub const UNAVAILABLE_MESSAGE: &str =
    "the database is unavailable right now (a restore may be swapping it in): retry shortly";

/// Whether a database error means the database cannot be reached now,
/// rather than that this request failed: no connection to be had, the
/// connection ended by the server (a restore's swap ends every session and
/// refuses new ones while it renames the databases), or the database
/// renamed away. A 503 the caller may retry, not a 500.
fn unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            // admin_shutdown, crash_shutdown, cannot_connect_now,
            // invalid_catalog_name (no such database), and
            // object_not_in_prerequisite_state, which a database that does
            // not allow connections answers a new one with.
            Some("57P01" | "57P02" | "57P03" | "3D000" | "55000")
        ),
        _ => false,
    }
}

/// What a client reads when the fault is ours.
pub const INTERNAL_MESSAGE: &str = "internal error: the request id identifies it in our logs";

/// An error and all its sources, for the log.
pub fn cause_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
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
