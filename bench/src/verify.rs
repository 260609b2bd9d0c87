//! Verify throughput of the edge, as ratios against two references measured
//! in the same run on the same machine:
//!
//! * `ceiling` — a bare hyper server answering a fixed JSON: what any HTTP
//!   endpoint can do here. edge / ceiling is the share the edge keeps.
//! * `baseline-postgres` — the seed's architecture: parse, hash, one indexed
//!   PostgreSQL query per request. edge / baseline is what the snapshot buys.
//!
//! And `edge-signed`: the edge with an answer key and certificate, every
//! request carrying a nonce, so every answer is signed (Ed25519):
//! edge-signed / edge is what signed answers cost.
//!
//! Each server is its own process (the load generator never shares its
//! runtime) and runs alone. The load generator holds `--connections`
//! keep-alive HTTP/1.1 connections, one task each, requests one after another
//! on each, all with the same request bodies (valid `VerifyRequest`s for
//! random keys of the snapshot). With `--rate`, sends follow a fixed schedule
//! kept by a pacer thread and latency counts from the intended send time, so
//! a server that stalls is charged for every request it delayed
//! (no coordinated omission).

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use latchkey_shared::answer::{self, AnswerKey};
use latchkey_shared::api::VerifyRequest;
use latchkey_shared::fingerprint::Fingerprint;
use latchkey_shared::key::ENTROPY_BYTES;
use latchkey_shared::snapshot::{
    EdgeConfig, LicenseEntry, LicenseKind, LicenseStatus, Policy, Product, ProductClientConfig,
    SnapshotBuilder,
};
use latchkey_shared::{LicenseKey, SigningKeyPair};
use sqlx::{ConnectOptions, PgPool};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::scratch::ScratchDatabase;

pub const VERIFY_PATH: &str = "/api/license/verify";
pub const BENCH_PRODUCT_SLUG: &str = "bench";
pub const BENCH_PRODUCT_ID: u32 = 1;

/// Distinct request bodies the load generator picks from: enough that
/// lookups spread over the snapshot, few enough to stay small in memory.
const MAX_BODIES: usize = 1 << 18;
/// Bodies written into the wrk script.
const WRK_BODIES: usize = 1_000;
/// High enough that the edge's limiter never refuses a benchmark request.
const UNLIMITED_PER_MIN: u32 = 1_000_000_000;
/// How long a server has to stop after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Licenses in the snapshot and in the PostgreSQL table.
    #[arg(long, default_value_t = 1_000_000)]
    licenses: usize,
    /// Keep-alive HTTP/1.1 connections, one task each.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds each server is measured (after the warm-up).
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Total requests per second, spread over the connections; as fast as
    /// possible when absent (and then the edge runs a second pass at half its
    /// measured maximum).
    #[arg(long)]
    rate: Option<u64>,
    /// Seconds of load before measuring starts (first touches of the data).
    #[arg(long, default_value_t = 1)]
    warmup_seconds: u64,
    /// Servers to measure, one after another.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ceiling,verify-work,edge,edge-signed,baseline-postgres"
    )]
    servers: Vec<ServerKind>,
    /// The `latchkey-edge` binary; default: next to this binary.
    #[arg(long)]
    edge_bin: Option<PathBuf>,
    /// Where the snapshot, key, wrk script and server logs go; kept when
    /// given (so the printed commands can be re-run), a temporary directory
    /// removed at the end otherwise.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// PostgreSQL connections of the baseline server's pool.
    #[arg(long, default_value_t = 16)]
    baseline_pool_size: u32,
    /// Seconds a server has to answer `GET /readyz` with 200.
    #[arg(long, default_value_t = 60)]
    ready_timeout_secs: u64,
    /// Skip the wrk cross-check even when wrk is on PATH.
    #[arg(long)]
    no_wrk: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ServerKind {
    Ceiling,
    /// The ceiling doing the parse/hash/serialize work of a verify.
    VerifyWork,
    Edge,
    /// The edge signing every answer.
    EdgeSigned,
    BaselinePostgres,
}

impl ServerKind {
    fn name(self) -> &'static str {
        match self {
            Self::Ceiling => "ceiling",
            Self::VerifyWork => "verify-work",
            Self::Edge => "edge",
            Self::EdgeSigned => "edge-signed",
            Self::BaselinePostgres => "baseline-postgres",
        }
    }
}

pub async fn run(server_url: &str, args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(args.licenses > 0, "--licenses must be at least 1");
    anyhow::ensure!(args.connections > 0, "--connections must be at least 1");
    anyhow::ensure!(args.seconds > 0, "--seconds must be at least 1");
    anyhow::ensure!(args.rate != Some(0), "--rate must be at least 1");
    let edge_bin = match &args.edge_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("latchkey-edge"),
    };
    let wants_edge =
        args.servers.contains(&ServerKind::Edge) || args.servers.contains(&ServerKind::EdgeSigned);
    if wants_edge && !edge_bin.is_file() {
        bail!(
            "no edge binary at {}: build it with `cargo build --release -p latchkey-edge`, \
             pass --edge-bin, or leave it out with --servers ceiling,baseline-postgres",
            edge_bin.display()
        );
    }
    let (work_dir, keep_files) = match &args.work_dir {
        Some(dir) => (dir.clone(), true),
        None => (
            std::env::temp_dir().join(format!("latchkey-bench-verify-{}", std::process::id())),
            false,
        ),
    };
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("creating {}", work_dir.display()))?;

    let db = if args.servers.contains(&ServerKind::BaselinePostgres) {
        Some(ScratchDatabase::create(server_url, 2).await?)
    } else {
        None
    };
    let result = race(
        &args,
        &edge_bin,
        &work_dir,
        keep_files,
        db.as_ref().map(|db| &db.pool),
    )
    .await;
    if let Some(db) = db {
        db.drop().await.context("dropping the scratch database")?;
    }
    if !keep_files {
        std::fs::remove_dir_all(&work_dir)
            .with_context(|| format!("removing {}", work_dir.display()))?;
    }
    result
}

