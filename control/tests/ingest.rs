//! Usage batches: every column lands, each batch id once (also under
//! concurrent redelivery), sessions follow, missing partitions are made.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Arc;

use latchkey_control::context::RequestContext;
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::ingest::{
    IngestError, IngestOutcome, InvalidBatch, KnownPartitions, ingest_batch,
};
use latchkey_control::db::licenses::{self, NewLicense};
use latchkey_control::db::partitions;
use latchkey_control::secrets::Secrets;
use latchkey_shared::usage::{UsageBatch, UsageKind, UsageRecord};
use sqlx::PgPool;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

fn micros(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000) as i64
}

fn now_micros() -> i64 {
    micros(OffsetDateTime::now_utc())
}

fn heartbeat(license_id: Uuid, session_id: Option<Uuid>, at_micros: i64) -> UsageRecord {
    UsageRecord {
        at_micros,
        license_id,
        device_id: None,
        session_id,
        kind: UsageKind::Heartbeat,
        count: NonZeroU32::MIN,
        app_version: None,
        ip: None,
    }
}

fn batch(records: Vec<UsageRecord>) -> UsageBatch {
    UsageBatch {
        batch_id: Uuid::new_v4(),
        edge_id: Uuid::new_v4(),
        records,
    }
}

async fn heartbeat_rows(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM license_heartbeats")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn license(pool: &PgPool) -> Uuid {
    let product: i32 =
        sqlx::query_scalar("INSERT INTO products (slug, name) VALUES ('p', 'P') RETURNING id")
            .fetch_one(pool)
            .await
            .unwrap();
    let new: NewLicense =
        serde_json::from_value(serde_json::json!({ "product_id": product })).unwrap();
    let secrets = Secrets::new(&"i".repeat(40)).unwrap();
    licenses::create(pool, &RequestContext::system("test"), &secrets, &new, 1)
        .await
        .unwrap()[0]
        .license
        .id
}

