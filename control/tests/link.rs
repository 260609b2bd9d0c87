//! The edge–control link end to end on loopback: control's link server and
//! publisher on the real PostgreSQL, edges as the real edge server, QUIC
//! with mutual TLS between them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use latchkey_control::context::RequestContext;
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::licenses::{self, NewLicense};
use latchkey_control::db::{edges, publish};
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

struct Stack {
    dir: PathBuf,
    pool: PgPool,
    link: Option<RunningLink>,
    link_addr: SocketAddr,
}

impl Stack {
    async fn start(pool: PgPool) -> Self {
        let dir = std::env::temp_dir().join(format!("latchkey-link-test-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let signer = SigningKeyPair::generate();
        std::fs::write(dir.join("trusted.pem"), signer.public_key_pem()).unwrap();
        let running = start_link(&pool, &dir, signer, "127.0.0.1:0".parse().unwrap());
        Self {
            link_addr: running.addr,
            dir,
            pool,
            link: Some(running),
        }
    }

    async fn edge(&self, name: &str, enrol: bool) -> RunningEdge {
        let token = if enrol {
            Some(edges::create(&self.pool, name).await.unwrap().enrol_token)
        } else {
            None
        };
        self.edge_with(name, token).await
    }

    async fn edge_with(&self, name: &str, enrol_token: Option<String>) -> RunningEdge {
        latchkey_edge::start(EdgeConfig {
            snapshot: None,
            trusted_keys: vec![self.dir.join("trusted.pem")],
            listen: "127.0.0.1:0".parse().unwrap(),
            rate_limit_per_min: Some(1_000_000),
            trusted_proxies: vec![],
            max_body_bytes: 16 * 1024,
            header_timeout_secs: 10,
            request_timeout_secs: 15,
            reload_check_ms: 1000,
            link: LinkConfig {
                control: Some(self.link_addr),
                control_cert: Some(self.dir.join("control").join(link::tls::CERT_FILE)),
                data_dir: Some(self.dir.join(name)),
                name: name.to_owned(),
                enrol_token,
                call_timeout_ms: 5_000,
            },
        })
        .await
        .unwrap()
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

fn start_link(
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
            default_grace_secs: link::DEFAULT_GRACE_SECS,
            heartbeat_interval_secs: 900,
            session_token_ttl_secs: 86_400,
            publisher: link::publisher::PublisherSettings::default(),
        },
    )
    .unwrap()
}

async fn one_license(pool: &PgPool, device_limit: i32) -> (Uuid, String) {
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

/// The license's status on an edge, `None` while the edge does not know it.
fn status_on(edge: &RunningEdge, key: &str) -> Option<LicenseStatus> {
    let hash = key.parse::<LicenseKey>().unwrap().hash();
    let snapshot = edge.state.snapshots.current()?;
    snapshot.license(&hash).map(|l| l.status())
}

/// Polls `done` every 2 ms until it holds; the time it took, or `None` past `limit`.
async fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if done() {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

async fn post(edge: &RunningEdge, path: &str, body: Value) -> (StatusCode, Value) {
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

fn machine(n: u32) -> Value {
    json!({
        "system_uuid": Uuid::from_u128(u128::from(n) + 1).to_string(),
        "cpu_id": format!("cpu-{n}"),
        "macs": [format!("02:00:00:00:00:{n:02x}")],
    })
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_suspension_reaches_every_edge_within_a_second(pool: PgPool) {
    let stack = Stack::start(pool.clone()).await;
    let (license_id, key) = one_license(&pool, 2).await;
    let edges = [
        stack.edge("edge-a", true).await,
        stack.edge("edge-b", true).await,
    ];
    wait_for(Duration::from_secs(10), || {
        edges
            .iter()
            .all(|e| status_on(e, &key) == Some(LicenseStatus::Active))
    })
    .await
    .expect("both edges serve the license");

    licenses::set_status(
        &pool,
        &RequestContext::system("test"),
        license_id,
        LicenseStatus::Suspended,
    )
    .await
    .unwrap();
    let took = wait_for(Duration::from_secs(5), || {
        edges
            .iter()
            .all(|e| status_on(e, &key) == Some(LicenseStatus::Suspended))
    })
    .await
    .expect("the suspension reached both edges");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let (status, answer) = post(
        &edges[0],
        "/api/license/verify",
        json!({ "license_key": key }),
    )
    .await;
    assert_eq!(
        (status, answer["code"].clone()),
        (StatusCode::OK, json!("LICENSE_SUSPENDED"))
    );

    // Control records what each edge serves.
    let latest = publish::latest_sequence(&pool)
        .await
        .unwrap()
        .map(|s| s as i64);
    let started = Instant::now();
    loop {
        let held: Vec<_> = edges::list(&pool)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.snapshot_sequence)
            .collect();
        if held.iter().all(|h| *h == latest) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{held:?} vs {latest:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for edge in edges {
        edge.stop().await;
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn activations_through_an_edge_are_decided_by_control_exactly(pool: PgPool) {
    let stack = Stack::start(pool.clone()).await;
    let (_, key) = one_license(&pool, 1).await;
    let edge = stack.edge("edge-a", true).await;
    wait_for(Duration::from_secs(10), || status_on(&edge, &key).is_some())
        .await
        .expect("the edge serves the license");

    let activate = |n: u32, idempotency_key: &str| json!({ "license_key": key, "fingerprint": machine(n), "idempotency_key": idempotency_key });
    let (status, first) = post(&edge, "/api/license/activate", activate(1, "try-1")).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["outcome"], "activated");
    // A retry with the same idempotency key replays the answer: still one seat.
    let (status, again) = post(&edge, "/api/license/activate", activate(1, "try-1")).await;
    assert_eq!(
        (status, &again["device_id"]),
        (StatusCode::OK, &first["device_id"])
    );
    // The only seat is taken: another machine is refused with control's code.
    let (status, refused) = post(&edge, "/api/license/activate", activate(2, "try-2")).await;
    assert_eq!(
        (status, refused["code"].clone()),
        (StatusCode::FORBIDDEN, json!("DEVICE_LIMIT_REACHED")),
        "{refused}"
    );
    let seats: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE status = 'active'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(seats, 1);
    // The activation reaches the edge's snapshot: verify with the fingerprint passes.
    let verified = wait_for(Duration::from_secs(2), || {
        let hash = key.parse::<LicenseKey>().unwrap().hash();
        edge.state
            .snapshots
            .current()
            .and_then(|s| s.license(&hash).map(|l| l.devices().len()))
            == Some(1)
    })
    .await;
    assert!(verified.is_some(), "the new seat reached the edge");
    let (_, verdict) = post(
        &edge,
        "/api/license/verify",
        json!({ "license_key": key, "fingerprint": machine(1) }),
    )
    .await;
    assert_eq!(verdict["valid"], true, "{verdict}");

    let (status, session) = post(
        &edge,
        "/api/license/session/start",
        json!({ "license_key": key, "fingerprint": machine(1) }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{session}");
    let (status, ended) = post(
        &edge,
        "/api/license/session/end",
        json!({ "session_token": session["session_token"] }),
    )
    .await;
    assert_eq!(
        (status, ended["ended"].clone()),
        (StatusCode::OK, json!(true)),
        "{ended}"
    );
    edge.stop().await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_edge_with_a_wrong_identity_is_refused(pool: PgPool) {
    let stack = Stack::start(pool.clone()).await;
    let (_, key) = one_license(&pool, 1).await;
    // Never enrolled: no token.
    let stranger = stack.edge("stranger", false).await;
    // Enrolled once; its token cannot enrol a second identity.
    let token = edges::create(&pool, "edge-a").await.unwrap().enrol_token;
    let enrolled = stack.edge_with("edge-a", Some(token.clone())).await;
    wait_for(Duration::from_secs(10), || {
        status_on(&enrolled, &key).is_some()
    })
    .await
    .expect("the enrolled edge is served");
    let thief = stack.edge_with("thief", Some(token)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        stranger.state.snapshots.current().is_none(),
        "no snapshot for a stranger"
    );
    assert!(
        thief.state.snapshots.current().is_none(),
        "a spent token enrols nobody"
    );
    let known: Vec<String> = edges::list(&pool)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.enrolled_at.is_some())
        .map(|e| e.name)
        .collect();
    assert_eq!(known, vec!["edge-a".to_owned()]);

    // A revoked edge is refused when it comes back.
    let edge_id = edges::list(&pool).await.unwrap()[0].id;
    edges::revoke(&pool, edge_id).await.unwrap();
    enrolled.stop().await;
    let returning = stack.edge_with("edge-a", None).await;
    // It still serves its cached snapshot, but control sends it nothing new.
    let cached = returning.state.snapshots.current().map(|s| s.sequence());
    assert!(cached.is_some(), "served from its cache");
    let (status, answer) = post(
        &returning,
        "/api/license/activate",
        json!({ "license_key": key, "fingerprint": machine(1) }),
    )
    .await;
    assert_eq!(
        (status, answer["code"].clone()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!("CONTROL_UNAVAILABLE")
        ),
        "{answer}"
    );
    for edge in [stranger, thief, returning] {
        edge.stop().await;
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_edge_restarted_while_control_is_down_serves_from_its_cache(pool: PgPool) {
    let mut stack = Stack::start(pool.clone()).await;
    let (license_id, key) = one_license(&pool, 1).await;
    let edge = stack.edge("edge-a", true).await;
    wait_for(Duration::from_secs(10), || status_on(&edge, &key).is_some())
        .await
        .expect("the edge is served");
    // A delta on top of the full snapshot: the cache must replay it too.
    licenses::set_status(
        &pool,
        &RequestContext::system("test"),
        license_id,
        LicenseStatus::Suspended,
    )
    .await
    .unwrap();
    wait_for(Duration::from_secs(5), || {
        status_on(&edge, &key) == Some(LicenseStatus::Suspended)
    })
    .await
    .expect("the delta arrived");
    let held = edge.state.snapshots.current().unwrap().sequence();
    edge.stop().await;
    stack.link.take().unwrap().stop();

    let restarted = stack.edge_with("edge-a", None).await;
    assert_eq!(
        restarted.state.snapshots.current().map(|s| s.sequence()),
        Some(held)
    );
    let (status, answer) = post(
        &restarted,
        "/api/license/verify",
        json!({ "license_key": key }),
    )
    .await;
    assert_eq!(
        (status, answer["code"].clone()),
        (StatusCode::OK, json!("LICENSE_SUSPENDED"))
    );
    let (status, answer) = post(
        &restarted,
        "/api/license/activate",
        json!({ "license_key": key, "fingerprint": machine(1) }),
    )
    .await;
    assert_eq!(
        (status, answer["code"].clone()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!("CONTROL_UNAVAILABLE")
        )
    );
    restarted.stop().await;
}
