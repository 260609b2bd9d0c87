//! Licenses, seats and sessions against the real PostgreSQL: the exact
//! rules under concurrency, idempotency, the reaper, batches and audit.

use std::collections::{BTreeMap, HashSet};

use latchkey_control::context::{Actor, ActorKind, RequestContext};
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::devices::{self, LeaseIssuer, SeatRequest};
use latchkey_control::db::licenses::{self, LicensePatch, NewLicense};
use latchkey_control::db::products;
use latchkey_control::db::sessions::{self, SessionSettings, StartRequest};
use latchkey_control::error::{DomainError, Entity};
use latchkey_control::secrets::Secrets;
use latchkey_shared::api::{ActivationOutcome, ErrorCode};
use latchkey_shared::fingerprint::{CanonicalFingerprint, Fingerprint};
use latchkey_shared::snapshot::{LicenseKind, LicenseStatus};
use latchkey_shared::token::{self, Lease};
use latchkey_shared::{ClientKey, LicenseKey, SigningKeyPair, TrustedKeys};
use sqlx::PgPool;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

fn ctx() -> RequestContext {
    RequestContext {
        request_id: format!("test-{}", Uuid::new_v4()),
        actor: Actor {
            kind: ActorKind::Admin,
            id: Some("tester".into()),
            name: Some("tester".into()),
        },
        ip: Some("127.0.0.1".parse().unwrap()),
        user_agent: Some("licensing-test".into()),
    }
}

fn secrets() -> Secrets {
    Secrets::new(&"s".repeat(48)).unwrap()
}

fn signer() -> SigningKeyPair {
    SigningKeyPair::from_seed([3; 32])
}

fn issuer() -> LeaseIssuer {
    LeaseIssuer { signer: signer() }
}

fn session_settings() -> SessionSettings {
    SessionSettings {
        signer: signer(),
        token_ttl_secs: 86_400,
    }
}

fn machine(n: u32) -> CanonicalFingerprint {
    Fingerprint {
        system_uuid: Some(Uuid::from_u128(u128::from(n) + 1).to_string()),
        machine_id: None,
        cpu_id: Some(format!("cpu-{n}")),
        macs: vec![format!("02:00:00:00:{:02x}:{:02x}", n / 256, n % 256)],
        extra: BTreeMap::new(),
    }
    .canonicalize()
    .unwrap()
}

fn seat(key: &str, fingerprint: CanonicalFingerprint) -> SeatRequest {
    SeatRequest {
        key: key.parse().unwrap(),
        fingerprint,
        device_name: None,
        app_version: Some("2.4.0".into()),
        ip: None,
        idempotency_key: None,
    }
}

async fn product(pool: &PgPool) -> i32 {
    sqlx::query_scalar("INSERT INTO products (slug, name) VALUES ('studio', 'Studio') RETURNING id")
        .fetch_one(pool)
        .await
        .unwrap()
}

fn template(product_id: i32, device_limit: i32, session_limit: i32) -> NewLicense {
    serde_json::from_value(serde_json::json!({
        "product_id": product_id,
        "device_limit": device_limit,
        "session_limit": session_limit,
        "features": ["sync", "export"],
    }))
    .unwrap()
}

async fn one_license(pool: &PgPool, device_limit: i32, session_limit: i32) -> (Uuid, String) {
    let product_id = product(pool).await;
    let created = licenses::create(
        pool,
        &ctx(),
        &secrets(),
        &template(product_id, device_limit, session_limit),
        1,
    )
    .await
    .unwrap();
    (created[0].license.id, created[0].license_key.clone())
}