/// The licenses, written as a signed snapshot and kept as request bodies.
struct Fixture {
    snapshot: PathBuf,
    public_key: PathBuf,
    /// An answer key and its certificate, for `edge-signed`.
    answer_key: PathBuf,
    answer_certificate: PathBuf,
    bodies: Arc<Vec<Bytes>>,
}

/// What one pass against one server measured.
struct Measured {
    requests: u64,
    errors: u64,
    invalid: u64,
    /// Scheduled sends the pacer handed out that were never sent by the end.
    unsent: u64,
    window: Duration,
    latency: Histogram<u64>,
    /// From the actual send to the answer: without the wait for the
    /// connection or the pacer (equal to `latency` when not paced).
    service: Histogram<u64>,
    /// How late the pacer handed out sends (paced runs): the load
    /// generator's own share of the latency, on this shared machine.
    pacer_lag: Option<Histogram<u64>>,
    /// CPU time the server's processes spent in the measured window.
    cpu: Option<Cpu>,
    first_problem: Option<String>,
}

/// What the processes answering the requests spent in the measured window.
#[derive(Debug, Clone, Copy)]
struct Cpu {
    spent: Duration,
    processes: usize,
}

/// A server's memory after its run, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Memory {
    rss_kib: u64,
    peak_kib: u64,
}

