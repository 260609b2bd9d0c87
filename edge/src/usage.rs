//! Usage upstream: every verification, heartbeat and session event becomes
//! a usage record, shipped to control in batches with a batch id.
//!
//! Verifications are counted per license and minute (one record with a
//! count), so the volume grows with clients, not with request rate. Records
//! wait in a bounded queue of batches; a batch is forgotten only once
//! control has committed it (or had committed it before: the batch id makes
//! a redelivery harmless). While control is unreachable the queue fills,
//! then batches spill to a bounded disk spool when one is configured; what
//! fits in neither is dropped and counted, never silently.

use std::collections::{HashMap, VecDeque};
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use latchkey_shared::link::{Call, Reply};
use latchkey_shared::usage::{UsageBatch, UsageKind, UsageRecord};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::link::Link;

/// Limits and timing of the usage pipeline.
#[derive(Debug, Clone)]
pub struct UsageSettings {
    /// Records per batch at most.
    pub batch_records: usize,
    /// A batch is cut at least this often.
    pub flush_every: Duration,
    /// Records held in memory at most (queued batches).
    pub queue_records: usize,
    /// Where batches go when the queue is full; none: they are dropped.
    pub spool_dir: Option<PathBuf>,
    pub spool_max_bytes: u64,
}

/// Verifications counted per (license, minute).
type VerifyCounts = HashMap<(Uuid, i64), u32>;

/// The recorder request handlers write to.
#[derive(Debug)]
pub struct Usage {
    settings: UsageSettings,
    /// Verifications per (license, minute), in shards each thread takes one
    /// of for itself ([`own_shard`]): the verifies of one popular license do
    /// not all queue on one lock. `cut` merges them.
    verified: Box<[Mutex<VerifyCounts>]>,
    /// Every other record, in arrival order.
    events: Mutex<Vec<UsageRecord>>,
    queue: Mutex<Queue>,
    /// Wakes the sender when a batch is queued.
    queued: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    batches: VecDeque<Arc<UsageBatch>>,
    records: usize,
}

/// Why records were dropped: the `reason` of
/// `latchkey_edge_usage_dropped_records_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dropped {
    /// The queue was full and no spool is configured.
    NoSpool,
    Encode,
    SpoolIo,
    SpoolFull,
    /// Control refused the batch for good (not retryable).
    Refused,
}

impl Dropped {
    const ALL: [Self; 5] = [
        Self::NoSpool,
        Self::Encode,
        Self::SpoolIo,
        Self::SpoolFull,
        Self::Refused,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::NoSpool => "no_spool",
            Self::Encode => "encode",
            Self::SpoolIo => "spool_io",
            Self::SpoolFull => "spool_full",
            Self::Refused => "refused",
        }
    }

    fn count(self, records: u64) {
        metrics::counter!("latchkey_edge_usage_dropped_records_total", "reason" => self.label())
            .increment(records);
    }
}

/// The disk spool's size and bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolUse {
    pub used_bytes: u64,
    pub max_bytes: u64,
}

impl Usage {
    pub fn new(settings: UsageSettings) -> Self {
        // At zero from the start: Prometheus sees a counter's first increase
        // only from an earlier sample, so the first drop would go unalerted.
        for reason in Dropped::ALL {
            reason.count(0);
        }
        metrics::counter!("latchkey_edge_usage_committed_records_total").increment(0);
        metrics::gauge!("latchkey_edge_usage_queued_records").set(0.0);
        // Twice the cores: the server's threads rarely share one.
        let shards = 2 * std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
        Self {
            settings,
            verified: (0..shards).map(|_| Mutex::default()).collect(),
            events: Mutex::new(Vec::new()),
            queue: Mutex::new(Queue::default()),
            queued: Notify::new(),
        }
    }

    /// One verification of `license_id` at `now` (Unix seconds, the
    /// verify's own clock reading), counted into its minute.
    pub fn verified(&self, license_id: Uuid, now: i64) {
        let shard = &self.verified[own_shard() % self.verified.len()];
        let mut counts = shard.lock().expect("not poisoned");
        let count = counts.entry((license_id, now / 60)).or_insert(0);
        *count = count.saturating_add(1);
    }

    /// A record as it is (heartbeats and session events).
    pub fn record(&self, record: UsageRecord) {
        let full = {
            let mut events = self.events.lock().expect("not poisoned");
            events.push(record);
            events.len() >= self.settings.batch_records
        };
        if full {
            self.cut();
        }
    }

