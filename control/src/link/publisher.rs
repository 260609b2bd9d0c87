//! The one publisher among control replicas (a PostgreSQL advisory lock):
//! turns the outbox into deltas as soon as a change commits (the outbox
//! trigger notifies), and publishes a fresh full snapshot at start, on a
//! period, and when the delta chain grows long.

use std::time::{Duration, Instant};

use latchkey_shared::SigningKeyPair;
use sqlx::postgres::PgListener;
use sqlx::{PgPool, Postgres, pool::PoolConnection};
use time::OffsetDateTime;

use crate::db::publish;
use crate::error::DomainResult;

/// The advisory lock key: "latchkey" in ASCII.
const LOCK_KEY: i64 = 0x6c61_7463_686b_6579;
/// The outbox trigger's `NOTIFY` channel.
const OUTBOX_CHANNEL: &str = "latchkey_outbox";
/// Checked this often even without a notification.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct PublisherSettings {
    /// A fresh full snapshot at least this often.
    pub full_every: Duration,
    /// ... or once this many deltas sit on the current full.
    pub max_deltas: u32,
}

impl Default for PublisherSettings {
    fn default() -> Self {
        Self {
            full_every: Duration::from_secs(3600),
            max_deltas: 1000,
        }
    }
}

/// Runs forever: waits for the lock, then publishes while it holds it.
pub async fn run(pool: PgPool, signer: SigningKeyPair, settings: PublisherSettings) {
    loop {
        match acquire(&pool).await {
            Ok(Some(lock)) => {
                tracing::info!("this replica publishes snapshots");
                if let Err(error) = publish_while_held(&pool, &signer, &settings, lock).await {
                    tracing::error!(%error, "publishing stopped; retrying");
                }
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot reach the database to take the publisher lock")
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn acquire(pool: &PgPool) -> DomainResult<Option<PoolConnection<Postgres>>> {
    let mut conn = pool.acquire().await?;
    let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(LOCK_KEY)
        .fetch_one(&mut *conn)
        .await?;
    // The lock lives as long as this connection; leaving the pool with it
    // would hand the lock to whoever borrows the connection next.
    Ok(held.then_some(conn))
}

async fn publish_while_held(
    pool: &PgPool,
    signer: &SigningKeyPair,
    settings: &PublisherSettings,
    mut lock: PoolConnection<Postgres>,
) -> DomainResult<()> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(OUTBOX_CHANNEL).await?;
    let mut base = full(pool, signer).await?;
    let mut full_at = Instant::now();
    let mut deltas = 0u32;
    loop {
        // Losing the lock connection loses the lock: stop publishing then.
        sqlx::query("SELECT 1").execute(&mut *lock).await?;
        if full_at.elapsed() >= settings.full_every || deltas >= settings.max_deltas {
            base = full(pool, signer).await?;
            full_at = Instant::now();
            deltas = 0;
        }
        while let Some(stored) =
            publish::publish_delta(pool, signer, base, OffsetDateTime::now_utc()).await?
        {
            tracing::debug!(
                sequence = stored.sequence,
                bytes = stored.bytes.len(),
                "delta published"
            );
            base = stored.sequence;
            deltas += 1;
        }
        let _ = tokio::time::timeout(POLL, listener.recv()).await;
    }
}

async fn full(pool: &PgPool, signer: &SigningKeyPair) -> DomainResult<u64> {
    let started = Instant::now();
    let built = publish::publish_full(pool, signer, OffsetDateTime::now_utc()).await?;
    let pruned = publish::prune(pool).await?;
    tracing::info!(
        sequence = built.sequence,
        licenses = built.licenses,
        bytes = built.bytes.len(),
        pruned,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "full snapshot published"
    );
    Ok(built.sequence)
}
