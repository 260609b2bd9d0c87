//! The snapshot the edge answers from, and its replacement.
//!
//! Readers take an `Arc` of the current view for the length of a request;
//! a reload builds the new view aside and swaps the pointer, so in-flight
//! requests finish on the old one and none is ever answered from a half
//! loaded file. A file that fails any check leaves the current view serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use latchkey_shared::TrustedKeys;
use latchkey_shared::snapshot::{OpenError, Opened, SnapshotBuffer, SnapshotState, open};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("refused {path}: {source}")]
    Refused { path: PathBuf, source: OpenError },
    #[error("{0} holds a delta; an edge loads full snapshots from files")]
    Delta(PathBuf),
}

impl LoadError {
    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Delta(_) => "delta_file",
            Self::Refused { source, .. } => match source {
                OpenError::Truncated { .. } | OpenError::TrailingBytes { .. } => "truncated",
                OpenError::BadMagic
                | OpenError::UnsupportedFormat(_)
                | OpenError::MalformedHeader(_) => "malformed",
                OpenError::UnknownKey(_) => "unknown_key",
                OpenError::BadSignature | OpenError::DigestMismatch => "bad_signature",
                OpenError::Expired { .. } => "expired",
                OpenError::NotNewer { .. } => "not_newer",
                OpenError::WrongBase { .. } => "wrong_base",
                OpenError::MalformedBody(_) => "malformed_body",
            },
        }
    }
}

#[derive(Debug)]
pub struct SnapshotStore {
    path: PathBuf,
    trusted: TrustedKeys,
    current: ArcSwapOption<SnapshotState>,
    /// (modified time, length) of the file last looked at.
    seen: std::sync::Mutex<Option<(SystemTime, u64)>>,
}

impl SnapshotStore {
    pub fn new(path: PathBuf, trusted: TrustedKeys) -> Self {
        Self {
            path,
            trusted,
            current: ArcSwapOption::empty(),
            seen: std::sync::Mutex::new(None),
        }
    }

    pub fn current(&self) -> Option<Arc<SnapshotState>> {
        self.current.load_full()
    }

    pub fn trusted(&self) -> &TrustedKeys {
        &self.trusted
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads, verifies and swaps in the file. The sequence must be newer
    /// than the one served (no rollback).
    pub fn load(&self) -> Result<Arc<SnapshotState>, LoadError> {
        let io = |source| LoadError::Io {
            path: self.path.clone(),
            source,
        };
        let stamp = file_stamp(&self.path).map_err(io)?;
        *self.seen.lock().expect("not poisoned") = Some(stamp);
        let bytes = SnapshotBuffer::read_file(&self.path).map_err(io)?;
        let held = self.current().map(|state| state.sequence());
        let opened =
            open(bytes, &self.trusted, held, unix_now()).map_err(|source| LoadError::Refused {
                path: self.path.clone(),
                source,
            })?;
        let Opened::Full(full) = opened else {
            return Err(LoadError::Delta(self.path.clone()));
        };
        let state = Arc::new(SnapshotState::new(full));
        self.current.store(Some(state.clone()));
        Ok(state)
    }

    /// Whether the file changed since it was last looked at.
    pub fn changed(&self) -> bool {
        let now = file_stamp(&self.path).ok();
        now.is_some() && now != *self.seen.lock().expect("not poisoned")
    }

    /// Checks the file every `every` and loads it when it changed; refusals
    /// are logged and counted, and the current view keeps serving.
    pub async fn watch(self: Arc<Self>, every: Duration) {
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            if !self.changed() {
                continue;
            }
            match self.load() {
                Ok(state) => {
                    record_loaded(&state);
                    tracing::info!(
                        sequence = state.sequence(),
                        licenses = state.base_license_count(),
                        "snapshot swapped in"
                    );
                }
                Err(error) => {
                    metrics::counter!("latchkey_edge_snapshot_rejected_total", "reason" => error.reason()).increment(1);
                    tracing::warn!(error = %error, "new snapshot refused; the current one keeps serving");
                }
            }
        }
    }
}

/// Gauges describing the view now served.
pub fn record_loaded(state: &SnapshotState) {
    metrics::gauge!("latchkey_edge_snapshot_sequence").set(state.sequence() as f64);
    metrics::gauge!("latchkey_edge_snapshot_created_timestamp_seconds")
        .set(state.data_created_at() as f64);
    metrics::gauge!("latchkey_edge_snapshot_licenses").set(state.base_license_count() as f64);
    metrics::counter!("latchkey_edge_snapshot_loaded_total").increment(1);
}

fn file_stamp(path: &Path) -> std::io::Result<(SystemTime, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.modified()?, meta.len()))
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
