//! Brute-force defence for the login form. Counters (failures per IP and per
//! account, attempts per IP per minute) live behind [`Counters`]: in this
//! process, or in Redis so that every control replica sees the same counts.
//! Blocks themselves are rows in `blocked_ips` (see `db::logins`), which
//! every replica already shares.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use super::error::{PanelError, PanelResult};
use crate::config::PanelConfig;
use crate::context::RequestContext;
use crate::db::logins;

/// Past this many keys the in-process map drops expired windows.
const MEMORY_PRUNE_AT: usize = 10_000;
const RATE_WINDOW: Duration = Duration::from_secs(60);
const MAX_USERNAME_KEY_CHARS: usize = 128;
/// An account is throttled after this many times the per-IP limit of
/// failures, from any addresses: enough to stop a password spray spread over
/// many IPs, while one attacker's block does not lock the owner out.
const ACCOUNT_FAILURE_FACTOR: u64 = 4;

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Fixed-window counters: a window opens at a key's first hit and lasts
/// `window`; the count resets when it closes.
pub enum Counters {
    Memory(Mutex<HashMap<String, (Instant, u64)>>),
    Redis {
        client: redis::Client,
        /// Connected on first use, so building the state needs no I/O.
        connection: OnceCell<ConnectionManager>,
        namespace: String,
    },
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory(_) => f.write_str("Counters::Memory"),
            Self::Redis { namespace, .. } => write!(f, "Counters::Redis({namespace})"),
        }
    }
}

impl Counters {
    pub fn memory() -> Self {
        Self::Memory(Mutex::new(HashMap::new()))
    }

    /// Keys are prefixed with `namespace:`, so tests and deployments can share a server.
    pub fn redis(url: &str, namespace: &str) -> Result<Self, GuardError> {
        Ok(Self::Redis {
            client: redis::Client::open(url)?,
            connection: OnceCell::new(),
            namespace: namespace.to_owned(),
        })
    }

    /// Counts one hit on `key` and returns the count in its current window.
    pub async fn hit(&self, key: &str, window: Duration) -> Result<u64, GuardError> {
        match self {
            Self::Memory(map) => {
                let now = Instant::now();
                let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if map.len() > MEMORY_PRUNE_AT {
                    map.retain(|_, (ends, _)| *ends > now);
                }
                let entry = map.entry(key.to_owned()).or_insert((now + window, 0));
                if entry.0 <= now {
                    *entry = (now + window, 0);
                }
                entry.1 += 1;
                Ok(entry.1)
            }
            Self::Redis {
                client,
                connection,
                namespace,
            } => {
                let mut connection = connect(client, connection).await?;
                let key = format!("{namespace}:{key}");
                // SET NX opens the window with its expiry; INCR keeps the TTL.
                // One MULTI, so a crash never leaves a counter without expiry.
                let (count,): (u64,) = redis::pipe()
                    .atomic()
                    .cmd("SET")
                    .arg(&key)
                    .arg(0)
                    .arg("PX")
                    .arg(window.as_millis() as u64)
                    .arg("NX")
                    .ignore()
                    .incr(&key, 1)
                    .query_async(&mut connection)
                    .await?;
                Ok(count)
            }
        }
    }

    /// The count in `key`'s current window, without counting.
    pub async fn get(&self, key: &str) -> Result<u64, GuardError> {
        match self {
            Self::Memory(map) => {
                let map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                Ok(map
                    .get(key)
                    .filter(|(ends, _)| *ends > Instant::now())
                    .map_or(0, |(_, count)| *count))
            }
            Self::Redis {
                client,
                connection,
                namespace,
            } => {
                let mut connection = connect(client, connection).await?;
                let count: Option<u64> = redis::cmd("GET")
                    .arg(format!("{namespace}:{key}"))
                    .query_async(&mut connection)
                    .await?;
                Ok(count.unwrap_or(0))
            }
        }
    }

    pub async fn reset(&self, key: &str) -> Result<(), GuardError> {
        match self {
            Self::Memory(map) => {
                map.lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .remove(key);
                Ok(())
            }
            Self::Redis {
                client,
                connection,
                namespace,
            } => {
                let mut connection = connect(client, connection).await?;
                let _: () = redis::cmd("DEL")
                    .arg(format!("{namespace}:{key}"))
                    .query_async(&mut connection)
                    .await?;
                Ok(())
            }
        }
    }
}

