//! Usage records per second through `ingest_batch` (batch id claimed once,
//! binary COPY, session heartbeat times) from concurrent edges, beside a
//! plain binary COPY of as many rows, and a count that every record sent
//! landed exactly once.

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use latchkey_control::context::RequestContext;
use latchkey_control::db::ingest::{self, IngestOutcome, KnownPartitions};
use latchkey_control::db::licenses::{self, NewLicense};
use latchkey_control::secrets::Secrets;
use latchkey_shared::usage::{UsageBatch, UsageKind, UsageRecord};
use sqlx::PgPool;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::scratch::ScratchDatabase;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Concurrent senders, each an edge of its own.
    #[arg(long, default_value_t = 4)]
    tasks: usize,
    /// Seconds the ingest side runs; the reference then copies as many rows.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Records per batch.
    #[arg(long, default_value_t = 5_000)]
    batch_records: usize,
    /// Licenses the records are spread over.
    #[arg(long, default_value_t = 1_000)]
    licenses: usize,
    /// Open sessions the heartbeat records are spread over; each belongs to
    /// one sender, as a client's session is served by one edge.
    #[arg(long, default_value_t = 4_000)]
    sessions: usize,
}

/// What one side of the race did.
pub(crate) struct Run {
    pub(crate) records: u64,
    batches: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

impl Run {
    pub(crate) fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
}

/// Licenses and sessions the generated records name.
pub(crate) struct World {
    pub(crate) licenses: Vec<Uuid>,
    /// `(session, its license)`, per sender.
    pub(crate) sessions: Vec<Vec<(Uuid, Uuid)>>,
}

pub async fn run(server_url: &str, args: Args) -> anyhow::Result<()> {
    let db = ScratchDatabase::create(server_url, args.tasks as u32 + 2).await?;
    let result = race(&db.pool, &args).await;
    db.drop().await?;
    result
}

async fn race(pool: &PgPool, args: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.tasks > 0 && args.batch_records > 0 && args.licenses > 0,
        "--tasks, --batch-records and --licenses must be positive"
    );
    let world = Arc::new(seed(pool, args.licenses, args.sessions, args.tasks).await?);
    println!(
        "ingest-db: {} senders, batches of {} records, {} licenses, {} sessions, {} s",
        args.tasks, args.batch_records, args.licenses, args.sessions, args.seconds
    );

    let ingest = ingest_side(pool, args, &world).await?;
    let (landed, claimed): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM license_heartbeats),
                (SELECT coalesce(sum(records), 0) FROM ingested_batches)",
    )
    .fetch_one(pool)
    .await?;
    println!(
        "exactness: {} records sent, {landed} rows in license_heartbeats, {claimed} in ingested_batches",
        ingest.records
    );
    anyhow::ensure!(
        landed as u64 == ingest.records && claimed as u64 == ingest.records,
        "ingest lost or doubled records"
    );

    // The reference starts from an empty table too: index inserts slow
    // down as the table grows, which would favour whichever side ran first.
    sqlx::query("TRUNCATE license_heartbeats")
        .execute(pool)
        .await?;
    let reference =
        reference_side(pool, args.tasks, args.batch_records, &world, ingest.batches).await?;
    let landed: i64 = sqlx::query_scalar("SELECT count(*) FROM license_heartbeats")
        .fetch_one(pool)
        .await?;
    println!(
        "exactness: reference copied {}, {landed} rows in license_heartbeats",
        reference.records
    );
    anyhow::ensure!(
        landed as u64 == reference.records,
        "the reference lost or doubled rows"
    );

    report("ingest_batch", &ingest);
    report("reference: plain binary COPY", &reference);
    println!(
        "ratio ingest_batch / plain COPY: {:.2}",
        ingest.rate() / reference.rate()
    );
    Ok(())
}

/// Licenses through the library, sessions straight in SQL (open, one per
/// license in turn), the sessions dealt out over `senders`.
pub(crate) async fn seed(
    pool: &PgPool,
    license_count: usize,
    session_count: usize,
    senders: usize,
) -> anyhow::Result<World> {
    let ctx = RequestContext::system("bench");
    let secrets = Secrets::new(&"bench-secret-".repeat(4))?;
    let product_id: i32 = sqlx::query_scalar(
        "INSERT INTO products (slug, name) VALUES ('bench', 'Bench') RETURNING id",
    )
    .fetch_one(pool)
    .await?;
    let template: NewLicense =
        serde_json::from_value(serde_json::json!({ "product_id": product_id }))?;
    let mut ids = Vec::with_capacity(license_count);
    while ids.len() < license_count {
        let batch = (license_count - ids.len()).min(licenses::MAX_BATCH);
        for created in licenses::create(pool, &ctx, &secrets, &template, batch).await? {
            ids.push(created.license.id);
        }
    }
    let owners: Vec<Uuid> = (0..session_count).map(|i| ids[i % ids.len()]).collect();
    let session_ids: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO sessions (license_id, token_expires_at)
         SELECT l, now() + interval '1 day' FROM unnest($1::uuid[]) WITH ORDINALITY AS t (l, n)
          ORDER BY n RETURNING id",
    )
    .bind(&owners)
    .fetch_all(pool)
    .await
    .context("seeding sessions")?;
    let mut sessions = vec![Vec::new(); senders];
    for (i, (session, license)) in session_ids.into_iter().zip(owners).enumerate() {
        sessions[i % senders].push((session, license));
    }
    Ok(World {
        licenses: ids,
        sessions,
    })
}

