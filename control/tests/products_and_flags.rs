//! Products, releases, the version check, feature flags, and what of them
//! the snapshot builder receives, against the real PostgreSQL.

use latchkey_control::context::RequestContext;
use latchkey_control::db::flags::{self, FlagUpdate, NewFlag};
use latchkey_control::db::products::{self, NewProduct, NewRelease, ProductUpdate, Release};
use latchkey_control::error::{DomainError, Entity};
use latchkey_shared::snapshot::{ChannelRelease, FeatureFlag};
use sqlx::PgPool;

fn ctx() -> RequestContext {
    RequestContext::system("products-test")
}

fn new_product(slug: &str) -> NewProduct {
    NewProduct {
        slug: slug.into(),
        name: format!("Product {slug}"),
        description: None,
    }
}

fn new_release(version: &str, channel: &str) -> NewRelease {
    NewRelease {
        version: version.into(),
        channel: channel.into(),
        download_url: Some(format!("https://dl.example.com/{channel}/{version}")),
        notes: None,
    }
}

/// Adds and publishes a release.
async fn published(pool: &PgPool, product_id: i32, version: &str, channel: &str) -> Release {
    let release = products::add_release(pool, &ctx(), product_id, &new_release(version, channel))
        .await
        .unwrap();
    products::publish(pool, &ctx(), release.id).await.unwrap()
}

/// The audit actions written under one request id, in order.
async fn audited(pool: &PgPool, ctx: &RequestContext) -> Vec<String> {
    sqlx::query_scalar("SELECT action FROM audit_log WHERE request_id = $1 ORDER BY id")
        .bind(&ctx.request_id)
        .fetch_all(pool)
        .await
        .unwrap()
}

async fn outbox_rows(pool: &PgPool, kind: &str, entity_id: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM snapshot_outbox WHERE entity_kind = $1 AND entity_id = $2 AND published_in IS NULL",
    )
    .bind(kind)
    .bind(entity_id)
    .fetch_one(pool)
    .await
    .unwrap()
}

fn versions(releases: &[Release]) -> Vec<(&str, &str)> {
    releases
        .iter()
        .map(|r| (r.version.as_str(), r.channel.as_str()))
        .collect()
}

