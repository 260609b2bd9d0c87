//! How long a committed license change takes to be served by every edge
//! (outbox → publisher → signed delta → QUIC → edge), beside PostgreSQL's
//! own LISTEN/NOTIFY round trip measured as many times in the same run.

use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use latchkey_control::context::RequestContext;
use latchkey_control::db::licenses::{self, NewLicense};
use latchkey_control::secrets::Secrets;
use latchkey_edge::RunningEdge;
use latchkey_shared::snapshot::LicenseStatus;
use latchkey_shared::{KeyHash, LicenseKey};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use uuid::Uuid;

use crate::ingest_db::splitmix64;
use crate::scratch::ScratchDatabase;
use crate::stack::{EdgeUsage, Stack};

/// The target of issue 5: a change served everywhere within half a second.
const TARGET: Duration = Duration::from_millis(500);
/// A change not seen by every edge within this is a failure, not a figure.
const GIVE_UP: Duration = Duration::from_secs(10);
/// Between two looks at the edges' snapshots.
const POLL: Duration = Duration::from_micros(200);
const CHANNEL: &str = "latchkey_bench_notify";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// In-process edges, each enrolled and linked to control over QUIC.
    #[arg(long, default_value_t = 4)]
    edges: usize,
    /// Status changes measured (and as many NOTIFY round trips).
    #[arg(long, default_value_t = 200)]
    changes: usize,
    /// Licenses in the snapshot the changes land in.
    #[arg(long, default_value_t = 10_000)]
    licenses: usize,
    /// Pause between two changes, in milliseconds.
    #[arg(long, default_value_t = 20)]
    spacing_ms: u64,
}

pub async fn run(server_url: &str, args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.edges > 0 && args.changes > 0 && args.licenses > 0,
        "--edges, --changes and --licenses must be positive"
    );
    let db = ScratchDatabase::create(server_url, 8).await?;
    let result = measure(&db.pool, &args).await;
    db.drop().await?;
    result
}

async fn measure(pool: &PgPool, args: &Args) -> anyhow::Result<()> {
    let ctx = RequestContext::system("bench");
    let licenses = seed(pool, &ctx, args.licenses).await?;
    let stack = Stack::start(pool, args.edges, EdgeUsage::default()).await?;
    let result = changes(pool, &ctx, &stack.edges, &licenses, args).await;
    stack.stop().await;
    let propagation = result?;
    let notify = notify_round_trips(pool, args).await?;

    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "propagation (set_status committed → served by the edge): {} samples; p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        propagation.len(),
        ms(&propagation, 0.5),
        ms(&propagation, 0.99),
        ms(&propagation, 0.999),
        propagation.max() as f64 / 1000.0
    );
    let met = propagation.value_at_quantile(0.99) <= TARGET.as_micros() as u64;
    println!(
        "target p99 ≤ {} ms: {}",
        TARGET.as_millis(),
        if met { "met" } else { "missed" }
    );
    println!(
        "reference: LISTEN/NOTIFY (pg_notify sent → received): {} samples; p50 {:.2} ms, p99 {:.2} ms (commit acknowledged → received: p50 {:.2} ms, p99 {:.2} ms)",
        notify.sent.len(),
        ms(&notify.sent, 0.5),
        ms(&notify.sent, 0.99),
        ms(&notify.acknowledged, 0.5),
        ms(&notify.acknowledged, 0.99)
    );
    println!(
        "ratio propagation p50 / NOTIFY p50: {:.1}",
        propagation.value_at_quantile(0.5) as f64
            / notify.sent.value_at_quantile(0.5).max(1) as f64
    );
    Ok(())
}

/// A license the changes flip, and where the edges look it up.
struct Target {
    id: Uuid,
    hash: KeyHash,
    status: LicenseStatus,
}

async fn seed(pool: &PgPool, ctx: &RequestContext, count: usize) -> anyhow::Result<Vec<Target>> {
    let secrets = Secrets::new(&"bench-secret-".repeat(4))?;
    let product_id: i32 = sqlx::query_scalar(
        "INSERT INTO products (slug, name) VALUES ('bench', 'Bench') RETURNING id",
    )
    .fetch_one(pool)
    .await?;
    let template: NewLicense =
        serde_json::from_value(serde_json::json!({ "product_id": product_id }))?;
    let mut targets = Vec::with_capacity(count);
    while targets.len() < count {
        let batch = (count - targets.len()).min(licenses::MAX_BATCH);
        for created in licenses::create(pool, ctx, &secrets, &template, batch).await? {
            targets.push(Target {
                id: created.license.id,
                hash: created.license_key.parse::<LicenseKey>()?.hash(),
                status: LicenseStatus::Active,
            });
        }
    }
    Ok(targets)
}

