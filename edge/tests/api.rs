//! The edge's public API: every verify outcome, the limits, bad input, and
//! snapshot swaps on a live server.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use latchkey_edge::{routes, start};
use latchkey_shared::api::ErrorCode;
use latchkey_shared::fingerprint::Fingerprint;
use latchkey_shared::token;
use latchkey_shared::{LicenseKey, SigningKeyPair};
use serde_json::{Value, json};
use tower::ServiceExt;
use uuid::Uuid;

use support::{
    app, call, config, fixture, machine, session_claims, signer, write_snapshot,
    write_snapshot_valid_for,
};

async fn verify(app: &axum::Router, body: Value) -> (StatusCode, Value) {
    call(app, "POST", "/api/license/verify", Some(body)).await
}

#[tokio::test]
async fn every_verify_outcome_is_reachable() {
    let fixture = fixture("outcomes");
    let app = app(&fixture, 1_000_000);
    let key = |name: &str| fixture.keys[name].clone();
    let full = json!({ "license_key": key("valid"), "fingerprint": machine(), "product": "studio",
                       "app_version": "2.4.0", "feature": "sync" });
    let (status, answer) = verify(&app, full.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(answer["valid"], true, "{answer}");
    assert_eq!(answer["features"], json!(["sync"]));
    assert_eq!(answer["snapshot_sequence"], 1);
    assert_eq!(
        answer["heartbeat_interval_secs"], 300,
        "studio's own interval"
    );

    let cases: Vec<(Value, ErrorCode)> = vec![
        (
            json!({ "license_key": LicenseKey::from_entropy([200; 15]).to_string() }),
            ErrorCode::LicenseNotFound,
        ),
        (
            json!({ "license_key": key("suspended") }),
            ErrorCode::LicenseSuspended,
        ),
        (
            json!({ "license_key": key("revoked") }),
            ErrorCode::LicenseRevoked,
        ),
        (
            json!({ "license_key": key("not_yet_valid") }),
            ErrorCode::LicenseNotYetValid,
        ),
        (
            json!({ "license_key": key("expired") }),
            ErrorCode::LicenseExpired,
        ),
        (
            json!({ "license_key": key("valid"), "product": "other" }),
            ErrorCode::ProductMismatch,
        ),
        (
            json!({ "license_key": key("valid"), "fingerprint": { "cpu_id": "another", "macs": ["02:00:00:00:00:09"] } }),
            ErrorCode::FingerprintMismatch,
        ),
        (
            json!({ "license_key": key("valid"), "app_version": "1.9.9" }),
            ErrorCode::VersionNotAllowed,
        ),
        (
            json!({ "license_key": key("exhausted") }),
            ErrorCode::UsageLimitReached,
        ),
        (
            json!({ "license_key": key("valid"), "feature": "teams" }),
            ErrorCode::FeatureNotAllowed,
        ),
    ];
    for (body, code) in cases {
        let (status, answer) = verify(&app, body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(answer["valid"], false, "{body}");
        assert_eq!(answer["code"], json!(code.as_str()), "{body} -> {answer}");
    }
}

#[tokio::test]
async fn malformed_input_gets_its_code_and_field() {
    let fixture = fixture("malformed");
    let app = app(&fixture, 1_000_000);
    let valid = fixture.keys["valid"].clone();
    let cases: Vec<(Value, StatusCode, ErrorCode, &str)> = vec![
        (
            json!({ "license_key": "ABCDE-12345" }),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidLicenseKey,
            "license_key",
        ),
        (
            json!({ "license_key": 42 }),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            "license_key",
        ),
        (
            json!({ "license_key": valid, "surprise": true }),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            "surprise",
        ),
        (
            json!({ "license_key": valid, "fingerprint": { "macs": ["zz"] } }),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidRequest,
            "fingerprint.macs[0]",
        ),
        (
            json!({ "license_key": valid, "app_version": "banana" }),
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidVersion,
            "app_version",
        ),
    ];
    for (body, status, code, field) in cases {
        let (got, answer) = verify(&app, body.clone()).await;
        assert_eq!(
            (got, answer["code"].clone()),
            (status, json!(code.as_str())),
            "{body} -> {answer}"
        );
        assert_eq!(answer["field"], json!(field), "{body} -> {answer}");
    }

    let huge = json!({ "license_key": "x".repeat(20_000) });
    let (status, answer) = verify(&app, huge).await;
    assert_eq!(
        (status, answer["code"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!("PAYLOAD_TOO_LARGE"))
    );

    let request = Request::post("/api/license/verify")
        .body(Body::from("{"))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let request = Request::post("/api/license/verify")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{\"license_key\": "))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let (status, answer) = call(&app, "GET", "/api/license/nowhere", None).await;
    assert_eq!(
        (status, answer["code"].clone()),
        (StatusCode::NOT_FOUND, json!("NOT_FOUND"))
    );
    let (status, _) = call(&app, "GET", "/api/license/verify", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, answer) = call(
        &app,
        "POST",
        "/api/license/activate",
        Some(json!({ "license_key": valid, "fingerprint": machine() })),
    )
    .await;
    assert_eq!(
        (status, answer["code"].clone()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!("CONTROL_UNAVAILABLE")
        )
    );
}

#[tokio::test]
async fn the_hundred_and_first_request_of_a_key_in_a_minute_is_refused() {
    let fixture = fixture("limits");
    let app = app(&fixture, 100);
    let body = json!({ "license_key": fixture.keys["valid"] });
    for i in 0..100 {
        let (status, _) = verify(&app, body.clone()).await;
        assert_eq!(status, StatusCode::OK, "request {i}");
    }
    let request = Request::post("/api/license/verify")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after));
}

