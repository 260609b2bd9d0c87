//! Resource pools against the real PostgreSQL: exclusive all-or-nothing
//! allocation under concurrency, bulk import, release, quarantine, history.

use std::collections::{HashMap, HashSet};

use latchkey_control::context::RequestContext;
use latchkey_control::db::resources::{self, ResourceFilter, ResourceKind, ResourceStatus};
use latchkey_control::error::{DomainError, Entity};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

fn ctx() -> RequestContext {
    RequestContext::system("resources-test")
}

/// A license of a throwaway product; only its id matters here.
async fn license(pool: &PgPool) -> Uuid {
    let product_id: i32 = sqlx::query_scalar(
        "INSERT INTO products (slug, name) VALUES ('pool-test', 'Pool test')
         ON CONFLICT (slug) DO UPDATE SET name = EXCLUDED.name RETURNING id",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query_scalar(
        "INSERT INTO licenses (key_hash, key_prefix, key_sealed, product_id, kind, device_limit)
         VALUES (decode(md5(random()::text) || md5(random()::text), 'hex'), 'TEST', '\\x00', $1, 'full', 1)
         RETURNING id",
    )
    .bind(product_id)
    .fetch_one(pool)
    .await
    .unwrap()
}

/// The audit actions written under one request id, in order.
async fn audited(pool: &PgPool, ctx: &RequestContext) -> Vec<String> {
    sqlx::query_scalar("SELECT action FROM audit_log WHERE request_id = $1 ORDER BY id")
        .bind(&ctx.request_id)
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn actions(pool: &PgPool, resource_id: i64) -> Vec<(String, Option<Uuid>)> {
    resources::history(pool, resource_id)
        .await
        .unwrap()
        .into_iter()
        .map(|h| (h.action, h.license_id))
        .collect()
}

fn strings(values: impl IntoIterator<Item = String>) -> Vec<String> {
    values.into_iter().collect()
}

#[sqlx::test(migrator = "latchkey_control::db::MIGRATOR")]
async fn concurrent_allocations_never_share_a_resource(pool: PgPool) {
    let domains = strings((0..100).map(|i| format!("pool{i}.example.com")));
    let added = resources::add_bulk(&pool, &ctx(), ResourceKind::Domain, &domains)
        .await
        .unwrap();
    assert_eq!(added.added, 100);
    let mut licenses = Vec::new();
    for _ in 0..20 {
        licenses.push(license(&pool).await);
    }
    // More connections than the test pool's five, so the transactions
    // really overlap.
    let wide = PgPoolOptions::new()
        .max_connections(20)
        .connect_with(pool.connect_options().as_ref().clone())
        .await
        .unwrap();

    let tasks: Vec<_> = licenses
        .iter()
        .map(|&license_id| {
            let wide = wide.clone();
            tokio::spawn(async move {
                let outcome =
                    resources::allocate(&wide, &ctx(), license_id, ResourceKind::Domain, 7).await;
                (license_id, outcome)
            })
        })
        .collect();
    let mut successes = 0;
    let mut handed_out: HashMap<i64, Uuid> = HashMap::new();
    let mut failed = Vec::new();
    for task in tasks {
        let (license_id, outcome) = task.await.unwrap();
        match outcome {
            Ok(allocated) => {
                successes += 1;
                assert_eq!(allocated.len(), 7);
                for resource in allocated {
                    assert_eq!(resource.license_id, Some(license_id));
                    assert_eq!(resource.status, ResourceStatus::Allocated);
                    let previous = handed_out.insert(resource.id, license_id);
                    assert_eq!(previous, None, "resource {} handed out twice", resource.id);
                }
            }
            Err(DomainError::Conflict { field, .. }) => {
                assert_eq!(field.as_deref(), Some("count"));
                failed.push(license_id);
            }
            Err(other) => panic!("unexpected error: {other:?}"),
        }
    }
    wide.close().await;

    assert!((1..=14).contains(&successes), "{successes} successes");
    assert_eq!(successes + failed.len(), 20);
    // What the database holds agrees with what the calls returned.
    let rows: Vec<(i64, Uuid)> = sqlx::query_as(
        "SELECT id, license_id FROM resources WHERE status = 'allocated' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 7 * successes);
    assert_eq!(rows.into_iter().collect::<HashMap<_, _>>(), handed_out);
    for license_id in failed {
        let page = resources::list(
            &pool,
            &ResourceFilter {
                license_id: Some(license_id),
                ..Default::default()
            },
            1,
            100,
        )
        .await
        .unwrap();
        assert_eq!(page.total, 0, "a failed call allocated something");
    }
    let allocated_history: i64 =
        sqlx::query_scalar("SELECT count(*) FROM resource_history WHERE action = 'allocated'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(allocated_history, 7 * successes as i64);
}

#[sqlx::test(migrator = "latchkey_control::db::MIGRATOR")]
async fn allocation_is_all_or_nothing(pool: PgPool) {
    let ips = strings((1..=5).map(|i| format!("192.0.2.{i}")));
    resources::add_bulk(&pool, &ctx(), ResourceKind::Ip, &ips)
        .await
        .unwrap();
    let license_id = license(&pool).await;

    let refused = ctx();
    match resources::allocate(&pool, &refused, license_id, ResourceKind::Ip, 6).await {
        Err(DomainError::Conflict { field, message }) => {
            assert_eq!(field.as_deref(), Some("count"));
            assert!(message.contains("only 5 available"), "{message}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(
        audited(&pool, &refused).await.is_empty(),
        "a refusal changes nothing"
    );
    let available = resources::list(
        &pool,
        &ResourceFilter {
            status: Some(ResourceStatus::Available),
            ..Default::default()
        },
        1,
        10,
    )
    .await
    .unwrap();
    assert_eq!(available.total, 5);
    // Other kinds do not count towards this one.
    match resources::allocate(&pool, &ctx(), license_id, ResourceKind::Phone, 1).await {
        Err(DomainError::Conflict { message, .. }) => assert!(message.contains("only 0")),
        other => panic!("expected a conflict, got {other:?}"),
    }

    let granted = ctx();
    let allocated = resources::allocate(&pool, &granted, license_id, ResourceKind::Ip, 5)
        .await
        .unwrap();
    assert_eq!(
        allocated
            .iter()
            .map(|r| r.value.as_str())
            .collect::<Vec<_>>(),
        ips.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert_eq!(audited(&pool, &granted).await, ["resource.allocate"]);

    assert!(matches!(
        resources::allocate(&pool, &ctx(), Uuid::new_v4(), ResourceKind::Ip, 1).await,
        Err(DomainError::NotFound(Entity::License))
    ));
    let zero = resources::allocate(&pool, &ctx(), license_id, ResourceKind::Ip, 0)
        .await
        .unwrap_err();
    assert_eq!(zero.field(), Some("count"));
}

#[sqlx::test(migrator = "latchkey_control::db::MIGRATOR")]
async fn bulk_add_of_ten_thousand_counts_duplicates(pool: PgPool) {
    let phone = |i: usize| format!("+1415{i:07}");
    let existing = strings((0..100).map(phone));
    resources::add_bulk(&pool, &ctx(), ResourceKind::Phone, &existing)
        .await
        .unwrap();

    // 9 800 new numbers, 100 already in the pool, and 100 repeats of new
    // ones written differently (the same number once canonicalised).
    let mut values = strings((100..9_900).map(phone));
    values.extend(existing.iter().cloned());
    values.extend((100..200).map(|i| {
        let digits = format!("{i:07}");
        format!("+1 (415) {}-{}", &digits[..3], &digits[3..])
    }));
    assert_eq!(values.len(), 10_000);

    let request = ctx();
    let added = resources::add_bulk(&pool, &request, ResourceKind::Phone, &values)
        .await
        .unwrap();
    assert_eq!(added.added, 9_800);
    assert_eq!(added.skipped, 200);
    assert_eq!(audited(&pool, &request).await, ["resource.add_bulk"]);
    let (resources_count, added_history): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM resources WHERE kind = 'phone'),
                (SELECT count(*) FROM resource_history WHERE action = 'added')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(resources_count, 9_900);
    assert_eq!(added_history, 9_900);

    let too_many = strings((0..=resources::MAX_BULK_VALUES).map(|i| format!("+4420{i:08}")));
    let error = resources::add_bulk(&pool, &ctx(), ResourceKind::Phone, &too_many)
        .await
        .unwrap_err();
    assert_eq!(error.field(), Some("values"));

    let with_typo = strings(
        [
            "+442079460958",
            "+44 20 7946 0959",
            "0207946",
            "+442079460960",
        ]
        .map(String::from),
    );
    let error = resources::add_bulk(&pool, &ctx(), ResourceKind::Phone, &with_typo)
        .await
        .unwrap_err();
    assert_eq!(error.field(), Some("values[2]"));
    let still: i64 = sqlx::query_scalar("SELECT count(*) FROM resources WHERE value LIKE '+44%'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(still, 0, "an invalid value refuses the whole call");
}

#[sqlx::test(migrator = "latchkey_control::db::MIGRATOR")]
async fn quarantine_then_restore(pool: PgPool) {
    let values = strings(["One.Example.org".into(), "two.example.org.".into()]);
    resources::add_bulk(&pool, &ctx(), ResourceKind::Domain, &values)
        .await
        .unwrap();
    let page = resources::list(&pool, &ResourceFilter::default(), 1, 10)
        .await
        .unwrap();
    assert_eq!(
        page.items
            .iter()
            .map(|r| r.value.as_str())
            .collect::<Vec<_>>(),
        ["one.example.org", "two.example.org"]
    );
    let id = page.items[0].id;
    let now = OffsetDateTime::now_utc();

    let request = ctx();
    let quarantined = resources::quarantine(&pool, &request, id, now + Duration::hours(1))
        .await
        .unwrap();
    assert_eq!(quarantined.status, ResourceStatus::Quarantined);
    assert_eq!(audited(&pool, &request).await, ["resource.quarantine"]);
    let past = resources::quarantine(&pool, &ctx(), id, now - Duration::hours(1))
        .await
        .unwrap_err();
    assert_eq!(past.field(), Some("until"));

    // A quarantined resource is not handed out.
    let license_id = license(&pool).await;
    let allocated = resources::allocate(&pool, &ctx(), license_id, ResourceKind::Domain, 1)
        .await
        .unwrap();
    assert_eq!(allocated[0].value, "two.example.org");
    let busy = resources::quarantine(&pool, &ctx(), allocated[0].id, now + Duration::hours(1))
        .await
        .unwrap_err();
    assert!(matches!(busy, DomainError::Conflict { .. }), "{busy:?}");

    assert_eq!(
        resources::restore_expired_quarantine(&pool, now)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        resources::get(&pool, id).await.unwrap().status,
        ResourceStatus::Quarantined
    );
    let later = now + Duration::hours(2);
    assert_eq!(
        resources::restore_expired_quarantine(&pool, later)
            .await
            .unwrap(),
        1
    );
    let restored = resources::get(&pool, id).await.unwrap();
    assert_eq!(restored.status, ResourceStatus::Available);
    assert_eq!(restored.quarantined_until, None);
    assert_eq!(
        actions(&pool, id).await,
        [
            ("added".into(), None),
            ("quarantined".into(), None),
            ("restored".into(), None)
        ]
    );
    let job_audits: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'resource.restore_quarantine' AND actor_kind = 'system'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(job_audits, 1, "an idle run writes no audit row");
}

#[sqlx::test(migrator = "latchkey_control::db::MIGRATOR")]
async fn release_returns_resources_and_keeps_history(pool: PgPool) {
    let values = strings(["+4930901820".into(), "+4930901821".into()]);
    resources::add_bulk(&pool, &ctx(), ResourceKind::Phone, &values)
        .await
        .unwrap();
    let license_id = license(&pool).await;
    let allocated = resources::allocate(&pool, &ctx(), license_id, ResourceKind::Phone, 2)
        .await
        .unwrap();
    let (first, second) = (allocated[0].id, allocated[1].id);

    let request = ctx();
    let released = resources::release(&pool, &request, first, None)
        .await
        .unwrap();
    assert_eq!(released.status, ResourceStatus::Available);
    assert_eq!((released.license_id, released.allocated_at), (None, None));
    assert_eq!(audited(&pool, &request).await, ["resource.release"]);
    let audit_before: serde_json::Value =
        sqlx::query_scalar("SELECT before FROM audit_log WHERE request_id = $1")
            .bind(&request.request_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(audit_before["license_id"], license_id.to_string());

    let until = OffsetDateTime::now_utc() + Duration::days(30);
    let rested = resources::release(&pool, &ctx(), second, Some(until))
        .await
        .unwrap();
    assert_eq!(rested.status, ResourceStatus::Quarantined);
    assert!(rested.quarantined_until.is_some());

    let held = Some(license_id);
    assert_eq!(
        actions(&pool, first).await,
        [
            ("added".into(), None),
            ("allocated".into(), held),
            ("released".into(), held)
        ]
    );
    assert_eq!(
        actions(&pool, second).await,
        [
            ("added".into(), None),
            ("allocated".into(), held),
            ("released".into(), held),
            ("quarantined".into(), None)
        ]
    );

    let again = resources::release(&pool, &ctx(), first, None)
        .await
        .unwrap_err();
    assert_eq!(again.field(), Some("status"));
    assert!(matches!(
        resources::release(&pool, &ctx(), 999_999, None).await,
        Err(DomainError::NotFound(Entity::Resource))
    ));
    // The license holds nothing any more.
    let page = resources::list(
        &pool,
        &ResourceFilter {
            license_id: Some(license_id),
            ..Default::default()
        },
        1,
        10,
    )
    .await
    .unwrap();
    assert_eq!(page.total, 0);
}

#[sqlx::test(migrator = "latchkey_control::db::MIGRATOR")]
async fn list_filters_and_pages(pool: PgPool) {
    let domains = strings([
        "a.example.net".into(),
        "b.example.net".into(),
        "c.example.net".into(),
    ]);
    resources::add_bulk(&pool, &ctx(), ResourceKind::Domain, &domains)
        .await
        .unwrap();
    let ips = strings(["2001:DB8::1".into(), "2001:db8:0::2".into()]);
    resources::add_bulk(&pool, &ctx(), ResourceKind::Ip, &ips)
        .await
        .unwrap();
    let license_id = license(&pool).await;
    resources::allocate(&pool, &ctx(), license_id, ResourceKind::Ip, 1)
        .await
        .unwrap();

    let domain = ResourceFilter {
        kind: Some(ResourceKind::Domain),
        ..Default::default()
    };
    let first = resources::list(&pool, &domain, 1, 2).await.unwrap();
    let second = resources::list(&pool, &domain, 2, 2).await.unwrap();
    assert_eq!((first.total, first.items.len()), (3, 2));
    assert_eq!((second.total, second.items.len()), (3, 1));
    let seen: HashSet<String> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|r| r.value.clone())
        .collect();
    assert_eq!(seen.len(), 3);

    let ip = ResourceFilter {
        kind: Some(ResourceKind::Ip),
        ..Default::default()
    };
    let ips = resources::list(&pool, &ip, 1, 10).await.unwrap();
    assert_eq!(
        ips.items
            .iter()
            .map(|r| r.value.as_str())
            .collect::<Vec<_>>(),
        ["2001:db8::1", "2001:db8::2"]
    );
    let held = ResourceFilter {
        kind: Some(ResourceKind::Ip),
        status: Some(ResourceStatus::Allocated),
        license_id: Some(license_id),
        search: None,
    };
    let held = resources::list(&pool, &held, 1, 10).await.unwrap();
    assert_eq!(held.total, 1);
    assert_eq!(held.items[0].value, "2001:db8::1");

    assert_eq!(
        resources::list(&pool, &domain, 0, 10)
            .await
            .unwrap_err()
            .field(),
        Some("page")
    );
    assert_eq!(
        resources::list(&pool, &domain, 1, 501)
            .await
            .unwrap_err()
            .field(),
        Some("per_page")
    );
    let filter: ResourceFilter =
        serde_json::from_str(r#"{"kind": "phone", "status": "available"}"#).unwrap();
    assert_eq!(filter.kind, Some(ResourceKind::Phone));
    assert!(serde_json::from_str::<ResourceFilter>(r#"{"colour": "red"}"#).is_err());
}