    /// Records waiting to be committed by control (queued, not spooled).
    pub fn queued_records(&self) -> usize {
        self.queue.lock().expect("not poisoned").records
    }

    /// `None` when no spool is configured.
    pub fn spool(&self) -> Option<SpoolUse> {
        let dir = self.settings.spool_dir.as_ref()?;
        Some(SpoolUse {
            used_bytes: spool::used(dir),
            max_bytes: self.settings.spool_max_bytes,
        })
    }

    /// Turns what was recorded into batches on the queue.
    pub fn cut(&self) {
        let mut records = std::mem::take(&mut *self.events.lock().expect("not poisoned"));
        let mut verified = VerifyCounts::new();
        for shard in &self.verified {
            let counts = std::mem::take(&mut *shard.lock().expect("not poisoned"));
            for (key, count) in counts {
                let total = verified.entry(key).or_insert(0);
                *total = total.saturating_add(count);
            }
        }
        for ((license_id, minute), count) in verified {
            if let Some(count) = NonZeroU32::new(count) {
                records.push(UsageRecord {
                    at_micros: minute * 60_000_000,
                    license_id,
                    device_id: None,
                    session_id: None,
                    kind: UsageKind::Verify,
                    count,
                    app_version: None,
                    ip: None,
                });
            }
        }
        for chunk in records.chunks(self.settings.batch_records.max(1)) {
            self.enqueue(Arc::new(UsageBatch {
                batch_id: Uuid::new_v4(),
                edge_id: Uuid::nil(),
                records: chunk.to_vec(),
            }));
        }
    }

    fn enqueue(&self, batch: Arc<UsageBatch>) {
        let records = batch.records.len();
        let overflow = {
            let mut queue = self.queue.lock().expect("not poisoned");
            if queue.records + records <= self.settings.queue_records {
                queue.records += records;
                queue.batches.push_back(batch);
                None
            } else {
                Some(batch)
            }
        };
        match overflow {
            None => {
                metrics::gauge!("latchkey_edge_usage_queued_records").increment(records as f64);
                self.queued.notify_one();
            }
            Some(batch) => self.spill(batch),
        }
    }

    /// The queue is full: to the spool, or dropped and counted.
    fn spill(&self, batch: Arc<UsageBatch>) {
        let records = batch.records.len() as u64;
        match spool::write(&self.settings, &batch) {
            Ok(()) => {
                metrics::counter!("latchkey_edge_usage_spooled_records_total").increment(records);
            }
            Err(reason) => {
                reason.count(records);
                tracing::error!(
                    records,
                    reason = reason.label(),
                    "usage records dropped: queue and spool are full"
                );
            }
        }
    }

    /// At shutdown: cuts what is recorded, gives the sender `grace` to
    /// deliver the queue, and spools (or counts as dropped) what is left.
    pub async fn drain(&self, grace: Duration) {
        self.cut();
        let deadline = tokio::time::Instant::now() + grace;
        while self.queued_records() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = std::mem::take(&mut *self.queue.lock().expect("not poisoned"));
        metrics::gauge!("latchkey_edge_usage_queued_records").decrement(left.records as f64);
        for batch in left.batches {
            self.spill(batch);
        }
    }

    fn front(&self) -> Option<Arc<UsageBatch>> {
        self.queue
            .lock()
            .expect("not poisoned")
            .batches
            .front()
            .cloned()
    }

    fn forget_front(&self, batch_id: Uuid) {
        let mut queue = self.queue.lock().expect("not poisoned");
        if queue
            .batches
            .front()
            .is_some_and(|b| b.batch_id == batch_id)
        {
            let batch = queue.batches.pop_front().expect("checked");
            queue.records -= batch.records.len();
            metrics::gauge!("latchkey_edge_usage_queued_records")
                .decrement(batch.records.len() as f64);
        }
    }
}

/// Cuts batches on the flush period.
pub async fn cut_periodically(usage: Arc<Usage>) {
    let mut ticks = tokio::time::interval(usage.settings.flush_every);
    loop {
        ticks.tick().await;
        usage.cut();
    }
}