#[tokio::test]
async fn info_version_and_heartbeat_answer_from_the_snapshot() {
    let fixture = fixture("reads");
    let app = app(&fixture, 1_000_000);
    let (status, info) = call(
        &app,
        "GET",
        &format!("/api/license/info/{}", fixture.keys["valid"]),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (info["product"].clone(), info["devices_used"].clone()),
        (json!("studio"), json!(1))
    );
    assert!(
        info.get("key_hash").is_none() && info.get("license_id").is_none(),
        "no key material: {info}"
    );

    let (_, check) = call(
        &app,
        "POST",
        "/api/version/check",
        Some(json!({ "product": "studio", "version": "1.0" })),
    )
    .await;
    assert_eq!(
        (check["update_mandatory"].clone(), check["latest"].clone()),
        (json!(true), json!("2.4.0"))
    );
    let (status, latest) = call(&app, "GET", "/api/version/latest?product=studio", None).await;
    assert_eq!(
        (status, latest["version"].clone()),
        (StatusCode::OK, json!("2.4.0"))
    );
    let (status, missing) = call(&app, "GET", "/api/version/latest?product=nothing", None).await;
    assert_eq!(
        (status, missing["code"].clone()),
        (StatusCode::NOT_FOUND, json!("PRODUCT_NOT_FOUND"))
    );

    let claims = |session_id| session_claims(session_id, 1);
    let live = token::sign(&claims(Uuid::from_u128(5)), &signer());
    let (status, beat) = call(
        &app,
        "POST",
        "/api/license/session/heartbeat",
        Some(json!({ "session_token": live, "fingerprint": machine() })),
    )
    .await;
    assert_eq!(
        (status, beat["next_heartbeat_secs"].clone()),
        (StatusCode::OK, json!(300)),
        "studio's own interval"
    );
    let ended = token::sign(&claims(fixture.revoked_session), &signer());
    let (status, beat) = call(
        &app,
        "POST",
        "/api/license/session/heartbeat",
        Some(json!({ "session_token": ended, "fingerprint": machine() })),
    )
    .await;
    assert_eq!(
        (status, beat["code"].clone()),
        (StatusCode::FORBIDDEN, json!("SESSION_REVOKED"))
    );
    let forged = token::sign(
        &claims(Uuid::from_u128(5)),
        &SigningKeyPair::from_seed([1; 32]),
    );
    let (status, beat) = call(
        &app,
        "POST",
        "/api/license/session/heartbeat",
        Some(json!({ "session_token": forged, "fingerprint": machine() })),
    )
    .await;
    assert_eq!(
        (status, beat["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("INVALID_TOKEN"))
    );
}

/// A live server on loopback: one HTTP/1.1 keep-alive client connection.
struct Client {
    sender: hyper::client::conn::http1::SendRequest<Body>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(connection);
        Self { sender }
    }

    async fn verify(&mut self, license_key: &str) -> (StatusCode, Value) {
        let request = Request::post("/api/license/verify")
            .header(header::HOST, "edge")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({ "license_key": license_key }).to_string(),
            ))
            .unwrap();
        self.sender.ready().await.unwrap();
        let response = self.sender.send_request(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }
}

