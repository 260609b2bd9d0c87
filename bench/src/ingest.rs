//! Usage records per second end to end: recorded into in-process edges,
//! batched, shipped over the QUIC link, ingested by control into
//! `license_heartbeats`; beside a plain binary COPY of as many rows from as
//! many connections (`ingest-db`'s reference), and a count that every record
//! an edge accepted landed exactly once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use latchkey_edge::usage::Usage;
use latchkey_shared::usage::UsageKind;
use sqlx::PgPool;

use crate::ingest_db;
use crate::scratch::ScratchDatabase;
use crate::stack::{EdgeUsage, Stack};

/// The target of issue 5.
const TARGET_PER_SEC: f64 = 100_000.0;
/// Time the pipeline gets to land what was fed once feeding stops.
const DRAIN_WITHIN: Duration = Duration::from_secs(120);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// In-process edges, each enrolled and linked to control over QUIC, each
    /// fed by a task of its own.
    #[arg(long, default_value_t = 4)]
    edges: usize,
    /// Seconds the feeders record.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Records per usage batch (the edges' `usage_batch_records`).
    #[arg(long, default_value_t = 5_000)]
    batch_records: usize,
    /// The edges cut a batch at least this often (`usage_flush_ms`).
    #[arg(long, default_value_t = 100)]
    flush_ms: u64,
    /// A feeder pauses while its edge holds this many records not yet
    /// committed by control, far below the queue's capacity, so nothing spills.
    #[arg(long, default_value_t = 200_000)]
    high_water: usize,
    /// Licenses the records are spread over.
    #[arg(long, default_value_t = 1_000)]
    licenses: usize,
    /// Open sessions the heartbeats are spread over; each belongs to one edge.
    #[arg(long, default_value_t = 4_000)]
    sessions: usize,
}

/// The edges' queue capacity: records held in memory before the spool.
const QUEUE_RECORDS: usize = 1_000_000;

pub async fn run(server_url: &str, args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.edges > 0 && args.batch_records > 0 && args.licenses > 0,
        "--edges, --batch-records and --licenses must be positive"
    );
    anyhow::ensure!(
        args.sessions >= args.edges,
        "--sessions must give every edge at least one"
    );
    anyhow::ensure!(
        args.high_water + args.batch_records < QUEUE_RECORDS,
        "--high-water must leave room below the queue's {QUEUE_RECORDS} records"
    );
    // Control's calls, the publisher's lock, the reference's connections.
    let db = ScratchDatabase::create(server_url, args.edges as u32 * 2 + 4).await?;
    let result = measure(&db.pool, &args).await;
    db.drop().await?;
    result
}

async fn measure(pool: &PgPool, args: &Args) -> anyhow::Result<()> {
    let world = Arc::new(ingest_db::seed(pool, args.licenses, args.sessions, args.edges).await?);
    let stack = Stack::start(
        pool,
        args.edges,
        EdgeUsage {
            batch_records: args.batch_records,
            flush_ms: args.flush_ms,
            queue_records: QUEUE_RECORDS,
            spool_mb: 0,
        },
    )
    .await?;
    println!(
        "ingest: {} edges over loopback QUIC, batches of {} records, cut every {} ms, feeders pause above {} queued records, {} s",
        args.edges, args.batch_records, args.flush_ms, args.high_water, args.seconds
    );
    let result = end_to_end(pool, &stack, &world, args).await;
    // The reference gets the machine to itself.
    stack.stop().await;
    let (accepted, elapsed) = result?;

    let landed: i64 = sqlx::query_scalar("SELECT count(*) FROM license_heartbeats")
        .fetch_one(pool)
        .await?;
    println!(
        "exactness: {accepted} records accepted by the edges, {landed} rows in license_heartbeats"
    );
    anyhow::ensure!(
        landed as u64 == accepted,
        "the link lost or doubled records"
    );
    let rate = accepted as f64 / elapsed.as_secs_f64();
    println!(
        "end to end: {accepted} records in {:.1} s (until the last row landed) = {rate:.0} records/s",
        elapsed.as_secs_f64()
    );
    println!(
        "target ≥ 100 000 records/s: {}",
        if rate >= TARGET_PER_SEC {
            "met"
        } else {
            "missed"
        }
    );

    sqlx::query("TRUNCATE license_heartbeats")
        .execute(pool)
        .await?;
    let batches = accepted / args.batch_records as u64;
    let reference =
        ingest_db::reference_side(pool, args.edges, args.batch_records, &world, batches).await?;
    let copied: i64 = sqlx::query_scalar("SELECT count(*) FROM license_heartbeats")
        .fetch_one(pool)
        .await?;
    anyhow::ensure!(
        copied as u64 == reference.records && reference.records == accepted,
        "the reference copied {copied} rows for {accepted}"
    );
    ingest_db::report("reference: plain binary COPY", &reference);
    println!(
        "ratio end to end / plain COPY: {:.2}",
        rate / reference.rate()
    );
    Ok(())
}

/// Feeds every edge for the duration, then waits until control has
/// committed all of it: records accepted, and the time from the first
/// record to the last row landed.
async fn end_to_end(
    pool: &PgPool,
    stack: &Stack,
    world: &Arc<ingest_db::World>,
    args: &Args,
) -> anyhow::Result<(u64, Duration)> {
    let usages: Vec<Arc<Usage>> = stack
        .edges
        .iter()
        .map(|e| e.state.usage.clone().context("an edge without a link"))
        .collect::<anyhow::Result<_>>()?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let feeders: Vec<_> = usages
        .iter()
        .enumerate()
        .map(|(edge, usage)| {
            let (usage, world) = (usage.clone(), world.clone());
            let (chunk, high_water) = (args.batch_records, args.high_water);
            tokio::spawn(async move {
                let sessions = &world.sessions[edge];
                let mut accepted = 0u64;
                let mut n = 0usize;
                while Instant::now() < deadline {
                    if usage.queued_records() >= high_water {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    }
                    // A whole batch at a time: `accepted` stays a multiple of
                    // the batch size, so the reference copies exactly as many.
                    for _ in 0..chunk {
                        let (session, license) = sessions[n % sessions.len()];
                        usage.record(latchkey_edge::usage::now(
                            UsageKind::Heartbeat,
                            license,
                            Some(session),
                        ));
                        n += 1;
                    }
                    accepted += chunk as u64;
                    tokio::task::yield_now().await;
                }
                accepted
            })
        })
        .collect();
    let mut accepted = 0u64;
    for feeder in feeders {
        accepted += feeder.await?;
    }
    let fed = started.elapsed();
    // `ingested_batches` has a row per batch: cheap to sum while the
    // heartbeats table grows by millions.
    let drain_started = Instant::now();
    loop {
        let committed: i64 =
            sqlx::query_scalar("SELECT coalesce(sum(records), 0)::bigint FROM ingested_batches")
                .fetch_one(pool)
                .await?;
        let queued: usize = usages.iter().map(|u| u.queued_records()).sum();
        if committed as u64 >= accepted && queued == 0 {
            break;
        }
        anyhow::ensure!(
            drain_started.elapsed() < DRAIN_WITHIN,
            "{committed} of {accepted} records committed, {queued} still queued after {DRAIN_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    println!(
        "fed for {:.1} s; the last row landed {:.2} s after feeding stopped",
        fed.as_secs_f64(),
        (elapsed - fed).as_secs_f64()
    );
    Ok((accepted, elapsed))
}
