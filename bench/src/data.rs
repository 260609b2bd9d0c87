//! Moving the data out and back, at 1 000 000 licenses:
//!
//! * **export** — rows per second of the licenses list's export through the
//!   admin API (the app driven in-process, the body read as it streams), as
//!   CSV and JSON, beside PostgreSQL's own `COPY … TO STDOUT (FORMAT csv)`
//!   of the same columns in the same order; and the bench process's peak
//!   resident memory during each export, beside the file's size.
//! * **backup and restore** — `Backups::create` (pg_dump, the manifest's
//!   row counts and SHA-256) beside `pg_dump -Fc` run by hand on the same
//!   database; `Backups::prepare_restore` (checksum, pg_restore into a
//!   scratch database, row counts) beside `pg_restore` by hand into a new
//!   database.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use futures_util::StreamExt;
use http_body_util::BodyExt;
use latchkey_control::app::{self, AppState};
use latchkey_control::backup::Backups;
use latchkey_control::config::{BackupConfig, Config};
use latchkey_control::context::RequestContext;
use latchkey_control::db::api_keys::{self, Area, Scope};
use latchkey_control::db::licenses::License;
use latchkey_control::export::Record;
use latchkey_control::progress::Progress;
use sqlx::postgres::PgPoolCopyExt;
use sqlx::{Connection, PgConnection, PgPool};
use tower::ServiceExt;

use crate::scratch::ScratchDatabase;
use crate::seed;

const SECRET_KEY: &str = "bench-secret-key-bench-secret-key-bench-secret";

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, default_value_t = 1_000_000)]
    licenses: u64,
    #[arg(long, default_value_t = 100_000)]
    customers: u64,
}

pub async fn run(server_url: &str, args: Args) -> anyhow::Result<()> {
    let db = ScratchDatabase::create(server_url, 8).await?;
    let result = race(server_url, &db, &args).await;
    db.drop().await?;
    result
}

async fn race(server_url: &str, db: &ScratchDatabase, args: &Args) -> anyhow::Result<()> {
    let seeding = Instant::now();
    seed::licensing(&db.pool, args.customers, args.licenses).await?;
    println!(
        "data: seeded {} customers, {} licenses in {:.1?}",
        args.customers,
        args.licenses,
        seeding.elapsed()
    );
    export(server_url, &db.pool).await?;
    backup_and_restore(server_url, db).await
}

async fn export(server_url: &str, pool: &PgPool) -> anyhow::Result<()> {
    let env: BTreeMap<String, String> = [
        ("DATABASE_URL", server_url),
        ("SECRET_KEY", SECRET_KEY),
        ("JWT_SECRET", "bench-jwt-secret-bench-jwt-secret-bench-jwt"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = Config::from_layers(None, &env)?;
    let state = AppState::new(pool.clone(), &config)?;
    let read = Scope::read(Area::Licenses);
    let key = api_keys::create_bootstrap(pool, &state.api.secrets, "bench", &[read]).await?;
    let app = app::router(state).layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));

    println!(
        "{:<22} {:>10} {:>9} {:>12} {:>10} {:>12}",
        "export", "rows", "seconds", "rows/s", "file MB", "peak RSS MB"
    );
    let columns = <License as Record>::COLUMNS.join(", ");
    let copy = format!(
        "COPY (SELECT {columns} FROM licenses ORDER BY created_at DESC, id DESC) TO STDOUT WITH (FORMAT csv, HEADER)"
    );
    let started = Instant::now();
    reset_peak_memory();
    let mut stream = pool.copy_out_raw(&copy).await?;
    let (mut bytes, mut lines) = (0_u64, 0_u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        bytes += chunk.len() as u64;
        lines += bytecount(&chunk);
    }
    let reference = started.elapsed();
    report("COPY csv (reference)", lines - 1, reference, bytes);

    for format in ["csv", "json"] {
        let request = Request::get(format!("/admin/api/v1/licenses/export?format={format}"))
            .header(header::AUTHORIZATION, format!("Bearer {}", key.secret))
            .body(Body::empty())?;
        reset_peak_memory();
        let started = Instant::now();
        let response = app.clone().oneshot(request).await?;
        anyhow::ensure!(
            response.status() == StatusCode::OK,
            "export answered {}",
            response.status()
        );
        let rows: u64 = response.headers()["x-total-count"].to_str()?.parse()?;
        let mut body = response.into_body();
        let (mut bytes, mut lines) = (0_u64, 0_u64);
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                bytes += data.len() as u64;
                lines += bytecount(&data);
            }
        }
        let elapsed = started.elapsed();
        if format == "csv" {
            anyhow::ensure!(
                lines == rows + 1,
                "the CSV has {lines} lines for {rows} rows"
            );
        }
        report(&format!("API {format}"), rows, elapsed, bytes);
        println!(
            "{:<22} {:>10} {:>9} {:>12.2}  (export time / COPY time)",
            "",
            "",
            "",
            elapsed.as_secs_f64() / reference.as_secs_f64()
        );
    }
    Ok(())
}

