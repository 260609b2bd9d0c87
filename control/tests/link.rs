//! The edge–control link end to end on loopback: control's link server and
//! publisher on the real PostgreSQL, edges as the real edge server, QUIC
//! with mutual TLS between them.

#[allow(dead_code)]
mod support;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use latchkey_control::context::RequestContext;
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::{edges, publish, settings};
use latchkey_control::db::{imports, licenses};
use latchkey_control::progress::Progress;
use latchkey_control::secrets::Secrets;
use latchkey_edge::RunningEdge;
use latchkey_shared::snapshot::LicenseStatus;
use latchkey_shared::{LegacyKey, LicenseKey, SigningKeyPair};
use serde_json::json;
use sqlx::PgPool;
use support::stack::*;
use uuid::Uuid;

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
    let mut elsewhere = activate(1, "try-0");
    elsewhere["product"] = json!("another-product");
    let (status, refused) = post(&edge, "/api/license/activate", elsewhere).await;
    assert_eq!(
        (status, refused["code"].clone()),
        (StatusCode::FORBIDDEN, json!("PRODUCT_MISMATCH")),
        "{refused}"
    );
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
    // The session is bound to its machine: the same token from another one
    // is refused, from its own it runs.
    let beat =
        |n: u32| json!({ "session_token": session["session_token"], "fingerprint": machine(n) });
    let (status, copied) = post(&edge, "/api/license/session/heartbeat", beat(2)).await;
    assert_eq!(
        (status, copied["code"].clone()),
        (StatusCode::FORBIDDEN, json!("SESSION_DEVICE_MISMATCH")),
        "{copied}"
    );
    let (status, own) = post(&edge, "/api/license/session/heartbeat", beat(1)).await;
    assert_eq!(status, StatusCode::OK, "{own}");
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
    // The ended session reaches the edge: its heartbeats are refused there.
    let session_id: Uuid = session["session_id"].as_str().unwrap().parse().unwrap();
    wait_for(Duration::from_secs(2), || {
        edge.state
            .snapshots
            .current()
            .is_some_and(|s| s.is_session_revoked(&session_id))
    })
    .await
    .expect("the ended session reached the edge");
    let (status, beat) = post(
        &edge,
        "/api/license/session/heartbeat",
        json!({ "session_token": session["session_token"], "fingerprint": machine(1) }),
    )
    .await;
    assert_eq!(
        (status, beat["code"].clone()),
        (StatusCode::FORBIDDEN, json!("SESSION_REVOKED"))
    );
    edge.stop().await;
}

