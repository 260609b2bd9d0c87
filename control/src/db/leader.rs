//! Which replica publishes snapshots: whoever holds a PostgreSQL advisory
//! lock. The lock lives as long as its connection, so the connection is
//! kept out of the pool while held and closed, not returned, when the lock
//! is dropped (back in the pool it would hand the lock to whoever borrowed
//! it next). Losing the connection loses the lock: the holder notices at its
//! next [`PublisherLock::still_held`].

use sqlx::{PgPool, Postgres, pool::PoolConnection};

/// The advisory lock key: "latchkey" in ASCII.
const LOCK_KEY: i64 = 0x6c61_7463_686b_6579;

#[derive(Debug)]
pub struct PublisherLock(Option<PoolConnection<Postgres>>);

impl PublisherLock {
    /// The lock if no other replica holds it.
    pub async fn try_acquire(pool: &PgPool) -> Result<Option<Self>, sqlx::Error> {
        let mut conn = pool.acquire().await?;
        let held: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(LOCK_KEY)
            .fetch_one(&mut *conn)
            .await?;
        Ok(held.then_some(Self(Some(conn))))
    }

    /// Fails once the lock's connection is gone.
    pub async fn still_held(&mut self) -> Result<(), sqlx::Error> {
        let conn = self.0.as_mut().ok_or(sqlx::Error::PoolClosed)?;
        sqlx::query("SELECT 1").execute(&mut **conn).await?;
        Ok(())
    }
}

impl Drop for PublisherLock {
    fn drop(&mut self) {
        // Detached from the pool, the connection closes when dropped, and
        // PostgreSQL releases the lock with its session.
        if let Some(conn) = self.0.take() {
            drop(conn.detach());
        }
    }
}
