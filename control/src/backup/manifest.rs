//! The manifest written beside each dump (`<dump>.json`): what the dump
//! holds, so that a restore can be verified from the two files alone, even
//! when the database that made them is gone.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use super::BackupError;
use crate::db::backups::RowCounts;
use crate::progress::Progress;

const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub backup_id: Uuid,
    /// The database it was dumped from.
    pub database: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    pub size_bytes: u64,
    pub sha256: String,
    /// The newest migration applied when it was dumped.
    pub schema_version: i64,
    /// Every table's rows, counted in the snapshot that was dumped.
    pub row_counts: RowCounts,
}

impl Manifest {
    pub fn new(
        backup_id: Uuid,
        database: &str,
        created_at: OffsetDateTime,
        digest: FileDigest,
        schema_version: i64,
        row_counts: RowCounts,
    ) -> Self {
        Self {
            format: FORMAT,
            backup_id,
            database: database.to_owned(),
            created_at,
            size_bytes: digest.size_bytes,
            sha256: digest.sha256,
            schema_version,
            row_counts,
        }
    }

    /// Where a dump's manifest is.
    pub fn path_of(dump: &Path) -> PathBuf {
        let mut name = dump.as_os_str().to_owned();
        name.push(".json");
        PathBuf::from(name)
    }

    /// Written beside the dump, atomically, readable by the owner only.
    pub fn write(&self, dump: &Path) -> Result<(), BackupError> {
        let path = Self::path_of(dump);
        let partial = path.with_extension("json.partial");
        let text = serde_json::to_vec_pretty(self)
            .map_err(|error| BackupError::Manifest(error.to_string()))?;
        let mut file = private_file(&partial)?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&partial, &path)?;
        Ok(())
    }

    pub fn read(dump: &Path) -> Result<Self, BackupError> {
        let path = Self::path_of(dump);
        let text = std::fs::read(&path)
            .map_err(|error| BackupError::Manifest(format!("{}: {error}", path.display())))?;
        let manifest: Self = serde_json::from_slice(&text)
            .map_err(|error| BackupError::Manifest(format!("{}: {error}", path.display())))?;
        if manifest.format != FORMAT {
            return Err(BackupError::Manifest(format!(
                "{}: format {} is not {FORMAT}",
                path.display(),
                manifest.format
            )));
        }
        Ok(manifest)
    }
}

/// A file's size and SHA-256 (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDigest {
    pub size_bytes: u64,
    pub sha256: String,
}

/// Reads the whole file, 1 MiB at a time (blocking: call it off the runtime).
pub fn digest(path: &Path, progress: &Progress) -> std::io::Result<FileDigest> {
    let mut file = std::fs::File::open(path)?;
    progress.stage("checksum", "bytes", Some(file.metadata()?.len()));
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    let mut size_bytes = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size_bytes += read as u64;
        progress.advance(read as u64);
    }
    Ok(FileDigest {
        size_bytes,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// A new file only its owner may read: a dump holds every customer's data
/// (the license keys sealed, the rest in clear).
pub fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}