async fn connect(
    client: &redis::Client,
    cell: &OnceCell<ConnectionManager>,
) -> Result<ConnectionManager, GuardError> {
    Ok(cell
        .get_or_try_init(|| ConnectionManager::new(client.clone()))
        .await?
        .clone())
}

/// The login form's rules over [`Counters`].
#[derive(Debug)]
pub struct LoginGuard {
    counters: Counters,
    max_failures: u64,
    failure_window: Duration,
    block_secs: u64,
    attempts_per_minute: u64,
}

impl LoginGuard {
    pub fn new(
        config: &PanelConfig,
        redis_url: Option<&SecretString>,
        namespace: &str,
    ) -> Result<Self, GuardError> {
        let counters = match redis_url {
            Some(url) => Counters::redis(url.expose_secret(), namespace)?,
            None => Counters::memory(),
        };
        Ok(Self::with_counters(config, counters))
    }

    pub fn with_counters(config: &PanelConfig, counters: Counters) -> Self {
        Self {
            counters,
            max_failures: config.login_max_failures,
            failure_window: Duration::from_secs(config.login_failure_window_secs),
            block_secs: config.login_block_secs,
            attempts_per_minute: config.login_attempts_per_minute,
        }
    }

    /// Before a password is even looked at: a blocked IP, one over its
    /// per-minute attempts, or an account with too many recent failures is
    /// refused.
    pub async fn admit(&self, pool: &PgPool, ip: IpAddr, username: &str) -> PanelResult<()> {
        if logins::is_blocked(pool, ip).await? {
            return Err(PanelError::IpBlocked);
        }
        if self
            .counters
            .hit(&format!("rate:{ip}"), RATE_WINDOW)
            .await?
            > self.attempts_per_minute
        {
            return Err(PanelError::RateLimited);
        }
        let account_failures = self.counters.get(&account_key(username)).await?;
        if account_failures >= self.max_failures * ACCOUNT_FAILURE_FACTOR {
            return Err(PanelError::RateLimited);
        }
        Ok(())
    }

    /// Counts a failure; the one that reaches the limit blocks the IP for
    /// the configured time. Returns whether it did.
    pub async fn failed(
        &self,
        pool: &PgPool,
        ctx: &RequestContext,
        ip: IpAddr,
        username: &str,
        reason: &str,
    ) -> PanelResult<bool> {
        logins::record_attempt(pool, Some(username), ip, false, reason).await?;
        self.counters
            .hit(&account_key(username), self.failure_window)
            .await?;
        let ip_key = format!("fail:ip:{ip}");
        let failures = self.counters.hit(&ip_key, self.failure_window).await?;
        if failures < self.max_failures {
            return Ok(false);
        }
        let until = OffsetDateTime::now_utc() + time::Duration::seconds(self.block_secs as i64);
        let reason = format!(
            "{failures} failed logins within {} s",
            self.failure_window.as_secs()
        );
        logins::block(pool, ctx, &ip.to_string(), &reason, None, Some(until)).await?;
        self.counters.reset(&ip_key).await?;
        tracing::warn!(%ip, failures, "IP blocked after failed logins");
        Ok(true)
    }

    pub async fn succeeded(&self, pool: &PgPool, ip: IpAddr, username: &str) -> PanelResult<()> {
        logins::record_attempt(pool, Some(username), ip, true, "ok").await?;
        self.counters.reset(&account_key(username)).await?;
        Ok(())
    }
}

fn account_key(username: &str) -> String {
    let name: String = username
        .to_lowercase()
        .chars()
        .take(MAX_USERNAME_KEY_CHARS)
        .collect();
    format!("fail:user:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_windows_count_and_reset() {
        let counters = Counters::memory();
        assert_eq!(counters.hit("k", Duration::from_secs(60)).await.unwrap(), 1);
        assert_eq!(counters.hit("k", Duration::from_secs(60)).await.unwrap(), 2);
        assert_eq!(counters.get("k").await.unwrap(), 2);
        counters.reset("k").await.unwrap();
        assert_eq!(counters.get("k").await.unwrap(), 0);
        assert_eq!(
            counters
                .hit("short", Duration::from_millis(20))
                .await
                .unwrap(),
            1
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert_eq!(counters.get("short").await.unwrap(), 0);
        assert_eq!(
            counters
                .hit("short", Duration::from_millis(20))
                .await
                .unwrap(),
            1
        );
    }
}