async fn session(pool: &PgPool, license_id: Uuid, last_heartbeat_at: OffsetDateTime) -> Uuid {
    sqlx::query_scalar(
        "INSERT INTO sessions (license_id, last_heartbeat_at, token_expires_at)
         VALUES ($1, $2, $2 + interval '1 hour') RETURNING id",
    )
    .bind(license_id)
    .bind(last_heartbeat_at)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn last_heartbeat(pool: &PgPool, session_id: Uuid) -> OffsetDateTime {
    sqlx::query_scalar("SELECT last_heartbeat_at FROM sessions WHERE id = $1")
        .bind(session_id)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn rows_land_with_every_column(pool: PgPool) {
    let at = now_micros();
    let full = UsageRecord {
        at_micros: at,
        license_id: Uuid::new_v4(),
        device_id: Some(Uuid::new_v4()),
        session_id: Some(Uuid::new_v4()),
        kind: UsageKind::Verify,
        count: NonZeroU32::new(42).unwrap(),
        // Binary COPY needs no escaping: tab, newline, backslash, quote, non-ASCII.
        app_version: Some("2.4.0-β\t\\N\n\"x\"".into()),
        ip: Some(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7))),
    };
    let v6 = UsageRecord {
        kind: UsageKind::SessionEnd,
        ip: Some(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))),
        ..heartbeat(Uuid::new_v4(), None, at - 1)
    };
    let bare = heartbeat(Uuid::new_v4(), None, at - 2);
    let batch = batch(vec![full.clone(), v6.clone(), bare.clone()]);

    let outcome = ingest_batch(&pool, &KnownPartitions::new(), &batch)
        .await
        .unwrap();
    assert_eq!(outcome, IngestOutcome::Committed { rows: 3 });

    type Row = (
        OffsetDateTime,
        Uuid,
        Option<Uuid>,
        Option<Uuid>,
        String,
        i32,
        Option<Uuid>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT at, license_id, device_id, session_id, kind, count, edge_id, app_version, host(ip)
           FROM license_heartbeats ORDER BY at DESC",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let expected: Vec<Row> = [full, v6, bare]
        .into_iter()
        .map(|r| {
            (
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.at_micros) * 1_000).unwrap(),
                r.license_id,
                r.device_id,
                r.session_id,
                r.kind.as_str().to_owned(),
                r.count.get() as i32,
                Some(batch.edge_id),
                r.app_version,
                r.ip.map(|ip| ip.to_string()),
            )
        })
        .collect();
    assert_eq!(rows, expected);

    let (edge_id, records): (Option<Uuid>, i32) =
        sqlx::query_as("SELECT edge_id, records FROM ingested_batches WHERE batch_id = $1")
            .bind(batch.batch_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((edge_id, records), (Some(batch.edge_id), 3));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_resent_batch_adds_no_rows(pool: PgPool) {
    let known = KnownPartitions::new();
    let batch = batch(vec![heartbeat(Uuid::new_v4(), None, now_micros()); 5]);
    assert_eq!(
        ingest_batch(&pool, &known, &batch).await.unwrap(),
        IngestOutcome::Committed { rows: 5 }
    );
    assert_eq!(
        ingest_batch(&pool, &known, &batch).await.unwrap(),
        IngestOutcome::Duplicate
    );
    assert_eq!(heartbeat_rows(&pool).await, 5);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn concurrent_redeliveries_land_once(pool: PgPool) {
    let known = Arc::new(KnownPartitions::new());
    let batch = Arc::new(batch(vec![
        heartbeat(Uuid::new_v4(), None, now_micros());
        1_000
    ]));
    let deliveries: Vec<_> = (0..8)
        .map(|_| {
            let (pool, known, batch) = (pool.clone(), known.clone(), batch.clone());
            tokio::spawn(async move { ingest_batch(&pool, &known, &batch).await.unwrap() })
        })
        .collect();
    let mut outcomes = Vec::new();
    for delivery in deliveries {
        outcomes.push(delivery.await.unwrap());
    }
    let committed = outcomes
        .iter()
        .filter(|o| **o == IngestOutcome::Committed { rows: 1_000 })
        .count();
    let duplicates = outcomes
        .iter()
        .filter(|o| **o == IngestOutcome::Duplicate)
        .count();
    assert_eq!((committed, duplicates), (1, 7), "{outcomes:?}");
    assert_eq!(heartbeat_rows(&pool).await, 1_000);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn session_heartbeats_follow_and_never_go_back(pool: PgPool) {
    let known = KnownPartitions::new();
    let license = license(&pool).await;
    let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - Duration::minutes(10);
    let (a, b) = (
        session(&pool, license, start).await,
        session(&pool, license, start).await,
    );

    // Records out of order within the batch: the latest per session wins.
    let t = |minutes: i64| micros(start + Duration::minutes(minutes));
    let first = batch(vec![
        heartbeat(license, Some(a), t(3)),
        heartbeat(license, Some(a), t(5)),
        heartbeat(license, Some(a), t(4)),
        heartbeat(license, Some(b), t(1)),
        heartbeat(license, None, t(9)),
    ]);
    ingest_batch(&pool, &known, &first).await.unwrap();
    assert_eq!(last_heartbeat(&pool, a).await, start + Duration::minutes(5));
    assert_eq!(last_heartbeat(&pool, b).await, start + Duration::minutes(1));

    // A late batch (an edge's spool) carries older times: nothing moves back.
    let late = batch(vec![
        heartbeat(license, Some(a), t(2)),
        heartbeat(license, Some(b), t(7)),
        heartbeat(license, Some(Uuid::new_v4()), t(8)),
    ]);
    ingest_batch(&pool, &known, &late).await.unwrap();
    assert_eq!(last_heartbeat(&pool, a).await, start + Duration::minutes(5));
    assert_eq!(last_heartbeat(&pool, b).await, start + Duration::minutes(7));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn concurrent_batches_on_the_same_sessions_do_not_deadlock(pool: PgPool) {
    let known = Arc::new(KnownPartitions::new());
    let license = license(&pool).await;
    let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - Duration::hours(1);
    let mut sessions = Vec::new();
    for _ in 0..50 {
        sessions.push(session(&pool, license, start).await);
    }
    let tasks: Vec<_> = (0..8i64)
        .map(|task| {
            // Each task names the sessions in a different order.
            let mut order = sessions.clone();
            order.rotate_left(task as usize * 6);
            if task % 2 == 1 {
                order.reverse();
            }
            let records = order
                .iter()
                .map(|s| heartbeat(license, Some(*s), micros(start + Duration::seconds(task))))
                .collect();
            let (pool, known) = (pool.clone(), known.clone());
            tokio::spawn(async move { ingest_batch(&pool, &known, &batch(records)).await })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    for s in sessions {
        assert_eq!(last_heartbeat(&pool, s).await, start + Duration::seconds(7));
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_record_fourteen_months_ahead_gets_its_partition(pool: PgPool) {
    let known = KnownPartitions::new();
    let ahead = OffsetDateTime::now_utc() + Duration::days(14 * 31);
    let month = ahead.date().replace_day(1).unwrap();
    let before = partitions::list(&pool).await.unwrap();
    assert!(before.iter().all(|p| p.month != month));

    let batch = batch(vec![
        heartbeat(Uuid::new_v4(), None, now_micros()),
        heartbeat(Uuid::new_v4(), None, micros(ahead)),
    ]);
    assert_eq!(
        ingest_batch(&pool, &known, &batch).await.unwrap(),
        IngestOutcome::Committed { rows: 2 }
    );
    let after = partitions::list(&pool).await.unwrap();
    assert!(after.iter().any(|p| p.month == month));
    let landed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM license_heartbeats WHERE at >= $1::date")
            .bind(month)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(landed, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_remembered_partition_dropped_since_is_made_again(pool: PgPool) {
    let known = KnownPartitions::new();
    let old = OffsetDateTime::now_utc() - Duration::days(400);
    ingest_batch(
        &pool,
        &known,
        &batch(vec![heartbeat(Uuid::new_v4(), None, micros(old))]),
    )
    .await
    .unwrap();
    // The retention job drops it behind the ingest's back.
    let retired = partitions::retire_older_than(&pool, OffsetDateTime::now_utc().date(), 12)
        .await
        .unwrap();
    assert_eq!(retired.len(), 1);

    let again = batch(vec![heartbeat(Uuid::new_v4(), None, micros(old))]);
    assert_eq!(
        ingest_batch(&pool, &known, &again).await.unwrap(),
        IngestOutcome::Committed { rows: 1 }
    );
    assert_eq!(heartbeat_rows(&pool).await, 1);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_empty_batch_is_committed_once(pool: PgPool) {
    let known = KnownPartitions::new();
    let empty = batch(Vec::new());
    assert_eq!(
        ingest_batch(&pool, &known, &empty).await.unwrap(),
        IngestOutcome::Committed { rows: 0 }
    );
    assert_eq!(
        ingest_batch(&pool, &known, &empty).await.unwrap(),
        IngestOutcome::Duplicate
    );
    assert_eq!(heartbeat_rows(&pool).await, 0);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn ten_thousand_records_in_one_batch(pool: PgPool) {
    let license = license(&pool).await;
    let start = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap() - Duration::hours(3);
    let sessions = [
        session(&pool, license, start).await,
        session(&pool, license, start).await,
    ];
    let records = (0..10_000i64)
        .map(|i| UsageRecord {
            device_id: Some(Uuid::new_v4()),
            app_version: Some(format!("1.{}.0", i % 7)),
            ip: Some(IpAddr::V4(Ipv4Addr::from(i as u32))),
            ..heartbeat(
                license,
                Some(sessions[(i % 2) as usize]),
                micros(start + Duration::seconds(i)),
            )
        })
        .collect();
    let batch = batch(records);
    assert_eq!(
        ingest_batch(&pool, &KnownPartitions::new(), &batch)
            .await
            .unwrap(),
        IngestOutcome::Committed { rows: 10_000 }
    );
    assert_eq!(heartbeat_rows(&pool).await, 10_000);
    assert_eq!(
        last_heartbeat(&pool, sessions[0]).await,
        start + Duration::seconds(9_998)
    );
    assert_eq!(
        last_heartbeat(&pool, sessions[1]).await,
        start + Duration::seconds(9_999)
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_invalid_record_refuses_the_batch_before_writing(pool: PgPool) {
    let known = KnownPartitions::new();
    let mut too_many = heartbeat(Uuid::new_v4(), None, now_micros());
    too_many.count = NonZeroU32::MAX;
    let bad = batch(vec![
        heartbeat(Uuid::new_v4(), None, now_micros()),
        too_many,
    ]);
    assert!(matches!(
        ingest_batch(&pool, &known, &bad).await,
        Err(IngestError::Invalid(InvalidBatch::CountOutOfRange {
            index: 1,
            ..
        }))
    ));
    let before_1970 = batch(vec![heartbeat(Uuid::new_v4(), None, -1)]);
    assert!(matches!(
        ingest_batch(&pool, &known, &before_1970).await,
        Err(IngestError::Invalid(InvalidBatch::TimeOutOfRange {
            index: 0,
            ..
        }))
    ));
    // Refused before the batch id was claimed: nothing written.
    let claimed: i64 = sqlx::query_scalar("SELECT count(*) FROM ingested_batches")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!((claimed, heartbeat_rows(&pool).await), (0, 0));
}