/// A license migrated from another system keeps its old key: the edge
/// finds it by its legacy hash, and control decides its activations and
/// sessions. A legacy-looking text the snapshot does not hold is a
/// mistyped key of ours to the edge.
#[sqlx::test(migrator = "MIGRATOR")]
async fn an_imported_legacy_key_is_verified_activated_and_run_through_an_edge(pool: PgPool) {
    let stack = Stack::start(pool.clone()).await;
    let (_, key) = one_license(&pool, 1).await;
    let report = imports::apply(
        &pool,
        &RequestContext::system("test"),
        &Secrets::new(&"s".repeat(48)).unwrap(),
        imports::Kind::Licenses,
        imports::Format::Csv,
        "key,product,device_limit\nOLD-SYSTEM-0042,studio,2\n",
        &Progress::default(),
    )
    .await
    .unwrap();
    assert_eq!(report.created, 1, "{report:?}");
    let edge = stack.edge("edge-a", true).await;
    let legacy = LegacyKey::parse("OLD-SYSTEM-0042").unwrap().hash();
    wait_for(Duration::from_secs(10), || {
        status_on(&edge, &key).is_some()
            && edge
                .state
                .snapshots
                .current()
                .is_some_and(|s| s.license(&legacy).is_some())
    })
    .await
    .expect("the edge serves both licenses");

    let (status, verdict) = post(
        &edge,
        "/api/license/verify",
        json!({ "license_key": "OLD-SYSTEM-0042", "product": "studio" }),
    )
    .await;
    assert_eq!(
        (status, verdict["valid"].clone()),
        (StatusCode::OK, json!(true)),
        "{verdict}"
    );
    let (status, activated) = post(
        &edge,
        "/api/license/activate",
        json!({ "license_key": "OLD-SYSTEM-0042", "fingerprint": machine(1), "idempotency_key": "legacy-1" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{activated}");
    assert_eq!(activated["outcome"], "activated");
    let (status, session) = post(
        &edge,
        "/api/license/session/start",
        json!({ "license_key": "OLD-SYSTEM-0042", "fingerprint": machine(1) }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{session}");

    let unknown = "OLD-SYSTEM-0043";
    for (path, body) in [
        ("/api/license/verify", json!({ "license_key": unknown })),
        (
            "/api/license/activate",
            json!({ "license_key": unknown, "fingerprint": machine(1), "idempotency_key": "x" }),
        ),
    ] {
        let (status, refused) = post(&edge, path, body).await;
        assert_eq!(
            (status, refused["code"].clone()),
            (StatusCode::BAD_REQUEST, json!("INVALID_LICENSE_KEY")),
            "{path}: {refused}"
        );
    }
    edge.stop().await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_edge_with_a_wrong_identity_is_refused(pool: PgPool) {
    let stack = Stack::start(pool.clone()).await;
    let (_, key) = one_license(&pool, 1).await;
    // Never enrolled: no token.
    let stranger = stack.edge("stranger", false).await;
    // Enrolled once; its token cannot enrol a second identity.
    let token = edges::create(&pool, &RequestContext::system("test"), "edge-a")
        .await
        .unwrap()
        .enrol_token;
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
    edges::revoke(&pool, &RequestContext::system("test"), edge_id)
        .await
        .unwrap();
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

async fn heartbeat_rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM license_heartbeats WHERE kind = 'heartbeat'")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn usage_accepted_by_edges_lands_exactly_once_across_a_control_kill(pool: PgPool) {
    let dir = std::env::temp_dir().join(format!("latchkey-usage-test-{}", Uuid::new_v4()));
    let keys = latchkey_control::keys::generate(&dir.join("keys")).unwrap();
    let link_addr = free_udp_port();
    let (license_id, key) = one_license(&pool, 1).await;
    let control = ControlProcess::start(&pool, &dir, &keys.private_pem, link_addr).await;
    std::fs::copy(&keys.public_pem, dir.join("trusted.pem")).unwrap();
    let stack = Stack {
        dir: dir.clone(),
        pool: pool.clone(),
        signer: SigningKeyPair::generate(),
        link: None,
        link_addr,
    };
    let edges = [
        stack.edge("edge-a", true).await,
        stack.edge("edge-b", true).await,
    ];
    wait_for(Duration::from_secs(30), || {
        edges.iter().all(|e| status_on(e, &key).is_some())
    })
    .await
    .expect("both edges are served by the control process");

    // A steady stream of heartbeats into both edges; control dies midway.
    let mut accepted = 0u64;
    let mut control = Some(control);
    for round in 0..60 {
        for edge in &edges {
            let usage = edge.state.usage.as_ref().unwrap();
            for _ in 0..100 {
                usage.record(latchkey_edge::usage::now(
                    latchkey_shared::usage::UsageKind::Heartbeat,
                    license_id,
                    Some(Uuid::new_v4()),
                ));
                accepted += 1;
            }
        }
        if round == 20 {
            control.take().unwrap().kill();
        }
        if round == 40 {
            control = Some(ControlProcess::spawn(
                &pool,
                &dir,
                &keys.private_pem,
                link_addr,
            ));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let started = Instant::now();
    loop {
        let rows = heartbeat_rows(&pool).await;
        let queued: usize = edges
            .iter()
            .map(|e| e.state.usage.as_ref().unwrap().queued_records())
            .sum();
        if rows as u64 == accepted && queued == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{rows} rows for {accepted} accepted records, {queued} still queued"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nothing more arrives later: exactly once, not at least once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(heartbeat_rows(&pool).await as u64, accepted);
    for edge in edges {
        edge.stop().await;
    }
    drop(control);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_replica_that_does_not_publish_relays_the_chain(pool: PgPool) {
    let stack = Stack::start(pool.clone()).await;
    let (license_id, key) = one_license(&pool, 1).await;
    // A second replica on the same database: one of the two holds the
    // publisher lock, and each serves its own edge.
    let replica = start_link(
        &pool,
        &stack.dir,
        stack.signer.clone(),
        "127.0.0.1:0".parse().unwrap(),
    );
    let first = stack.edge("edge-a", true).await;
    let token = edges::create(&pool, &RequestContext::system("test"), "edge-b")
        .await
        .unwrap()
        .enrol_token;
    let other = edge_on(&stack.dir, replica.addr, "edge-b", Some(token)).await;
    wait_for(Duration::from_secs(10), || {
        [&first, &other]
            .iter()
            .all(|e| status_on(e, &key) == Some(LicenseStatus::Active))
    })
    .await
    .expect("both replicas serve their edge");
    licenses::set_status(
        &pool,
        &RequestContext::system("test"),
        license_id,
        LicenseStatus::Suspended,
    )
    .await
    .unwrap();
    let took = wait_for(Duration::from_secs(5), || {
        [&first, &other]
            .iter()
            .all(|e| status_on(e, &key) == Some(LicenseStatus::Suspended))
    })
    .await
    .expect("the change reached the edges of both replicas");
    assert!(took < Duration::from_secs(1), "took {took:?}");
    // Advisory locks belong to a database; other tests run in theirs.
    let publishers: Vec<(i32, String)> = sqlx::query_as(
        "SELECT pid, classid::text || ':' || objid::text FROM pg_locks
          WHERE locktype = 'advisory' AND granted
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        publishers.len(),
        1,
        "exactly one replica publishes: {publishers:?}"
    );
    first.stop().await;
    other.stop().await;
    replica.stop();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn usage_beyond_the_queue_is_spooled_and_lands_once_when_control_returns(pool: PgPool) {
    let mut stack = Stack::start(pool.clone()).await;
    let (license_id, key) = one_license(&pool, 1).await;
    let edge = stack.edge("edge-a", true).await;
    wait_for(Duration::from_secs(10), || status_on(&edge, &key).is_some())
        .await
        .expect("the edge is served");
    stack.link.take().unwrap().stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Control is away: 25 000 records against a queue of 10 000.
    let usage = edge.state.usage.as_ref().unwrap();
    for _ in 0..25 {
        for _ in 0..1_000 {
            usage.record(latchkey_edge::usage::now(
                latchkey_shared::usage::UsageKind::Heartbeat,
                license_id,
                Some(Uuid::new_v4()),
            ));
        }
        usage.cut();
    }
    let spool = stack.dir.join("edge-a").join("spool");
    let spooled = std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
    assert!(spooled > 0, "batches past the queue went to the spool");
    assert!(usage.queued_records() <= 10_000);

    stack.restart_link();
    let started = Instant::now();
    while heartbeat_rows(&pool).await < 25_000 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} of 25000 rows",
            heartbeat_rows(&pool).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(heartbeat_rows(&pool).await, 25_000);
    let left = std::fs::read_dir(&spool).map(|d| d.count()).unwrap_or(0);
    assert_eq!(
        left, 0,
        "the spool is emptied once its batches are committed"
    );
    edge.stop().await;
}

/// A control process killed without a word (SIGKILL) is noticed by the
/// edge within the link's idle timeout, not QUIC's default half minute:
/// activations through the edge work again within 3 s of control listening
/// again.
#[sqlx::test(migrator = "MIGRATOR")]
async fn forwarded_calls_work_within_three_seconds_of_a_killed_control_listening_again(
    pool: PgPool,
) {
    let dir = std::env::temp_dir().join(format!("latchkey-restart-test-{}", Uuid::new_v4()));
    let keys = latchkey_control::keys::generate(&dir.join("keys")).unwrap();
    let link_addr = free_udp_port();
    let (_, key) = one_license(&pool, 1).await;
    let control = ControlProcess::start(&pool, &dir, &keys.private_pem, link_addr).await;
    std::fs::copy(&keys.public_pem, dir.join("trusted.pem")).unwrap();
    let token = edges::create(&pool, &RequestContext::system("test"), "edge-a")
        .await
        .unwrap()
        .enrol_token;
    let edge = edge_on(&dir, link_addr, "edge-a", Some(token)).await;
    wait_for(Duration::from_secs(30), || status_on(&edge, &key).is_some())
        .await
        .expect("the edge is served by the control process");
    let activate = json!({ "license_key": key, "fingerprint": machine(1) });
    let (status, body) = post(&edge, "/api/license/activate", activate.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    control.kill();
    let (status, _) = post(&edge, "/api/license/activate", activate.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "control is gone");
    let restarted = ControlProcess::spawn(&pool, &dir, &keys.private_pem, link_addr);
    wait_until_ok(restarted.http, "/healthz", Duration::from_secs(30))
        .await
        .expect("control listens again");
    let listening = Instant::now();
    loop {
        let (status, body) = post(&edge, "/api/license/activate", activate.clone()).await;
        if status == StatusCode::OK {
            assert_eq!(body["outcome"], "already_active", "{body}");
            break;
        }
        assert!(
            listening.elapsed() < Duration::from_secs(3),
            "still {status} {}s after control listened again: {body}",
            listening.elapsed().as_secs_f32()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "forwarded calls work again {:?} after control listens",
        listening.elapsed()
    );
    edge.stop().await;
    drop(restarted);
    let _ = std::fs::remove_dir_all(&dir);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_per_key_rate_limit_set_in_control_reaches_a_running_edge_in_a_delta(pool: PgPool) {
    let stack = Stack::start(pool.clone()).await;
    let (_, key) = one_license(&pool, 1).await;
    let token = edges::create(&pool, &RequestContext::system("test"), "edge-a")
        .await
        .unwrap()
        .enrol_token;
    // The snapshot's limits in force, not the test override.
    let mut config = edge_settings(&stack.dir, stack.link_addr, "edge-a", Some(token));
    config.rate_limit_per_min = None;
    let edge = latchkey_edge::start(config).await.unwrap();
    wait_for(Duration::from_secs(10), || status_on(&edge, &key).is_some())
        .await
        .expect("the edge serves the license");
    let per_key = |edge: &RunningEdge| {
        edge.state
            .snapshots
            .current()
            .map(|s| s.config().rate_limit_per_key_per_min)
    };
    assert_eq!(per_key(&edge), Some(100));
    let verify = || post(&edge, "/api/license/verify", json!({ "license_key": key }));
    for _ in 0..6 {
        assert_ne!(verify().await.0, StatusCode::TOO_MANY_REQUESTS);
    }
    let before = publish::latest_sequence(&pool).await.unwrap().unwrap();

    let limits = latchkey_shared::snapshot::EdgeConfig {
        rate_limit_per_key_per_min: 5,
        ..Default::default()
    };
    settings::set_edge_config(&pool, &RequestContext::system("test"), &limits)
        .await
        .unwrap();
    wait_for(Duration::from_secs(5), || per_key(&edge) == Some(5))
        .await
        .expect("the new limit reached the edge");
    let (sequence, kind): (i64, String) =
        sqlx::query_as("SELECT sequence, kind FROM snapshots ORDER BY sequence DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        kind, "delta",
        "a delta brought it, not a fresh full snapshot"
    );
    assert!(sequence as u64 > before);

    // Without a restart: five verifies in the minute pass, the sixth is limited.
    for n in 1..=5 {
        let (status, answer) = verify().await;
        assert_ne!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "verify {n}: {answer}"
        );
    }
    let (status, answer) = verify().await;
    assert_eq!(
        (status, answer["code"].clone()),
        (StatusCode::TOO_MANY_REQUESTS, json!("RATE_LIMITED")),
        "{answer}"
    );
    edge.stop().await;
}