fn refused_code<T: std::fmt::Debug>(result: Result<T, DomainError>) -> ErrorCode {
    match result {
        Err(DomainError::Refused { code, .. }) => code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn active_seats(pool: &PgPool, license_id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM devices WHERE license_id = $1 AND status = 'active'")
        .bind(license_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn fifty_concurrent_activations_take_exactly_three_seats(pool: PgPool) {
    let (license_id, key) = one_license(&pool, 3, 0).await;
    let tasks: Vec<_> = (0..50)
        .map(|n| {
            let (pool, key) = (pool.clone(), key.clone());
            tokio::spawn(async move {
                devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(n))).await
            })
        })
        .collect();
    let mut activated = 0;
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(answer) => {
                assert_eq!(answer.outcome, ActivationOutcome::Activated);
                activated += 1;
            }
            Err(error) => {
                assert_eq!(error.code(), ErrorCode::DeviceLimitReached, "{error:?}");
                refused += 1;
            }
        }
    }
    assert_eq!((activated, refused), (3, 47));
    assert_eq!(active_seats(&pool, license_id).await, 3);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_same_machine_never_takes_a_second_seat(pool: PgPool) {
    let (license_id, key) = one_license(&pool, 2, 0).await;
    let first = devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(1)))
        .await
        .unwrap();
    assert_eq!(first.outcome, ActivationOutcome::Activated);
    let again = devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(1)))
        .await
        .unwrap();
    assert_eq!(
        (again.outcome, again.device_id),
        (ActivationOutcome::AlreadyActive, first.device_id)
    );

    // A new network card: the matching rule recognises the machine.
    let mut new_nic = machine(1);
    new_nic.macs = vec!["0a0b0c0d0e0f".into()];
    let updated = devices::activate(&pool, &ctx(), &issuer(), &seat(&key, new_nic.clone()))
        .await
        .unwrap();
    assert_eq!(
        (updated.outcome, updated.device_id),
        (ActivationOutcome::Updated, first.device_id)
    );
    assert_eq!(active_seats(&pool, license_id).await, 1);
    let exact = devices::activate(&pool, &ctx(), &issuer(), &seat(&key, new_nic))
        .await
        .unwrap();
    assert_eq!(exact.outcome, ActivationOutcome::AlreadyActive);

    // The lease verifies offline and is bound to the machine.
    let trusted = TrustedKeys::new().with(signer().verifying_key());
    let lease: Lease = token::verify(
        &first.lease,
        &trusted,
        OffsetDateTime::now_utc().unix_timestamp(),
    )
    .unwrap();
    assert_eq!(lease.license_id, license_id);
    assert_eq!(lease.fingerprint, machine(1).hash());
    assert_eq!(lease.valid_until - lease.issued_at, 7 * 86_400);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_retried_activation_with_its_idempotency_key_takes_one_seat(pool: PgPool) {
    let (license_id, key) = one_license(&pool, 5, 0).await;
    let mut request = seat(&key, machine(9));
    request.idempotency_key = Some("retry-1".into());
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let (pool, request) = (pool.clone(), request.clone());
            tokio::spawn(async move {
                devices::activate(&pool, &ctx(), &issuer(), &request)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    assert!(
        answers.iter().all(|a| a == &answers[0]),
        "every retry gets the first answer"
    );
    assert_eq!(answers[0].outcome, ActivationOutcome::Activated);
    assert_eq!(active_seats(&pool, license_id).await, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn deactivation_and_transfer_move_seats(pool: PgPool) {
    let (license_id, key) = one_license(&pool, 1, 0).await;
    let first = devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(1)))
        .await
        .unwrap();
    let full = devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(2))).await;
    assert_eq!(refused_code(full), ErrorCode::DeviceLimitReached);

    let moved = devices::transfer(
        &pool,
        &ctx(),
        &issuer(),
        first.device_id,
        &seat(&key, machine(2)),
    )
    .await
    .unwrap();
    assert_eq!(moved.outcome, ActivationOutcome::Transferred);
    assert_eq!(active_seats(&pool, license_id).await, 1);
    let transfers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM device_transfers WHERE license_id = $1")
            .bind(license_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(transfers, 1);

    let key: ClientKey = key.parse().unwrap();
    let gone = devices::deactivate(&pool, &ctx(), &key, &machine(2))
        .await
        .unwrap();
    assert_eq!((gone.device_id, gone.devices_used), (moved.device_id, 0));
    assert_eq!(
        refused_code(devices::deactivate(&pool, &ctx(), &key, &machine(2)).await),
        ErrorCode::DeviceNotFound
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn unusable_licenses_are_refused_with_their_reason(pool: PgPool) {
    let (license_id, key) = one_license(&pool, 3, 0).await;
    licenses::set_status(&pool, &ctx(), license_id, LicenseStatus::Suspended)
        .await
        .unwrap();
    let result = devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(1))).await;
    assert_eq!(refused_code(result), ErrorCode::LicenseSuspended);

    licenses::set_status(&pool, &ctx(), license_id, LicenseStatus::Active)
        .await
        .unwrap();
    sqlx::query("UPDATE licenses SET valid_from = now() - interval '2 days', valid_until = now() - interval '1 day'")
        .execute(&pool)
        .await
        .unwrap();
    let result = devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(1))).await;
    assert_eq!(refused_code(result), ErrorCode::LicenseExpired);

    licenses::set_status(&pool, &ctx(), license_id, LicenseStatus::Revoked)
        .await
        .unwrap();
    let result = licenses::set_status(&pool, &ctx(), license_id, LicenseStatus::Active).await;
    assert!(
        matches!(result, Err(DomainError::Conflict { .. })),
        "{result:?}"
    );

    let unknown = seat("00000-00000-00000-00000-00000", machine(1));
    let result = devices::activate(&pool, &ctx(), &issuer(), &unknown).await;
    assert_eq!(result.unwrap_err().code(), ErrorCode::LicenseNotFound);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn twenty_concurrent_starts_on_a_single_session_license_give_one_session(pool: PgPool) {
    let (license_id, key) = one_license(&pool, 1, 1).await;
    devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(1)))
        .await
        .unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (pool, key) = (pool.clone(), key.clone());
            tokio::spawn(async move {
                let request = StartRequest {
                    key: key.parse().unwrap(),
                    fingerprint: machine(1),
                    app_version: None,
                    take_over: false,
                    ip: None,
                    edge_id: None,
                };
                sessions::start(&pool, &ctx(), &session_settings(), &request).await
            })
        })
        .collect();
    let mut started = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => started += 1,
            Err(error) => assert_eq!(error.code(), ErrorCode::SessionActiveElsewhere, "{error:?}"),
        }
    }
    assert_eq!(started, 1);
    let open: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sessions WHERE license_id = $1 AND ended_at IS NULL",
    )
    .bind(license_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(open, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn taking_over_ends_the_older_session_and_tells_the_edges(pool: PgPool) {
    let (license_id, key) = one_license(&pool, 2, 1).await;
    sqlx::query("UPDATE licenses SET allow_session_takeover = true")
        .execute(&pool)
        .await
        .unwrap();
    devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(1)))
        .await
        .unwrap();
    devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(2)))
        .await
        .unwrap();
    let start = |n: u32, take_over: bool| StartRequest {
        key: key.parse().unwrap(),
        fingerprint: machine(n),
        app_version: None,
        take_over,
        ip: None,
        edge_id: None,
    };
    let first = sessions::start(&pool, &ctx(), &session_settings(), &start(1, false))
        .await
        .unwrap();
    let refused = sessions::start(&pool, &ctx(), &session_settings(), &start(2, false)).await;
    assert_eq!(refused_code(refused), ErrorCode::SessionActiveElsewhere);
    let second = sessions::start(&pool, &ctx(), &session_settings(), &start(2, true))
        .await
        .unwrap();
    assert_eq!(second.ended_session_id, Some(first.session_id));
    let heartbeat = sessions::heartbeat(&pool, first.session_id, OffsetDateTime::now_utc()).await;
    assert_eq!(refused_code(heartbeat), ErrorCode::SessionRevoked);
    sessions::heartbeat(&pool, second.session_id, OffsetDateTime::now_utc())
        .await
        .unwrap();
    let revoked = sessions::revoked_for_snapshot(&pool, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(
        revoked.iter().map(|r| r.session_id).collect::<Vec<_>>(),
        vec![first.session_id]
    );
    let outboxed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM snapshot_outbox WHERE entity_kind = 'session' AND entity_id = $1",
    )
    .bind(first.session_id.to_string())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(outboxed, 1);
    assert!(
        sessions::end(&pool, second.session_id, "client")
            .await
            .unwrap()
    );
    assert!(
        !sessions::end(&pool, second.session_id, "client")
            .await
            .unwrap()
    );
    let _ = license_id;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_reaper_ends_sessions_without_heartbeats(pool: PgPool) {
    let (_, key) = one_license(&pool, 1, 0).await;
    devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(1)))
        .await
        .unwrap();
    let request = StartRequest {
        key: key.parse().unwrap(),
        fingerprint: machine(1),
        app_version: None,
        take_over: false,
        ip: None,
        edge_id: None,
    };
    let stale = sessions::start(&pool, &ctx(), &session_settings(), &request)
        .await
        .unwrap();
    let live = sessions::start(&pool, &ctx(), &session_settings(), &request)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE sessions SET last_heartbeat_at = now() - interval '31 minutes' WHERE id = $1",
    )
    .bind(stale.session_id)
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(
        sessions::reap(&pool, OffsetDateTime::now_utc())
            .await
            .unwrap(),
        1
    );
    let reasons: Vec<(Uuid, Option<String>)> =
        sqlx::query_as("SELECT id, end_reason FROM sessions ORDER BY started_at")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(reasons.contains(&(stale.session_id, Some("reaped".into()))));
    assert!(reasons.contains(&(live.session_id, None)));
    assert_eq!(
        sessions::reap(&pool, OffsetDateTime::now_utc())
            .await
            .unwrap(),
        0
    );
}

