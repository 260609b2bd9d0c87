//! Heartbeat partitions: created ahead, retired by retention, pruned by time filters.

use latchkey_control::db::{MIGRATOR, partitions};
use sqlx::PgPool;
use time::{Date, Duration, OffsetDateTime};

fn first_of_month(day: Date) -> Date {
    day.replace_day(1).expect("day 1 exists")
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn partitions_exist_ahead_and_old_ones_retire(pool: PgPool) {
    let today = OffsetDateTime::now_utc().date();
    let existing = partitions::list(&pool).await.unwrap();
    assert!(
        existing.len() >= 4,
        "the current month and three ahead: {existing:?}"
    );
    assert_eq!(existing[0].month, first_of_month(today));

    assert_eq!(
        partitions::ensure_ahead(&pool, today, 3).await.unwrap(),
        0,
        "the job is idempotent"
    );
    assert_eq!(partitions::ensure_ahead(&pool, today, 5).await.unwrap(), 2);

    let long_ago = today - Duration::days(500);
    assert_eq!(
        partitions::ensure_ahead(&pool, long_ago, 0).await.unwrap(),
        1
    );
    let retired = partitions::retire_older_than(&pool, today, 12)
        .await
        .unwrap();
    assert_eq!(retired.len(), 1, "{retired:?}");
    let names: Vec<String> = partitions::list(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert!(!names.contains(&retired[0]));
    assert_eq!(names.len(), 6);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn time_filtered_queries_scan_one_partition(pool: PgPool) {
    let month = first_of_month(OffsetDateTime::now_utc().date());
    let next = first_of_month(month + Duration::days(32));
    for day in [month, next] {
        sqlx::query(
            "INSERT INTO license_heartbeats (at, license_id, kind)
             SELECT $1::date + (g || ' minutes')::interval, gen_random_uuid(), 'heartbeat'
               FROM generate_series(1, 50) g",
        )
        .bind(day)
        .execute(&pool)
        .await
        .unwrap();
    }
    let plan: serde_json::Value = sqlx::query_scalar(&format!(
        "EXPLAIN (FORMAT JSON) SELECT count(*) FROM license_heartbeats WHERE at >= '{month}' AND at < '{next}'"
    ))
    .fetch_one(&pool)
    .await
    .unwrap();
    let mut scanned = Vec::new();
    collect_relations(&plan, &mut scanned);
    let expected = format!(
        "license_heartbeats_{}",
        month
            .format(time::macros::format_description!("[year]_[month]"))
            .unwrap()
    );
    assert_eq!(scanned, vec![expected], "plan: {plan}");
}

fn collect_relations(node: &serde_json::Value, out: &mut Vec<String>) {
    match node {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(name)) = map.get("Relation Name") {
                out.push(name.clone());
            }
            map.values().for_each(|v| collect_relations(v, out));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_relations(v, out)),
        _ => {}
    }
}
