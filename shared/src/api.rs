//! The public client API: request and response bodies of every endpoint,
//! and the one error-code list edge and control both answer with.
//!
//! | endpoint | request | response |
//! |---|---|---|
//! | `POST /api/license/activate` | [`ActivateRequest`] | [`ActivateResponse`] |
//! | `POST /api/license/deactivate` | [`DeactivateRequest`] | [`DeactivateResponse`] |
//! | `POST /api/license/transfer` | [`TransferRequest`] | [`ActivateResponse`] |
//! | `POST /api/license/verify` | [`VerifyRequest`] | [`VerifyResponse`] |
//! | `GET /api/license/info/{license_key}` | — | [`LicenseInfo`] |
//! | `POST /api/license/lease` | [`LeaseRequest`] | [`LeaseResponse`] |
//! | `POST /api/license/session/start` | [`SessionStartRequest`] | [`SessionStartResponse`] |
//! | `POST /api/license/session/heartbeat` | [`HeartbeatRequest`] | [`HeartbeatResponse`] |
//! | `POST /api/license/session/end` | [`SessionEndRequest`] | [`SessionEndResponse`] |
//! | `POST /api/version/check` | [`VersionCheckRequest`] | [`VersionCheckResponse`] |
//! | `GET /api/version/latest?product=&channel=` | [`VersionLatestQuery`] | [`VersionLatestResponse`] |
//!
//! Every error is an [`ErrorBody`]. Requests refuse unknown fields.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::fingerprint::{Fingerprint, MatchVerdict};
use crate::snapshot::{LicenseKind, LicenseStatus};

/// Stable, machine-readable error codes. The wire form is the
/// SCREAMING_SNAKE_CASE name; it never changes once released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidLicenseKey,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    NotFound,
    MethodNotAllowed,
    LicenseNotFound,
    LicenseNotYetValid,
    LicenseExpired,
    LicenseSuspended,
    LicenseRevoked,
    ProductMismatch,
    FeatureNotAllowed,
    UsageLimitReached,
    FingerprintMismatch,
    DeviceLimitReached,
    DeviceNotFound,
    /// The license's client seat changes (deactivations, transfers) for the
    /// window are used up; the message says when the next is possible.
    SeatChangeLimitReached,
    SessionLimitReached,
    SessionActiveElsewhere,
    SessionNotFound,
    SessionExpired,
    SessionRevoked,
    InvalidToken,
    ProductNotFound,
    VersionNotAllowed,
    InvalidVersion,
    RateLimited,
    Unauthorized,
    Forbidden,
    Conflict,
    ControlUnavailable,
    NotReady,
    /// The edge's snapshot is past its expiry: it cannot vouch for any
    /// license until control reaches it again. Retry (another edge, or
    /// later); a client with an offline lease keeps running on it.
    SnapshotExpired,
    /// A session token presented from another machine than the one that
    /// started the session.
    SessionDeviceMismatch,
    Internal,
}

/// Whose fault an error is, which decides the HTTP class and retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request or the license state: fix the request, do not retry.
    Client,
    /// Too many requests: retry after the delay given.
    Throttled,
    /// Latchkey cannot answer now: retry with backoff.
    Unavailable,
    /// A bug on our side.
    Internal,
}