async fn ingest_side(pool: &PgPool, args: &Args, world: &Arc<World>) -> anyhow::Result<Run> {
    let known = Arc::new(KnownPartitions::new());
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let tasks: Vec<_> = (0..args.tasks)
        .map(|task| {
            let (pool, known, world) = (pool.clone(), known.clone(), world.clone());
            let batch_records = args.batch_records;
            tokio::spawn(async move {
                let edge_id = Uuid::new_v4();
                let mut latency = Histogram::<u64>::new(3)?;
                let mut batches = 0u64;
                while Instant::now() < deadline {
                    let batch = UsageBatch {
                        batch_id: Uuid::new_v4(),
                        edge_id,
                        records: records(&world, task, batches, batch_records),
                    };
                    let call = Instant::now();
                    let outcome = ingest::ingest_batch(&pool, &known, &batch).await?;
                    latency.record(call.elapsed().as_micros() as u64)?;
                    anyhow::ensure!(
                        outcome
                            == IngestOutcome::Committed {
                                rows: batch_records as u64
                            },
                        "unexpected {outcome:?}"
                    );
                    batches += 1;
                }
                anyhow::Ok((batches, latency))
            })
        })
        .collect();
    finish(tasks, started, args.batch_records).await
}

/// The same records, in as many batches, from as many connections, each
/// batch one COPY in its own transaction: no batch id, no session update.
/// `senders` connections send `batches` of `batch_records` in all.
pub(crate) async fn reference_side(
    pool: &PgPool,
    senders: usize,
    batch_records: usize,
    world: &Arc<World>,
    batches: u64,
) -> anyhow::Result<Run> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..senders)
        .map(|task| {
            let (pool, world) = (pool.clone(), world.clone());
            // Task t sends batches t, t + senders, …: `batches` in all.
            let mine = (batches + (senders - 1 - task) as u64) / senders as u64;
            tokio::spawn(async move {
                let edge_id = Uuid::new_v4();
                let mut conn = pool.acquire().await?;
                let mut latency = Histogram::<u64>::new(3)?;
                for n in 0..mine {
                    let rows = records(&world, task, n, batch_records);
                    let call = Instant::now();
                    let data = ingest::encode(edge_id, &rows)?;
                    let mut copy = conn.copy_in_raw(ingest::COPY_HEARTBEATS).await?;
                    copy.send(data.as_slice()).await?;
                    copy.finish().await?;
                    latency.record(call.elapsed().as_micros() as u64)?;
                }
                anyhow::Ok((mine, latency))
            })
        })
        .collect();
    finish(tasks, started, batch_records).await
}

/// A sender's result: batches sent and their latencies.
type Sender = tokio::task::JoinHandle<anyhow::Result<(u64, Histogram<u64>)>>;

async fn finish(tasks: Vec<Sender>, started: Instant, batch_records: usize) -> anyhow::Result<Run> {
    let mut run = Run {
        records: 0,
        batches: 0,
        elapsed: Duration::ZERO,
        latency: Histogram::new(3)?,
    };
    for task in tasks {
        let (batches, latency) = task.await??;
        run.batches += batches;
        run.latency.add(&latency)?;
    }
    run.records = run.batches * batch_records as u64;
    run.elapsed = started.elapsed();
    Ok(run)
}

/// Batch `n` of sender `task`: half session heartbeats (the sender's own
/// sessions), half per-minute verification counts, over the last minute.
fn records(world: &World, task: usize, n: u64, len: usize) -> Vec<UsageRecord> {
    let now = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000) as i64;
    let own = &world.sessions[task];
    (0..len)
        .map(|i| {
            let r = splitmix64(((task as u64) << 48) ^ (n << 20) ^ i as u64);
            let at_micros = now - (r % 60_000_000) as i64;
            let ip = Some(IpAddr::V4(Ipv4Addr::from((r >> 32) as u32)));
            match own.get((r >> 8) as usize % own.len().max(1)) {
                Some(&(session, license)) if r & 1 == 0 => UsageRecord {
                    at_micros,
                    license_id: license,
                    device_id: None,
                    session_id: Some(session),
                    kind: UsageKind::Heartbeat,
                    count: NonZeroU32::MIN,
                    app_version: Some("2.4.0".into()),
                    ip,
                },
                _ => UsageRecord {
                    at_micros,
                    license_id: world.licenses[(r >> 16) as usize % world.licenses.len()],
                    device_id: Some(Uuid::from_u64_pair(r, n)),
                    session_id: None,
                    kind: UsageKind::Verify,
                    count: NonZeroU32::new((r >> 40) as u32 % 50 + 1).expect("at least 1"),
                    app_version: Some("2.4.1".into()),
                    ip,
                },
            }
        })
        .collect()
}

/// A cheap, well-mixed deterministic stream (no RNG dependency).
pub(crate) fn splitmix64(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

pub(crate) fn report(name: &str, run: &Run) {
    let ms = |q: f64| run.latency.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{name}: {} records in {} batches in {:.1} s = {:.0} records/s; per batch p50 {:.1} ms, p99 {:.1} ms",
        run.records,
        run.batches,
        run.elapsed.as_secs_f64(),
        run.rate(),
        ms(0.5),
        ms(0.99)
    );
}
