//! The one publisher among control replicas (a PostgreSQL advisory lock):
//! turns the outbox into deltas as soon as a change commits (the outbox
//! trigger notifies), and publishes a fresh full snapshot at start, on a
//! period, and when the delta chain grows long.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use latchkey_shared::SigningKeyPair;
use sqlx::PgPool;
use time::OffsetDateTime;

use crate::db::leader::PublisherLock;
use crate::db::notify::{self, Listener};
use crate::db::publish;
use crate::error::{DomainResult, cause_chain};

/// Checked this often even without a notification.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct PublisherSettings {
    /// A fresh full snapshot at least this often.
    pub full_every: Duration,
    /// ... or once this many deltas sit on the current full.
    pub max_deltas: u32,
}

impl PublisherSettings {
    /// How long each published snapshot is valid: three full-snapshot
    /// periods, so an edge that misses a full or two keeps answering, while
    /// one cut off from control stops vouching for licenses within hours
    /// (clients then live on their offline lease). Never below 15 minutes.
    pub fn valid_secs(&self) -> i64 {
        i64::try_from(self.full_every.as_secs().saturating_mul(3))
            .unwrap_or(i64::MAX)
            .max(15 * 60)
    }
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
/// `publishing` says whether this replica holds the lock.
pub async fn run(
    pool: PgPool,
    signer: SigningKeyPair,
    settings: PublisherSettings,
    publishing: Arc<AtomicBool>,
) {
    loop {
        match PublisherLock::try_acquire(&pool).await {
            Ok(Some(lock)) => {
                tracing::info!("this replica publishes snapshots");
                publishing.store(true, Ordering::Relaxed);
                metrics::gauge!("latchkey_control_publisher_leader").set(1.0);
                if let Err(error) = publish_while_held(&pool, &signer, &settings, lock).await {
                    tracing::error!(error = %cause_chain(&error), "publishing stopped; retrying");
                }
                publishing.store(false, Ordering::Relaxed);
                metrics::gauge!("latchkey_control_publisher_leader").set(0.0);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot reach the database to take the publisher lock")
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn publish_while_held(
    pool: &PgPool,
    signer: &SigningKeyPair,
    settings: &PublisherSettings,
    mut lock: PublisherLock,
) -> DomainResult<()> {
    let mut outbox = Listener::listen(pool, notify::OUTBOX).await?;
    let mut base = full(pool, signer, settings.valid_secs()).await?;
    let mut full_at = Instant::now();
    let mut deltas = 0u32;
    loop {
        lock.still_held().await?;
        if full_at.elapsed() >= settings.full_every || deltas >= settings.max_deltas {
            base = full(pool, signer, settings.valid_secs()).await?;
            full_at = Instant::now();
            deltas = 0;
        }
        while let Some(stored) = publish::publish_delta(
            pool,
            signer,
            base,
            OffsetDateTime::now_utc(),
            settings.valid_secs(),
        )
        .await?
        {
            tracing::debug!(
                sequence = stored.sequence,
                bytes = stored.bytes.len(),
                "delta published"
            );
            base = stored.sequence;
            deltas += 1;
            published("delta", base);
        }
        outbox.wait(POLL).await?;
    }
}

async fn full(pool: &PgPool, signer: &SigningKeyPair, valid_secs: i64) -> DomainResult<u64> {
    let started = Instant::now();
    let built = publish::publish_full(pool, signer, OffsetDateTime::now_utc(), valid_secs).await?;
    published("full", built.sequence);
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

fn published(kind: &'static str, sequence: u64) {
    metrics::counter!("latchkey_control_snapshots_published_total", "kind" => kind).increment(1);
    metrics::gauge!("latchkey_control_publisher_sequence").set(sequence as f64);
}
