//! Usage batches from edges into `license_heartbeats`, each batch id once.
//!
//! Edges deliver at least once; the batch id's row in `ingested_batches`,
//! written in the transaction that COPYs the records, makes the effect
//! exactly once. Two deliveries of one batch at the same time serialise on
//! that primary key: the second waits for the first to commit, then finds
//! the row and is answered `Duplicate`.

mod copy;
mod partitions;

use std::collections::{BTreeMap, BTreeSet};

use latchkey_shared::usage::UsageBatch;
use sqlx::PgPool;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

pub use copy::{COPY_HEARTBEATS, InvalidBatch, encode};
pub use partitions::KnownPartitions;

/// What became of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestOutcome {
    /// Written now, `rows` records.
    Committed { rows: u64 },
    /// This batch id was committed before; nothing was written. The edge
    /// may forget the batch either way.
    Duplicate,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The batch can never be stored as sent; resending it will not help.
    #[error("invalid usage batch: {0}")]
    Invalid(#[from] InvalidBatch),
    /// Nothing was written; resending the batch may succeed.
    #[error("database error during ingest")]
    Database(#[from] sqlx::Error),
}

/// Stores `batch` once, with everything it implies, in one transaction:
/// the batch id, its records (COPY), and the last heartbeat time of every
/// session it names (never moved backwards).
pub async fn ingest_batch(
    pool: &PgPool,
    known: &KnownPartitions,
    batch: &UsageBatch,
) -> Result<IngestOutcome, IngestError> {
    // Encoding and validation happen before any connection is taken.
    let prepared = Prepared::new(batch)?;
    partitions::ensure(pool, known, &prepared.months).await?;
    match commit(pool, batch, &prepared).await {
        Err(error) if is_missing_partition(&error) => {
            // A partition remembered as present was dropped since; the
            // transaction rolled back, so asking again and retrying is safe.
            known.forget_all();
            partitions::ensure(pool, known, &prepared.months).await?;
            Ok(commit(pool, batch, &prepared).await?)
        }
        other => Ok(other?),
    }
}

/// The batch turned into what the transaction sends.
struct Prepared {
    records: i32,
    copy_data: Vec<u8>,
    /// First days of the months the records fall in.
    months: BTreeSet<Date>,
    /// Per session, the latest record time, ordered by id.
    session_ids: Vec<Uuid>,
    session_times: Vec<OffsetDateTime>,
}

impl Prepared {
    fn new(batch: &UsageBatch) -> Result<Self, InvalidBatch> {
        let records =
            i32::try_from(batch.records.len()).map_err(|_| InvalidBatch::TooManyRecords {
                records: batch.records.len(),
            })?;
        let copy_data = encode(batch.edge_id, &batch.records)?;
        let mut months = BTreeSet::new();
        let mut latest: BTreeMap<Uuid, i64> = BTreeMap::new();
        for (index, record) in batch.records.iter().enumerate() {
            let at = time_of(record.at_micros).ok_or(InvalidBatch::TimeOutOfRange {
                index,
                at_micros: record.at_micros,
            })?;
            // UTC months match the partition bounds: the bounds are dates
            // read in the creating session's time zone, and sqlx sessions
            // (the migration's, the job's, ours) are always UTC.
            months.insert(at.date().replace_day(1).expect("every month has a day 1"));
            if let Some(session) = record.session_id {
                let entry = latest.entry(session).or_insert(record.at_micros);
                *entry = (*entry).max(record.at_micros);
            }
        }
        let mut session_ids = Vec::with_capacity(latest.len());
        let mut session_times = Vec::with_capacity(latest.len());
        for (id, at_micros) in latest {
            session_ids.push(id);
            session_times.push(time_of(at_micros).expect("checked above"));
        }
        Ok(Self {
            records,
            copy_data,
            months,
            session_ids,
            session_times,
        })
    }
}

fn time_of(at_micros: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(at_micros) * 1_000).ok()
}

async fn commit(
    pool: &PgPool,
    batch: &UsageBatch,
    prepared: &Prepared,
) -> Result<IngestOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let claimed = sqlx::query(
        "INSERT INTO ingested_batches (batch_id, edge_id, records) VALUES ($1, $2, $3)
         ON CONFLICT (batch_id) DO NOTHING",
    )
    .bind(batch.batch_id)
    .bind(batch.edge_id)
    .bind(prepared.records)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if claimed == 0 {
        tx.rollback().await?;
        return Ok(IngestOutcome::Duplicate);
    }
    let mut rows = 0;
    if !batch.records.is_empty() {
        let mut copy = tx.copy_in_raw(COPY_HEARTBEATS).await?;
        copy.send(prepared.copy_data.as_slice()).await?;
        rows = copy.finish().await?;
    }
    if !prepared.session_ids.is_empty() {
        // Rows are locked in id order first, so two batches naming the same
        // sessions wait for each other instead of deadlocking; sessions
        // already at a later time are neither locked nor written.
        sqlx::query(
            "WITH latest AS (
                 SELECT * FROM unnest($1::uuid[], $2::timestamptz[]) AS t (id, at)
             ), locked AS MATERIALIZED (
                 SELECT s.id FROM sessions s JOIN latest l ON l.id = s.id
                  WHERE s.last_heartbeat_at < l.at
                  ORDER BY s.id
                    FOR UPDATE OF s
             )
             UPDATE sessions s SET last_heartbeat_at = greatest(s.last_heartbeat_at, l.at)
               FROM latest l JOIN locked USING (id)
              WHERE s.id = l.id",
        )
        .bind(&prepared.session_ids)
        .bind(&prepared.session_times)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(IngestOutcome::Committed { rows })
}

/// PostgreSQL's "no partition of relation … found for row".
fn is_missing_partition(error: &sqlx::Error) -> bool {
    error.as_database_error().is_some_and(|e| {
        e.code().is_some_and(|code| code == "23514") && e.message().contains("no partition")
    })
}
