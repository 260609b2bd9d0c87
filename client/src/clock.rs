//! The time the offline checks read. Injected, so an application (or a
//! test) can give its own: a trusted time source, or a clock moved at will.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, as the lease's times are.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> i64;
}

/// The operating system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }
}