/// The body of every error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// The JSON path of the offending field, when one is to blame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub retryable: bool,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 37] = [
        Self::InvalidRequest,
        Self::InvalidLicenseKey,
        Self::PayloadTooLarge,
        Self::RequestTimeout,
        Self::UnsupportedMediaType,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::LicenseNotFound,
        Self::LicenseNotYetValid,
        Self::LicenseExpired,
        Self::LicenseSuspended,
        Self::LicenseRevoked,
        Self::ProductMismatch,
        Self::FeatureNotAllowed,
        Self::UsageLimitReached,
        Self::FingerprintMismatch,
        Self::DeviceLimitReached,
        Self::DeviceNotFound,
        Self::SeatChangeLimitReached,
        Self::SessionLimitReached,
        Self::SessionActiveElsewhere,
        Self::SessionNotFound,
        Self::SessionExpired,
        Self::SessionRevoked,
        Self::InvalidToken,
        Self::ProductNotFound,
        Self::VersionNotAllowed,
        Self::InvalidVersion,
        Self::RateLimited,
        Self::Unauthorized,
        Self::Forbidden,
        Self::Conflict,
        Self::ControlUnavailable,
        Self::NotReady,
        Self::SnapshotExpired,
        Self::SessionDeviceMismatch,
        Self::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::InvalidLicenseKey => "INVALID_LICENSE_KEY",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::NotFound => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::LicenseNotFound => "LICENSE_NOT_FOUND",
            Self::LicenseNotYetValid => "LICENSE_NOT_YET_VALID",
            Self::LicenseExpired => "LICENSE_EXPIRED",
            Self::LicenseSuspended => "LICENSE_SUSPENDED",
            Self::LicenseRevoked => "LICENSE_REVOKED",
            Self::ProductMismatch => "PRODUCT_MISMATCH",
            Self::FeatureNotAllowed => "FEATURE_NOT_ALLOWED",
            Self::UsageLimitReached => "USAGE_LIMIT_REACHED",
            Self::FingerprintMismatch => "FINGERPRINT_MISMATCH",
            Self::DeviceLimitReached => "DEVICE_LIMIT_REACHED",
            Self::DeviceNotFound => "DEVICE_NOT_FOUND",
            Self::SeatChangeLimitReached => "SEAT_CHANGE_LIMIT_REACHED",
            Self::SessionLimitReached => "SESSION_LIMIT_REACHED",
            Self::SessionActiveElsewhere => "SESSION_ACTIVE_ELSEWHERE",
            Self::SessionNotFound => "SESSION_NOT_FOUND",
            Self::SessionExpired => "SESSION_EXPIRED",
            Self::SessionRevoked => "SESSION_REVOKED",
            Self::InvalidToken => "INVALID_TOKEN",
            Self::ProductNotFound => "PRODUCT_NOT_FOUND",
            Self::VersionNotAllowed => "VERSION_NOT_ALLOWED",
            Self::InvalidVersion => "INVALID_VERSION",
            Self::RateLimited => "RATE_LIMITED",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::Conflict => "CONFLICT",
            Self::ControlUnavailable => "CONTROL_UNAVAILABLE",
            Self::NotReady => "NOT_READY",
            Self::SnapshotExpired => "SNAPSHOT_EXPIRED",
            Self::SessionDeviceMismatch => "SESSION_DEVICE_MISMATCH",
            Self::Internal => "INTERNAL",
        }
    }

    pub fn fault(self) -> Fault {
        match self {
            Self::RateLimited => Fault::Throttled,
            Self::RequestTimeout => Fault::Unavailable,
            Self::ControlUnavailable | Self::NotReady | Self::SnapshotExpired => Fault::Unavailable,
            Self::Internal => Fault::Internal,
            _ => Fault::Client,
        }
    }

    pub fn retryable(self) -> bool {
        self.fault() != Fault::Client
    }

    /// The HTTP status this code is answered with.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidRequest | Self::InvalidLicenseKey | Self::InvalidVersion => 400,
            Self::InvalidToken | Self::Unauthorized => 401,
            Self::Forbidden => 403,
            Self::NotFound
            | Self::LicenseNotFound
            | Self::DeviceNotFound
            | Self::SessionNotFound
            | Self::ProductNotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Conflict | Self::SessionActiveElsewhere => 409,
            Self::RequestTimeout => 408,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::LicenseNotYetValid
            | Self::LicenseExpired
            | Self::LicenseSuspended
            | Self::LicenseRevoked
            | Self::ProductMismatch
            | Self::FeatureNotAllowed
            | Self::UsageLimitReached
            | Self::FingerprintMismatch
            | Self::DeviceLimitReached
            | Self::SeatChangeLimitReached
            | Self::SessionLimitReached
            | Self::SessionExpired
            | Self::SessionRevoked
            | Self::SessionDeviceMismatch
            | Self::VersionNotAllowed => 403,
            Self::RateLimited => 429,
            Self::Internal => 500,
            Self::ControlUnavailable | Self::NotReady | Self::SnapshotExpired => 503,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            retryable: code.retryable(),
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