async fn race(
    args: &Args,
    edge_bin: &Path,
    work_dir: &Path,
    keep_files: bool,
    pool: Option<&PgPool>,
) -> anyhow::Result<()> {
    let pace = match args.rate {
        Some(rate) => format!("at {rate} requests/s"),
        None => "as fast as possible".to_owned(),
    };
    println!(
        "verify: {} licenses, {} connections, {} s per server after {} s of warm-up, {pace}",
        args.licenses, args.connections, args.seconds, args.warmup_seconds
    );
    let started = Instant::now();
    let (licenses, dir) = (args.licenses, work_dir.to_owned());
    let fixture = tokio::task::spawn_blocking(move || build_fixture(licenses, &dir)).await??;
    println!(
        "  snapshot of {} licenses (2 devices each) built, signed and written in {:.1?}: {} bytes",
        args.licenses,
        started.elapsed(),
        std::fs::metadata(&fixture.snapshot)?.len()
    );
    if let Some(pool) = pool {
        let started = Instant::now();
        load_postgres(pool, args.licenses).await?;
        println!(
            "  bench_licenses filled with {} rows (COPY, then primary key) in {:.1?}",
            args.licenses,
            started.elapsed()
        );
    }

    let tick = clock_tick();
    let mut results: Vec<(ServerKind, Measured, Memory)> = Vec::new();
    let mut problems = Vec::new();
    for &kind in &args.servers {
        let addr = free_local_addr()?;
        let log = work_dir.join(format!("{}.log", kind.name()));
        let (program, server_args) = match kind {
            ServerKind::Edge | ServerKind::EdgeSigned => {
                let (snapshot, public_key) = (
                    fixture.snapshot.to_string_lossy(),
                    fixture.public_key.to_string_lossy(),
                );
                let (answer_key, answer_certificate) = (
                    fixture.answer_key.to_string_lossy(),
                    fixture.answer_certificate.to_string_lossy(),
                );
                let (listen, limit) = (addr.to_string(), UNLIMITED_PER_MIN.to_string());
                let mut edge_args = vec![
                    "serve",
                    "--snapshot",
                    &snapshot,
                    "--trusted-key",
                    &public_key,
                    "--listen",
                    &listen,
                    "--rate-limit-per-min",
                    &limit,
                ];
                if kind == ServerKind::EdgeSigned {
                    edge_args.extend([
                        "--answer-key",
                        &*answer_key,
                        "--answer-certificate",
                        &*answer_certificate,
                    ]);
                }
                (edge_bin.to_owned(), os_args(&edge_args))
            }
            ServerKind::Ceiling => (
                std::env::current_exe()?,
                os_args(&["ceiling-server", "--listen", &addr.to_string()]),
            ),
            ServerKind::VerifyWork => (
                std::env::current_exe()?,
                os_args(&[
                    "ceiling-server",
                    "--listen",
                    &addr.to_string(),
                    "--verify-work",
                ]),
            ),
            ServerKind::BaselinePostgres => {
                let url = pool
                    .context("the baseline needs the scratch database")?
                    .connect_options()
                    .to_url_lossy()
                    .to_string();
                (
                    std::env::current_exe()?,
                    os_args(&[
                        "baseline-postgres-server",
                        "--listen",
                        &addr.to_string(),
                        "--database-url",
                        &url,
                        "--pool-size",
                        &args.baseline_pool_size.to_string(),
                    ]),
                )
            }
        };
        let mut server = Server::spawn(kind.name(), &program, &server_args, addr, &log)?;
        let started = Instant::now();
        server
            .wait_ready(Duration::from_secs(args.ready_timeout_secs))
            .await?;
        println!(
            "  {} ready on {addr} in {:.1?}",
            kind.name(),
            started.elapsed()
        );
        let load = Load {
            addr,
            connections: args.connections,
            warmup: Duration::from_secs(args.warmup_seconds),
            measure: Duration::from_secs(args.seconds),
            rate: args.rate,
            signed: kind == ServerKind::EdgeSigned,
        };
        let charged = Charged {
            kind,
            server: server.pid(),
            pool,
            tick,
        };
        let measured = measure(&load, fixture.bodies.clone(), &charged).await?;
        let memory = server.memory()?;
        report(kind.name(), &measured, memory);
        if let Some(problem) = &measured.first_problem {
            problems.push(format!("{}: {problem}", kind.name()));
        }

        if kind == ServerKind::Edge {
            if args.rate.is_none() {
                let half = (measured.requests as f64 / measured.window.as_secs_f64() / 2.0) as u64;
                let paced = Load {
                    rate: Some(half.max(1)),
                    ..load
                };
                let second = measure(&paced, fixture.bodies.clone(), &charged).await?;
                report(&format!("edge at {} req/s", half.max(1)), &second, memory);
                let p99_ms = millis(second.latency.value_at_quantile(0.99));
                println!(
                    "  edge p99 at half its max rate: {p99_ms:.3} ms (target ≤ 1 ms: {})",
                    if p99_ms <= 1.0 { "met" } else { "missed" }
                );
                if let Some(problem) = &second.first_problem {
                    problems.push(format!("edge at half rate: {problem}"));
                }
            }
            cross_check_with_wrk(args, &fixture, addr, work_dir, keep_files).await?;
        }
        let status = server.stop()?;
        if !status.success() {
            println!("  {} exited with {status} after SIGTERM", kind.name());
        }
        results.push((kind, measured, memory));
    }

    println!(
        "{:<18} {:>9} {:>8} {:>8} {:>8} {:>12}",
        "server", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "CPU µs/req"
    );
    for (kind, measured, _) in &results {
        let q = |q: f64| millis(measured.latency.value_at_quantile(q));
        let cpu = measured
            .cpu_per_request()
            .map_or_else(|| "-".to_owned(), |us| format!("{us:.1}"));
        println!(
            "{:<18} {:>9.0} {:>8.3} {:>8.3} {:>8.3} {cpu:>12}",
            kind.name(),
            measured.throughput(),
            q(0.5),
            q(0.99),
            q(0.999),
        );
    }
    let of = |wanted: ServerKind| results.iter().find(|(kind, ..)| *kind == wanted);
    let throughput = |wanted: ServerKind| of(wanted).map(|(_, measured, _)| measured.throughput());
    let cost =
        |wanted: ServerKind| of(wanted).and_then(|(_, measured, _)| measured.cpu_per_request());
    if let Some(edge) = throughput(ServerKind::Edge) {
        for reference in [
            ServerKind::Ceiling,
            ServerKind::VerifyWork,
            ServerKind::BaselinePostgres,
        ] {
            if let Some(other) = throughput(reference) {
                let target = if reference == ServerKind::Ceiling {
                    let met = if edge / other >= 0.90 {
                        "met"
                    } else {
                        "missed"
                    };
                    format!(" (target ≥ 0.90: {met})")
                } else {
                    String::new()
                };
                println!(
                    "ratio edge / {}: {:.2}{target}",
                    reference.name(),
                    edge / other
                );
            }
        }
    }
    if let Some(edge) = cost(ServerKind::Edge) {
        for reference in [
            ServerKind::Ceiling,
            ServerKind::VerifyWork,
            ServerKind::BaselinePostgres,
        ] {
            if let Some(other) = cost(reference) {
                let target = if reference == ServerKind::BaselinePostgres {
                    let met = if other / edge >= 10.0 {
                        "met"
                    } else {
                        "missed"
                    };
                    format!(" (target ≥ 10: {met})")
                } else {
                    String::new()
                };
                println!(
                    "ratio CPU per verify {} / edge: {:.2}{target}",
                    reference.name(),
                    other / edge
                );
            }
        }
    }
    if let (Some(signed), Some(edge)) = (
        throughput(ServerKind::EdgeSigned),
        throughput(ServerKind::Edge),
    ) {
        println!(
            "ratio edge-signed / edge: {:.2} (the throughput kept when every answer is signed)",
            signed / edge
        );
    }
    if let (Some(signed), Some(edge)) = (cost(ServerKind::EdgeSigned), cost(ServerKind::Edge)) {
        println!(
            "CPU per verify signed − unsigned: {:.1} µs (the cost of signing an answer)",
            signed - edge
        );
    }
    if let (Some(work), Some(ceiling)) = (
        throughput(ServerKind::VerifyWork),
        throughput(ServerKind::Ceiling),
    ) {
        println!(
            "ratio verify-work / ceiling: {:.2} (the share any server doing a verify's parse, hash and serialize keeps)",
            work / ceiling
        );
    }
    if !problems.is_empty() {
        bail!(
            "some requests failed or were not valid:\n{}",
            problems.join("\n")
        );
    }
    Ok(())
}

// ---- the licenses ----

/// splitmix64: deterministic keys, devices and picks, as in the snapshot bench.
fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// License `n`'s key.
fn key(n: u64) -> LicenseKey {
    let mut entropy = [0u8; ENTROPY_BYTES];
    entropy[..8].copy_from_slice(&splitmix(n).to_le_bytes());
    entropy[8..].copy_from_slice(&splitmix(n ^ 0xABCD).to_le_bytes()[..7]);
    LicenseKey::from_entropy(entropy)
}

