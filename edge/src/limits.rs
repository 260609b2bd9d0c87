//! Local rate limits: GCRA (governor) per license key hash and per client
//! IP, in sharded maps, no lock on the request path. A quota allows its
//! whole minute as a burst, then refills evenly.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use latchkey_shared::KeyHash;

#[derive(Debug)]
pub struct RateLimits {
    per_key: DefaultKeyedRateLimiter<KeyHash>,
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    pub per_key_per_min: u32,
    pub per_ip_per_min: u32,
}

impl RateLimits {
    pub fn new(per_key_per_min: u32, per_ip_per_min: u32) -> Self {
        let quota = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).expect("at least 1"));
        Self {
            per_key: RateLimiter::keyed(quota(per_key_per_min)),
            per_ip: RateLimiter::keyed(quota(per_ip_per_min)),
            per_key_per_min,
            per_ip_per_min,
        }
    }

    /// `Err(wait)` when the IP is over its limit.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Duration> {
        self.per_ip
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    pub fn check_key(&self, key: &KeyHash) -> Result<(), Duration> {
        self.per_key
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Forgets keys and IPs whose buckets are full again: the maps stay as
    /// large as the set of recent callers.
    pub fn forget_idle(&self) {
        self.per_key.retain_recent();
        self.per_ip.retain_recent();
        self.per_key.shrink_to_fit();
        self.per_ip.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hundred_and_first_request_in_a_minute_waits() {
        let limits = RateLimits::new(100, 1000);
        let key = KeyHash([7; 32]);
        for _ in 0..100 {
            assert!(limits.check_key(&key).is_ok());
        }
        let wait = limits.check_key(&key).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        assert!(
            limits.check_key(&KeyHash([8; 32])).is_ok(),
            "other keys are not affected"
        );
    }
}
