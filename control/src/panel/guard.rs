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
/// Failed passwords and second-factor codes, on this replica.
const LOGIN_FAILURES: &str = "latchkey_control_login_failures_total";
/// Networks blocked for their failures, by this replica.
const LOGIN_BLOCKS: &str = "latchkey_control_login_blocks_total";

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

/// Second-factor failures per account within the failure window after
/// which no code is checked for it, and its pre-2FA sessions end: six
/// digits cannot be guessed five at a time.
pub const MAX_SECOND_FACTOR_FAILURES: u64 = 5;
/// The longest an account is slowed to between attempts.
const MAX_SLOWDOWN: Duration = Duration::from_secs(60);

/// Whether an attempt on an account may be decided now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Open,
    /// The account had many recent failures and its next attempt is not due
    /// yet: only a correct password of an account with a second factor
    /// goes on (to the second factor).
    Slowed {
        retry_after_secs: u64,
    },
}

/// The login form's rules over [`Counters`].
///
/// Per client network (an IPv4 address, an IPv6 /64: one host has a whole
/// /64): attempts per minute, and failures, the `max_failures`-th of which
/// blocks the network. Per account, from anywhere: failures slow it down,
/// one attempt per interval that doubles with every further failure, rather
/// than lock it, so an attacker spreading guesses over many networks cannot
/// lock its owner out; second-factor failures are capped. Account counters
/// are cleared only by a whole login, never by the password alone.
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
        // Registered at zero: Prometheus sees a counter's first increase
        // only from an earlier sample, so a first burst would go unalerted.
        metrics::counter!(LOGIN_FAILURES).increment(0);
        metrics::counter!(LOGIN_BLOCKS).increment(0);
        Self {
            counters,
            max_failures: config.login_max_failures,
            failure_window: Duration::from_secs(config.login_failure_window_secs),
            block_secs: config.login_block_secs,
            attempts_per_minute: config.login_attempts_per_minute,
        }
    }

    /// Before a password is looked at: a blocked network, or one over its
    /// attempts per minute, is refused; a slowed account says so.
    pub async fn admit(&self, pool: &PgPool, ip: IpAddr, username: &str) -> PanelResult<Admission> {
        self.admit_network(pool, ip).await?;
        let failures = self.counters.get(&account_key("fail", username)).await?;
        let Some(interval) = self.slowdown(failures) else {
            return Ok(Admission::Open);
        };
        // The first attempt in each interval is decided; the others wait.
        let slot = account_key("slot", username);
        if self.counters.hit(&slot, interval).await? == 1 {
            Ok(Admission::Open)
        } else {
            Ok(Admission::Slowed {
                retry_after_secs: interval.as_secs(),
            })
        }
    }

    /// A blocked network, or one over its attempts per minute, is refused.
    pub async fn admit_network(&self, pool: &PgPool, ip: IpAddr) -> PanelResult<()> {
        if logins::is_blocked(pool, ip).await? {
            return Err(PanelError::IpBlocked);
        }
        let network = network_of(ip);
        if self
            .counters
            .hit(&format!("rate:{network}"), RATE_WINDOW)
            .await?
            > self.attempts_per_minute
        {
            return Err(PanelError::RateLimited);
        }
        Ok(())
    }

    /// `None` below the account threshold (`max_failures` × 4 from anywhere);
    /// then 1 s, doubling per failure, at most [`MAX_SLOWDOWN`].
    fn slowdown(&self, failures: u64) -> Option<Duration> {
        let over = failures.checked_sub(self.max_failures * ACCOUNT_FAILURE_FACTOR)?;
        let secs = 1u64.checked_shl(over.min(16) as u32).unwrap_or(u64::MAX);
        Some(Duration::from_secs(secs).min(MAX_SLOWDOWN))
    }

    /// Counts a failed password or code; the one that reaches the limit
    /// blocks the client's network for the configured time. Returns whether
    /// it did.
    pub async fn failed(
        &self,
        pool: &PgPool,
        ctx: &RequestContext,
        ip: IpAddr,
        username: &str,
        reason: &str,
    ) -> PanelResult<bool> {
        logins::record_attempt(pool, Some(username), ip, false, reason).await?;
        metrics::counter!(LOGIN_FAILURES).increment(1);
        self.counters
            .hit(&account_key("fail", username), self.failure_window)
            .await?;
        let network = network_of(ip);
        let ip_key = format!("fail:ip:{network}");
        let failures = self.counters.hit(&ip_key, self.failure_window).await?;
        if failures < self.max_failures {
            return Ok(false);
        }
        let until = OffsetDateTime::now_utc() + time::Duration::seconds(self.block_secs as i64);
        let reason = format!(
            "{failures} failed logins within {} s",
            self.failure_window.as_secs()
        );
        logins::block(pool, ctx, &network, &reason, None, Some(until)).await?;
        metrics::counter!(LOGIN_BLOCKS).increment(1);
        self.counters.reset(&ip_key).await?;
        tracing::warn!(%network, failures, "network blocked after failed logins");
        Ok(true)
    }

    /// Whether the account may still try a second-factor code now.
    pub async fn second_factor_allowed(&self, username: &str) -> PanelResult<bool> {
        let failures = self.counters.get(&account_key("fail2fa", username)).await?;
        Ok(failures < MAX_SECOND_FACTOR_FAILURES)
    }

    /// Counts a wrong second-factor code (also as a failed login); returns
    /// whether the account's codes are now exhausted for the window.
    pub async fn second_factor_failed(
        &self,
        pool: &PgPool,
        ctx: &RequestContext,
        ip: IpAddr,
        username: &str,
    ) -> PanelResult<(bool, bool)> {
        let blocked = self
            .failed(pool, ctx, ip, username, "bad_second_factor")
            .await?;
        let failures = self
            .counters
            .hit(&account_key("fail2fa", username), self.failure_window)
            .await?;
        Ok((blocked, failures >= MAX_SECOND_FACTOR_FAILURES))
    }

    /// The password was right; the login is not done while a second factor
    /// is due, so nothing is cleared yet.
    pub async fn password_passed(
        &self,
        pool: &PgPool,
        ip: IpAddr,
        username: &str,
    ) -> PanelResult<()> {
        logins::record_attempt(pool, Some(username), ip, true, "password_ok").await?;
        Ok(())
    }

    /// A whole login succeeded: the account's counters start over.
    pub async fn succeeded(&self, pool: &PgPool, ip: IpAddr, username: &str) -> PanelResult<()> {
        logins::record_attempt(pool, Some(username), ip, true, "ok").await?;
        for kind in ["fail", "fail2fa", "slot"] {
            self.counters.reset(&account_key(kind, username)).await?;
        }
        Ok(())
    }
}