/// A client reads its product's configuration: the product's own values,
/// or the edge configuration's where the product sets none.
#[tokio::test]
async fn a_license_reads_its_products_client_configuration() {
    let fixture = fixture("client-config");
    let app = app(&fixture, 1_000_000);
    let config = |key: String| {
        let app = app.clone();
        async move {
            call(
                &app,
                "POST",
                "/api/license/config",
                Some(json!({ "license_key": key })),
            )
            .await
        }
    };
    let (status, studio) = config(fixture.keys["valid"].clone()).await;
    assert_eq!(status, StatusCode::OK, "{studio}");
    assert_eq!(
        studio,
        json!({ "product": "studio", "heartbeat_interval_secs": 300, "grace_period_secs": 86_400,
                "features": ["export", "sync"], "settings": { "theme": "dark", "max_projects": 5 },
                "snapshot_sequence": 1 })
    );
    // Suspended still reads it: it needs to know how often to ask again.
    let (status, _) = config(fixture.keys["suspended"].clone()).await;
    assert_eq!(status, StatusCode::OK);

    let (status, other) = config(fixture.keys["other_product"].clone()).await;
    assert_eq!(status, StatusCode::OK, "{other}");
    let defaults = latchkey_shared::snapshot::EdgeConfig::default();
    assert_eq!(
        (
            other["product"].clone(),
            other["heartbeat_interval_secs"].clone(),
            other["grace_period_secs"].clone(),
            other["settings"].clone()
        ),
        (
            json!("other"),
            json!(defaults.heartbeat_interval_secs),
            json!(defaults.grace_period_secs),
            json!({})
        )
    );

    let unknown = LicenseKey::from_entropy([200; 15]).to_string();
    let (status, missing) = config(unknown).await;
    assert_eq!(
        (status, missing["code"].clone()),
        (StatusCode::NOT_FOUND, json!("LICENSE_NOT_FOUND"))
    );
    let (status, bad) = config("not-a-key".into()).await;
    assert_eq!(
        (status, bad["code"].clone(), bad["field"].clone()),
        (
            StatusCode::BAD_REQUEST,
            json!("INVALID_LICENSE_KEY"),
            json!("license_key")
        )
    );
    let (status, extra) = call(
        &app,
        "POST",
        "/api/license/config",
        Some(json!({ "license_key": fixture.keys["valid"], "product": "studio" })),
    )
    .await;
    assert_eq!(
        (status, extra["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("INVALID_REQUEST"))
    );
}

#[tokio::test]
async fn a_snapshot_swap_under_load_loses_no_request() {
    let fixture = fixture("swap");
    let edge = start(config(&fixture)).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let highest = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (stop, highest, key) =
                (stop.clone(), highest.clone(), fixture.keys["valid"].clone());
            let addr = edge.addr;
            tokio::spawn(async move {
                let mut client = Client::connect(addr).await;
                let mut answered = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let (status, answer) = client.verify(&key).await;
                    assert_eq!(status, StatusCode::OK, "{answer}");
                    assert_eq!(answer["valid"], true, "{answer}");
                    highest.fetch_max(
                        answer["snapshot_sequence"].as_u64().unwrap(),
                        Ordering::Relaxed,
                    );
                    answered += 1;
                }
                answered
            })
        })
        .collect();
    for sequence in 2..=6 {
        tokio::time::sleep(Duration::from_millis(80)).await;
        write_snapshot(
            &fixture.dir.join("snapshot.bin"),
            sequence,
            sequence % 2 == 0,
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let mut answered = 0;
    for client in clients {
        answered += client.await.unwrap();
    }
    assert!(answered > 100, "only {answered} requests answered");
    assert_eq!(
        highest.load(Ordering::Relaxed),
        6,
        "the newest snapshot was swapped in under load"
    );
    let metrics = edge.state.metrics.render();
    let counted: u64 = metrics
        .lines()
        .find(|line| {
            line.starts_with("latchkey_edge_requests_total{")
                && line.contains(r#"endpoint="/api/license/verify""#)
                && line.contains(r#"status="200""#)
        })
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no verify counter in\n{metrics}"));
    assert!(
        counted >= answered,
        "{counted} counted, {answered} answered"
    );
    assert!(
        metrics.contains(
            r#"latchkey_edge_request_duration_seconds_bucket{endpoint="/api/license/verify""#
        ),
        "{metrics}"
    );
    edge.stop().await;
}

#[tokio::test]
async fn tampered_or_rolled_back_files_are_refused_while_the_old_one_serves() {
    let fixture = fixture("refuse");
    let path = fixture.dir.join("snapshot.bin");
    write_snapshot(&path, 5, false);
    let edge = start(config(&fixture)).await.unwrap();
    let mut client = Client::connect(edge.addr).await;
    let key = fixture.keys["valid"].clone();
    assert_eq!(client.verify(&key).await.1["snapshot_sequence"], 5);

    let mut tampered = std::fs::read(&path).unwrap();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x40;
    std::fs::write(&path, &tampered).unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        client.verify(&key).await.1["snapshot_sequence"],
        5,
        "a tampered file is refused"
    );

    write_snapshot(&path, 3, true);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (status, answer) = client.verify(&key).await;
    assert_eq!(
        (status, answer["snapshot_sequence"].clone()),
        (StatusCode::OK, json!(5)),
        "a rollback is refused"
    );

    let metrics = edge.state.metrics.render();
    assert!(
        metrics.contains("latchkey_edge_snapshot_rejected_total{reason=\"bad_signature\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("latchkey_edge_snapshot_rejected_total{reason=\"not_newer\"}"),
        "{metrics}"
    );

    write_snapshot(&path, 7, true);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(
        client.verify(&key).await.1["snapshot_sequence"],
        7,
        "a good newer file is taken"
    );
    edge.stop().await;
}

#[tokio::test]
async fn without_a_valid_snapshot_the_edge_is_not_ready() {
    let fixture = fixture("unready");
    std::fs::write(fixture.dir.join("snapshot.bin"), b"not a snapshot").unwrap();
    let edge = start(config(&fixture)).await.unwrap();
    let mut client = Client::connect(edge.addr).await;
    let (status, answer) = client.verify(&fixture.keys["valid"]).await;
    assert_eq!(
        (status, answer["code"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!("NOT_READY"))
    );
    write_snapshot(&fixture.dir.join("snapshot.bin"), 1, false);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (status, _) = client.verify(&fixture.keys["valid"]).await;
    assert_eq!(status, StatusCode::OK);
    edge.stop().await;
}

#[tokio::test]
async fn the_openapi_document_lists_every_client_endpoint() {
    let fixture = fixture("openapi");
    let app = app(&fixture, 1_000_000);
    let (status, document) = call(&app, "GET", "/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    for path in [
        "/api/license/verify",
        "/api/license/info/{license_key}",
        "/api/license/config",
        "/api/version/check",
        "/api/version/latest",
        "/api/license/session/heartbeat",
        "/api/license/activate",
        "/api/license/deactivate",
        "/api/license/transfer",
        "/api/license/lease",
        "/api/license/session/start",
        "/api/license/session/end",
    ] {
        assert!(document["paths"].get(path).is_some(), "{path} missing");
    }
    for schema in [
        "VerifyRequest",
        "VerifyResponse",
        "ErrorBody",
        "ErrorCode",
        "Fingerprint",
    ] {
        assert!(
            document["components"]["schemas"].get(schema).is_some(),
            "{schema} missing"
        );
    }
}

/// An edge cut off from control fails closed: past its snapshot's expiry it
/// vouches for no license (a suspension it never heard of would otherwise
/// stay valid), says why with a retryable code, is not ready, and answers
/// again as soon as a newer snapshot arrives.
#[tokio::test]
async fn past_its_expiry_a_snapshot_is_not_answered_from() {
    let fixture = fixture("expiry");
    let path = fixture.dir.join("snapshot.bin");
    write_snapshot_valid_for(&path, 2, false, 2);
    let edge = start(config(&fixture)).await.unwrap();
    let mut client = Client::connect(edge.addr).await;
    let license = fixture.keys["valid"].clone();
    let (status, answer) = client.verify(&license).await;
    assert_eq!(
        (status, answer["valid"].clone()),
        (StatusCode::OK, json!(true))
    );

    tokio::time::sleep(Duration::from_millis(3_200)).await;
    let (status, refused) = client.verify(&license).await;
    assert_eq!(
        (
            status,
            refused["code"].clone(),
            refused["retryable"].clone()
        ),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!("SNAPSHOT_EXPIRED"),
            json!(true)
        ),
        "{refused}"
    );
    let app = routes::router(edge.state.clone(), 16 * 1024)
        .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 5001))));
    let (status, info) = call(&app, "GET", &format!("/api/license/info/{license}"), None).await;
    assert_eq!(
        (status, info["code"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!("SNAPSHOT_EXPIRED"))
    );
    let claims = session_claims(Uuid::from_u128(5), 1);
    let beat =
        json!({ "session_token": token::sign(&claims, &signer()), "fingerprint": machine() });
    let (status, refused) = call(&app, "POST", "/api/license/session/heartbeat", Some(beat)).await;
    assert_eq!(
        (status, refused["code"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!("SNAPSHOT_EXPIRED"))
    );
    let (status, ready) = call(&app, "GET", "/readyz", None).await;
    assert_eq!(
        (status, ready["reason"].clone()),
        (StatusCode::SERVICE_UNAVAILABLE, json!("snapshot expired"))
    );
    let metrics = edge.state.metrics.render();
    assert!(
        metrics.contains("latchkey_edge_snapshot_expired 1"),
        "{metrics}"
    );

    write_snapshot(&path, 3, false);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, answer) = client.verify(&license).await;
    assert_eq!(
        (status, answer["valid"].clone()),
        (StatusCode::OK, json!(true)),
        "{answer}"
    );
    edge.stop().await;
}