// ---- licenses and devices ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ActivateRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::LicenseKey))]
    pub license_key: String,
    pub fingerprint: Fingerprint,
    /// At most 128 characters (control refuses more).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 128))]
    pub device_name: Option<String>,
    #[serde(default)]
    pub product: Option<String>,
    /// Recorded with the seat; control refuses more than 64 bytes.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub app_version: Option<String>,
    /// Makes a retried activation take at most one seat; 1 to 128 bytes.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 128))]
    pub idempotency_key: Option<String>,
}

/// What happened to the seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ActivationOutcome {
    /// A new seat was taken.
    Activated,
    /// This machine already held a seat.
    AlreadyActive,
    /// This machine held a seat under a changed fingerprint; updated in place.
    Updated,
    /// The seat moved here from another device.
    Transferred,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActivateResponse {
    pub outcome: ActivationOutcome,
    pub device_id: Uuid,
    pub devices_used: u32,
    pub device_limit: u32,
    /// Offline lease token (`lk1.lease...`).
    pub lease: String,
    pub lease_valid_until: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeactivateRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::LicenseKey))]
    pub license_key: String,
    pub fingerprint: Fingerprint,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeactivateResponse {
    pub device_id: Uuid,
    pub devices_used: u32,
    pub device_limit: u32,
}

/// Moves a seat from a device to the machine asking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::LicenseKey))]
    pub license_key: String,
    /// The device giving up its seat.
    pub from_device_id: Uuid,
    pub fingerprint: Fingerprint,
    /// At most 128 characters (control refuses more).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 128))]
    pub device_name: Option<String>,
    /// Makes a retried transfer move the seat once; 1 to 128 bytes.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 128))]
    pub idempotency_key: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(example = json!({ "license_key": crate::schema::LICENSE_KEY_EXAMPLE, "product": "studio", "app_version": "2.4.0" }))
)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::LicenseKey))]
    pub license_key: String,
    /// When given, the machine must hold a seat (matching rule).
    #[serde(default)]
    pub fingerprint: Option<Fingerprint>,
    /// Product slug the application belongs to.
    #[serde(default)]
    pub product: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::schema::Version>))]
    pub app_version: Option<String>,
    /// A feature the application is about to use.
    #[serde(default)]
    pub feature: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyResponse {
    pub valid: bool,
    /// Why not valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<ErrorCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<LicenseStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
    #[serde(default)]
    pub features: Vec<String>,
    /// Feature flags on for this license (of its product and the global
    /// ones, by rollout), when valid.
    #[serde(default)]
    pub flags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<MatchVerdict>,
    pub heartbeat_interval_secs: u32,
    /// The snapshot sequence the answer came from.
    pub snapshot_sequence: u64,
}

/// What a client may see of its own license: no key material, no customer data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LicenseInfo {
    pub status: LicenseStatus,
    pub kind: LicenseKind,
    pub product: Option<String>,
    pub valid_from: i64,
    pub valid_until: Option<i64>,
    pub expired: bool,
    pub features: Vec<String>,
    pub device_limit: u32,
    pub devices_used: u32,
    pub session_limit: u16,
    pub snapshot_sequence: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LeaseRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::LicenseKey))]
    pub license_key: String,
    pub fingerprint: Fingerprint,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LeaseResponse {
    pub lease: String,
    pub valid_until: i64,
}