/// What one client is counted and blocked as: an IPv4 address, or the /64
/// of an IPv6 one (a single host is routinely given a whole /64).
pub fn network_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                format!("{}/64", std::net::Ipv6Addr::from(prefix))
            }
        },
    }
}

fn account_key(kind: &str, username: &str) -> String {
    let name: String = username
        .to_lowercase()
        .chars()
        .take(MAX_USERNAME_KEY_CHARS)
        .collect();
    format!("{kind}:user:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_count_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(network_of(a), "2001:db8:1:2::/64");
        assert_eq!(network_of(a), network_of(b));
        assert_ne!(
            network_of(a),
            network_of("2001:db8:1:3::1".parse().unwrap())
        );
        assert_eq!(network_of("203.0.113.7".parse().unwrap()), "203.0.113.7");
        assert_eq!(
            network_of("::ffff:203.0.113.7".parse().unwrap()),
            "203.0.113.7"
        );
    }

    #[test]
    fn the_slowdown_doubles_from_the_account_threshold() {
        let guard = LoginGuard::with_counters(&PanelConfig::default(), Counters::memory());
        let threshold = PanelConfig::default().login_max_failures * ACCOUNT_FAILURE_FACTOR;
        assert_eq!(guard.slowdown(threshold - 1), None);
        assert_eq!(guard.slowdown(threshold), Some(Duration::from_secs(1)));
        assert_eq!(guard.slowdown(threshold + 3), Some(Duration::from_secs(8)));
        assert_eq!(guard.slowdown(threshold + 40), Some(MAX_SLOWDOWN));
    }

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