/// A product's own heartbeat interval and grace are what its clients are
/// told and what control decides by: the reaper gives a session of a product
/// heartbeating hourly two hours, and the lease lasts the product's grace;
/// the edge configuration's values apply where the product sets none.
#[sqlx::test(migrator = "MIGRATOR")]
async fn a_products_interval_and_grace_rule_its_sessions_and_leases(pool: PgPool) {
    let (_, key) = one_license(&pool, 1, 0).await;
    let request = StartRequest {
        key: key.parse().unwrap(),
        fingerprint: machine(1),
        app_version: None,
        take_over: false,
        ip: None,
        edge_id: None,
    };
    let first = devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(1)))
        .await
        .unwrap();
    let left = first.lease_valid_until - OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        (7 * 86_400 - 5..=7 * 86_400).contains(&left),
        "the edge configuration's: {left}"
    );
    let default_session = sessions::start(&pool, &ctx(), &session_settings(), &request)
        .await
        .unwrap();
    assert_eq!(default_session.heartbeat_interval_secs, 900);

    let product_id: i32 = sqlx::query_scalar("SELECT id FROM products")
        .fetch_one(&pool)
        .await
        .unwrap();
    let hourly = products::ClientConfig {
        heartbeat_interval_secs: Some(3600),
        grace_period_secs: Some(2 * 86_400),
        features: Vec::new(),
        settings: serde_json::json!({}),
    };
    products::set_client_config(&pool, &ctx(), product_id, &hourly)
        .await
        .unwrap();
    let hourly_session = sessions::start(&pool, &ctx(), &session_settings(), &request)
        .await
        .unwrap();
    assert_eq!(hourly_session.heartbeat_interval_secs, 3600);
    let lease = devices::refresh_lease(&pool, &issuer(), &key.parse().unwrap(), &machine(1))
        .await
        .unwrap();
    let left = lease.valid_until - OffsetDateTime::now_utc().unix_timestamp();
    assert!((2 * 86_400 - 5..=2 * 86_400).contains(&left), "{left}");

    // 90 minutes silent: within two hourly intervals, so not reaped.
    sqlx::query("UPDATE sessions SET last_heartbeat_at = now() - interval '90 minutes'")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(
        sessions::reap(&pool, OffsetDateTime::now_utc())
            .await
            .unwrap(),
        0
    );
    let live = sessions::live(
        &pool,
        sessions::LiveFilter::default(),
        OffsetDateTime::now_utc(),
        10,
    )
    .await
    .unwrap();
    assert_eq!((live.total, live.overdue), (2, 0));
    assert!(
        live.sessions
            .iter()
            .all(|s| s.overdue_by(OffsetDateTime::now_utc()).is_none())
    );

    // The product back to the edge configuration's 15 minutes: both overdue.
    products::set_client_config(
        &pool,
        &ctx(),
        product_id,
        &products::ClientConfig {
            heartbeat_interval_secs: None,
            ..hourly
        },
    )
    .await
    .unwrap();
    let live = sessions::live(
        &pool,
        sessions::LiveFilter::default(),
        OffsetDateTime::now_utc(),
        10,
    )
    .await
    .unwrap();
    assert_eq!((live.total, live.overdue), (2, 2));
    assert_eq!(
        sessions::reap(&pool, OffsetDateTime::now_utc())
            .await
            .unwrap(),
        2
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_batch_of_ten_thousand_is_created_in_one_call(pool: PgPool) {
    let product_id = product(&pool).await;
    let context = ctx();
    let created = licenses::create(
        &pool,
        &context,
        &secrets(),
        &template(product_id, 1, 0),
        10_000,
    )
    .await
    .unwrap();
    assert_eq!(created.len(), 10_000);
    let keys: HashSet<&str> = created.iter().map(|c| c.license_key.as_str()).collect();
    assert_eq!(keys.len(), 10_000);
    assert!(
        created
            .iter()
            .all(|c| c.license_key.parse::<LicenseKey>().is_ok())
    );
    let batch = created[0].license.batch_id.expect("a batch id");
    let (rows, outbox, audit): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM licenses WHERE batch_id = $1),
                (SELECT count(*) FROM snapshot_outbox WHERE entity_kind = 'license'),
                (SELECT count(*) FROM audit_log WHERE request_id = $2 AND action = 'license.create_batch')",
    )
    .bind(batch)
    .bind(&context.request_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((rows, outbox, audit), (10_000, 10_000, 1));
    let revealed = licenses::reveal_key(&pool, &ctx(), &secrets(), created[7].license.id)
        .await
        .unwrap();
    assert_eq!(revealed, created[7].license_key);
    assert!(matches!(
        licenses::create(
            &pool,
            &ctx(),
            &secrets(),
            &template(product_id, 1, 0),
            10_001
        )
        .await,
        Err(DomainError::Invalid { .. })
    ));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_mutation_leaves_an_audit_row_with_its_request_id(pool: PgPool) {
    let (license_id, key) = one_license(&pool, 2, 0).await;
    let mut seen = Vec::new();
    let mut run = |action: &'static str| {
        let context = ctx();
        seen.push((context.request_id.clone(), action));
        context
    };
    let patch = LicensePatch {
        device_limit: Some(4),
        kind: Some(LicenseKind::Trial),
        valid_until: Some(Some(OffsetDateTime::now_utc() + Duration::days(365))),
        ..LicensePatch::default()
    };
    licenses::update(&pool, &run("license.update"), license_id, &patch)
        .await
        .unwrap();
    licenses::set_status(
        &pool,
        &run("license.suspend"),
        license_id,
        LicenseStatus::Suspended,
    )
    .await
    .unwrap();
    licenses::set_status(
        &pool,
        &run("license.resume"),
        license_id,
        LicenseStatus::Active,
    )
    .await
    .unwrap();
    let until = OffsetDateTime::now_utc() + Duration::days(800);
    licenses::extend(&pool, &run("license.extend"), license_id, until)
        .await
        .unwrap();
    devices::activate(
        &pool,
        &run("device.activate"),
        &issuer(),
        &seat(&key, machine(4)),
    )
    .await
    .unwrap();
    let key: ClientKey = key.parse().unwrap();
    devices::deactivate(&pool, &run("device.deactivate"), &key, &machine(4))
        .await
        .unwrap();
    licenses::delete(&pool, &run("license.delete"), license_id)
        .await
        .unwrap();
    for (request_id, action) in seen {
        let row: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT action, actor_id FROM audit_log WHERE request_id = $1")
                .bind(&request_id)
                .fetch_optional(&pool)
                .await
                .unwrap();
        assert_eq!(
            row,
            Some((action.to_owned(), Some("tester".to_owned()))),
            "{action}"
        );
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn bad_license_input_names_the_field(pool: PgPool) {
    let product_id = product(&pool).await;
    let mut bad = template(product_id, -1, 0);
    let error = licenses::create(&pool, &ctx(), &secrets(), &bad, 1)
        .await
        .unwrap_err();
    assert_eq!(error.field(), Some("device_limit"));
    bad = template(product_id, 1, 70_000);
    assert_eq!(
        licenses::create(&pool, &ctx(), &secrets(), &bad, 1)
            .await
            .unwrap_err()
            .field(),
        Some("session_limit")
    );
    bad = template(product_id + 100, 1, 0);
    assert_eq!(
        licenses::create(&pool, &ctx(), &secrets(), &bad, 1)
            .await
            .unwrap_err()
            .field(),
        Some("product_id")
    );
    bad = template(product_id, 1, 0);
    bad.features = vec!["Has Spaces".into()];
    assert_eq!(
        licenses::create(&pool, &ctx(), &secrets(), &bad, 1)
            .await
            .unwrap_err()
            .field(),
        Some("features[0]")
    );
    let unknown = serde_json::from_value::<NewLicense>(
        serde_json::json!({ "product_id": 1, "colour": "red" }),
    );
    assert!(unknown.unwrap_err().to_string().contains("colour"));
    assert!(matches!(
        licenses::get(&pool, Uuid::new_v4()).await,
        Err(DomainError::NotFound(Entity::License))
    ));
}

// ---- seat changes (issue 11, item 3) ----

async fn seat_changes(pool: &PgPool, license_id: Uuid) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT kind, initiated_by FROM device_transfers WHERE license_id = $1 ORDER BY id",
    )
    .bind(license_id)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_client_changes_seats_at_most_the_limit_per_window(pool: PgPool) {
    let (license_id, key) = one_license(&pool, 1, 0).await;
    let license = licenses::get(&pool, license_id).await.unwrap();
    assert_eq!(
        (license.seat_change_limit, license.seat_change_window_secs),
        (3, 30 * 86_400),
        "the default policy"
    );
    let parsed: ClientKey = key.parse().unwrap();
    // Three changes: a deactivation, a transfer, a deactivation.
    devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(1)))
        .await
        .unwrap();
    devices::deactivate(&pool, &ctx(), &parsed, &machine(1))
        .await
        .unwrap();
    let second = devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(2)))
        .await
        .unwrap();
    devices::transfer(
        &pool,
        &ctx(),
        &issuer(),
        second.device_id,
        &seat(&key, machine(3)),
    )
    .await
    .unwrap();
    devices::deactivate(&pool, &ctx(), &parsed, &machine(3))
        .await
        .unwrap();

    // The fourth, either way, is refused, and the seat stays where it is.
    let fourth = devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(4)))
        .await
        .unwrap();
    let refused = devices::deactivate(&pool, &ctx(), &parsed, &machine(4)).await;
    match &refused {
        Err(DomainError::Refused { code, message }) => {
            assert_eq!(*code, ErrorCode::SeatChangeLimitReached);
            assert!(message.contains("next is possible at"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let moved = devices::transfer(
        &pool,
        &ctx(),
        &issuer(),
        fourth.device_id,
        &seat(&key, machine(5)),
    )
    .await;
    assert_eq!(refused_code(moved), ErrorCode::SeatChangeLimitReached);
    assert_eq!(active_seats(&pool, license_id).await, 1);

    // An admin's deactivation by id is not limited, and is recorded as theirs.
    devices::deactivate_by_id(&pool, &ctx(), fourth.device_id)
        .await
        .unwrap();
    let record = |kind: &str, by: &str| (kind.to_owned(), by.to_owned());
    assert_eq!(
        seat_changes(&pool, license_id).await,
        vec![
            record("deactivate", "client"),
            record("transfer", "client"),
            record("deactivate", "client"),
            record("deactivate", "admin"),
        ]
    );

    // Changes older than the window no longer count.
    devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(6)))
        .await
        .unwrap();
    sqlx::query("UPDATE device_transfers SET at = at - interval '31 days' WHERE license_id = $1")
        .bind(license_id)
        .execute(&pool)
        .await
        .unwrap();
    devices::deactivate(&pool, &ctx(), &parsed, &machine(6))
        .await
        .unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_seat_change_policy_is_set_per_license(pool: PgPool) {
    let product_id = product(&pool).await;
    let mut new = template(product_id, 1, 0);
    new.seat_change_limit = 0;
    let created = licenses::create(&pool, &ctx(), &secrets(), &new, 1)
        .await
        .unwrap();
    let (license_id, key) = (created[0].license.id, created[0].license_key.clone());
    let parsed: ClientKey = key.parse().unwrap();
    let first = devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(1)))
        .await
        .unwrap();
    // 0: a client frees no seat itself; an admin still may.
    assert_eq!(
        refused_code(devices::deactivate(&pool, &ctx(), &parsed, &machine(1)).await),
        ErrorCode::SeatChangeLimitReached
    );
    let patch = LicensePatch {
        seat_change_limit: Some(1),
        seat_change_window_secs: Some(7 * 86_400),
        ..LicensePatch::default()
    };
    let edited = licenses::update(&pool, &ctx(), license_id, &patch)
        .await
        .unwrap();
    assert_eq!(
        (edited.seat_change_limit, edited.seat_change_window_secs),
        (1, 7 * 86_400)
    );
    devices::transfer(
        &pool,
        &ctx(),
        &issuer(),
        first.device_id,
        &seat(&key, machine(2)),
    )
    .await
    .unwrap();
    assert_eq!(
        refused_code(devices::deactivate(&pool, &ctx(), &parsed, &machine(2)).await),
        ErrorCode::SeatChangeLimitReached
    );

    // Out-of-range policies name their field.
    new.seat_change_limit = -1;
    let error = licenses::create(&pool, &ctx(), &secrets(), &new, 1)
        .await
        .unwrap_err();
    assert_eq!(error.field(), Some("seat_change_limit"));
    let patch = LicensePatch {
        seat_change_window_secs: Some(60),
        ..LicensePatch::default()
    };
    let error = licenses::update(&pool, &ctx(), license_id, &patch)
        .await
        .unwrap_err();
    assert_eq!(error.field(), Some("seat_change_window_secs"));
    let from_json: NewLicense = serde_json::from_value(serde_json::json!({
        "product_id": product_id, "seat_change_limit": 10, "seat_change_window_secs": 86_400,
    }))
    .unwrap();
    assert_eq!(
        (
            from_json.seat_change_limit,
            from_json.seat_change_window_secs
        ),
        (10, 86_400)
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn concurrent_deactivate_activate_cycles_never_exceed_the_limit(pool: PgPool) {
    // One seat, three changes per window: however many machines churn at
    // once, three changes succeed, and at most four machines ever hold a
    // lease (the seat plus one per change) — the offline bound.
    let (license_id, key) = one_license(&pool, 1, 0).await;
    let tasks: Vec<_> = (0..12u32)
        .map(|n| {
            let (pool, key) = (pool.clone(), key.clone());
            tokio::spawn(async move {
                let parsed: ClientKey = key.parse().unwrap();
                let mut changes = 0;
                let mut leased = false;
                for _ in 0..8 {
                    let took = match devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(n))).await {
                        Ok(_) => true,
                        Err(error) if error.code() == ErrorCode::DeviceLimitReached && n % 2 == 1 => {
                            // Odd machines try to move the seat to themselves.
                            let holder: Option<Uuid> = sqlx::query_scalar(
                                "SELECT id FROM devices WHERE license_id = $1 AND status = 'active'",
                            )
                            .bind(license_id)
                            .fetch_optional(&pool)
                            .await
                            .unwrap();
                            let Some(holder) = holder else { continue };
                            match devices::transfer(&pool, &ctx(), &issuer(), holder, &seat(&key, machine(n))).await {
                                Ok(_) => {
                                    changes += 1;
                                    true
                                }
                                Err(error) if error.code() == ErrorCode::SeatChangeLimitReached => break,
                                Err(error) => {
                                    assert_eq!(error.code(), ErrorCode::DeviceNotFound, "{error:?}");
                                    false
                                }
                            }
                        }
                        Err(error) => {
                            assert_eq!(error.code(), ErrorCode::DeviceLimitReached, "{error:?}");
                            false
                        }
                    };
                    if !took {
                        tokio::task::yield_now().await;
                        continue;
                    }
                    leased = true;
                    match devices::deactivate(&pool, &ctx(), &parsed, &machine(n)).await {
                        Ok(_) => changes += 1,
                        Err(error) if error.code() == ErrorCode::SeatChangeLimitReached => break,
                        // An odd machine moved the seat away in between.
                        Err(error) => {
                            assert_eq!(error.code(), ErrorCode::DeviceNotFound, "{error:?}")
                        }
                    }
                }
                (changes, leased)
            })
        })
        .collect();
    let (mut changes, mut leased) = (0, 0);
    for task in tasks {
        let (c, l) = task.await.unwrap();
        changes += c;
        leased += usize::from(l);
    }
    assert_eq!(changes, 3, "exactly the limit");
    assert!(leased <= 4, "{leased} machines got a lease");
    let recorded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM device_transfers WHERE license_id = $1 AND initiated_by = 'client'",
    )
    .bind(license_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(recorded, 3);
    assert!(active_seats(&pool, license_id).await <= 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_released_seat_cannot_refresh_its_lease(pool: PgPool) {
    let (_, key) = one_license(&pool, 1, 0).await;
    let parsed: ClientKey = key.parse().unwrap();
    devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(1)))
        .await
        .unwrap();
    devices::refresh_lease(&pool, &issuer(), &parsed, &machine(1))
        .await
        .unwrap();
    devices::deactivate(&pool, &ctx(), &parsed, &machine(1))
        .await
        .unwrap();
    assert_eq!(
        refused_code(devices::refresh_lease(&pool, &issuer(), &parsed, &machine(1)).await),
        ErrorCode::FingerprintMismatch
    );
    // Nor the machine a seat was transferred away from.
    let second = devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(2)))
        .await
        .unwrap();
    devices::transfer(
        &pool,
        &ctx(),
        &issuer(),
        second.device_id,
        &seat(&key, machine(3)),
    )
    .await
    .unwrap();
    assert_eq!(
        refused_code(devices::refresh_lease(&pool, &issuer(), &parsed, &machine(2)).await),
        ErrorCode::FingerprintMismatch
    );
    devices::refresh_lease(&pool, &issuer(), &parsed, &machine(3))
        .await
        .unwrap();
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_lease_refresh_waits_for_a_release_in_flight(pool: PgPool) {
    let (license_id, key) = one_license(&pool, 1, 0).await;
    devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(1)))
        .await
        .unwrap();
    // A release that holds the license lock and has not committed yet.
    let mut release = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM licenses WHERE id = $1 FOR UPDATE")
        .bind(license_id)
        .execute(&mut *release)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE devices SET status = 'deactivated', deactivated_at = now() WHERE license_id = $1",
    )
    .bind(license_id)
    .execute(&mut *release)
    .await
    .unwrap();
    let refresh = {
        let pool = pool.clone();
        let key: ClientKey = key.parse().unwrap();
        tokio::spawn(
            async move { devices::refresh_lease(&pool, &issuer(), &key, &machine(1)).await },
        )
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        !refresh.is_finished(),
        "the refresh waits for the license lock"
    );
    release.commit().await.unwrap();
    assert_eq!(
        refused_code(refresh.await.unwrap()),
        ErrorCode::FingerprintMismatch
    );
}

