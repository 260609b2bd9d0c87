//! Publishing: the outbox turned into numbered, signed deltas, and every
//! published snapshot (full or delta) stored with its bytes, so each control
//! replica can relay the same chain to its edges.

use latchkey_shared::SigningKeyPair;
use latchkey_shared::snapshot::{DeltaBody, RevokedSession};
use sqlx::{PgConnection, PgPool};
use time::OffsetDateTime;
use uuid::Uuid;

use super::notify::{SNAPSHOTS, notify};
use super::snapshot::{self, BuiltSnapshot, LicenseRow};
use super::{flags, products, settings};
use crate::error::{DomainError, DomainResult};

/// Outbox rows turned into one delta at most; more wait for the next one.
const ROWS_PER_DELTA: i64 = 5_000;

/// A published snapshot as replicas relay it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub sequence: u64,
    /// `None` for a full snapshot.
    pub base: Option<u64>,
    pub bytes: Vec<u8>,
}

/// The newest published sequence.
pub async fn latest_sequence(pool: &PgPool) -> DomainResult<Option<u64>> {
    let latest: Option<i64> =
        sqlx::query_scalar("SELECT max(sequence) FROM snapshots WHERE body IS NOT NULL")
            .fetch_one(pool)
            .await?;
    Ok(latest.map(|s| s as u64))
}

/// Builds a full snapshot and publishes it (bytes stored for the relays).
pub async fn publish_full(
    pool: &PgPool,
    signer: &SigningKeyPair,
    now: OffsetDateTime,
    valid_secs: i64,
) -> DomainResult<BuiltSnapshot> {
    let built = snapshot::build_full(pool, signer, now, valid_secs).await?;
    sqlx::query("UPDATE snapshots SET body = $2 WHERE sequence = $1")
        .bind(built.sequence as i64)
        .bind(&built.bytes)
        .execute(pool)
        .await?;
    notify(pool, SNAPSHOTS).await?;
    Ok(built)
}

/// Turns pending outbox rows into the next delta on `base`, in one
/// transaction (the rows are marked with the delta's sequence). `None` when
/// nothing is pending.
/// A delta's validity is the edge's too: applying it moves the edge's
/// expiry to `now + valid_secs`.
pub async fn publish_delta(
    pool: &PgPool,
    signer: &SigningKeyPair,
    base: u64,
    now: OffsetDateTime,
    valid_secs: i64,
) -> DomainResult<Option<Stored>> {
    let mut tx = pool.begin().await?;
    let rows: Vec<(i64, String, String, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT id, entity_kind, entity_id, key_hash FROM snapshot_outbox
          WHERE published_in IS NULL ORDER BY id LIMIT $1 FOR UPDATE",
    )
    .bind(ROWS_PER_DELTA)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut pending = Pending::default();
    for (_, kind, id, key_hash) in &rows {
        pending.add(kind, id, key_hash.as_deref());
    }
    let body = pending.load(&mut tx, pool, now).await?;
    // Above every recorded sequence, exported snapshots included.
    let sequence: i64 = sqlx::query_scalar("SELECT coalesce(max(sequence), 0) + 1 FROM snapshots")
        .fetch_one(&mut *tx)
        .await?;
    let sequence = sequence as u64;
    let created_at = now.unix_timestamp();
    let bytes = body
        .seal(signer, base, sequence, created_at, created_at + valid_secs)
        .map_err(|e| DomainError::Internal(e.to_string()))?;
    sqlx::query(
        "INSERT INTO snapshots (sequence, kind, base_sequence, key_id, size_bytes, licenses, created_at, body)
         VALUES ($1, 'delta', $2, $3, $4, $5, $6, $7)",
    )
    .bind(sequence as i64)
    .bind(base as i64)
    .bind(signer.id().to_string())
    .bind(bytes.len() as i64)
    .bind(body.licenses.len() as i64)
    .bind(now)
    .bind(&bytes)
    .execute(&mut *tx)
    .await?;
    let ids: Vec<i64> = rows.iter().map(|row| row.0).collect();
    sqlx::query("UPDATE snapshot_outbox SET published_in = $1 WHERE id = ANY($2)")
        .bind(sequence as i64)
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    notify(&mut *tx, SNAPSHOTS).await?;
    tx.commit().await?;
    Ok(Some(Stored {
        sequence,
        base: Some(base),
        bytes,
    }))
}

