//! The snapshot the edge answers from, and its replacement.
//!
//! Readers take an `Arc` of the current view for the length of a request;
//! a reload builds the new view aside and swaps the pointer, so in-flight
//! requests finish on the old one and none is ever answered from a half
//! loaded file. A file that fails any check leaves the current view serving.
//!
//! Behind a link, snapshots arrive as bytes (a full one or a delta on the
//! sequence held); each verified one is also written to the cache directory
//! (the full file and the deltas after it), which an edge starts from while
//! control is out of reach.

use std::io::Read;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::{ArcSwapOption, Guard};
use latchkey_shared::TrustedKeys;
use latchkey_shared::snapshot::{
    OpenError, Opened, SnapshotBuffer, SnapshotKind, SnapshotState, open,
};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("refused {from}: {source}")]
    Refused { from: String, source: OpenError },
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

/// The view served now, borrowed for one request: arc-swap's guard touches
/// no reference count that every worker shares, as an `Arc` clone would.
#[derive(Debug)]
pub struct Current(Guard<Option<Arc<SnapshotState>>>);

impl Deref for Current {
    type Target = SnapshotState;

    fn deref(&self) -> &SnapshotState {
        self.0
            .as_deref()
            .expect("a Current is made only when a view is held")
    }
}

#[derive(Debug)]
pub struct SnapshotStore {
    /// The full snapshot file: given, or the cache's.
    path: PathBuf,
    /// Behind a link: where received deltas are cached beside `path`.
    deltas_dir: Option<PathBuf>,
    trusted: TrustedKeys,
    current: ArcSwapOption<SnapshotState>,
    /// (modified time, length) of the file last looked at.
    seen: std::sync::Mutex<Option<(SystemTime, u64)>>,
    /// One received snapshot at a time: each builds on the one before.
    receiving: std::sync::Mutex<()>,
}

impl SnapshotStore {
    /// Serves the full snapshot file at `path`.
    pub fn new(path: PathBuf, trusted: TrustedKeys) -> Self {
        Self {
            path,
            deltas_dir: None,
            trusted,
            current: ArcSwapOption::empty(),
            seen: std::sync::Mutex::new(None),
            receiving: std::sync::Mutex::new(()),
        }
    }

    /// Serves what arrives over the link, cached in `dir`.
    pub fn cached_in(dir: &Path, trusted: TrustedKeys) -> Self {
        Self {
            deltas_dir: Some(dir.join("deltas")),
            ..Self::new(dir.join("snapshot.lks"), trusted)
        }
    }

    pub fn current(&self) -> Option<Arc<SnapshotState>> {
        self.current.load_full()
    }

    /// [`Self::current`] for the length of a request, without an `Arc` clone.
    pub fn borrow(&self) -> Option<Current> {
        let guard = self.current.load();
        guard.is_some().then(|| Current(guard))
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
        let bytes = read_file(&self.path).map_err(io)?;
        let held = self.current().map(|state| state.sequence());
        let opened =
            open(bytes, &self.trusted, held, unix_now()).map_err(|source| LoadError::Refused {
                from: self.path.display().to_string(),
                source,
            })?;
        let Opened::Full(full) = opened else {
            return Err(LoadError::Delta(self.path.clone()));
        };
        let state = Arc::new(SnapshotState::new(full));
        self.current.store(Some(state.clone()));
        Ok(state)
    }

    /// Loads the cached full snapshot and replays the cached deltas on it,
    /// as far as they chain.
    pub fn load_cache(&self) -> Result<Arc<SnapshotState>, LoadError> {
        let mut state = self.load()?;
        let Some(dir) = &self.deltas_dir else {
            return Ok(state);
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| entries.filter_map(|e| Some(e.ok()?.path())).collect())
            .unwrap_or_default();
        // Zero-padded sequence numbers: name order is sequence order.
        files.sort();
        for file in files {
            let applied = read_file(&file)
                .map_err(|source| LoadError::Io {
                    path: file.clone(),
                    source,
                })
                .and_then(|bytes| self.apply(bytes, &file.display().to_string()));
            match applied {
                Ok(next) => state = next,
                Err(error) => {
                    tracing::warn!(%error, "cached delta not applied; control will resend");
                    break;
                }
            }
        }
        Ok(state)
    }