/// Flips licenses one at a time and times, per edge, commit → served.
/// Change 2k suspends a license, change 2k + 1 makes it active again.
async fn changes(
    pool: &PgPool,
    ctx: &RequestContext,
    edges: &[RunningEdge],
    targets: &[Target],
    args: &Args,
) -> anyhow::Result<Histogram<u64>> {
    let mut statuses: Vec<LicenseStatus> = targets.iter().map(|t| t.status).collect();
    let all_served = tokio::task::block_in_place(|| {
        await_edges(edges, GIVE_UP, |state| {
            targets.iter().all(|t| state.license(&t.hash).is_some())
        })
    });
    all_served.context("the edges do not serve every license")?;
    println!(
        "propagation: {} edges over loopback QUIC, {} licenses served, {} changes {} ms apart",
        edges.len(),
        targets.len(),
        args.changes,
        args.spacing_ms
    );
    let mut latency = Histogram::<u64>::new(3)?;
    for change in 0..args.changes {
        let pick = (splitmix64((change / 2) as u64) % targets.len() as u64) as usize;
        let target = &targets[pick];
        let status = match statuses[pick] {
            LicenseStatus::Active => LicenseStatus::Suspended,
            _ => LicenseStatus::Active,
        };
        licenses::set_status(pool, ctx, target.id, status).await?;
        let committed = Instant::now();
        let seen = tokio::task::block_in_place(|| {
            await_edges(edges, GIVE_UP, |state| {
                state.license(&target.hash).map(|l| l.status()) == Some(status)
            })
        })
        .with_context(|| format!("change {change} did not reach every edge within {GIVE_UP:?}"))?;
        for at in seen {
            latency.record(at.duration_since(committed).as_micros() as u64)?;
        }
        statuses[pick] = status;
        tokio::time::sleep(Duration::from_millis(args.spacing_ms)).await;
    }
    Ok(latency)
}

/// Looks at every edge's snapshot every [`POLL`] (on this thread: the
/// runtime's other workers run the link) until `served` holds on each; when
/// each edge first showed it, or `None` past `limit`.
fn await_edges(
    edges: &[RunningEdge],
    limit: Duration,
    served: impl Fn(&latchkey_shared::snapshot::SnapshotState) -> bool,
) -> Option<Vec<Instant>> {
    let started = Instant::now();
    let mut seen: Vec<Option<Instant>> = vec![None; edges.len()];
    loop {
        for (edge, seen) in edges.iter().zip(seen.iter_mut()) {
            if seen.is_none() && edge.state.snapshots.current().is_some_and(|s| served(&s)) {
                *seen = Some(Instant::now());
            }
        }
        if seen.iter().all(Option::is_some) {
            return seen.into_iter().collect();
        }
        if started.elapsed() > limit {
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Times from each `pg_notify` sent (and from its commit acknowledged) to
/// the listener receiving it.
struct Notify {
    sent: Histogram<u64>,
    acknowledged: Histogram<u64>,
}

async fn notify_round_trips(pool: &PgPool, args: &Args) -> anyhow::Result<Notify> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    let mut conn = pool.acquire().await?;
    let mut notify = Notify {
        sent: Histogram::new(3)?,
        acknowledged: Histogram::new(3)?,
    };
    for n in 0..args.changes {
        let payload = n.to_string();
        let sent = Instant::now();
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(&payload)
            .execute(&mut *conn)
            .await?;
        let acknowledged = Instant::now();
        let received = tokio::time::timeout(GIVE_UP, listener.recv())
            .await
            .context("no notification within the limit")??;
        let at = Instant::now();
        anyhow::ensure!(received.payload() == payload, "notifications out of order");
        notify
            .sent
            .record(at.duration_since(sent).as_micros() as u64)?;
        notify
            .acknowledged
            .record(at.duration_since(acknowledged).as_micros() as u64)?;
        tokio::time::sleep(Duration::from_millis(args.spacing_ms)).await;
    }
    Ok(notify)
}