/// Sends batches to control, oldest first, spooled ones once the queue is
/// empty; a batch stays until control says it is committed.
pub async fn send(usage: Arc<Usage>, link: Arc<Link>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let (batch, spooled) = match usage.front() {
            Some(batch) => (batch, None),
            None => match spool::oldest(&usage.settings) {
                Some((path, batch)) => (batch, Some(path)),
                None => {
                    usage.queued.notified().await;
                    continue;
                }
            },
        };
        let records = batch.records.len() as u64;
        let batch_id = batch.batch_id;
        match link.call(&Call::Usage(batch)).await {
            Ok(Reply::UsageCommitted { duplicate, .. }) => {
                backoff = Duration::from_millis(100);
                metrics::counter!("latchkey_edge_usage_committed_records_total").increment(records);
                if duplicate {
                    metrics::counter!("latchkey_edge_usage_redelivered_batches_total").increment(1);
                }
                forget(&usage, batch_id, spooled);
            }
            Ok(Reply::Refused(body)) if !body.code.retryable() => {
                // Control can never store it: keeping it would block the rest.
                Dropped::Refused.count(records);
                tracing::error!(code = ?body.code, message = body.message, records, "usage batch refused by control");
                forget(&usage, batch_id, spooled);
            }
            outcome => {
                tracing::debug!(?outcome, "usage batch not committed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn forget(usage: &Usage, batch_id: Uuid, spooled: Option<PathBuf>) {
    match spooled {
        Some(path) => {
            if let Err(error) = std::fs::remove_file(&path) {
                tracing::warn!(%error, path = %path.display(), "sent spool file not removed");
            }
        }
        None => usage.forget_front(batch_id),
    }
}

/// The verified-count shard of the calling thread: threads take the next
/// one on their first verify, so each server thread keeps to its own.
fn own_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SHARD.with(|shard| *shard)
}

/// One occurrence of `kind` now.
pub fn now(kind: UsageKind, license_id: Uuid, session_id: Option<Uuid>) -> UsageRecord {
    UsageRecord::new(kind, now_micros(), license_id, session_id)
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The disk spool: one JSON file per batch, named so that name order is
/// arrival order, bounded in bytes.
mod spool {
    use std::path::PathBuf;

    use std::sync::Arc;

    use latchkey_shared::usage::UsageBatch;

    use super::{Dropped, UsageSettings, now_micros};

    pub fn write(settings: &UsageSettings, batch: &UsageBatch) -> Result<(), Dropped> {
        let Some(dir) = &settings.spool_dir else {
            return Err(Dropped::NoSpool);
        };
        let bytes = serde_json::to_vec(batch).map_err(|_| Dropped::Encode)?;
        std::fs::create_dir_all(dir).map_err(|_| Dropped::SpoolIo)?;
        if used(dir) + bytes.len() as u64 > settings.spool_max_bytes {
            return Err(Dropped::SpoolFull);
        }
        let name = format!("{:020}-{}.json", now_micros(), batch.batch_id);
        let aside = dir.join(format!("{name}.partial"));
        std::fs::write(&aside, &bytes).map_err(|_| Dropped::SpoolIo)?;
        std::fs::rename(&aside, dir.join(name)).map_err(|_| Dropped::SpoolIo)
    }

    /// The oldest complete spool file and its batch. An unreadable file is
    /// set aside (renamed `.bad`) so it cannot block the spool.
    pub fn oldest(settings: &UsageSettings) -> Option<(PathBuf, Arc<UsageBatch>)> {
        let dir = settings.spool_dir.as_ref()?;
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        for path in files {
            match std::fs::read(&path)
                .ok()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            {
                Some(batch) => return Some((path, batch)),
                None => {
                    tracing::error!(path = %path.display(), "unreadable spool file set aside");
                    let _ = std::fs::rename(&path, path.with_extension("bad"));
                }
            }
        }
        None
    }

    /// Bytes of every file in the spool (0 when it does not exist yet).
    pub fn used(dir: &std::path::Path) -> u64 {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifications_on_every_thread_make_one_record_per_license_and_minute() {
        let usage = Usage::new(UsageSettings {
            batch_records: 100,
            flush_every: Duration::from_secs(1),
            queue_records: 1_000,
            spool_dir: None,
            spool_max_bytes: 0,
        });
        let license = Uuid::from_u128(7);
        std::thread::scope(|threads| {
            for _ in 0..4 {
                threads.spawn(|| {
                    for _ in 0..10 {
                        usage.verified(license, 120);
                    }
                });
            }
        });
        usage.verified(license, 185);
        usage.cut();
        let batch = usage.front().expect("a batch was cut");
        let mut counts: Vec<(i64, u32)> = batch
            .records
            .iter()
            .map(|r| (r.at_micros, r.count.get()))
            .collect();
        counts.sort_unstable();
        assert_eq!(counts, [(120_000_000, 40), (180_000_000, 1)]);
    }
}