/// Device `d` (0 or 1) of license `n`, as its client reports it.
fn fingerprint(n: u64, d: u64) -> Fingerprint {
    let device = 2 * n + d;
    let mac = splitmix(device).to_le_bytes();
    Fingerprint {
        system_uuid: Some(
            Uuid::from_u64_pair(splitmix(device + 1), splitmix(device + 2)).to_string(),
        ),
        cpu_id: Some(format!("BFEBFBFF{:08X}", device % 64)),
        macs: vec![hex(&mac[..6])],
        ..Fingerprint::default()
    }
}

fn features(n: u64) -> &'static [&'static str] {
    match n % 3 {
        0 => &[],
        1 => &["export"],
        _ => &["export", "sync", "teams"],
    }
}

fn valid_until() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp() + 365 * 86_400
}

fn build_fixture(licenses: usize, dir: &Path) -> anyhow::Result<Fixture> {
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let signer = SigningKeyPair::generate();
    let config = EdgeConfig {
        rate_limit_per_key_per_min: UNLIMITED_PER_MIN,
        rate_limit_per_ip_per_min: UNLIMITED_PER_MIN,
        ..EdgeConfig::default()
    };
    let policies: Vec<Policy> = (0..3)
        .map(|n| Policy {
            features: features(n).iter().map(|f| (*f).to_owned()).collect(),
            ..Policy::default()
        })
        .collect();
    let mut builder = SnapshotBuilder::with_capacity(config, licenses);
    builder.add_product(Product {
        id: BENCH_PRODUCT_ID,
        slug: BENCH_PRODUCT_SLUG.to_owned(),
        name: "Bench".to_owned(),
        min_allowed_version: None,
        channels: Vec::new(),
        client: ProductClientConfig::default(),
    });
    let valid_until = valid_until();
    for n in 0..licenses as u64 {
        let devices = (0..2)
            .map(|d| Ok(fingerprint(n, d).canonicalize()?.digest().to_bytes()))
            .collect::<anyhow::Result<_>>()?;
        builder.add_license(&LicenseEntry {
            key_hash: key(n).hash().0,
            license_id: Uuid::from_u64_pair(n, splitmix(n)),
            status: LicenseStatus::Active,
            kind: LicenseKind::Full,
            valid_from: now - 86_400,
            valid_until: Some(valid_until),
            product_id: BENCH_PRODUCT_ID,
            device_limit: 3,
            session_limit: 1,
            usage_exhausted: false,
            devices,
            policy: policies[(n % 3) as usize].clone(),
        })?;
    }
    let bytes = builder.seal(&signer, 1, now, now + 7 * 86_400)?;
    let snapshot = dir.join("snapshot.lks");
    let public_key = dir.join("trusted-key.pem");
    std::fs::write(&snapshot, &bytes).with_context(|| format!("writing {}", snapshot.display()))?;
    std::fs::write(&public_key, signer.public_key_pem())
        .with_context(|| format!("writing {}", public_key.display()))?;
    let key = AnswerKey::generate();
    let (certificate, _) = answer::certify(
        Uuid::new_v4(),
        &key.public_key(),
        &signer,
        now,
        answer::CERTIFICATE_TTL_SECS,
    );
    let answer_key = dir.join("answer-key.pem");
    let answer_certificate = dir.join("answer-certificate");
    std::fs::write(&answer_key, key.to_pkcs8_pem())
        .with_context(|| format!("writing {}", answer_key.display()))?;
    std::fs::write(&answer_certificate, certificate)
        .with_context(|| format!("writing {}", answer_certificate.display()))?;
    let bodies = (0..licenses.min(MAX_BODIES) as u64)
        .map(|i| request_body(splitmix(i ^ 0x5EED) % licenses as u64))
        .collect::<anyhow::Result<_>>()?;
    Ok(Fixture {
        snapshot,
        public_key,
        answer_key,
        answer_certificate,
        bodies: Arc::new(bodies),
    })
}

/// A valid verify request for license `n` from its first device.
fn request_body(n: u64) -> anyhow::Result<Bytes> {
    let request = VerifyRequest {
        license_key: key(n).to_string(),
        fingerprint: Some(fingerprint(n, 0)),
        product: Some(BENCH_PRODUCT_SLUG.to_owned()),
        app_version: Some("2.4.0".to_owned()),
        feature: None,
    };
    Ok(serde_json::to_vec(&request)?.into())
}

/// Fills `bench_licenses` with the snapshot's licenses: COPY, then the index.
async fn load_postgres(pool: &PgPool, licenses: usize) -> anyhow::Result<()> {
    sqlx::query(
        "CREATE TABLE bench_licenses (key_hash bytea NOT NULL, status text NOT NULL,
             valid_until timestamptz, product_id int NOT NULL, device_limit int NOT NULL,
             features text[] NOT NULL)",
    )
    .execute(pool)
    .await?;
    let valid_until = OffsetDateTime::from_unix_timestamp(valid_until())?.format(&Rfc3339)?;
    let mut conn = pool.acquire().await?;
    let mut copy = conn
        .copy_in_raw("COPY bench_licenses FROM STDIN (FORMAT text)")
        .await?;
    let mut chunk = String::with_capacity(1 << 20);
    for n in 0..licenses as u64 {
        // Text format: `\\x…` is bytea hex once COPY has unescaped it.
        let _ = writeln!(
            chunk,
            "\\\\x{}\tactive\t{valid_until}\t{BENCH_PRODUCT_ID}\t3\t{{{}}}",
            hex(&key(n).hash().0),
            features(n).join(",")
        );
        if chunk.len() > (1 << 20) - 256 {
            copy.send(chunk.as_bytes()).await?;
            chunk.clear();
        }
    }
    copy.send(chunk.as_bytes()).await?;
    copy.finish().await?;
    sqlx::query("ALTER TABLE bench_licenses ADD PRIMARY KEY (key_hash)")
        .execute(&mut *conn)
        .await?;
    sqlx::query("VACUUM ANALYZE bench_licenses")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(2 * bytes.len());
    for b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    text
}