    /// Verifies and swaps in a snapshot received over the link (a full one
    /// or a delta on the held sequence), then caches it.
    pub fn receive(&self, bytes: &[u8]) -> Result<Arc<SnapshotState>, LoadError> {
        let buffer = SnapshotBuffer::from_slice(bytes).map_err(|source| LoadError::Io {
            path: PathBuf::from("<link>"),
            source,
        })?;
        let state = self.apply(buffer, "the link")?;
        if let Err(error) = self.cache(&state, bytes) {
            metrics::counter!("latchkey_edge_snapshot_cache_errors_total").increment(1);
            tracing::warn!(%error, "snapshot not cached; serving it anyway");
        }
        Ok(state)
    }

    fn apply(&self, bytes: SnapshotBuffer, from: &str) -> Result<Arc<SnapshotState>, LoadError> {
        let _one_at_a_time = self.receiving.lock().expect("not poisoned");
        let current = self.current();
        let refused = |source| LoadError::Refused {
            from: from.to_owned(),
            source,
        };
        let opened = open(
            bytes,
            &self.trusted,
            current.as_ref().map(|s| s.sequence()),
            unix_now(),
        )
        .map_err(refused)?;
        let state = match (opened, current) {
            (Opened::Full(full), _) => SnapshotState::new(full),
            (Opened::Delta(delta), Some(current)) => current.apply(delta).map_err(refused)?,
            // `open` refuses a delta when nothing is held; kept total here.
            (Opened::Delta(delta), None) => {
                let base = match delta.meta.kind {
                    SnapshotKind::Delta { base } => base,
                    SnapshotKind::Full => delta.meta.sequence,
                };
                return Err(refused(OpenError::WrongBase { base, held: None }));
            }
        };
        let state = Arc::new(state);
        self.current.store(Some(state.clone()));
        Ok(state)
    }

    /// A full snapshot replaces the cache; a delta joins it.
    fn cache(&self, state: &SnapshotState, bytes: &[u8]) -> std::io::Result<()> {
        let Some(deltas) = &self.deltas_dir else {
            return Ok(());
        };
        std::fs::create_dir_all(deltas)?;
        if state.sequence() == state.base_sequence() {
            write_atomically(&self.path, bytes)?;
            for entry in std::fs::read_dir(deltas)? {
                std::fs::remove_file(entry?.path())?;
            }
        } else {
            write_atomically(&deltas.join(format!("{:020}.lks", state.sequence())), bytes)?;
        }
        Ok(())
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
            // Reading and verifying the file is blocking work: off the workers.
            let store = self.clone();
            let Ok(loaded) = tokio::task::spawn_blocking(move || store.load()).await else {
                continue;
            };
            match loaded {
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
    metrics::gauge!("latchkey_edge_snapshot_expires_timestamp_seconds")
        .set(state.expires_at() as f64);
    metrics::counter!("latchkey_edge_snapshot_loaded_total").increment(1);
}

/// Reads a snapshot file straight into the memory it is opened in (no copy
/// on the way: a gigabyte at ten million licenses), and checks that nothing
/// was appended while it was read.
pub fn read_file(path: &Path) -> std::io::Result<SnapshotBuffer> {
    let mut file = std::fs::File::open(path)?;
    let len = usize::try_from(file.metadata()?.len()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "snapshot larger than memory",
        )
    })?;
    let mut buffer = SnapshotBuffer::zeroed(len)?;
    file.read_exact(&mut buffer)?;
    if file.read(&mut [0u8; 1])? != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "snapshot grew while it was read",
        ));
    }
    Ok(buffer)
}

/// Written aside and renamed: a crash never leaves half a file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let aside = path.with_extension("partial");
    std::fs::write(&aside, bytes)?;
    std::fs::rename(&aside, path)
}

fn file_stamp(path: &Path) -> std::io::Result<(SystemTime, u64)> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.modified()?, meta.len()))
}

/// Says when the snapshot served goes past its expiry (and when a newer one
/// brings the edge back): logged once per change and kept in
/// `latchkey_edge_snapshot_expired`, so an operator sees an edge that stopped
/// vouching, not only its clients' refusals.
pub async fn watch_expiry(store: Arc<SnapshotStore>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    let mut was_expired = false;
    loop {
        ticks.tick().await;
        let Some(state) = store.current() else {
            continue;
        };
        let expired = unix_now() > state.expires_at();
        if expired != was_expired {
            if expired {
                tracing::error!(
                    sequence = state.sequence(),
                    expired_at = state.expires_at(),
                    "snapshot expired: refusing verify, info and heartbeats until control sends a newer one"
                );
            } else {
                tracing::info!(
                    sequence = state.sequence(),
                    "a valid snapshot again: answering"
                );
            }
            was_expired = expired;
        }
        metrics::gauge!("latchkey_edge_snapshot_expired").set(f64::from(u8::from(expired)));
    }
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
