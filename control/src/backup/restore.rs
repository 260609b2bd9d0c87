//! Restore, in two steps. [`Backups::prepare_restore`] checks the dump
//! against its manifest (size, SHA-256), restores it into a new scratch
//! database and verifies that (schema version, every table's row count),
//! migrating it forward when it is older than this build; the live database
//! is not touched. [`Backups::swap`], on the operator's confirmation,
//! renames the live database away (kept, as `<name>_before_restore_<time>`)
//! and the scratch one into its place.
//!
//! During the swap no one can connect to the live database (connections
//! are refused, the open ones ended), so every control replica refuses
//! writes until its pool reconnects to the restored database. Edges never
//! go back to an older snapshot, so the restored database's snapshot
//! sequence is moved past the old one's: the publisher, which loses its
//! connection too, starts again with a full snapshot the edges take.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};
use time::OffsetDateTime;

use super::manifest::{self, Manifest};
use super::{BackupError, Backups, tools};
use crate::db::MIGRATOR;
use crate::db::backups::{self, server};
use crate::progress::Progress;

/// A dump restored into a scratch database and verified, waiting for the
/// swap (or to be discarded).
#[derive(Debug, Clone, Serialize)]
pub struct Prepared {
    pub dump: PathBuf,
    pub manifest: Manifest,
    /// The scratch database holding the restored copy.
    pub scratch: String,
    /// The schema version it was migrated to, when it was older.
    pub migrated_to: Option<i64>,
}

/// What a swap did.
#[derive(Debug, Clone, Serialize)]
pub struct Swapped {
    /// The database that was live, kept under this name.
    pub previous: String,
    /// The snapshot sequence the restored chain continues after.
    pub sequence_floor: Option<i64>,
}

impl Backups {
    /// The maintenance database statements about other databases run in.
    async fn server(&self) -> Result<PgConnection, BackupError> {
        let target = self.target.with_database("postgres");
        Ok(PgConnection::connect(target.connect_url()).await?)
    }

    pub async fn prepare_restore(
        &self,
        dump: &Path,
        progress: &Progress,
    ) -> Result<Prepared, BackupError> {
        let manifest = Manifest::read(dump)?;
        let digest = tokio::task::spawn_blocking({
            let (dump, progress) = (dump.to_owned(), progress.clone());
            move || manifest::digest(&dump, &progress)
        })
        .await
        .map_err(std::io::Error::other)??;
        if digest.size_bytes != manifest.size_bytes || digest.sha256 != manifest.sha256 {
            return Err(BackupError::Corrupt(format!(
                "{} bytes with SHA-256 {}, the manifest says {} bytes with {}",
                digest.size_bytes, digest.sha256, manifest.size_bytes, manifest.sha256
            )));
        }
        let newest = newest_migration();
        if manifest.schema_version > newest {
            return Err(BackupError::Refused(format!(
                "the backup's schema version {} is newer than this build's {newest}: restore it with a newer latchkey-control",
                manifest.schema_version
            )));
        }

        let scratch = derived_name(
            self.target.database(),
            &format!("_restore_{}", stamp(OffsetDateTime::now_utc())),
        );
        let mut server = self.server().await?;
        server::create(&mut server, &scratch).await?;
        let verified = self
            .restore_and_verify(dump, &manifest, &scratch, progress)
            .await;
        match verified {
            Ok(migrated_to) => Ok(Prepared {
                dump: dump.to_owned(),
                manifest,
                scratch,
                migrated_to,
            }),
            Err(error) => {
                drop_database(&mut server, &scratch).await;
                Err(error)
            }
        }
    }