/// One session token copied to a second machine runs nothing there: every
/// heartbeat from the other machine is refused, while the machine that
/// started the session keeps it, however the two interleave.
#[tokio::test]
async fn a_session_token_runs_only_on_the_machine_that_started_it() {
    let fixture = fixture("session-binding");
    let app = app(&fixture, 1_000_000);
    let claims = session_claims(Uuid::from_u128(5), 1);
    let session_token = token::sign(&claims, &signer());
    let elsewhere = Fingerprint {
        system_uuid: Some("11111111-2222-3333-4444-555555555555".into()),
        ..machine()
    };
    let beats = (0..40).map(|n| {
        let app = app.clone();
        let fingerprint = if n % 2 == 0 {
            machine()
        } else {
            elsewhere.clone()
        };
        let body = json!({ "session_token": session_token, "fingerprint": fingerprint });
        async move {
            let (status, answer) =
                call(&app, "POST", "/api/license/session/heartbeat", Some(body)).await;
            (n % 2 == 0, status, answer["code"].clone())
        }
    });
    let mut running = tokio::task::JoinSet::new();
    for beat in beats {
        running.spawn(beat);
    }
    while let Some(done) = running.join_next().await {
        let (own, status, code) = done.unwrap();
        if own {
            assert_eq!(status, StatusCode::OK, "{code}");
        } else {
            assert_eq!(
                (status, code),
                (StatusCode::FORBIDDEN, json!("SESSION_DEVICE_MISMATCH"))
            );
        }
    }
}