#[sqlx::test(migrator = "latchkey_control::db::MIGRATOR")]
async fn product_slug_conflict_names_the_field(pool: PgPool) {
    let request = ctx();
    let product = products::create(&pool, &request, &new_product("studio"))
        .await
        .unwrap();
    assert_eq!(product.slug, "studio");
    assert_eq!(audited(&pool, &request).await, ["product.create"]);
    assert_eq!(
        outbox_rows(&pool, "product", &product.id.to_string()).await,
        1
    );

    let refused = ctx();
    match products::create(&pool, &refused, &new_product("studio")).await {
        Err(error @ DomainError::Conflict { .. }) => assert_eq!(error.field(), Some("slug")),
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert!(audited(&pool, &refused).await.is_empty());

    let invalid = products::create(&pool, &ctx(), &new_product("Studio Pro"))
        .await
        .unwrap_err();
    assert!(matches!(invalid, DomainError::Invalid { .. }));
    assert_eq!(invalid.field(), Some("slug"));
    assert_eq!(products::list(&pool).await.unwrap().len(), 1);
    assert!(matches!(
        products::get(&pool, product.id + 1).await,
        Err(DomainError::NotFound(Entity::Product))
    ));
}

#[sqlx::test(migrator = "latchkey_control::db::MIGRATOR")]
async fn releases_sort_by_semver(pool: PgPool) {
    let product = products::create(&pool, &ctx(), &new_product("editor"))
        .await
        .unwrap();
    for (version, channel) in [
        ("2.9.0", "stable"),
        ("v2.10", "stable"),
        ("2.10.0-rc.1", "beta"),
        ("1", "stable"),
        ("2.10.0-rc.2", "beta"),
        ("2.10.0", "beta"),
    ] {
        products::add_release(&pool, &ctx(), product.id, &new_release(version, channel))
            .await
            .unwrap();
    }
    let releases = products::list_releases(&pool, product.id).await.unwrap();
    assert_eq!(
        versions(&releases),
        [
            ("2.10.0", "beta"),
            ("2.10.0", "stable"),
            ("2.10.0-rc.2", "beta"),
            ("2.10.0-rc.1", "beta"),
            ("2.9.0", "stable"),
            ("1.0.0", "stable"),
        ]
    );
    assert!(
        releases.iter().all(|r| r.published_at.is_none()),
        "new releases are drafts"
    );

    // Normalised before the unique check: `v2.9` is `2.9.0`.
    match products::add_release(&pool, &ctx(), product.id, &new_release("v2.9", "stable")).await {
        Err(error @ DomainError::Conflict { .. }) => assert_eq!(error.field(), Some("version")),
        other => panic!("expected a conflict, got {other:?}"),
    }
    let bad = products::add_release(&pool, &ctx(), product.id, &new_release("two", "stable"))
        .await
        .unwrap_err();
    assert_eq!(bad.field(), Some("version"));
    assert!(matches!(
        products::add_release(&pool, &ctx(), product.id + 1, &new_release("1.0", "stable")).await,
        Err(DomainError::NotFound(Entity::Product))
    ));
}

#[sqlx::test(migrator = "latchkey_control::db::MIGRATOR")]
async fn version_check_tells_available_from_mandatory(pool: PgPool) {
    let product = products::create(&pool, &ctx(), &new_product("studio"))
        .await
        .unwrap();
    let one = published(&pool, product.id, "1.0.0", "stable").await;
    let two = published(&pool, product.id, "2.0.0", "stable").await;
    products::add_release(&pool, &ctx(), product.id, &new_release("3.0.0", "stable"))
        .await
        .unwrap();
    products::mark_min_allowed(&pool, &ctx(), one.id)
        .await
        .unwrap();

    let check = |version: &'static str, channel: Option<&'static str>| {
        let pool = pool.clone();
        async move { products::version_check(&pool, "studio", version, channel).await }
    };
    let old = check("0.9", None).await.unwrap();
    assert_eq!(old.channel, "stable");
    assert_eq!(old.current, "0.9.0");
    assert_eq!(
        old.latest.as_deref(),
        Some("2.0.0"),
        "drafts are not offered"
    );
    assert_eq!(old.minimum_allowed.as_deref(), Some("1.0.0"));
    assert_eq!(
        old.download_url.as_deref(),
        Some("https://dl.example.com/stable/2.0.0")
    );
    assert!(old.update_available && old.update_mandatory);

    let middle = check("1.5.0", Some("stable")).await.unwrap();
    assert!(middle.update_available && !middle.update_mandatory);
    let current = check("v2", None).await.unwrap();
    assert!(!current.update_available && !current.update_mandatory);
    let candidate = check("2.0.0-rc.1", None).await.unwrap();
    assert!(candidate.update_available && !candidate.update_mandatory);

    // A new minimum replaces the old one on its channel.
    products::mark_min_allowed(&pool, &ctx(), two.id)
        .await
        .unwrap();
    assert!(
        !products::get_release(&pool, one.id)
            .await
            .unwrap()
            .min_allowed
    );
    let middle = check("1.5.0", None).await.unwrap();
    assert_eq!(middle.minimum_allowed.as_deref(), Some("2.0.0"));
    assert!(middle.update_mandatory);

    // The edges' rule: one minimum per product (the lowest of its
    // channels'), so a channel without releases still has stable's.
    let beta = check("0.1", Some("beta")).await.unwrap();
    assert_eq!(
        (beta.latest, beta.minimum_allowed.as_deref()),
        (None, Some("2.0.0"))
    );
    assert!(!beta.update_available && beta.update_mandatory);

    assert!(matches!(
        products::version_check(&pool, "nope", "1.0", None).await,
        Err(DomainError::NotFound(Entity::Product))
    ));
    assert_eq!(
        check("latest", None).await.unwrap_err().field(),
        Some("version")
    );
    assert_eq!(
        check("1.0", Some("Beta!")).await.unwrap_err().field(),
        Some("channel")
    );
}

#[sqlx::test(migrator = "latchkey_control::db::MIGRATOR")]
async fn minimum_allowed_must_stay_published(pool: PgPool) {
    let product = products::create(&pool, &ctx(), &new_product("studio"))
        .await
        .unwrap();
    let draft = products::add_release(&pool, &ctx(), product.id, &new_release("1.0.0", "stable"))
        .await
        .unwrap();
    let refused = ctx();
    let error = products::mark_min_allowed(&pool, &refused, draft.id)
        .await
        .unwrap_err();
    assert_eq!(error.field(), Some("min_allowed"));
    assert!(audited(&pool, &refused).await.is_empty());

    products::publish(&pool, &ctx(), draft.id).await.unwrap();
    products::mark_min_allowed(&pool, &ctx(), draft.id)
        .await
        .unwrap();
    let error = products::unpublish(&pool, &ctx(), draft.id)
        .await
        .unwrap_err();
    assert!(matches!(error, DomainError::Conflict { .. }));
    assert!(
        products::get_release(&pool, draft.id)
            .await
            .unwrap()
            .published_at
            .is_some()
    );
}

#[sqlx::test(migrator = "latchkey_control::db::MIGRATOR")]
async fn snapshot_products_picks_newest_published_per_channel(pool: PgPool) {
    let studio = products::create(&pool, &ctx(), &new_product("studio"))
        .await
        .unwrap();
    let empty = products::create(&pool, &ctx(), &new_product("empty"))
        .await
        .unwrap();
    let stable_min = published(&pool, studio.id, "1.2.0", "stable").await;
    let newest_stable = published(&pool, studio.id, "1.10.0", "stable").await;
    published(&pool, studio.id, "1.9.5", "stable").await;
    products::add_release(&pool, &ctx(), studio.id, &new_release("2.0.0", "stable"))
        .await
        .unwrap();
    let beta_min = published(&pool, studio.id, "2.0.0-beta.1", "beta").await;
    let newest_beta = published(&pool, studio.id, "2.0.0-beta.2", "beta").await;
    let unpublished = published(&pool, studio.id, "2.0.0-beta.3", "beta").await;
    products::unpublish(&pool, &ctx(), unpublished.id)
        .await
        .unwrap();
    products::mark_min_allowed(&pool, &ctx(), stable_min.id)
        .await
        .unwrap();
    products::mark_min_allowed(&pool, &ctx(), beta_min.id)
        .await
        .unwrap();

    let snapshot = products::snapshot_products(&pool).await.unwrap();
    assert_eq!(snapshot.len(), 2);
    let (first, second) = (&snapshot[0], &snapshot[1]);
    assert_eq!(
        (first.id, first.slug.as_str()),
        (studio.id as u32, "studio")
    );
    assert_eq!(first.name, "Product studio");
    let published_at = |r: &Release| r.published_at.unwrap().unix_timestamp();
    assert_eq!(
        first.channels,
        [
            ChannelRelease {
                channel: "beta".into(),
                version: "2.0.0-beta.2".into(),
                download_url: Some("https://dl.example.com/beta/2.0.0-beta.2".into()),
                published_at: published_at(&newest_beta),
            },
            ChannelRelease {
                channel: "stable".into(),
                version: "1.10.0".into(),
                download_url: Some("https://dl.example.com/stable/1.10.0".into()),
                published_at: published_at(&newest_stable),
            },
        ]
    );
    // One minimum per product in the snapshot: the lowest of the channels'.
    assert_eq!(first.min_allowed_version.as_deref(), Some("1.2.0"));
    assert_eq!(
        (second.id, second.slug.as_str()),
        (empty.id as u32, "empty")
    );
    assert!(second.channels.is_empty());
    assert_eq!(second.min_allowed_version, None);
}

#[sqlx::test(migrator = "latchkey_control::db::MIGRATOR")]
async fn product_and_release_changes_are_audited_and_outboxed(pool: PgPool) {
    let product = products::create(&pool, &ctx(), &new_product("studio"))
        .await
        .unwrap();
    let entity = product.id.to_string();
    let mut expected_outbox = 1;

    let step = ctx();
    let changes: ProductUpdate =
        serde_json::from_str(r#"{"name": "Studio Pro", "description": "The big one"}"#).unwrap();
    let updated = products::update(&pool, &step, product.id, &changes)
        .await
        .unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.description.as_deref()),
        ("Studio Pro", Some("The big one"))
    );
    assert_eq!(audited(&pool, &step).await, ["product.update"]);
    expected_outbox += 1;
    assert_eq!(
        outbox_rows(&pool, "product", &entity).await,
        expected_outbox
    );

    let cleared: ProductUpdate = serde_json::from_str(r#"{"description": null}"#).unwrap();
    let updated = products::update(&pool, &ctx(), product.id, &cleared)
        .await
        .unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.description),
        ("Studio Pro", None)
    );
    expected_outbox += 1;

    let step = ctx();
    let release = products::add_release(&pool, &step, product.id, &new_release("1.0", "stable"))
        .await
        .unwrap();
    assert_eq!(audited(&pool, &step).await, ["release.add"]);
    expected_outbox += 1;
    assert_eq!(
        outbox_rows(&pool, "product", &entity).await,
        expected_outbox
    );

    for (action, change) in [
        ("release.publish", 0),
        ("release.mark_min_allowed", 1),
        ("release.clear_min_allowed", 2),
        ("release.unpublish", 3),
    ] {
        let step = ctx();
        let after = match change {
            0 => products::publish(&pool, &step, release.id).await,
            1 => products::mark_min_allowed(&pool, &step, release.id).await,
            2 => products::clear_min_allowed(&pool, &step, release.id).await,
            _ => products::unpublish(&pool, &step, release.id).await,
        }
        .unwrap();
        assert_eq!(audited(&pool, &step).await, [action]);
        expected_outbox += 1;
        assert_eq!(
            outbox_rows(&pool, "product", &entity).await,
            expected_outbox,
            "{action}"
        );
        let entity_id: String =
            sqlx::query_scalar("SELECT entity_id FROM audit_log WHERE request_id = $1")
                .bind(&step.request_id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!(entity_id, after.id.to_string());
    }

    // Asking for the state a release is already in changes and writes nothing.
    let idle = ctx();
    products::unpublish(&pool, &idle, release.id).await.unwrap();
    assert!(audited(&pool, &idle).await.is_empty());
    assert_eq!(
        outbox_rows(&pool, "product", &entity).await,
        expected_outbox
    );
}

