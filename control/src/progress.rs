//! How far a long job has come: units (rows, lines) done of a total, by
//! stage, with the time left estimated from the stage's pace so far. The
//! job advances it from wherever it runs; the panel's event stream and the
//! CLI's progress bar read it. Cloning shares it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

#[derive(Debug, Clone)]
pub struct Progress(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    done: AtomicU64,
    /// `u64::MAX` while the total is not known.
    total: AtomicU64,
    stage: Mutex<Stage>,
}

#[derive(Debug, Clone, Copy)]
struct Stage {
    name: &'static str,
    unit: &'static str,
    started: Instant,
}

/// What a reader sees, at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct ProgressView {
    pub stage: &'static str,
    /// What `done` and `total` count: "rows", "lines", "bytes".
    pub unit: &'static str,
    pub done: u64,
    pub total: Option<u64>,
    pub elapsed_secs: f64,
    /// From the stage's pace so far; none before the first unit is done.
    pub eta_secs: Option<f64>,
    /// Done of the total as a percentage; none while the total is unknown.
    pub percent: Option<u64>,
    /// All of it in words, as the panel and the CLI print it.
    pub line: String,
}

impl Default for Progress {
    fn default() -> Self {
        Self::new("starting", "rows")
    }
}

impl Progress {
    pub fn new(stage: &'static str, unit: &'static str) -> Self {
        Self(Arc::new(Shared {
            done: AtomicU64::new(0),
            total: AtomicU64::new(u64::MAX),
            stage: Mutex::new(Stage {
                name: stage,
                unit,
                started: Instant::now(),
            }),
        }))
    }

    /// Starts the next stage of the job: nothing done yet of `total`.
    pub fn stage(&self, name: &'static str, unit: &'static str, total: Option<u64>) {
        let mut stage = self.0.stage.lock().expect("progress stage");
        *stage = Stage {
            name,
            unit,
            started: Instant::now(),
        };
        self.0.done.store(0, Ordering::Relaxed);
        self.0
            .total
            .store(total.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn set_total(&self, total: u64) {
        self.0.total.store(total, Ordering::Relaxed);
    }

    pub fn advance(&self, units: u64) {
        self.0.done.fetch_add(units, Ordering::Relaxed);
    }

    pub fn set_done(&self, units: u64) {
        self.0.done.store(units, Ordering::Relaxed);
    }

    pub fn view(&self) -> ProgressView {
        let stage = *self.0.stage.lock().expect("progress stage");
        let done = self.0.done.load(Ordering::Relaxed);
        let total = Some(self.0.total.load(Ordering::Relaxed)).filter(|&t| t != u64::MAX);
        let elapsed = stage.started.elapsed();
        let eta_secs = total.and_then(|total| time_left(done, total, elapsed));
        let percent = total.map(|total| match total {
            0 => 100,
            total => done.min(total) * 100 / total,
        });
        let mut line = format!("{}: {done}", stage.name);
        if let Some(total) = total {
            line.push_str(&format!(" of {total}"));
        }
        line.push_str(&format!(" {}", stage.unit));
        if let Some(eta) = eta_secs {
            line.push_str(&format!(", about {} s left", eta.ceil() as u64));
        }
        ProgressView {
            stage: stage.name,
            unit: stage.unit,
            done,
            total,
            elapsed_secs: elapsed.as_secs_f64(),
            eta_secs,
            percent,
            line,
        }
    }
}

/// The rest at the pace so far; none before a fiftieth is done, when the
/// pace says little yet (a dump's small tables come first, its big ones
/// later).
fn time_left(done: u64, total: u64, elapsed: Duration) -> Option<f64> {
    if done == 0 || done.saturating_mul(50) < total {
        return None;
    }
    let rest = total.saturating_sub(done) as f64;
    Some(elapsed.as_secs_f64() * rest / done as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_time_left_follows_the_pace_so_far() {
        assert_eq!(time_left(0, 100, Duration::from_secs(5)), None);
        assert_eq!(time_left(1, 100, Duration::from_secs(5)), None, "too early");
        assert_eq!(time_left(2, 100, Duration::from_secs(1)), Some(49.0));
        assert_eq!(time_left(25, 100, Duration::from_secs(5)), Some(15.0));
        assert_eq!(time_left(100, 100, Duration::from_secs(5)), Some(0.0));
        // A total that was low (rows added meanwhile) never goes negative.
        assert_eq!(time_left(120, 100, Duration::from_secs(5)), Some(0.0));
    }

    #[test]
    fn a_stage_starts_from_nothing_done() {
        let progress = Progress::new("dumping", "rows");
        progress.set_total(10);
        progress.advance(4);
        let view = progress.view();
        assert_eq!(
            (view.stage, view.done, view.total),
            ("dumping", 4, Some(10))
        );
        assert_eq!(view.percent, Some(40));
        assert!(
            view.line.starts_with("dumping: 4 of 10 rows"),
            "{}",
            view.line
        );
        progress.stage("checksum", "bytes", None);
        let view = progress.view();
        assert_eq!(
            (view.stage, view.unit, view.done, view.total),
            ("checksum", "bytes", 0, None)
        );
        assert_eq!((view.eta_secs, view.percent), (None, None));
        assert_eq!(view.line, "checksum: 0 bytes");
    }
}