fn bytecount(data: &[u8]) -> u64 {
    data.iter().filter(|&&b| b == b'\n').count() as u64
}

fn report(name: &str, rows: u64, elapsed: Duration, bytes: u64) {
    println!(
        "{:<22} {:>10} {:>9.2} {:>12.0} {:>10.1} {:>12.1}",
        name,
        rows,
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64(),
        bytes as f64 / 1e6,
        peak_memory_mb()
    );
}

/// Resets this process's peak resident set (Linux: `clear_refs` 5), so the
/// next reading is the peak of what follows.
fn reset_peak_memory() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// This process's peak resident set since the last reset, in MB.
fn peak_memory_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|kb| kb.trim().trim_end_matches(" kB").parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

async fn backup_and_restore(server_url: &str, db: &ScratchDatabase) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("latchkey-bench-data-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = backups(server_url, db, &dir).await;
    std::fs::remove_dir_all(&dir)?;
    result
}

async fn backups(server_url: &str, db: &ScratchDatabase, dir: &Path) -> anyhow::Result<()> {
    let url = db.url();
    let backups = Backups::new(
        BackupConfig {
            dir: dir.to_owned(),
            ..BackupConfig::default()
        },
        &url,
    )?;
    let started = Instant::now();
    let backup = backups
        .create(
            &db.pool,
            &RequestContext::system("bench"),
            None,
            &Progress::default(),
        )
        .await?
        .context("a manual backup is always made")?;
    let ours = started.elapsed();
    let dump = backup.path.context("a finished backup has its file")?;

    let by_hand_file = dir.join("by-hand.dump");
    let started = Instant::now();
    run_tool(
        Command::new("pg_dump")
            .arg("--format=custom")
            .arg(format!("--file={}", by_hand_file.display()))
            .arg(format!("--dbname={url}")),
    )?;
    let by_hand = started.elapsed();
    println!(
        "{:<22} {:>9} {:>12} {:>9}",
        "backup", "ours s", "by hand s", "ratio"
    );
    println!(
        "{:<22} {:>9.1} {:>12.1} {:>9.2}   ({:.0} MB dump)",
        "pg_dump",
        ours.as_secs_f64(),
        by_hand.as_secs_f64(),
        ours.as_secs_f64() / by_hand.as_secs_f64(),
        backup.size_bytes.unwrap_or_default() as f64 / 1e6
    );

    let started = Instant::now();
    let prepared = backups
        .prepare_restore(Path::new(&dump), &Progress::default())
        .await?;
    let ours = started.elapsed();
    backups.discard(&prepared).await?;

    let target = format!("latchkey_bench_restore_{}", std::process::id());
    let mut server = PgConnection::connect(server_url).await?;
    sqlx::query(&format!("CREATE DATABASE {target}"))
        .execute(&mut server)
        .await?;
    let started = Instant::now();
    let restored = run_tool(
        Command::new("pg_restore")
            .arg("--exit-on-error")
            .arg("--no-owner")
            .arg(format!("--dbname={}", url.replace(&db_name(&url), &target)))
            .arg(&by_hand_file),
    );
    let by_hand = started.elapsed();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {target} WITH (FORCE)"))
        .execute(&mut server)
        .await?;
    restored?;
    println!(
        "{:<22} {:>9.1} {:>12.1} {:>9.2}   (ours: checksum, pg_restore into scratch, row counts)",
        "restore and verify",
        ours.as_secs_f64(),
        by_hand.as_secs_f64(),
        ours.as_secs_f64() / by_hand.as_secs_f64()
    );
    Ok(())
}

/// The database name of a URL (its path, before any query).
fn db_name(url: &str) -> String {
    let path = url.split('?').next().unwrap_or(url);
    path.rsplit('/').next().unwrap_or_default().to_owned()
}

fn run_tool(command: &mut Command) -> anyhow::Result<()> {
    let output = command.output().context("running a PostgreSQL tool")?;
    anyhow::ensure!(
        output.status.success(),
        "{:?} failed: {}",
        command.get_program(),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