#[sqlx::test(migrator = "latchkey_control::db::MIGRATOR")]
async fn flags_are_unique_per_product_and_reach_the_snapshot(pool: PgPool) {
    let product = products::create(&pool, &ctx(), &new_product("studio"))
        .await
        .unwrap();
    let new_flag = |key: &str, product_id| NewFlag {
        key: key.into(),
        product_id,
        enabled: true,
        rollout_percent: 100,
        description: None,
    };

    let step = ctx();
    let global = flags::create(&pool, &step, &new_flag("new-ui", None))
        .await
        .unwrap();
    assert_eq!(audited(&pool, &step).await, ["flag.create"]);
    assert_eq!(outbox_rows(&pool, "flags", &global.id.to_string()).await, 1);
    let scoped = flags::create(&pool, &ctx(), &new_flag("new-ui", Some(product.id)))
        .await
        .unwrap();

    for product_id in [None, Some(product.id)] {
        match flags::create(&pool, &ctx(), &new_flag("new-ui", product_id)).await {
            Err(error @ DomainError::Conflict { .. }) => assert_eq!(error.field(), Some("key")),
            other => panic!("expected a conflict, got {other:?}"),
        }
    }
    assert!(matches!(
        flags::create(&pool, &ctx(), &new_flag("other", Some(product.id + 1))).await,
        Err(DomainError::NotFound(Entity::Product))
    ));
    let defaults: NewFlag = serde_json::from_str(r#"{"key": "dark-mode"}"#).unwrap();
    assert_eq!((defaults.enabled, defaults.rollout_percent), (false, 100));
    let dark = flags::create(&pool, &ctx(), &defaults).await.unwrap();

    let step = ctx();
    let changes = FlagUpdate {
        rollout_percent: Some(25),
        description: Some(Some("half the half".into())),
        ..Default::default()
    };
    let updated = flags::update(&pool, &step, scoped.id, &changes)
        .await
        .unwrap();
    assert_eq!((updated.enabled, updated.rollout_percent), (true, 25));
    assert_eq!(audited(&pool, &step).await, ["flag.update"]);
    assert_eq!(outbox_rows(&pool, "flags", &scoped.id.to_string()).await, 2);
    let error = flags::update(
        &pool,
        &ctx(),
        scoped.id,
        &FlagUpdate {
            rollout_percent: Some(101),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(error.field(), Some("rollout_percent"));

    assert_eq!(
        flags::snapshot_flags(&pool).await.unwrap(),
        [
            FeatureFlag {
                key: "dark-mode".into(),
                enabled: false,
                product_id: None,
                rollout_percent: 100
            },
            FeatureFlag {
                key: "new-ui".into(),
                enabled: true,
                product_id: None,
                rollout_percent: 100
            },
            FeatureFlag {
                key: "new-ui".into(),
                enabled: true,
                product_id: Some(product.id as u32),
                rollout_percent: 25
            },
        ]
    );

    let step = ctx();
    flags::delete(&pool, &step, global.id).await.unwrap();
    assert_eq!(audited(&pool, &step).await, ["flag.delete"]);
    assert_eq!(outbox_rows(&pool, "flags", &global.id.to_string()).await, 2);
    assert!(matches!(
        flags::delete(&pool, &ctx(), global.id).await,
        Err(DomainError::NotFound(Entity::Flag))
    ));
    let keys: Vec<_> = flags::list(&pool)
        .await
        .unwrap()
        .into_iter()
        .map(|f| (f.key, f.product_id))
        .collect();
    assert_eq!(
        keys,
        [
            ("dark-mode".to_owned(), None),
            ("new-ui".to_owned(), Some(product.id))
        ]
    );
    assert_eq!(flags::get(&pool, dark.id).await.unwrap().key, "dark-mode");
}
