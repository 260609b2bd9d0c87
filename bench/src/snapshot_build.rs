//! Full snapshot build time from PostgreSQL.

use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use latchkey_control::db::snapshot;
use latchkey_shared::SigningKeyPair;
use sqlx::PgPool;

use crate::scratch::ScratchDatabase;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Licenses in the snapshot, each with two active devices.
    #[arg(long, default_value_t = 1_000_000)]
    licenses: u64,
    /// Builds to time (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

pub async fn run(server_url: &str, args: Args) -> anyhow::Result<()> {
    let db = ScratchDatabase::create(server_url, 4).await?;
    let result = race(&db.pool, &args).await;
    db.drop().await?;
    result
}

async fn race(pool: &PgPool, args: &Args) -> anyhow::Result<()> {
    let seeding = Instant::now();
    seed(pool, args.licenses).await?;
    println!(
        "snapshot-build: seeded {} licenses with 2 devices each in {:.1?}",
        args.licenses,
        seeding.elapsed()
    );

    let signer = SigningKeyPair::generate();
    let mut builds = Vec::with_capacity(args.runs);
    let mut size = 0;
    for _ in 0..args.runs {
        let started = Instant::now();
        let built = snapshot::build_full(
            pool,
            &signer,
            time::OffsetDateTime::now_utc(),
            snapshot::EXPORT_VALID_SECS,
        )
        .await?;
        builds.push(started.elapsed());
        anyhow::ensure!(
            built.licenses == args.licenses,
            "built {} of {} licenses",
            built.licenses,
            args.licenses
        );
        size = built.bytes.len();
    }
    let mut reads = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        let started = Instant::now();
        let rows = stream_rows(pool).await?;
        reads.push(started.elapsed());
        anyhow::ensure!(rows == args.licenses, "read {rows} rows");
    }
    let (build, read) = (median(&mut builds), median(&mut reads));
    println!(
        "full snapshot build + sign: median {:.2} s over {} runs; {} bytes ({:.1} bytes/license)",
        build.as_secs_f64(),
        args.runs,
        size,
        size as f64 / args.licenses as f64
    );
    println!(
        "reference: streaming the same rows only: median {:.2} s",
        read.as_secs_f64()
    );
    println!(
        "ratio build / read: {:.2}",
        build.as_secs_f64() / read.as_secs_f64()
    );
    Ok(())
}

/// Licenses and devices straight in SQL: the scenario times the build, not the seeding.
async fn seed(pool: &PgPool, licenses: u64) -> anyhow::Result<()> {
    let product: i32 = sqlx::query_scalar(
        "INSERT INTO products (slug, name) VALUES ('bench', 'Bench') RETURNING id",
    )
    .fetch_one(pool)
    .await?;
    sqlx::query(
        "INSERT INTO licenses (key_hash, key_prefix, key_sealed, product_id, kind, device_limit, session_limit, features,
                               valid_until)
         SELECT decode(md5(g::text) || md5('k' || g), 'hex'), 'BENCH', '\\x00', $1, 'full', 3, 1,
                CASE WHEN g % 3 = 0 THEN '{}'::text[] ELSE ARRAY['export', 'sync'] END, now() + interval '1 year'
           FROM generate_series(1, $2) g",
    )
    .bind(product)
    .bind(licenses as i64)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO devices (license_id, fingerprint_hash, digest, components)
         SELECT id, decode(md5(id::text || n) || md5(n || id::text), 'hex'),
                substr(decode(md5(id::text || n || 'd') || md5('d' || n || id::text), 'hex'), 1, 28), '{}'
           FROM licenses, generate_series(1, 2) n",
    )
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE").execute(pool).await?;
    Ok(())
}

async fn stream_rows(pool: &PgPool) -> anyhow::Result<u64> {
    let mut rows = sqlx::query(snapshot::LICENSE_ROWS).fetch(pool);
    let mut count = 0;
    while rows.try_next().await?.is_some() {
        count += 1;
    }
    Ok(count)
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}
