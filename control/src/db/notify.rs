//! PostgreSQL notifications as wake-ups: a listener on one channel, whose
//! `NOTIFY` says "look again" (the payload is not read; every reader polls as
//! a fallback, so a lost notification only delays).

use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;

/// The outbox trigger notifies here when a change an edge must learn of
/// commits.
pub const OUTBOX: &str = "latchkey_outbox";
/// The publisher notifies here when it stored a snapshot.
pub const SNAPSHOTS: &str = "latchkey_snapshots";

/// A connection listening on one channel.
#[derive(Debug)]
pub struct Listener(PgListener);

impl Listener {
    pub async fn listen(pool: &PgPool, channel: &str) -> Result<Self, sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        listener.listen(channel).await?;
        Ok(Self(listener))
    }

    /// Waits for a notification or `timeout`, whichever comes first. An error
    /// means the connection is gone: listen again.
    pub async fn wait(&mut self, timeout: Duration) -> Result<(), sqlx::Error> {
        match tokio::time::timeout(timeout, self.0.recv()).await {
            Ok(Err(error)) => Err(error),
            Ok(Ok(_)) | Err(_) => Ok(()),
        }
    }
}

/// Wakes the listeners of `channel` (in a transaction: sent on commit,
/// dropped on rollback).
pub async fn notify(executor: impl sqlx::PgExecutor<'_>, channel: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(channel)
        .execute(executor)
        .await?;
    Ok(())
}