// ---- idempotent replay (issue 11, item 4) ----

fn conflict_field<T: std::fmt::Debug>(result: Result<T, DomainError>) -> Option<String> {
    match result {
        Err(DomainError::Conflict { field, .. }) => field,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_replay_rechecks_the_license_and_the_seat(pool: PgPool) {
    let (license_id, key) = one_license(&pool, 2, 0).await;
    let mut request = seat(&key, machine(1));
    request.idempotency_key = Some("activate-1".into());
    let first = devices::activate(&pool, &ctx(), &issuer(), &request)
        .await
        .unwrap();
    licenses::set_status(&pool, &ctx(), license_id, LicenseStatus::Suspended)
        .await
        .unwrap();
    let replay = devices::activate(&pool, &ctx(), &issuer(), &request).await;
    assert_eq!(refused_code(replay), ErrorCode::LicenseSuspended);

    licenses::set_status(&pool, &ctx(), license_id, LicenseStatus::Active)
        .await
        .unwrap();
    let replay = devices::activate(&pool, &ctx(), &issuer(), &request)
        .await
        .unwrap();
    assert_eq!(replay, first, "usable again: the first answer");

    // The seat the answer names was freed since: no old lease for it.
    devices::deactivate_by_id(&pool, &ctx(), first.device_id)
        .await
        .unwrap();
    let replay = devices::activate(&pool, &ctx(), &issuer(), &request).await;
    assert_eq!(conflict_field(replay).as_deref(), Some("idempotency_key"));
    assert_eq!(active_seats(&pool, license_id).await, 0);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_idempotency_key_replays_only_its_own_request(pool: PgPool) {
    let (license_id, key) = one_license(&pool, 2, 0).await;
    let mut request = seat(&key, machine(1));
    request.idempotency_key = Some("k".into());
    let first = devices::activate(&pool, &ctx(), &issuer(), &request)
        .await
        .unwrap();

    // The same key from another machine, or for a transfer: a conflict.
    let mut other = seat(&key, machine(2));
    other.idempotency_key = Some("k".into());
    let result = devices::activate(&pool, &ctx(), &issuer(), &other).await;
    assert_eq!(conflict_field(result).as_deref(), Some("idempotency_key"));
    let result = devices::transfer(&pool, &ctx(), &issuer(), first.device_id, &other).await;
    assert_eq!(conflict_field(result).as_deref(), Some("idempotency_key"));
    assert_eq!(active_seats(&pool, license_id).await, 1);

    // A transfer's key is bound to its source device too.
    let mut moving = seat(&key, machine(3));
    moving.idempotency_key = Some("t".into());
    let moved = devices::transfer(&pool, &ctx(), &issuer(), first.device_id, &moving)
        .await
        .unwrap();
    let again = devices::transfer(&pool, &ctx(), &issuer(), first.device_id, &moving)
        .await
        .unwrap();
    assert_eq!(again, moved);
    let elsewhere = devices::transfer(&pool, &ctx(), &issuer(), Uuid::new_v4(), &moving).await;
    assert_eq!(
        conflict_field(elsewhere).as_deref(),
        Some("idempotency_key")
    );
    let as_activation = devices::activate(&pool, &ctx(), &issuer(), &moving).await;
    assert_eq!(
        conflict_field(as_activation).as_deref(),
        Some("idempotency_key")
    );
}

// ---- partial fingerprints (issue 11, item 5) ----

async fn stored_digest(pool: &PgPool, device_id: Uuid) -> Vec<u8> {
    sqlx::query_scalar("SELECT digest FROM devices WHERE id = $1")
        .bind(device_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_partial_fingerprint_never_replaces_the_stored_one(pool: PgPool) {
    let (license_id, key) = one_license(&pool, 2, 0).await;
    let first = devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(1)))
        .await
        .unwrap();
    let full = machine(1).digest().to_bytes().to_vec();
    assert_eq!(stored_digest(&pool, first.device_id).await, full);

    // The machine without its MACs: recognised (one change), not stored.
    let mut partial = machine(1);
    partial.macs.clear();
    let answer = devices::activate(&pool, &ctx(), &issuer(), &seat(&key, partial))
        .await
        .unwrap();
    assert_eq!(
        (answer.outcome, answer.device_id),
        (ActivationOutcome::AlreadyActive, first.device_id)
    );
    assert_eq!(stored_digest(&pool, first.device_id).await, full);

    // Reporting more (a machine id) is stored; leaving it out again is not.
    let mut more = machine(1);
    more.machine_id = Some("7f2c1e0a9b8d4c3f8e2a1b0c9d8e7f6a".into());
    let answer = devices::activate(&pool, &ctx(), &issuer(), &seat(&key, more.clone()))
        .await
        .unwrap();
    assert_eq!(answer.outcome, ActivationOutcome::Updated);
    let richer = more.digest().to_bytes().to_vec();
    assert_eq!(stored_digest(&pool, first.device_id).await, richer);
    let answer = devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(1)))
        .await
        .unwrap();
    assert_eq!(
        (answer.outcome, answer.device_id),
        (ActivationOutcome::AlreadyActive, first.device_id)
    );
    assert_eq!(stored_digest(&pool, first.device_id).await, richer);
    assert_eq!(active_seats(&pool, license_id).await, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_cpu_model_and_a_shared_mac_do_not_share_a_seat(pool: PgPool) {
    // Another machine of the same CPU model behind the same virtual MAC:
    // two weak signals agree, the system UUID differs. It used to count as
    // the first machine, changed, and ran on its seat.
    let (license_id, key) = one_license(&pool, 1, 0).await;
    devices::activate(&pool, &ctx(), &issuer(), &seat(&key, machine(1)))
        .await
        .unwrap();
    let mut twin = machine(1);
    twin.system_uuid = Some("0e1b3c7a55aa4d2e9f102b3c4d5e6f70".into());
    let result = devices::activate(&pool, &ctx(), &issuer(), &seat(&key, twin.clone())).await;
    assert_eq!(refused_code(result), ErrorCode::DeviceLimitReached);
    let parsed: ClientKey = key.parse().unwrap();
    assert_eq!(
        refused_code(devices::refresh_lease(&pool, &issuer(), &parsed, &twin).await),
        ErrorCode::FingerprintMismatch
    );
    assert_eq!(active_seats(&pool, license_id).await, 1);
}

// ---- the migration of stored data ----

#[sqlx::test(migrations = false)]
async fn the_seat_protocol_migrations_carry_stored_rows_over(pool: PgPool) {
    const FIRST: i64 = 20261201000100;
    for migration in MIGRATOR.iter().filter(|m| m.version < FIRST) {
        sqlx::raw_sql(&migration.sql).execute(&pool).await.unwrap();
    }
    // Rows as the code before wrote them: a 24-byte digest, a client's and
    // an admin's deactivation, a transfer, two idempotent answers (one
    // naming a device that is gone).
    let license_id: Uuid = sqlx::query_scalar(
        "WITH p AS (INSERT INTO products (slug, name) VALUES ('studio', 'Studio') RETURNING id)
         INSERT INTO licenses (key_hash, key_prefix, key_sealed, product_id, kind, device_limit)
         SELECT decode(repeat('ab', 32), 'hex'), 'ABCDE', '\\x00', id, 'full', 2 FROM p RETURNING id",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let old_digest = machine(1).digest().to_bytes()[..24].to_vec();
    let device = |status: &'static str, reason: Option<&'static str>, n: u32| {
        let pool = pool.clone();
        let digest = machine(n).digest().to_bytes()[..24].to_vec();
        async move {
            sqlx::query_scalar::<_, Uuid>(
                "INSERT INTO devices (license_id, fingerprint_hash, digest, components, status, deactivated_at,
                                      deactivation_reason)
                 VALUES ($1, $2, $3, '{}', $4, CASE WHEN $4 = 'deactivated' THEN now() END, $5) RETURNING id",
            )
            .bind(license_id)
            .bind(&machine(n).hash().0[..])
            .bind(digest)
            .bind(status)
            .bind(reason)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let active = device("active", None, 1).await;
    let by_client = device("deactivated", Some("client"), 2).await;
    device("deactivated", Some("admin"), 3).await;
    let transferred = device("deactivated", Some("transfer"), 4).await;
    sqlx::query("INSERT INTO device_transfers (license_id, from_device_id, to_device_id) VALUES ($1, $2, $3)")
        .bind(license_id)
        .bind(transferred)
        .bind(active)
        .execute(&pool)
        .await
        .unwrap();
    let answer = |device_id: Uuid, outcome: &str| {
        serde_json::json!({ "outcome": outcome, "device_id": device_id, "devices_used": 1,
                            "device_limit": 2, "lease": "lk1.lease.x", "lease_valid_until": 0 })
    };
    for (key, response) in [
        ("kept", answer(active, "transferred")),
        ("orphan", answer(Uuid::new_v4(), "activated")),
    ] {
        sqlx::query("INSERT INTO idempotent_requests (license_id, idempotency_key, response) VALUES ($1, $2, $3)")
            .bind(license_id)
            .bind(key)
            .bind(response)
            .execute(&pool)
            .await
            .unwrap();
    }

    for migration in MIGRATOR.iter().filter(|m| m.version >= FIRST) {
        sqlx::raw_sql(&migration.sql).execute(&pool).await.unwrap();
    }

    let digest: Vec<u8> = sqlx::query_scalar("SELECT digest FROM devices WHERE id = $1")
        .bind(active)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(digest, [&old_digest[..], &[0; 4]].concat());
    assert_eq!(digest, machine(1).digest().to_bytes());
    let policy: (i32, i32) = sqlx::query_as(
        "SELECT seat_change_limit, seat_change_window_secs FROM licenses WHERE id = $1",
    )
    .bind(license_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(policy, (3, 30 * 86_400));
    let changes: Vec<(String, String, Option<Uuid>)> = sqlx::query_as(
        "SELECT kind, initiated_by, from_device_id FROM device_transfers WHERE license_id = $1
          ORDER BY kind DESC, initiated_by DESC",
    )
    .bind(license_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(changes.len(), 3, "{changes:?}");
    assert_eq!(
        changes[0],
        ("transfer".into(), "client".into(), Some(transferred))
    );
    assert_eq!(
        changes[1],
        ("deactivate".into(), "client".into(), Some(by_client))
    );
    assert_eq!(changes[2].1, "admin");
    let bound: Vec<(String, String, Vec<u8>, Option<Uuid>)> = sqlx::query_as(
        "SELECT idempotency_key, kind, fingerprint_hash, from_device_id FROM idempotent_requests",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        bound,
        vec![(
            "kept".into(),
            "transfer".into(),
            machine(1).hash().0.to_vec(),
            Some(transferred)
        )]
    );
}
