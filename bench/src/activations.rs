//! Activations per second with concurrent clients.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use latchkey_control::context::RequestContext;
use latchkey_control::db::devices::{self, LeaseIssuer, SeatRequest};
use latchkey_control::db::licenses::{self, NewLicense};
use latchkey_control::secrets::Secrets;
use latchkey_shared::fingerprint::Fingerprint;
use latchkey_shared::{LicenseKey, SigningKeyPair};
use sqlx::PgPool;
use uuid::Uuid;

use crate::scratch::ScratchDatabase;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Concurrent clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds each side of the race runs.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seats per license; each license takes this many activations.
    #[arg(long, default_value_t = 3)]
    device_limit: i32,
    /// Licenses created up front (each activation needs a free seat).
    #[arg(long, default_value_t = 40_000)]
    licenses: usize,
}

/// What one side of the race did.
struct Run {
    done: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

pub async fn run(server_url: &str, args: Args) -> anyhow::Result<()> {
    let db = ScratchDatabase::create(server_url, args.clients as u32 + 2).await?;
    let result = race(&db.pool, &args).await;
    db.drop().await?;
    result
}

async fn race(pool: &PgPool, args: &Args) -> anyhow::Result<()> {
    let ctx = RequestContext::system("bench");
    let secrets = Secrets::new(&"bench-secret-".repeat(4))?;
    let product_id: i32 = sqlx::query_scalar(
        "INSERT INTO products (slug, name) VALUES ('bench', 'Bench') RETURNING id",
    )
    .fetch_one(pool)
    .await?;
    let template: NewLicense = serde_json::from_value(
        serde_json::json!({ "product_id": product_id, "device_limit": args.device_limit }),
    )?;
    let mut keys = Vec::with_capacity(args.licenses);
    let mut ids = Vec::with_capacity(args.licenses);
    while keys.len() < args.licenses {
        let batch = (args.licenses - keys.len()).min(licenses::MAX_BATCH);
        for created in licenses::create(pool, &ctx, &secrets, &template, batch).await? {
            keys.push(created.license_key.parse::<LicenseKey>()?);
            ids.push(created.license.id);
        }
    }
    println!(
        "activations: {} clients, {} s each side, {} licenses of {} seats ready",
        args.clients, args.seconds, args.licenses, args.device_limit
    );

    let issuer = Arc::new(LeaseIssuer {
        signer: SigningKeyPair::generate(),
    });
    let keys = Arc::new(keys);
    let (clients, seats) = (args.clients, args.device_limit as usize);
    let shared = (pool.clone(), issuer, keys, ctx);
    let activations = drive(clients, args.seconds, move |client, n| {
        let (pool, issuer, keys, ctx) = shared.clone();
        async move {
            // Client `client` fills its own licenses, one seat at a time.
            let license = client + (n / seats) * clients;
            let key = *keys
                .get(license)
                .context("ran out of licenses: raise --licenses")?;
            let request = SeatRequest {
                key: key.into(),
                fingerprint: fingerprint(client, n),
                device_name: None,
                app_version: Some("2.4.0".into()),
                ip: None,
                idempotency_key: None,
            };
            devices::activate(&pool, &ctx, &issuer, &request).await?;
            anyhow::Ok(())
        }
    })
    .await?;

    sqlx::query("CREATE TABLE bench_writes (id bigint GENERATED ALWAYS AS IDENTITY, license_id uuid, at timestamptz DEFAULT now())")
        .execute(pool)
        .await?;
    let ids = Arc::new(ids);
    let shared = (pool.clone(), ids);
    let reference = drive(clients, args.seconds, move |client, n| {
        let (pool, ids) = shared.clone();
        async move {
            let id = ids[(client + n * clients) % ids.len()];
            let mut tx = pool.begin().await?;
            sqlx::query("SELECT 1 FROM licenses WHERE id = $1 FOR UPDATE")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO bench_writes (license_id) VALUES ($1)")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            anyhow::Ok(())
        }
    })
    .await?;

    report("activations", &activations);
    report(
        "reference: bare write transactions (lock a license row, insert one row)",
        &reference,
    );
    println!(
        "ratio activations / bare writes: {:.2}",
        rate(&activations) / rate(&reference)
    );

    let (seats, over_limit): (i64, i64) = sqlx::query_as(
        "SELECT count(*), (SELECT count(*) FROM (SELECT license_id FROM devices WHERE status = 'active'
                 GROUP BY license_id HAVING count(*) > $1) o)
           FROM devices WHERE status = 'active'",
    )
    .bind(i64::from(args.device_limit))
    .fetch_one(pool)
    .await?;
    println!(
        "exactness: {seats} seats taken for {} activations, {over_limit} licenses over their limit",
        activations.done
    );
    anyhow::ensure!(
        seats as u64 == activations.done && over_limit == 0,
        "seat accounting is off"
    );
    Ok(())
}

fn fingerprint(client: usize, n: usize) -> latchkey_shared::CanonicalFingerprint {
    Fingerprint {
        system_uuid: Some(Uuid::from_u64_pair(client as u64 + 1, n as u64 + 1).to_string()),
        cpu_id: Some(format!("bench-cpu-{client}-{n}")),
        ..Fingerprint::default()
    }
    .canonicalize()
    .expect("valid fingerprint")
}

/// Runs `op(client, n)` from every client, each call after the last like a
/// real client, until the time is up.
async fn drive<F, Fut>(clients: usize, seconds: u64, op: F) -> anyhow::Result<Run>
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut latency = Histogram::<u64>::new(3)?;
                let mut n = 0usize;
                while Instant::now() < deadline {
                    let call = Instant::now();
                    op(client, n).await?;
                    latency.record(call.elapsed().as_micros() as u64)?;
                    n += 1;
                }
                anyhow::Ok((n as u64, latency))
            })
        })
        .collect();
    let mut run = Run {
        done: 0,
        elapsed: Duration::ZERO,
        latency: Histogram::new(3)?,
    };
    for task in tasks {
        let (done, latency) = task.await??;
        run.done += done;
        run.latency.add(&latency)?;
    }
    run.elapsed = started.elapsed();
    Ok(run)
}

fn rate(run: &Run) -> f64 {
    run.done as f64 / run.elapsed.as_secs_f64()
}

fn report(name: &str, run: &Run) {
    let ms = |q: f64| run.latency.value_at_quantile(q) as f64 / 1000.0;
    println!(
        "{name}: {} in {:.1} s = {:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms",
        run.done,
        run.elapsed.as_secs_f64(),
        rate(run),
        ms(0.5),
        ms(0.99),
        ms(0.999)
    );
}
