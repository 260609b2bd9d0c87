//! Making sure every month of a batch has its `license_heartbeats`
//! partition before the COPY, without asking PostgreSQL for every batch.
//!
//! The maintenance job keeps the current month and the next few in place;
//! records outside them (an edge's spool from last month, a client clock far
//! ahead) would otherwise fail the whole batch with "no partition found for
//! row", and the edge would resend it forever.

use std::collections::BTreeSet;
use std::sync::Mutex;

use sqlx::PgPool;
use time::Date;

/// The months this process has seen a partition for, in one database.
/// One per pool: tests and the bench give each database its own.
#[derive(Debug, Default)]
pub struct KnownPartitions {
    months: Mutex<BTreeSet<Date>>,
}

impl KnownPartitions {
    pub fn new() -> Self {
        Self::default()
    }

    fn unknown(&self, months: &BTreeSet<Date>) -> Vec<Date> {
        let known = self
            .months
            .lock()
            .expect("never poisoned: no panics while held");
        months.difference(&known).copied().collect()
    }

    fn remember(&self, months: &[Date]) {
        let mut known = self
            .months
            .lock()
            .expect("never poisoned: no panics while held");
        known.extend(months.iter().copied());
    }

    /// After a remembered partition turned out to be gone (the retention
    /// job, or an admin, dropped it).
    pub(super) fn forget_all(&self) {
        self.months
            .lock()
            .expect("never poisoned: no panics while held")
            .clear();
    }
}

/// Creates the partitions of `months` (first days) this process does not
/// know to exist. Runs outside the ingest transaction: creating a partition
/// locks the whole table, which must not be held through a COPY.
pub(super) async fn ensure(
    pool: &PgPool,
    known: &KnownPartitions,
    months: &BTreeSet<Date>,
) -> Result<(), sqlx::Error> {
    let unknown = known.unknown(months);
    if unknown.is_empty() {
        return Ok(());
    }
    let created = match create(pool, &unknown).await {
        // Another ingest created the same partition between our existence
        // check and our CREATE; the second attempt sees it.
        Err(error) if is_concurrent_create(&error) => create(pool, &unknown).await?,
        other => other?,
    };
    if created > 0 {
        tracing::info!(created, "heartbeat partitions created for ingested records");
    }
    known.remember(&unknown);
    Ok(())
}

async fn create(pool: &PgPool, months: &[Date]) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT coalesce(sum(latchkey_ensure_heartbeat_partitions(m, 0)), 0)::bigint
           FROM unnest($1::date[]) AS m",
    )
    .bind(months)
    .fetch_one(pool)
    .await
}

/// `duplicate_table`, or the catalog's `unique_violation` when both
/// creators reach the catalog insert.
fn is_concurrent_create(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .is_some_and(|code| code == "42P07" || code == "23505")
}