// ---- sessions ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SessionStartRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::LicenseKey))]
    pub license_key: String,
    pub fingerprint: Fingerprint,
    /// Recorded with the seat; control refuses more than 64 bytes.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub app_version: Option<String>,
    /// End the oldest session if the limit is reached and the license allows it.
    #[serde(default)]
    pub take_over: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionStartResponse {
    pub session_id: Uuid,
    /// Session token (`lk1.sess...`), sent with every heartbeat.
    pub session_token: String,
    pub heartbeat_interval_secs: u32,
    pub expires_at: i64,
    /// The session this one took over, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_session_id: Option<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct HeartbeatRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::SessionToken))]
    pub session_token: String,
    /// The machine sending the heartbeat: it must be the one the session
    /// was started on, so a token copied to another machine does not run
    /// a second session on a single-session license.
    pub fingerprint: Fingerprint,
    #[serde(default)]
    pub app_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HeartbeatResponse {
    pub session_id: Uuid,
    pub next_heartbeat_secs: u32,
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SessionEndRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::SessionToken))]
    pub session_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionEndResponse {
    pub session_id: Uuid,
    pub ended: bool,
}

// ---- a product's client configuration ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(example = json!({ "license_key": crate::schema::LICENSE_KEY_EXAMPLE }))
)]
#[serde(deny_unknown_fields)]
pub struct ClientConfigRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = crate::LicenseKey))]
    pub license_key: String,
}

/// What a client application of the license's product reads besides its
/// license: the effective intervals (the product's, else the edge
/// configuration's; a license's own grace first) and the vendor's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClientConfigResponse {
    /// The product's slug.
    pub product: String,
    pub heartbeat_interval_secs: u32,
    /// How long the client may run offline on its lease.
    pub grace_period_secs: u32,
    /// The catalogue of feature names licenses of the product may carry.
    pub features: Vec<String>,
    /// The vendor's own settings, a JSON object.
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub settings: serde_json::Map<String, serde_json::Value>,
    pub snapshot_sequence: u64,
}

// ---- versions ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(example = json!({ "product": "studio", "version": "2.4.0" }))
)]
#[serde(deny_unknown_fields)]
pub struct VersionCheckRequest {
    pub product: String,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::schema::Version))]
    pub version: String,
    #[serde(default)]
    pub channel: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionCheckResponse {
    pub product: String,
    pub channel: String,
    pub current: String,
    pub latest: Option<String>,
    pub update_available: bool,
    /// Below the minimum allowed version: the application must update.
    pub update_mandatory: bool,
    pub minimum_allowed: Option<String>,
    pub download_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct VersionLatestQuery {
    pub product: String,
    #[serde(default)]
    pub channel: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VersionLatestResponse {
    pub product: String,
    pub channel: String,
    pub version: String,
    pub download_url: Option<String>,
    pub published_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_serialize_as_their_stable_names() {
        for code in ErrorCode::ALL {
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
            assert_eq!(
                serde_json::from_value::<ErrorCode>(serde_json::json!(code.as_str())).unwrap(),
                code
            );
        }
        assert_eq!(ErrorCode::RateLimited.http_status(), 429);
        assert!(ErrorCode::ControlUnavailable.retryable());
        assert!(!ErrorCode::DeviceLimitReached.retryable());
        // Days away, not a retry away: a client must not loop on it.
        assert_eq!(ErrorCode::SeatChangeLimitReached.http_status(), 403);
        assert!(!ErrorCode::SeatChangeLimitReached.retryable());
    }

    #[test]
    fn every_code_is_listed_once() {
        let names: std::collections::HashSet<&str> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        assert!(names.contains("SEAT_CHANGE_LIMIT_REACHED"));
    }

    #[test]
    fn requests_refuse_unknown_fields() {
        let body = r#"{"license_key":"x","fingerprint":{"cpu_id":"a"},"surprise":1}"#;
        let error = serde_json::from_str::<ActivateRequest>(body).unwrap_err();
        assert!(error.to_string().contains("surprise"), "{error}");
    }
}