// ---- the servers ----

/// A server process of the race: SIGTERM and wait when stopped or dropped,
/// so a failing scenario leaves nothing running.
struct Server {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    stopped: bool,
}

impl Server {
    fn spawn(
        name: &'static str,
        program: &Path,
        args: &[OsString],
        addr: SocketAddr,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {name} ({})", program.display()))?;
        Ok(Self {
            name,
            child,
            addr,
            log: log.to_owned(),
            stopped: false,
        })
    }

    /// Polls `GET /readyz` until it answers 200.
    async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                self.stopped = true;
                bail!(
                    "{} exited with {status} before it was ready; its log ({}):\n{}",
                    self.name,
                    self.log.display(),
                    log_tail(&self.log)
                );
            }
            if ready(self.addr).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not ready after {timeout:?}; its log ({}):\n{}",
                    self.name,
                    self.log.display(),
                    log_tail(&self.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn memory(&self) -> anyhow::Result<Memory> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        parse_memory(&status).with_context(|| format!("no VmRSS/VmHWM in {path}"))
    }

    /// SIGTERM, then waits; SIGKILL if it has not stopped in [`STOP_GRACE`].
    fn stop(&mut self) -> anyhow::Result<ExitStatus> {
        self.stopped = true;
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        // std sends only SIGKILL; `kill` keeps the crate free of unsafe.
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("running kill -TERM")?;
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "{} ignored SIGTERM for {STOP_GRACE:?}; killing it",
            self.name
        );
        self.child.kill()?;
        Ok(self.child.wait()?)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.stopped
            && let Err(e) = self.stop()
        {
            eprintln!("stopping {}: {e:#}", self.name);
        }
    }
}

async fn ready(addr: SocketAddr) -> bool {
    let attempt = async {
        let stream = TcpStream::connect(addr).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = Request::get("/readyz")
            .header(HOST, addr.to_string())
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        anyhow::Ok(response.status() == StatusCode::OK)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Ok(true))
    )
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A local address nobody listens on now, for a server to bind.
fn free_local_addr() -> anyhow::Result<SocketAddr> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

