//! The vocabulary Latchkey's edge, control, bench and client applications
//! share: license keys and their hashes, hardware fingerprints and the
//! matching rule, signed snapshots, offline leases and session tokens, signed
//! answers (an edge's certified key), the
//! public API types with their error codes, version comparison, and the usage
//! records edges ship to control.
//!
//! Architecture invariant: this crate does no I/O of its own and depends on
//! no web framework, database driver or network stack.

pub mod answer;
pub mod api;
mod digest;
pub mod fingerprint;
pub mod forwarded;
pub mod key;
pub mod link;
#[cfg(feature = "openapi")]
pub mod schema;
pub mod signing;
pub mod snapshot;
pub mod token;
pub mod usage;
pub mod version;

pub use fingerprint::{
    CanonicalFingerprint, DeviceDigest, Fingerprint, FingerprintHash, MatchVerdict,
};
pub use key::{ClientKey, KeyHash, LegacyKey, LicenseKey};
pub use signing::{KeyId, SigningKeyPair, TrustedKeys};
pub use usage::{UsageBatch, UsageKind, UsageRecord};
