//! The requests this replica answered, counted as they finish and sampled
//! every [`SAMPLE_EVERY`] into the last ten minutes of rates: the
//! monitoring page's chart without a Prometheus. One replica's view;
//! Prometheus and Grafana hold the fleet's.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub const SAMPLE_EVERY: Duration = Duration::from_secs(10);
/// Ten minutes of samples, and one more to take the first rate from.
const KEPT: usize = 61;

#[derive(Debug, Default)]
pub struct Traffic {
    requests: AtomicU64,
    server_errors: AtomicU64,
    samples: Mutex<VecDeque<Sample>>,
}

/// The totals at one moment (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    at: i64,
    requests: u64,
    server_errors: u64,
}

/// Requests and 5xx answers per second between two samples, ending `at`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub at: i64,
    pub requests: f64,
    pub server_errors: f64,
}

impl Traffic {
    pub fn record(&self, status: u16) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 500 {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Takes a sample at `at`; the oldest beyond ten minutes is dropped.
    pub fn sample(&self, at: i64) {
        let sample = Sample {
            at,
            requests: self.requests.load(Ordering::Relaxed),
            server_errors: self.server_errors.load(Ordering::Relaxed),
        };
        let mut samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples.push_back(sample);
        while samples.len() > KEPT {
            samples.pop_front();
        }
    }

    /// The rates between consecutive samples, oldest first.
    pub fn rates(&self) -> Vec<Rate> {
        let samples = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        samples
            .iter()
            .zip(samples.iter().skip(1))
            .filter(|(before, after)| after.at > before.at)
            .map(|(before, after)| {
                let secs = (after.at - before.at) as f64;
                Rate {
                    at: after.at,
                    requests: after.requests.saturating_sub(before.requests) as f64 / secs,
                    server_errors: after.server_errors.saturating_sub(before.server_errors) as f64
                        / secs,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_the_differences_per_second_over_the_last_ten_minutes() {
        let traffic = Traffic::default();
        traffic.sample(0);
        for _ in 0..20 {
            traffic.record(200);
        }
        traffic.record(503);
        traffic.record(404);
        traffic.sample(10);
        assert_eq!(
            traffic.rates(),
            [Rate {
                at: 10,
                requests: 2.2,
                server_errors: 0.1
            }]
        );
        for n in 2..100 {
            traffic.sample(n * 10);
        }
        let rates = traffic.rates();
        assert_eq!(rates.len(), KEPT - 1);
        assert_eq!(rates.last().unwrap().at, 990);
        assert!(rates.iter().all(|rate| rate.requests == 0.0));
    }
}