fn os_args(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// VmRSS and VmHWM (peak RSS) from the text of `/proc/<pid>/status`.
fn parse_memory(status: &str) -> Option<Memory> {
    let field = |name: &str| {
        status.lines().find_map(|line| {
            let value = line.strip_prefix(name)?.strip_prefix(':')?;
            value.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()
        })
    };
    Some(Memory {
        rss_kib: field("VmRSS")?,
        peak_kib: field("VmHWM")?,
    })
}

// ---- the load generator ----

#[derive(Debug, Clone, Copy)]
struct Load {
    addr: SocketAddr,
    connections: usize,
    warmup: Duration,
    measure: Duration,
    /// Total requests per second; `None` is as fast as possible.
    rate: Option<u64>,
    /// Each request carries a nonce, and an answer without a signature is
    /// counted as not valid.
    signed: bool,
}

/// When the `seq`-th request of a run paced at `rate` requests/s is meant to
/// leave, counted from the start of the run. Computed from the sequence
/// number, not by adding intervals, so the schedule never drifts.
fn intended_offset(seq: u64, rate: u64) -> Duration {
    let nanos = u128::from(seq) * 1_000_000_000 / u128::from(rate);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The connection the `seq`-th request goes out on: round robin, so each
/// connection sends every `connections / rate` seconds, staggered.
fn connection_of(seq: u64, connections: usize) -> usize {
    (seq % connections as u64) as usize
}

/// One connection's share of a run.
struct Tally {
    requests: u64,
    errors: u64,
    invalid: u64,
    unsent: u64,
    latency: Histogram<u64>,
    service: Histogram<u64>,
    first_problem: Option<String>,
}

impl Tally {
    fn new() -> Self {
        Self {
            requests: 0,
            errors: 0,
            invalid: 0,
            unsent: 0,
            latency: latency_histogram(),
            service: latency_histogram(),
            first_problem: None,
        }
    }

    fn problem(&mut self, what: impl FnOnce() -> String) {
        if self.first_problem.is_none() {
            self.first_problem = Some(what());
        }
    }
}

enum Outcome {
    Valid,
    NotValid(Bytes),
    Status(StatusCode, Bytes),
}

/// Drives the server at `load.addr` for warm-up plus measure time.
async fn drive(load: &Load, bodies: Arc<Vec<Bytes>>) -> anyhow::Result<Measured> {
    let start = Instant::now();
    let measure_from = start + load.warmup;
    let end = measure_from + load.measure;
    let host = HeaderValue::from_str(&load.addr.to_string())?;

    let mut schedules: Vec<Option<mpsc::UnboundedReceiver<Instant>>> =
        (0..load.connections).map(|_| None).collect();
    let pacer = match load.rate {
        None => None,
        Some(rate) => {
            let mut senders = Vec::with_capacity(load.connections);
            for schedule in &mut schedules {
                let (tx, rx) = mpsc::unbounded_channel();
                senders.push(tx);
                *schedule = Some(rx);
            }
            // A thread of its own: tokio's timer has millisecond resolution,
            // a sleeping thread is within tens of microseconds.
            Some(std::thread::spawn(move || {
                let mut lag = latency_histogram();
                let mut seq = 0u64;
                loop {
                    let at = start + intended_offset(seq, rate);
                    if at >= end {
                        break;
                    }
                    let now = Instant::now();
                    if at > now {
                        std::thread::sleep(at - now);
                    }
                    if at >= measure_from {
                        lag.saturating_record(micros(at.elapsed()));
                    }
                    // A closed channel is a connection that gave up; its
                    // failure is in its tally.
                    let _ = senders[connection_of(seq, senders.len())].send(at);
                    seq += 1;
                }
                lag
            }))
        }
    };

    let tasks: Vec<_> = schedules
        .into_iter()
        .enumerate()
        .map(|(connection, schedule)| {
            let (bodies, host, addr, signed) =
                (bodies.clone(), host.clone(), load.addr, load.signed);
            tokio::spawn(async move {
                let mut tally = Tally::new();
                let mut picks = splitmix(connection as u64 + 1);
                let mut schedule = schedule;
                let mut next = move || {
                    picks = splitmix(picks);
                    bodies[(picks % bodies.len() as u64) as usize].clone()
                };
                while Instant::now() < end {
                    let mut sender = match connect(addr).await {
                        Ok(sender) => sender,
                        Err(e) => {
                            tally.errors += 1;
                            tally.problem(|| format!("connecting: {e:#}"));
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let connection = async {
                        loop {
                            let intended = match &mut schedule {
                                None => Instant::now(),
                                Some(schedule) => match schedule.recv().await {
                                    Some(at) => at,
                                    None => return anyhow::Ok(()),
                                },
                            };
                            if Instant::now() >= end {
                                if let Some(schedule) = &schedule {
                                    tally.unsent += 1 + schedule.len() as u64;
                                }
                                return anyhow::Ok(());
                            }
                            let sent = Instant::now();
                            let outcome = call(&mut sender, &host, next(), signed).await?;
                            let latency = intended.elapsed();
                            let service = sent.elapsed();
                            if intended < measure_from {
                                continue;
                            }
                            tally.requests += 1;
                            match outcome {
                                Outcome::Valid => {}
                                Outcome::NotValid(body) => {
                                    tally.invalid += 1;
                                    tally.problem(|| {
                                        format!("200 but not valid: {}", excerpt(&body))
                                    });
                                }
                                Outcome::Status(status, body) => {
                                    tally.errors += 1;
                                    tally.problem(|| format!("{status}: {}", excerpt(&body)));
                                }
                            }
                            tally.latency.saturating_record(micros(latency));
                            tally.service.saturating_record(micros(service));
                        }
                    };
                    match connection.await {
                        Ok(()) => break,
                        Err(e) => {
                            tally.errors += 1;
                            tally.problem(|| format!("transport: {e:#}"));
                        }
                    }
                }
                anyhow::Ok(tally)
            })
        })
        .collect();

    let mut measured = Measured {
        requests: 0,
        errors: 0,
        invalid: 0,
        unsent: 0,
        window: load.measure,
        latency: latency_histogram(),
        service: latency_histogram(),
        pacer_lag: None,
        cpu: None,
        first_problem: None,
    };
    for task in tasks {
        let tally = task.await??;
        measured.requests += tally.requests;
        measured.errors += tally.errors;
        measured.invalid += tally.invalid;
        measured.unsent += tally.unsent;
        measured.latency.add(&tally.latency)?;
        measured.service.add(&tally.service)?;
        measured.first_problem = measured.first_problem.or(tally.first_problem);
    }
    if let Some(pacer) = pacer {
        let lag = pacer
            .join()
            .map_err(|_| anyhow::anyhow!("the pacer thread panicked"))?;
        measured.pacer_lag = Some(lag);
    }
    Ok(measured)
}

/// A keep-alive HTTP/1.1 connection whose I/O runs in a task of its own.
async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// The nonce of every signed request: the edge's work does not depend on
/// its value, and the load generator's would.
const BENCH_NONCE: &str = "bench-nonce-0123456789abcdef";

async fn call(
    sender: &mut SendRequest<Full<Bytes>>,
    host: &HeaderValue,
    body: Bytes,
    signed: bool,
) -> anyhow::Result<Outcome> {
    sender.ready().await?;
    let mut request = Request::post(VERIFY_PATH)
        .header(HOST, host)
        .header(CONTENT_TYPE, "application/json");
    if signed {
        request = request.header(answer::NONCE_HEADER, BENCH_NONCE);
    }
    let response = sender.send_request(request.body(Full::new(body))?).await?;
    let status = response.status();
    let unsigned = signed && !response.headers().contains_key(answer::SIGNATURE_HEADER);
    let body = response.into_body().collect().await?.to_bytes();
    Ok(if status != StatusCode::OK {
        Outcome::Status(status, body)
    } else if unsigned {
        Outcome::NotValid(body)
    } else if body.windows(12).any(|w| w == br#""valid":true"#) {
        Outcome::Valid
    } else {
        Outcome::NotValid(body)
    })
}

fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned()
}

impl Measured {
    fn throughput(&self) -> f64 {
        self.requests as f64 / self.window.as_secs_f64()
    }

    /// CPU microseconds the server's processes spent per request answered.
    fn cpu_per_request(&self) -> Option<f64> {
        let cpu = self.cpu?;
        (self.requests > 0).then(|| cpu.spent.as_secs_f64() * 1e6 / self.requests as f64)
    }
}

/// Microseconds, 1 µs to 60 s, 3 significant digits.
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn millis(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

fn report(name: &str, measured: &Measured, memory: Memory) {
    let q = |q: f64| millis(measured.latency.value_at_quantile(q));
    let cpu = match (measured.cpu, measured.cpu_per_request()) {
        (Some(cpu), Some(per_request)) => format!(
            "; CPU {per_request:.1} µs/verify ({:.2} s in {} process{})",
            cpu.spent.as_secs_f64(),
            cpu.processes,
            if cpu.processes == 1 { "" } else { "es" }
        ),
        _ => String::new(),
    };
    println!(
        "{name}: {} requests, {} errors, {} not valid; {:.0} req/s; \
         latency p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms; \
         RSS {:.1} MiB (peak {:.1} MiB){cpu}",
        measured.requests,
        measured.errors,
        measured.invalid,
        measured.throughput(),
        q(0.5),
        q(0.99),
        q(0.999),
        memory.rss_kib as f64 / 1024.0,
        memory.peak_kib as f64 / 1024.0,
    );
    if let Some(lag) = &measured.pacer_lag {
        let service = |q: f64| millis(measured.service.value_at_quantile(q));
        println!(
            "  from the actual send instead of the intended time: p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms",
            service(0.5),
            service(0.99),
            service(0.999)
        );
        println!(
            "  pacer lag (the load generator's own delay, inside the latency above): p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms",
            millis(lag.value_at_quantile(0.5)),
            millis(lag.value_at_quantile(0.99)),
            millis(lag.value_at_quantile(0.999)),
        );
    }
    // A few sends due in the last instant are always left; more is a backlog.
    if measured.unsent > measured.requests / 1000 {
        println!(
            "  {} scheduled requests were still waiting at the end: the rate was above what the server sustained",
            measured.unsent
        );
    }
    if let Some(problem) = &measured.first_problem {
        println!("  first problem: {problem}");
    }
}

// ---- CPU per verify ----

/// Whose CPU time a server's requests are charged: the server process, and
/// for the baseline its PostgreSQL backends as well (the query's work is
/// done there).
struct Charged<'a> {
    kind: ServerKind,
    server: u32,
    pool: Option<&'a PgPool>,
    tick: Duration,
}

impl Charged<'_> {
    /// The processes to charge, found while the server is loaded so every
    /// pooled backend has connected.
    async fn pids(&self) -> anyhow::Result<Vec<u32>> {
        let mut pids = vec![self.server];
        if self.kind == ServerKind::BaselinePostgres {
            let pool = self
                .pool
                .context("the baseline needs the scratch database")?;
            let backends: Vec<i32> = sqlx::query_scalar(
                "SELECT pid FROM pg_stat_activity
                  WHERE application_name = $1 AND datname = current_database()",
            )
            .bind(crate::baseline_postgres::APPLICATION_NAME)
            .fetch_all(pool)
            .await
            .context("listing the baseline's PostgreSQL backends")?;
            anyhow::ensure!(
                !backends.is_empty(),
                "no PostgreSQL backend of the baseline server in pg_stat_activity"
            );
            pids.extend(
                backends
                    .into_iter()
                    .filter_map(|pid| u32::try_from(pid).ok()),
            );
        }
        Ok(pids)
    }
}

/// [`drive`], with the CPU the charged processes spent between the end of
/// the warm-up and the end of the run.
async fn measure(
    load: &Load,
    bodies: Arc<Vec<Bytes>>,
    charged: &Charged<'_>,
) -> anyhow::Result<Measured> {
    let sample = async {
        tokio::time::sleep(load.warmup).await;
        let pids = charged.pids().await?;
        let before = cpu_time(&pids, charged.tick)?;
        tokio::time::sleep(load.measure).await;
        let after = cpu_time(&pids, charged.tick)?;
        anyhow::Ok(Cpu {
            spent: after.saturating_sub(before),
            processes: pids.len(),
        })
    };
    let (measured, cpu) = tokio::join!(drive(load, bodies), sample);
    let mut measured = measured?;
    measured.cpu = Some(cpu?);
    Ok(measured)
}

/// User plus system time of `pids` so far (every thread, live or exited).
fn cpu_time(pids: &[u32], tick: Duration) -> anyhow::Result<Duration> {
    let mut ticks = 0;
    for pid in pids {
        let path = format!("/proc/{pid}/stat");
        let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        ticks += parse_cpu_ticks(&stat).with_context(|| format!("no utime/stime in {path}"))?;
    }
    Ok(tick * u32::try_from(ticks).context("CPU ticks overflow")?)
}

/// utime + stime (fields 14 and 15, in clock ticks) of a `/proc/<pid>/stat`
/// line. The command name (field 2) may hold spaces and parentheses: the
/// fields are counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let mut fields = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The length of a clock tick of `/proc/<pid>/stat` (`getconf CLK_TCK`;
/// 100 Hz, Linux's value on every common architecture, if it cannot run).
fn clock_tick() -> Duration {
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<u32>().ok())
        .filter(|hz| *hz > 0)
        .unwrap_or(100);
    Duration::from_secs(1) / hz
}

// ---- wrk ----

/// Writes the wrk script, prints the command line and, when wrk is
/// installed, runs it against the edge at `addr` and prints its summary.
async fn cross_check_with_wrk(
    args: &Args,
    fixture: &Fixture,
    addr: SocketAddr,
    work_dir: &Path,
    keep_files: bool,
) -> anyhow::Result<()> {
    let script = work_dir.join("verify.lua");
    let bodies = &fixture.bodies[..fixture.bodies.len().min(WRK_BODIES)];
    std::fs::write(&script, wrk_script(bodies))
        .with_context(|| format!("writing {}", script.display()))?;
    let url = format!("http://{addr}{VERIFY_PATH}");
    let wrk_args = [
        "-t2".to_owned(),
        format!("-c{}", args.connections),
        format!("-d{}s", args.seconds),
        "--latency".to_owned(),
        "-s".to_owned(),
        script.to_string_lossy().into_owned(),
        url,
    ];
    println!("cross-check: wrk {}", wrk_args.join(" "));
    if keep_files {
        println!(
            "  (start the edge first: latchkey-edge serve --snapshot {} --trusted-key {} --listen {addr} --rate-limit-per-min {UNLIMITED_PER_MIN})",
            fixture.snapshot.display(),
            fixture.public_key.display()
        );
    } else {
        println!("  (pass --work-dir to keep the script and snapshot for running it by hand)");
    }
    if args.no_wrk {
        return Ok(());
    }
    if !on_path("wrk") {
        println!("  wrk is not on PATH (apt-get install -y wrk): not run");
        return Ok(());
    }
    let output = tokio::process::Command::new("wrk")
        .args(&wrk_args)
        .output()
        .await
        .context("running wrk")?;
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        println!("  wrk | {line}");
    }
    for line in String::from_utf8_lossy(&output.stderr).lines() {
        println!("  wrk ! {line}");
    }
    Ok(())
}

