//! Usage-limit accounting: exact under concurrency, flag flips reach the outbox, a new month clears it.

use latchkey_control::context::RequestContext;
use latchkey_control::db::licenses::{self, NewLicense};
use latchkey_control::db::{MIGRATOR, usage};
use latchkey_control::secrets::Secrets;
use sqlx::PgPool;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

async fn license_with_limit(pool: &PgPool, limit: u64) -> Uuid {
    let product: i32 =
        sqlx::query_scalar("INSERT INTO products (slug, name) VALUES ('p', 'P') RETURNING id")
            .fetch_one(pool)
            .await
            .unwrap();
    let new: NewLicense = serde_json::from_value(
        serde_json::json!({ "product_id": product, "usage_limits": { "api_calls": limit } }),
    )
    .unwrap();
    let secrets = Secrets::new(&"u".repeat(40)).unwrap();
    licenses::create(pool, &RequestContext::system("test"), &secrets, &new, 1)
        .await
        .unwrap()[0]
        .license
        .id
}

async fn outbox_rows(pool: &PgPool, license_id: Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM snapshot_outbox WHERE entity_kind = 'license' AND entity_id = $1",
    )
    .bind(license_id.to_string())
    .fetch_one(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn crossing_the_limit_flips_the_flag_once(pool: PgPool) {
    let license = license_with_limit(&pool, 10).await;
    let now = OffsetDateTime::now_utc();
    let below = usage::record(&pool, license, "api_calls", 9, now)
        .await
        .unwrap();
    assert_eq!(
        (below.used, below.limit, below.exhausted),
        (9, Some(10), false)
    );
    let before = outbox_rows(&pool, license).await;
    let at = usage::record(&pool, license, "api_calls", 1, now)
        .await
        .unwrap();
    assert!(at.exhausted);
    assert_eq!(
        outbox_rows(&pool, license).await,
        before + 1,
        "edges must learn of the flag"
    );
    usage::record(&pool, license, "api_calls", 5, now)
        .await
        .unwrap();
    assert_eq!(
        outbox_rows(&pool, license).await,
        before + 1,
        "no outbox row when nothing changes"
    );
    let other = usage::record(&pool, license, "exports", 100, now)
        .await
        .unwrap();
    assert_eq!((other.limit, other.exhausted), (None, true));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn concurrent_records_add_up_exactly(pool: PgPool) {
    let license = license_with_limit(&pool, 1_000).await;
    let now = OffsetDateTime::now_utc();
    let tasks: Vec<_> = (0..40)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move {
                usage::record(&pool, license, "api_calls", 3, now)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let used: i64 = sqlx::query_scalar("SELECT used FROM usage_counters WHERE license_id = $1")
        .bind(license)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(used, 120);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_new_month_clears_the_flag(pool: PgPool) {
    let license = license_with_limit(&pool, 1).await;
    let now = OffsetDateTime::now_utc();
    assert!(
        usage::record(&pool, license, "api_calls", 1, now)
            .await
            .unwrap()
            .exhausted
    );
    assert_eq!(
        usage::refresh(&pool, now).await.unwrap(),
        0,
        "same month: still exhausted"
    );
    assert_eq!(
        usage::refresh(&pool, now + Duration::days(32))
            .await
            .unwrap(),
        1
    );
    let flag: bool = sqlx::query_scalar("SELECT usage_exhausted FROM licenses WHERE id = $1")
        .bind(license)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(!flag);
    let error = usage::record(&pool, license, "api_calls", 0, now)
        .await
        .unwrap_err();
    assert_eq!(error.field(), Some("amount"));
}
