//! What can go wrong, as types: a definite answer the application must act
//! on is told apart from "no edge could be reached", which the client retries
//! and, for verify, answers from the offline lease.

use latchkey_shared::api::{ErrorBody, ErrorCode};
use latchkey_shared::fingerprint::FingerprintError;
use latchkey_shared::key::KeyParseError;
use latchkey_shared::signing::KeyError;
use latchkey_shared::token::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// An edge (or control through it) refused the call for good: a license
    /// rule, a malformed request. Retrying elsewhere would answer the same.
    #[error("refused: {} ({})", .0.message, .0.code)]
    Refused(ErrorBody),
    /// No edge answered within the retry budget: connection errors,
    /// timeouts, or answers that say to retry (`retryable`).
    #[error("no edge answered after {attempts} attempts; last: {last}")]
    Unavailable { attempts: u32, last: String },
    /// Verify could reach no edge, and the offline lease does not vouch.
    #[error("offline ({unreachable}) and the offline lease does not hold: {lease}")]
    Offline {
        unreachable: String,
        lease: LeaseError,
    },
    #[error("the license key is malformed: {0}")]
    InvalidKey(#[from] KeyParseError),
    #[error("this machine's fingerprint cannot be used: {0}")]
    Fingerprint(#[from] FingerprintError),
    #[error(transparent)]
    Lease(#[from] LeaseError),
    #[error("client configuration: {0}")]
    Config(String),
}

impl ClientError {
    /// The error code of a definite refusal.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Refused(body) => Some(body.code),
            _ => None,
        }
    }
}

impl From<KeyError> for ClientError {
    fn from(error: KeyError) -> Self {
        Self::Config(format!("the public key: {error}"))
    }
}

/// Why the cached lease does not let the application run offline.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("no lease is cached (activate once online)")]
    Missing,
    #[error("no lease file was configured")]
    NotConfigured,
    #[error("the lease file {path}: {error}")]
    Io {
        path: String,
        #[source]
        error: std::io::Error,
    },
    #[error("the lease file is not a lease cache: {0}")]
    Corrupt(String),
    /// Its signature, form or key id: a tampered or foreign lease.
    #[error("the lease does not verify: {0}")]
    Token(TokenError),
    #[error("the lease expired at {valid_until}: the offline grace period is over")]
    Expired { valid_until: i64 },
    #[error("the lease is for another license")]
    OtherLicense,
    #[error("the lease was issued to another machine")]
    OtherMachine,
    #[error("the lease does not include feature {0:?}")]
    FeatureMissing(String),
    /// The clock reads earlier than a time this lease was already seen at,
    /// by more than the tolerance: the offline grace ends here until an edge
    /// issues a new lease.
    #[error(
        "the clock was set back ({now} is before {last_seen}, a time already seen): offline grace ended"
    )]
    ClockMovedBack { now: i64, last_seen: i64 },
    /// The clock was found set back before; only a fresh lease from an edge
    /// restores the offline grace.
    #[error("offline grace ended when the clock was found set back at {at}")]
    GraceEnded { at: i64 },
}

impl From<TokenError> for LeaseError {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::Expired { expires_at } => Self::Expired {
                valid_until: expires_at,
            },
            other => Self::Token(other),
        }
    }
}