/// A wrk script POSTing the given verify bodies in turn.
fn wrk_script(bodies: &[Bytes]) -> String {
    let mut script = String::from(
        "-- Latchkey verify load: POSTs VerifyRequest bodies for keys of the bench snapshot in turn.\n\
         wrk.method = \"POST\"\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n\
         local bodies = {\n",
    );
    for body in bodies {
        // JSON from serde_json never holds `]]`, so a long bracket quotes it as is.
        let _ = writeln!(script, "  [[{}]],", String::from_utf8_lossy(body));
    }
    script.push_str(
        "}\n\
         local i = 0\n\
         request = function()\n  \
           i = i % #bodies + 1\n  \
           return wrk.format(nil, nil, nil, bodies[i])\n\
         end\n",
    );
    script
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_spreads_requests_evenly_without_drift() {
        assert_eq!(intended_offset(0, 1_000), Duration::ZERO);
        assert_eq!(intended_offset(1, 1_000), Duration::from_millis(1));
        assert_eq!(intended_offset(3, 3), Duration::from_secs(1));
        // 1/3 s is not a whole number of nanoseconds; the 3 000 000th send is still on time.
        assert_eq!(
            intended_offset(3_000_000, 3),
            Duration::from_secs(1_000_000)
        );
        assert_eq!(intended_offset(1, 3), Duration::from_nanos(333_333_333));
    }

    #[test]
    fn each_connection_sends_at_its_share_of_the_rate() {
        let (rate, connections) = (1_000, 4);
        let sends: Vec<Duration> = (0..40)
            .filter(|seq| connection_of(*seq, connections) == 1)
            .map(|seq| intended_offset(seq, rate))
            .collect();
        assert_eq!(sends.len(), 10);
        assert_eq!(sends[0], Duration::from_millis(1));
        assert!(
            sends
                .windows(2)
                .all(|w| w[1] - w[0] == Duration::from_millis(4))
        );
    }

    #[test]
    fn memory_is_read_from_proc_status() {
        let status = "Name:\tlatchkey-edge\nVmPeak:\t 1000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  153600 kB\nRssAnon:\t 100 kB\n";
        assert_eq!(
            parse_memory(status),
            Some(Memory {
                rss_kib: 153_600,
                peak_kib: 204_800
            })
        );
        assert_eq!(parse_memory("Name:\tx\nVmRSS:\t12 kB\n"), None);
        assert_eq!(parse_memory("VmRSSx:\t1 kB\nVmHWM:\t1 kB\n"), None);
    }

    #[test]
    fn cpu_ticks_are_read_after_the_command_name() {
        let stat = "4242 (latchkey (edge) x) S 1 4242 4242 0 -1 4194560 2043 0 0 0 731 120 0 0 20 0 3 0 9862 0";
        assert_eq!(parse_cpu_ticks(stat), Some(851));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1 2"), None);
    }

    #[test]
    fn own_stat_has_cpu_time() {
        let pid = std::process::id();
        assert!(cpu_time(&[pid], clock_tick()).is_ok());
    }

    #[test]
    fn own_status_has_memory() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(parse_memory(&status).unwrap().rss_kib > 0);
    }

    #[test]
    fn request_bodies_are_valid_verify_requests_for_snapshot_keys() {
        let body = request_body(7).unwrap();
        let request: VerifyRequest = serde_json::from_slice(&body).unwrap();
        assert_eq!(request.license_key.parse::<LicenseKey>().unwrap(), key(7));
        assert_eq!(request.product.as_deref(), Some(BENCH_PRODUCT_SLUG));
        let sent = request.fingerprint.unwrap().canonicalize().unwrap();
        let stored = fingerprint(7, 0).canonicalize().unwrap().digest();
        assert!(sent.compare(&stored).is_same_machine());
        assert_ne!(key(7), key(8));
    }

    #[test]
    fn the_wrk_script_quotes_each_body() {
        let bodies = [Bytes::from_static(br#"{"a":1}"#), Bytes::from_static(b"{}")];
        let script = wrk_script(&bodies);
        assert!(script.contains("  [[{\"a\":1}]],\n  [[{}]],\n"), "{script}");
        assert!(script.contains("request = function()"));
    }

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab]), "000fab");
    }
}