    async fn restore_and_verify(
        &self,
        dump: &Path,
        manifest: &Manifest,
        scratch: &str,
        progress: &Progress,
    ) -> Result<Option<i64>, BackupError> {
        let target = self.target.with_database(scratch);
        let contents = tools::contents(&self.config.pg_restore, dump).await?;
        let rows = contents
            .tables
            .iter()
            .filter_map(|table| manifest.row_counts.get(table))
            .map(|&n| n.max(0) as u64)
            .sum();
        progress.stage("restoring", "rows", Some(rows));
        tools::restore(
            &self.config.pg_restore,
            &target,
            dump,
            &manifest.row_counts,
            contents.post_data,
            progress,
        )
        .await?;
        progress.stage("verifying", "tables", None);
        let mut conn = PgConnection::connect(target.connect_url()).await?;
        let version = backups::schema_version(&mut conn).await?;
        if version != manifest.schema_version {
            return Err(BackupError::Mismatch(format!(
                "schema version {version}, the manifest says {}",
                manifest.schema_version
            )));
        }
        let counts = backups::row_counts(&mut conn).await?;
        if counts != manifest.row_counts {
            let differ: Vec<String> = manifest
                .row_counts
                .keys()
                .chain(counts.keys())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .filter(|table| counts.get(*table) != manifest.row_counts.get(*table))
                .map(|table| {
                    format!(
                        "{table}: {:?} restored, {:?} dumped",
                        counts.get(table),
                        manifest.row_counts.get(table)
                    )
                })
                .collect();
            return Err(BackupError::Mismatch(differ.join("; ")));
        }
        conn.close().await?;
        let newest = newest_migration();
        if version == newest {
            return Ok(None);
        }
        progress.stage("migrating", "migrations", None);
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect(target.connect_url())
            .await?;
        let migrated = MIGRATOR.run(&pool).await;
        pool.close().await;
        migrated.map_err(|error| {
            BackupError::Refused(format!("migrating the restored copy: {error}"))
        })?;
        Ok(Some(newest))
    }

    /// Drops a prepared copy that will not be swapped in.
    pub async fn discard(&self, prepared: &Prepared) -> Result<(), BackupError> {
        let mut server = self.server().await?;
        server::drop(&mut server, &prepared.scratch).await?;
        Ok(())
    }

    /// Puts the prepared copy in the live database's place.
    pub async fn swap(&self, prepared: &Prepared) -> Result<Swapped, BackupError> {
        let live = self.target.database().to_owned();
        let previous = derived_name(
            &live,
            &format!("_before_restore_{}", stamp(OffsetDateTime::now_utc())),
        );
        let mut server = self.server().await?;
        let sequence_floor = self.live_sequence().await?;

        server::allow_connections(&mut server, &live, false).await?;
        let renamed = async {
            server::end_connections(&mut server, &live).await?;
            server::rename(&mut server, &live, &previous).await?;
            if let Err(error) = server::rename(&mut server, &prepared.scratch, &live).await {
                // Put the live database back before answering.
                server::rename(&mut server, &previous, &live).await?;
                return Err(error);
            }
            Ok::<_, sqlx::Error>(())
        }
        .await;
        let reopened = if renamed.is_ok() { &previous } else { &live };
        server::allow_connections(&mut server, reopened, true).await?;
        renamed?;

        if let Some(floor) = sequence_floor {
            let mut restored = PgConnection::connect(self.target.connect_url()).await?;
            backups::continue_sequence_after(&mut restored, floor).await?;
            restored.close().await?;
        }
        tracing::warn!(%live, %previous, dump = %prepared.dump.display(), "backup restored and swapped in");
        Ok(Swapped {
            previous,
            sequence_floor,
        })
    }

    /// The live database's newest snapshot sequence.
    async fn live_sequence(&self) -> Result<Option<i64>, BackupError> {
        let mut live = PgConnection::connect(self.target.connect_url()).await?;
        let sequence = backups::snapshot_sequence(&mut live).await?;
        live.close().await?;
        Ok(sequence)
    }
}

/// PostgreSQL cuts longer names, which could then clash.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// `base` followed by `suffix`, `base` shortened to keep the whole within
/// PostgreSQL's identifier length.
fn derived_name(base: &str, suffix: &str) -> String {
    let mut room = MAX_IDENTIFIER_BYTES
        .saturating_sub(suffix.len())
        .min(base.len());
    while !base.is_char_boundary(room) {
        room -= 1;
    }
    format!("{}{suffix}", &base[..room])
}

fn newest_migration() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

fn stamp(at: OffsetDateTime) -> String {
    at.format(time::macros::format_description!(
        "[year][month][day]_[hour][minute][second]"
    ))
    .unwrap_or_default()
}

async fn drop_database(server: &mut PgConnection, name: &str) {
    if let Err(error) = server::drop(server, name).await {
        tracing::warn!(%error, database = name, "cannot drop the scratch database");
    }
}
