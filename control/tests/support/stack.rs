//! Control's link and publisher on the real PostgreSQL with real edges
//! linked to it over QUIC on loopback, for tests that follow a change from
//! control to the edges' answers; or control as its own process
//! ([`ControlProcess`]), for tests that kill it or scrape it apart from the
//! edges.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use latchkey_control::context::RequestContext;
use latchkey_control::db::edges;
use latchkey_control::db::licenses::{self, NewLicense};
use latchkey_control::link::{self, LinkSettings, RunningLink};
use latchkey_control::secrets::Secrets;
use latchkey_edge::config::LinkConfig;
use latchkey_edge::{EdgeConfig, RunningEdge, routes};
use latchkey_shared::snapshot::LicenseStatus;
use latchkey_shared::{LicenseKey, SigningKeyPair};
use serde_json::{Value, json};
use sqlx::PgPool;
use tower::ServiceExt;
use uuid::Uuid;

pub struct Stack {
    pub dir: PathBuf,
    pub pool: PgPool,
    pub signer: SigningKeyPair,
    pub link: Option<RunningLink>,
    pub link_addr: SocketAddr,
}

impl Stack {
    pub async fn start(pool: PgPool) -> Self {
        let dir = std::env::temp_dir().join(format!("latchkey-link-test-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let signer = SigningKeyPair::generate();
        std::fs::write(dir.join("trusted.pem"), signer.public_key_pem()).unwrap();
        let running = start_link(&pool, &dir, signer.clone(), "127.0.0.1:0".parse().unwrap());
        Self {
            link_addr: running.addr,
            dir,
            pool,
            signer,
            link: Some(running),
        }
    }

    /// Control's link again on the same address (a restart).
    pub fn restart_link(&mut self) {
        if let Some(link) = self.link.take() {
            link.stop();
        }
        self.link = Some(start_link(
            &self.pool,
            &self.dir,
            self.signer.clone(),
            self.link_addr,
        ));
    }

    pub async fn edge(&self, name: &str, enrol: bool) -> RunningEdge {
        let token = if enrol {
            Some(
                edges::create(&self.pool, &RequestContext::system("test"), name)
                    .await
                    .unwrap()
                    .enrol_token,
            )
        } else {
            None
        };
        self.edge_with(name, token).await
    }

    pub async fn edge_with(&self, name: &str, enrol_token: Option<String>) -> RunningEdge {
        edge_on(&self.dir, self.link_addr, name, enrol_token).await
    }
}

/// An edge linked to control at `link`, its files under `dir`.
pub async fn edge_on(
    dir: &Path,
    link: SocketAddr,
    name: &str,
    enrol_token: Option<String>,
) -> RunningEdge {
    latchkey_edge::start(edge_settings(dir, link, name, enrol_token))
        .await
        .unwrap()
}

/// What [`edge_on`] starts: rate limits overridden far above what a test
/// sends, unless the test clears `rate_limit_per_min`.
pub fn edge_settings(
    dir: &Path,
    link: SocketAddr,
    name: &str,
    enrol_token: Option<String>,
) -> EdgeConfig {
    // Handed over in a file, as the run command does.
    let enrol_token_file = enrol_token.map(|token| {
        let file = dir.join(format!("{name}.token"));
        std::fs::write(&file, token).unwrap();
        file
    });
    EdgeConfig {
        snapshot: None,
        trusted_keys: vec![dir.join("trusted.pem")],
        listen: "127.0.0.1:0".parse().unwrap(),
        rate_limit_per_min: Some(1_000_000),
        trusted_proxies: vec![],
        max_body_bytes: 16 * 1024,
        header_timeout_secs: 10,
        request_timeout_secs: 15,
        answer_key: None,
        answer_certificate: None,
        reload_check_ms: 1000,
        link: LinkConfig {
            control: Some(link),
            control_cert: Some(dir.join("control").join(link::tls::CERT_FILE)),
            data_dir: Some(dir.join(name)),
            name: name.to_owned(),
            enrol_token_file,
            enrol_token: None,
            call_timeout_ms: 5_000,
            usage_batch_records: 1_000,
            usage_flush_ms: 50,
            usage_queue_records: 10_000,
            usage_spool_mb: 16,
        },
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            link.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn start_link(
    pool: &PgPool,
    dir: &Path,
    signer: SigningKeyPair,
    listen: SocketAddr,
) -> RunningLink {
    link::start(
        pool.clone(),
        &dir.join("control"),
        LinkSettings {
            listen,
            signer,
            session_token_ttl_secs: 86_400,
            publisher: link::publisher::PublisherSettings::default(),
        },
    )
    .unwrap()
}

/// The license's status on an edge, `None` while the edge does not know it.
pub fn status_on(edge: &RunningEdge, key: &str) -> Option<LicenseStatus> {
    let hash = key.parse::<LicenseKey>().unwrap().hash();
    let snapshot = edge.state.snapshots.current()?;
    snapshot.license(&hash).map(|l| l.status())
}

/// Polls `done` every 2 ms until it holds; the time it took, or `None` past `limit`.
pub async fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

pub async fn post(edge: &RunningEdge, path: &str, body: Value) -> (StatusCode, Value) {
    let app = routes::router(edge.state.clone(), 16 * 1024)
        .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 4000))));
    let request = Request::post(path)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

pub fn machine(n: u32) -> Value {
    json!({
        "system_uuid": Uuid::from_u128(u128::from(n) + 1).to_string(),
        "cpu_id": format!("cpu-{n}"),
        "macs": [format!("02:00:00:00:00:{n:02x}")],
    })
}

/// A license of a new product `studio` with feature `sync`: its id and key.
pub async fn one_license(pool: &PgPool, device_limit: i32) -> (Uuid, String) {
    let product_id: i32 = sqlx::query_scalar(
        "INSERT INTO products (slug, name) VALUES ('studio', 'Studio') RETURNING id",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    let template: NewLicense = serde_json::from_value(json!({
        "product_id": product_id,
        "device_limit": device_limit,
        "features": ["sync"],
    }))
    .unwrap();
    let created = licenses::create(
        pool,
        &RequestContext::system("test"),
        &Secrets::new(&"s".repeat(48)).unwrap(),
        &template,
        1,
    )
    .await
    .unwrap();
    (created[0].license.id, created[0].license_key.clone())
}

/// `latchkey-control serve` as a real process, on this test's database.
pub struct ControlProcess {
    child: std::process::Child,
    pub http: SocketAddr,
}

impl ControlProcess {
    /// Started and ready: its `/readyz` answers 200.
    pub async fn start(pool: &PgPool, dir: &Path, signing_key: &Path, link: SocketAddr) -> Self {
        let control = Self::spawn(pool, dir, signing_key, link);
        wait_until_ok(control.http, "/readyz", Duration::from_secs(30))
            .await
            .expect("control answered /readyz with 200");
        control
    }

    pub fn spawn(pool: &PgPool, dir: &Path, signing_key: &Path, link: SocketAddr) -> Self {
        let database = pool.connect_options().get_database().unwrap().to_owned();
        let base = std::env::var("DATABASE_URL").unwrap();
        let url = format!("{}/{database}", base.rsplit_once('/').unwrap().0);
        let log = std::fs::File::create(dir.join("control.log")).unwrap();
        let http = free_tcp_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey-control"))
            .arg("serve")
            .env("DATABASE_URL", url)
            .env("SECRET_KEY", "s".repeat(48))
            .env("JWT_SECRET", "j".repeat(48))
            .env("LATCHKEY_LISTEN_ADDR", http.to_string())
            .env("LATCHKEY_DATABASE_MAX_CONNECTIONS", "4")
            .env("LATCHKEY_SIGNING_KEY_PATH", signing_key)
            .env("LATCHKEY_LINK_LISTEN_ADDR", link.to_string())
            .env("LATCHKEY_LINK_DIR", dir.join("control"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Self { child, http }
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ControlProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_tcp_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Polls `GET path` until it answers 200; how long that took.
pub async fn wait_until_ok(addr: SocketAddr, path: &str, limit: Duration) -> Option<Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let started = Instant::now();
    while started.elapsed() < limit {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await {
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: control\r\nConnection: close\r\n\r\n");
            let mut answer = Vec::new();
            if stream.write_all(request.as_bytes()).await.is_ok()
                && stream.read_to_end(&mut answer).await.is_ok()
                && answer.starts_with(b"HTTP/1.1 200")
            {
                return Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

pub fn free_udp_port() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