/// The chain an edge needs to serve the newest sequence: the latest full
/// snapshot and the deltas published after it, in order.
pub async fn chain(pool: &PgPool) -> DomainResult<Vec<Stored>> {
    let rows: Vec<(i64, Option<i64>, Vec<u8>)> = sqlx::query_as(
        "SELECT sequence, base_sequence, body FROM snapshots
          WHERE body IS NOT NULL
            AND sequence >= (SELECT coalesce(max(sequence), 0) FROM snapshots WHERE kind = 'full' AND body IS NOT NULL)
          ORDER BY sequence",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(stored).collect())
}

/// Published snapshots after `sequence`, in order.
pub async fn after(pool: &PgPool, sequence: u64) -> DomainResult<Vec<Stored>> {
    let rows: Vec<(i64, Option<i64>, Vec<u8>)> = sqlx::query_as(
        "SELECT sequence, base_sequence, body FROM snapshots
          WHERE body IS NOT NULL AND sequence > $1 ORDER BY sequence",
    )
    .bind(sequence as i64)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(stored).collect())
}

/// Drops the bytes of snapshots older than the newest full one: no edge
/// can be sent them any more.
pub async fn prune(pool: &PgPool) -> DomainResult<u64> {
    Ok(sqlx::query(
        "UPDATE snapshots SET body = NULL
          WHERE body IS NOT NULL
            AND sequence < (SELECT coalesce(max(sequence), 0) FROM snapshots WHERE kind = 'full' AND body IS NOT NULL)",
    )
    .execute(pool)
    .await?
    .rows_affected())
}

fn stored((sequence, base, bytes): (i64, Option<i64>, Vec<u8>)) -> Stored {
    Stored {
        sequence: sequence as u64,
        base: base.map(|b| b as u64),
        bytes,
    }
}

/// What the outbox rows of one delta name.
#[derive(Debug, Default)]
struct Pending {
    licenses: Vec<Uuid>,
    removed: Vec<[u8; 32]>,
    sessions: Vec<Uuid>,
    products: bool,
    flags: bool,
    config: bool,
}

impl Pending {
    fn add(&mut self, kind: &str, id: &str, key_hash: Option<&[u8]>) {
        match kind {
            "license" => {
                if let Some(hash) = key_hash.and_then(|h| <[u8; 32]>::try_from(h).ok()) {
                    self.removed.push(hash);
                } else if let Ok(id) = id.parse() {
                    self.licenses.push(id);
                }
            }
            "session" => self.sessions.extend(id.parse::<Uuid>().ok()),
            "product" => self.products = true,
            "flags" => self.flags = true,
            "config" => self.config = true,
            other => tracing::warn!(kind = other, "unknown outbox entity kind skipped"),
        }
    }

    /// The delta body: whole records, read now (so a record changed again
    /// since its outbox row was written goes out in its newest state).
    async fn load(
        self,
        conn: &mut PgConnection,
        pool: &PgPool,
        now: OffsetDateTime,
    ) -> DomainResult<DeltaBody> {
        let mut body = DeltaBody::default();
        let rows: Vec<LicenseRow> = sqlx::query_as(snapshot::LICENSES_BY_ID)
            .bind(&self.licenses)
            .fetch_all(&mut *conn)
            .await?;
        for row in rows {
            body.upsert(snapshot::entry(row)?);
        }
        for key_hash in self.removed {
            body.remove(key_hash);
        }
        let ended: Vec<(Uuid, OffsetDateTime)> = sqlx::query_as(
            "SELECT id, token_expires_at FROM sessions
              WHERE id = ANY($1) AND ended_at IS NOT NULL AND token_expires_at > $2",
        )
        .bind(&self.sessions)
        .bind(now)
        .fetch_all(&mut *conn)
        .await?;
        body.revoked_sessions = ended
            .into_iter()
            .map(|(session_id, expires)| RevokedSession {
                session_id,
                token_expires_at: expires.unix_timestamp(),
            })
            .collect();
        if self.products {
            body.products = Some(products::snapshot_products(pool).await?);
        }
        if self.flags {
            body.flags = Some(flags::snapshot_flags(pool).await?);
        }
        if self.config {
            body.config = Some(settings::edge_config(pool).await?);
        }
        Ok(body)
    }
}
