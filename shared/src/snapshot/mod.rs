//! Signed snapshots: everything an edge needs to answer clients alone.
//!
//! Control builds a full snapshot ([`SnapshotBuilder`]) or a delta
//! ([`DeltaBody`]) and seals it with its signing key; an edge [`open`]s the
//! bytes against its [`TrustedKeys`](crate::signing::TrustedKeys), which
//! checks the signature, the body digest, expiry, the sequence rules and the
//! archive's structure, and then answers from a [`SnapshotState`] that reads
//! the full snapshot in place (rkyv, zero-copy) with deltas in a small
//! overlay on top. A delta carries whole records, so applying one twice is
//! harmless; a new full snapshot replaces base and overlay at once.
//!
//! License keys appear only as [`KeyHash`](crate::key::KeyHash)es.

mod body;
mod buffer;
mod build;
mod envelope;
mod model;
mod state;

pub use body::{DeltaBody, LicenseChange};
pub use buffer::SnapshotBuffer;
pub use build::{BuildError, SnapshotBuilder};
pub use envelope::{
    DeltaSnapshot, FORMAT_VERSION, FullSnapshot, HEADER_LEN, MAGIC, OpenError, Opened, SealParams,
    SnapshotKind, SnapshotMeta, open, seal,
};
pub use model::{
    ChannelRelease, EdgeConfig, FeatureFlag, LicenseEntry, LicenseKind, LicenseStatus, Policy,
    Product, ProductClientConfig, RevokedSession, UsageLimit, flags_on,
};
pub use state::{LicenseView, SnapshotState};
