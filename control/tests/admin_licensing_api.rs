//! The licensing part of the admin API end to end, without a socket:
//! licenses, devices, sessions, resources, products, flags and audit, each
//! test on a fresh migrated database, requests sent with `oneshot`.

#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use latchkey_control::context::RequestContext;
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::api_keys::{Area, Scope};
use latchkey_control::db::devices::{self, LeaseIssuer, SeatRequest};
use latchkey_control::db::sessions::{self, SessionSettings, StartRequest};
use latchkey_shared::SigningKeyPair;
use latchkey_shared::fingerprint::{CanonicalFingerprint, Fingerprint};
use serde_json::{Value, json};
use sqlx::PgPool;
use support::api::{Api, V1};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

fn machine(n: u32) -> CanonicalFingerprint {
    Fingerprint {
        system_uuid: Some(Uuid::from_u128(u128::from(n) + 1).to_string()),
        machine_id: None,
        cpu_id: Some(format!("cpu-{n}")),
        macs: vec![format!("02:00:00:00:00:{:02x}", n % 256)],
        extra: BTreeMap::new(),
    }
    .canonicalize()
    .unwrap()
}

fn signer() -> SigningKeyPair {
    SigningKeyPair::from_seed([3; 32])
}

async fn activate(pool: &PgPool, key: &str, n: u32) -> Uuid {
    let issuer = LeaseIssuer { signer: signer() };
    let request = SeatRequest {
        key: key.parse().unwrap(),
        fingerprint: machine(n),
        device_name: Some(format!("machine {n}")),
        app_version: Some("1.0.0".into()),
        ip: None,
        idempotency_key: None,
    };
    devices::activate(pool, &RequestContext::system("test"), &issuer, &request)
        .await
        .unwrap()
        .device_id
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn license_lifecycle_through_http(pool: PgPool) {
    let api = Api::new(pool).await;
    let product_id = api.product("studio").await;
    let until = OffsetDateTime::now_utc() + Duration::days(30);

    let created = api
        .post(
            &format!("{V1}/licenses"),
            json!({
                "product_id": product_id,
                "count": 3,
                "kind": "trial",
                "valid_until": rfc3339(until),
                "device_limit": 2,
                "features": ["export"],
            }),
        )
        .await;
    let body = created.ok(StatusCode::CREATED);
    let batch_id = body["batch_id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.headers[header::LOCATION],
        format!("{V1}/licenses?batch_id={batch_id}").as_str()
    );
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    for item in items {
        assert_eq!(item["batch_id"], batch_id.as_str());
        assert_eq!(item["kind"], "trial");
        assert!(item["license_key"].as_str().unwrap().len() >= 25);
    }
    let id = items[0]["id"].as_str().unwrap().to_owned();
    let key = items[0]["license_key"].as_str().unwrap().to_owned();

    let listed = api
        .get(&format!("{V1}/licenses?batch_id={batch_id}&per_page=2"))
        .await;
    let page = listed.ok(StatusCode::OK);
    assert_eq!(page["total"], 3);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert!(
        page["items"][0].get("license_key").is_none(),
        "lists never show keys"
    );
    let by_prefix = api
        .get(&format!(
            "{V1}/licenses?key_prefix={}&status=active",
            items[0]["key_prefix"].as_str().unwrap().to_lowercase()
        ))
        .await;
    assert!(by_prefix.ok(StatusCode::OK)["total"].as_i64().unwrap() >= 1);

    let one = api.get(&format!("{V1}/licenses/{id}")).await;
    assert_eq!(one.ok(StatusCode::OK)["id"], id.as_str());
    assert!(one.body.get("license_key").is_none());

    let patched = api
        .call(
            Method::PATCH,
            &format!("{V1}/licenses/{id}"),
            Some(json!({ "device_limit": 5, "metadata": { "order": 42 } })),
        )
        .await;
    let license = patched.ok(StatusCode::OK);
    assert_eq!(license["device_limit"], 5);
    assert_eq!(license["metadata"]["order"], 42);

    let suspended = api
        .call(Method::POST, &format!("{V1}/licenses/{id}/suspend"), None)
        .await;
    assert_eq!(suspended.ok(StatusCode::OK)["status"], "suspended");
    let resumed = api
        .call(Method::POST, &format!("{V1}/licenses/{id}/resume"), None)
        .await;
    assert_eq!(resumed.ok(StatusCode::OK)["status"], "active");

    let later = until + Duration::days(365);
    let extended = api
        .post(
            &format!("{V1}/licenses/{id}/extend"),
            json!({ "valid_until": rfc3339(later) }),
        )
        .await;
    let extended_until = OffsetDateTime::parse(
        extended.ok(StatusCode::OK)["valid_until"].as_str().unwrap(),
        &Rfc3339,
    )
    .unwrap();
    assert_eq!(extended_until.unix_timestamp(), later.unix_timestamp());
    api.post(
        &format!("{V1}/licenses/{id}/extend"),
        json!({ "valid_until": rfc3339(until) }),
    )
    .await
    .expect(
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
        Some("valid_until"),
    );

    let revealed = api
        .call(
            Method::POST,
            &format!("{V1}/licenses/{id}/reveal-key"),
            None,
        )
        .await;
    assert_eq!(revealed.ok(StatusCode::OK)["license_key"], key.as_str());

    let revoked = api
        .call(Method::POST, &format!("{V1}/licenses/{id}/revoke"), None)
        .await;
    assert_eq!(revoked.ok(StatusCode::OK)["status"], "revoked");
    api.call(Method::POST, &format!("{V1}/licenses/{id}/resume"), None)
        .await
        .expect(StatusCode::CONFLICT, "CONFLICT", Some("status"));

    let deleted = api
        .call(Method::DELETE, &format!("{V1}/licenses/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(deleted.body, Value::Null);
    api.get(&format!("{V1}/licenses/{id}")).await.expect(
        StatusCode::NOT_FOUND,
        "LICENSE_NOT_FOUND",
        None,
    );
    api.call(Method::DELETE, &format!("{V1}/licenses/{id}"), None)
        .await
        .expect(StatusCode::NOT_FOUND, "LICENSE_NOT_FOUND", None);

    let single = api
        .post(
            &format!("{V1}/licenses"),
            json!({ "product_id": product_id }),
        )
        .await;
    let body = single.ok(StatusCode::CREATED);
    assert_eq!(body["batch_id"], Value::Null);
    assert_eq!(body["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        single.headers[header::LOCATION],
        format!("{V1}/licenses/{}", body["items"][0]["id"].as_str().unwrap()).as_str()
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn devices_are_listed_and_deactivated(pool: PgPool) {
    let api = Api::new(pool).await;
    let (license_id, key) = api.license(json!({ "device_limit": 3 })).await;
    let first = activate(&api.pool, &key, 1).await;
    activate(&api.pool, &key, 2).await;

    let listed = api
        .get(&format!("{V1}/licenses/{license_id}/devices"))
        .await;
    let devices = listed.ok(StatusCode::OK).as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert!(devices[0]["fingerprint_hash"].as_str().unwrap().len() == 64);
    assert!(devices[0].get("digest").is_none());

    let deactivated = api
        .call(
            Method::POST,
            &format!("{V1}/devices/{first}/deactivate"),
            None,
        )
        .await;
    let device = deactivated.ok(StatusCode::OK);
    assert_eq!(device["status"], "deactivated");
    assert_eq!(device["deactivation_reason"], "admin");

    let active = api
        .get(&format!("{V1}/licenses/{license_id}/devices"))
        .await;
    assert_eq!(active.ok(StatusCode::OK).as_array().unwrap().len(), 1);
    let all = api
        .get(&format!(
            "{V1}/licenses/{license_id}/devices?include_inactive=true"
        ))
        .await;
    assert_eq!(all.ok(StatusCode::OK).as_array().unwrap().len(), 2);

    api.call(
        Method::POST,
        &format!("{V1}/devices/{first}/deactivate"),
        None,
    )
    .await
    .expect(StatusCode::NOT_FOUND, "DEVICE_NOT_FOUND", None);
    let unknown = Uuid::new_v4();
    api.call(
        Method::POST,
        &format!("{V1}/devices/{unknown}/deactivate"),
        None,
    )
    .await
    .expect(StatusCode::NOT_FOUND, "DEVICE_NOT_FOUND", None);
    api.get(&format!("{V1}/licenses/{unknown}/devices"))
        .await
        .expect(StatusCode::NOT_FOUND, "LICENSE_NOT_FOUND", None);
    api.get(&format!(
        "{V1}/licenses/{license_id}/devices?include_inactive=maybe"
    ))
    .await
    .expect(
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
        Some("include_inactive"),
    );
    api.call(
        Method::POST,
        &format!("{V1}/devices/not-a-uuid/deactivate"),
        None,
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some("id"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn sessions_are_listed_and_terminated(pool: PgPool) {
    let api = Api::new(pool).await;
    let (license_id, key) = api.license(json!({ "session_limit": 2 })).await;
    activate(&api.pool, &key, 1).await;
    let settings = SessionSettings {
        signer: signer(),
        token_ttl_secs: 3600,
    };
    let start = StartRequest {
        key: key.parse().unwrap(),
        fingerprint: machine(1),
        app_version: None,
        take_over: false,
        ip: None,
        edge_id: None,
    };
    let ctx = RequestContext::system("test");
    let first = sessions::start(&api.pool, &ctx, &settings, &start)
        .await
        .unwrap()
        .session_id;
    sessions::start(&api.pool, &ctx, &settings, &start)
        .await
        .unwrap();

    let open = api
        .get(&format!("{V1}/sessions?open=true&license_id={license_id}"))
        .await;
    assert_eq!(open.ok(StatusCode::OK)["total"], 2);

    let terminated = api
        .call(
            Method::POST,
            &format!("{V1}/sessions/{first}/terminate"),
            None,
        )
        .await;
    assert_eq!(
        terminated.status,
        StatusCode::NO_CONTENT,
        "{}",
        terminated.body
    );

    let open = api
        .get(&format!("{V1}/sessions?open=true&license_id={license_id}"))
        .await;
    let page = open.ok(StatusCode::OK);
    assert_eq!(page["total"], 1);
    assert_ne!(page["items"][0]["id"], first.to_string().as_str());
    let all = api
        .get(&format!("{V1}/sessions?license_id={license_id}&per_page=1"))
        .await;
    let page = all.ok(StatusCode::OK);
    assert_eq!(
        (page["total"].as_i64(), page["per_page"].as_i64()),
        (Some(2), Some(1))
    );
    let ended = api
        .get(&format!(
            "{V1}/sessions?license_id={license_id}&page=2&per_page=1"
        ))
        .await;
    let ended = &ended.ok(StatusCode::OK)["items"][0];
    assert_eq!(ended["id"], first.to_string().as_str());
    assert_eq!(ended["end_reason"], "admin");

    api.call(
        Method::POST,
        &format!("{V1}/sessions/{first}/terminate"),
        None,
    )
    .await
    .expect(StatusCode::CONFLICT, "CONFLICT", None);
    api.call(
        Method::POST,
        &format!("{V1}/sessions/{}/terminate", Uuid::new_v4()),
        None,
    )
    .await
    .expect(StatusCode::NOT_FOUND, "SESSION_NOT_FOUND", None);
    api.get(&format!("{V1}/sessions?open=yes")).await.expect(
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
        Some("open"),
    );
    api.get(&format!("{V1}/sessions?license_id=42"))
        .await
        .expect(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            Some("license_id"),
        );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn resources_are_added_allocated_and_released(pool: PgPool) {
    let api = Api::new(pool).await;
    let (license_id, _) = api.license(json!({})).await;

    let added = api
        .post(
            &format!("{V1}/resources"),
            json!({ "kind": "ip", "values": ["192.0.2.1", "192.0.2.2", "192.0.2.3", " 192.0.2.1 "] }),
        )
        .await;
    assert_eq!(added.ok(StatusCode::CREATED)["added"], 3);
    assert_eq!(added.body["skipped"], 1);
    assert_eq!(
        added.headers[header::LOCATION],
        format!("{V1}/resources?kind=ip").as_str()
    );

    let listed = api
        .get(&format!("{V1}/resources?kind=ip&status=available"))
        .await;
    assert_eq!(listed.ok(StatusCode::OK)["total"], 3);

    let allocated = api
        .post(
            &format!("{V1}/licenses/{license_id}/resources"),
            json!({ "kind": "ip", "count": 2 }),
        )
        .await;
    let allocated = allocated.ok(StatusCode::OK).as_array().unwrap().clone();
    assert_eq!(allocated.len(), 2);
    for resource in &allocated {
        assert_eq!(resource["status"], "allocated");
        assert_eq!(resource["license_id"], license_id.as_str());
    }
    let mine = api
        .get(&format!("{V1}/resources?license_id={license_id}"))
        .await;
    assert_eq!(mine.ok(StatusCode::OK)["total"], 2);
    api.post(
        &format!("{V1}/licenses/{license_id}/resources"),
        json!({ "kind": "ip", "count": 5 }),
    )
    .await
    .expect(StatusCode::CONFLICT, "CONFLICT", Some("count"));

    let first = allocated[0]["id"].as_i64().unwrap();
    let second = allocated[1]["id"].as_i64().unwrap();
    let released = api
        .post(&format!("{V1}/resources/{first}/release"), json!({}))
        .await;
    let released = released.ok(StatusCode::OK);
    assert_eq!(released["status"], "available");
    assert_eq!(released["license_id"], Value::Null);
    let rest_until = OffsetDateTime::now_utc() + Duration::days(30);
    let quarantined = api
        .post(
            &format!("{V1}/resources/{second}/release"),
            json!({ "quarantine_until": rfc3339(rest_until) }),
        )
        .await;
    assert_eq!(quarantined.ok(StatusCode::OK)["status"], "quarantined");
    api.post(&format!("{V1}/resources/{second}/release"), json!({}))
        .await
        .expect(StatusCode::CONFLICT, "CONFLICT", Some("status"));

    let rested = api
        .post(
            &format!("{V1}/resources/{first}/quarantine"),
            json!({ "until": rfc3339(rest_until) }),
        )
        .await;
    assert_eq!(rested.ok(StatusCode::OK)["status"], "quarantined");

    let detail = api.get(&format!("{V1}/resources/{second}")).await;
    let detail = detail.ok(StatusCode::OK);
    assert_eq!(detail["value"], "192.0.2.2");
    let actions: Vec<&str> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["added", "allocated", "released", "quarantined"]);

    api.get(&format!("{V1}/resources/999999")).await.expect(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        None,
    );
    api.post(&format!("{V1}/resources/999999/release"), json!({}))
        .await
        .expect(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    api.post(
        &format!("{V1}/licenses/{}/resources", Uuid::new_v4()),
        json!({ "kind": "ip", "count": 1 }),
    )
    .await
    .expect(StatusCode::NOT_FOUND, "LICENSE_NOT_FOUND", None);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn products_releases_and_version_check(pool: PgPool) {
    let api = Api::new(pool).await;
    let created = api
        .post(
            &format!("{V1}/products"),
            json!({ "slug": "studio", "name": "Studio", "description": "Draws" }),
        )
        .await;
    let product_id = created.ok(StatusCode::CREATED)["id"].as_i64().unwrap();
    assert_eq!(
        created.headers[header::LOCATION],
        format!("{V1}/products/{product_id}").as_str()
    );
    api.post(
        &format!("{V1}/products"),
        json!({ "slug": "studio", "name": "Again" }),
    )
    .await
    .expect(StatusCode::CONFLICT, "CONFLICT", Some("slug"));
    api.product("other").await;

    let listed = api.get(&format!("{V1}/products?per_page=1")).await;
    let page = listed.ok(StatusCode::OK);
    assert_eq!(
        (
            page["total"].as_i64(),
            page["items"].as_array().unwrap().len()
        ),
        (Some(2), 1)
    );
    assert_eq!(page["items"][0]["slug"], "other");

    let patched = api
        .call(
            Method::PATCH,
            &format!("{V1}/products/{product_id}"),
            Some(json!({ "name": "Studio Pro", "description": null })),
        )
        .await;
    let product = patched.ok(StatusCode::OK);
    assert_eq!(product["name"], "Studio Pro");
    assert_eq!(product["description"], Value::Null);
    assert_eq!(
        api.get(&format!("{V1}/products/{product_id}"))
            .await
            .ok(StatusCode::OK)["name"],
        "Studio Pro"
    );

    let mut releases = Vec::new();
    for version in ["1.0", "v2.0.0"] {
        let added = api
            .post(
                &format!("{V1}/products/{product_id}/releases"),
                json!({ "version": version, "download_url": "https://example.com/studio" }),
            )
            .await;
        let release = added.ok(StatusCode::CREATED).clone();
        assert_eq!(release["published_at"], Value::Null);
        let id = release["id"].as_str().unwrap().to_owned();
        assert_eq!(
            added.headers[header::LOCATION],
            format!("{V1}/releases/{id}").as_str()
        );
        releases.push(id);
    }
    api.post(
        &format!("{V1}/products/{product_id}/releases"),
        json!({ "version": "2.0.0" }),
    )
    .await
    .expect(StatusCode::CONFLICT, "CONFLICT", Some("version"));
    let (old, new) = (&releases[0], &releases[1]);

    api.call(
        Method::POST,
        &format!("{V1}/releases/{new}/min-allowed"),
        None,
    )
    .await
    .expect(StatusCode::CONFLICT, "CONFLICT", Some("min_allowed"));
    for id in [old, new] {
        let published = api
            .call(Method::POST, &format!("{V1}/releases/{id}/publish"), None)
            .await;
        assert!(published.ok(StatusCode::OK)["published_at"].is_string());
    }
    let marked = api
        .call(
            Method::POST,
            &format!("{V1}/releases/{new}/min-allowed"),
            None,
        )
        .await;
    assert_eq!(marked.ok(StatusCode::OK)["min_allowed"], true);

    let listed = api
        .get(&format!("{V1}/products/{product_id}/releases"))
        .await;
    let page = listed.ok(StatusCode::OK);
    assert_eq!(page["total"], 2);
    assert_eq!(page["items"][0]["version"], "2.0.0");

    let check = api
        .get(&format!("{V1}/products/studio/version-check?version=1.5"))
        .await;
    let answer = check.ok(StatusCode::OK);
    assert_eq!(answer["current"], "1.5.0");
    assert_eq!(answer["latest"], "2.0.0");
    assert_eq!(answer["channel"], "stable");
    assert_eq!(answer["update_available"], true);
    assert_eq!(answer["update_mandatory"], true);
    assert_eq!(answer["download_url"], "https://example.com/studio");

    api.call(
        Method::POST,
        &format!("{V1}/releases/{new}/unpublish"),
        None,
    )
    .await
    .expect(StatusCode::CONFLICT, "CONFLICT", Some("min_allowed"));
    let cleared = api
        .call(
            Method::DELETE,
            &format!("{V1}/releases/{new}/min-allowed"),
            None,
        )
        .await;
    assert_eq!(cleared.status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.get(&format!("{V1}/releases/{new}"))
            .await
            .ok(StatusCode::OK)["min_allowed"],
        false
    );
    let unpublished = api
        .call(
            Method::POST,
            &format!("{V1}/releases/{new}/unpublish"),
            None,
        )
        .await;
    assert_eq!(unpublished.ok(StatusCode::OK)["published_at"], Value::Null);

    let check = api
        .get(&format!(
            "{V1}/products/studio/version-check?version=1.0.0&channel=stable"
        ))
        .await;
    let answer = check.ok(StatusCode::OK);
    assert_eq!(answer["latest"], "1.0.0");
    assert_eq!(answer["update_available"], false);
    assert_eq!(answer["update_mandatory"], false);

    api.get(&format!("{V1}/products/nope/version-check?version=1.0"))
        .await
        .expect(StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND", None);
    api.get(&format!(
        "{V1}/products/studio/version-check?version=banana"
    ))
    .await
    .expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some("version"));
    api.get(&format!("{V1}/products/studio/version-check"))
        .await
        .expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some("version"));
    api.get(&format!(
        "{V1}/products/studio/version-check?version=1.0&channel=Beta"
    ))
    .await
    .expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some("channel"));
    api.get(&format!("{V1}/products/999")).await.expect(
        StatusCode::NOT_FOUND,
        "PRODUCT_NOT_FOUND",
        None,
    );
    api.get(&format!("{V1}/products/999/releases"))
        .await
        .expect(StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND", None);
    api.call(
        Method::POST,
        &format!("{V1}/releases/{}/publish", Uuid::new_v4()),
        None,
    )
    .await
    .expect(StatusCode::NOT_FOUND, "NOT_FOUND", None);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn flag_crud(pool: PgPool) {
    let api = Api::new(pool).await;
    let product_id = api.product("studio").await;

    let created = api
        .post(
            &format!("{V1}/flags"),
            json!({ "key": "new-ui", "product_id": product_id, "enabled": true, "rollout_percent": 25 }),
        )
        .await;
    let flag = created.ok(StatusCode::CREATED).clone();
    let id = flag["id"].as_str().unwrap().to_owned();
    assert_eq!(
        created.headers[header::LOCATION],
        format!("{V1}/flags/{id}").as_str()
    );
    assert_eq!(flag["rollout_percent"], 25);
    let global = api
        .post(&format!("{V1}/flags"), json!({ "key": "new-ui" }))
        .await;
    assert_eq!(global.ok(StatusCode::CREATED)["rollout_percent"], 100);
    api.post(&format!("{V1}/flags"), json!({ "key": "new-ui" }))
        .await
        .expect(StatusCode::CONFLICT, "CONFLICT", Some("key"));
    api.post(
        &format!("{V1}/flags"),
        json!({ "key": "other", "product_id": 999 }),
    )
    .await
    .expect(
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
        Some("product_id"),
    );

    let listed = api.get(&format!("{V1}/flags")).await;
    let page = listed.ok(StatusCode::OK);
    assert_eq!(page["total"], 2);
    assert_eq!(page["items"][0]["product_id"], Value::Null);

    assert_eq!(
        api.get(&format!("{V1}/flags/{id}"))
            .await
            .ok(StatusCode::OK)["key"],
        "new-ui"
    );
    let patched = api
        .call(
            Method::PATCH,
            &format!("{V1}/flags/{id}"),
            Some(json!({ "enabled": false, "description": "later" })),
        )
        .await;
    let flag = patched.ok(StatusCode::OK);
    assert_eq!(flag["enabled"], false);
    assert_eq!(flag["description"], "later");
    // An empty merge patch changes nothing and writes no audit row.
    let unchanged = api
        .call(Method::PATCH, &format!("{V1}/flags/{id}"), Some(json!({})))
        .await;
    assert_eq!(unchanged.ok(StatusCode::OK), flag);
    assert!(api.audit(unchanged.request_id()).await.is_empty());
    api.call(
        Method::PATCH,
        &format!("{V1}/flags/{id}"),
        Some(json!({ "key": "renamed" })),
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some("key"));

    let deleted = api
        .call(Method::DELETE, &format!("{V1}/flags/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    api.get(&format!("{V1}/flags/{id}"))
        .await
        .expect(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    api.call(Method::DELETE, &format!("{V1}/flags/{id}"), None)
        .await
        .expect(StatusCode::NOT_FOUND, "NOT_FOUND", None);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn audit_filters_and_export(pool: PgPool) {
    let api = Api::new(pool).await;
    let started = OffsetDateTime::now_utc() - Duration::seconds(5);
    let (first, _) = api.license(json!({})).await;
    let product_id: i64 = api.get(&format!("{V1}/licenses/{first}")).await.body["product_id"]
        .as_i64()
        .unwrap();
    let second = api
        .post(
            &format!("{V1}/licenses"),
            json!({ "product_id": product_id }),
        )
        .await;
    let second = second.ok(StatusCode::CREATED)["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let suspended = api
        .call(
            Method::POST,
            &format!("{V1}/licenses/{first}/suspend"),
            None,
        )
        .await;
    suspended.ok(StatusCode::OK);
    api.call(
        Method::POST,
        &format!("{V1}/licenses/{second}/suspend"),
        None,
    )
    .await
    .ok(StatusCode::OK);
    api.call(Method::POST, &format!("{V1}/licenses/{first}/resume"), None)
        .await
        .ok(StatusCode::OK);

    let by_action = api.get(&format!("{V1}/audit?action=license.suspend")).await;
    let page = by_action.ok(StatusCode::OK);
    assert_eq!(page["total"], 2);
    let entities: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["entity_id"].as_str().unwrap())
        .collect();
    assert_eq!(entities, [second.as_str(), first.as_str()], "newest first");
    assert_eq!(page["items"][0]["actor_kind"], "api_key");
    assert_eq!(page["items"][0]["before"]["status"], "active");
    assert_eq!(page["items"][0]["after"]["status"], "suspended");

    let by_request = api
        .get(&format!("{V1}/audit?request_id={}", suspended.request_id()))
        .await;
    let page = by_request.ok(StatusCode::OK);
    assert_eq!(page["total"], 1);
    assert_eq!(page["items"][0]["action"], "license.suspend");
    assert_eq!(page["items"][0]["entity_id"], first.as_str());
    assert_eq!(page["items"][0]["request_id"], suspended.request_id());

    let by_entity = api
        .get(&format!("{V1}/audit?entity_kind=license&entity_id={first}"))
        .await;
    let page = by_entity.ok(StatusCode::OK);
    let actions: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["license.resume", "license.suspend", "license.create"]
    );

    let window = api
        .get(&format!(
            "{V1}/audit?from={}&to={}&per_page=2",
            rfc3339(started),
            rfc3339(OffsetDateTime::now_utc() + Duration::seconds(5))
        ))
        .await;
    let page = window.ok(StatusCode::OK);
    assert!(page["total"].as_i64().unwrap() >= 5);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let future = api
        .get(&format!(
            "{V1}/audit?from={}",
            rfc3339(OffsetDateTime::now_utc() + Duration::days(1))
        ))
        .await;
    assert_eq!(future.ok(StatusCode::OK)["total"], 0);

    let request = Request::get(format!(
        "{V1}/audit/export?format=csv&action=license.suspend"
    ))
    .header(header::AUTHORIZATION, format!("Bearer {}", api.admin))
    .body(Body::empty())
    .unwrap();
    let (status, headers, bytes) = api.bytes(request).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert_eq!(headers["x-total-count"], "2");
    let mut reader = csv::Reader::from_reader(&bytes[..]);
    let columns: Vec<String> = reader
        .headers()
        .unwrap()
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(&columns[..3], ["id", "at", "request_id"]);
    let action = columns.iter().position(|c| c == "action").unwrap();
    let entity = columns.iter().position(|c| c == "entity_id").unwrap();
    let after = columns.iter().position(|c| c == "after").unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|row| &row[action] == "license.suspend"));
    assert_eq!(&rows[0][entity], second.as_str());
    let after: Value = serde_json::from_str(&rows[0][after]).unwrap();
    assert_eq!(after["status"], "suspended");

    let request = Request::get(format!(
        "{V1}/audit/export?format=json&entity_kind=license&entity_id={first}"
    ))
    .header(header::AUTHORIZATION, format!("Bearer {}", api.admin))
    .body(Body::empty())
    .unwrap();
    let (status, headers, bytes) = api.bytes(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    let rows: Vec<Value> = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(rows.len(), 3);

    api.get(&format!("{V1}/audit?from=yesterday")).await.expect(
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
        Some("from"),
    );
    api.get(&format!(
        "{V1}/audit?from={}&to={}",
        rfc3339(OffsetDateTime::now_utc()),
        rfc3339(started)
    ))
    .await
    .expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some("to"));
    api.get(&format!("{V1}/audit/export?format=xml"))
        .await
        .expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some("format"));
    api.get(&format!("{V1}/audit?actoor_id=x")).await.expect(
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
        Some("actoor_id"),
    );
    let viewer = api.key(&[Scope::read(Area::Licenses)]).await;
    api.call_as(&viewer, Method::GET, &format!("{V1}/audit"), None)
        .await
        .expect(StatusCode::FORBIDDEN, "FORBIDDEN", None);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_license_viewer_cannot_change_licenses(pool: PgPool) {
    let api = Api::new(pool).await;
    let (id, _) = api
        .license(json!({ "valid_until": "2040-01-01T00:00:00Z" }))
        .await;
    let product_id = api.get(&format!("{V1}/licenses/{id}")).await.body["product_id"].clone();
    let viewer = api.key(&[Scope::read(Area::Licenses)]).await;

    let listed = api
        .call_as(&viewer, Method::GET, &format!("{V1}/licenses"), None)
        .await;
    assert_eq!(listed.ok(StatusCode::OK)["total"], 1);
    api.call_as(&viewer, Method::GET, &format!("{V1}/licenses/{id}"), None)
        .await
        .ok(StatusCode::OK);

    let mutations = [
        (
            Method::POST,
            format!("{V1}/licenses"),
            Some(json!({ "product_id": product_id })),
        ),
        (
            Method::PATCH,
            format!("{V1}/licenses/{id}"),
            Some(json!({ "device_limit": 9 })),
        ),
        (Method::POST, format!("{V1}/licenses/{id}/suspend"), None),
        (Method::POST, format!("{V1}/licenses/{id}/resume"), None),
        (Method::POST, format!("{V1}/licenses/{id}/revoke"), None),
        (
            Method::POST,
            format!("{V1}/licenses/{id}/extend"),
            Some(json!({ "valid_until": "2050-01-01T00:00:00Z" })),
        ),
        (Method::POST, format!("{V1}/licenses/{id}/reveal-key"), None),
        (Method::DELETE, format!("{V1}/licenses/{id}"), None),
    ];
    for (method, uri, body) in mutations {
        let reply = api.call_as(&viewer, method.clone(), &uri, body).await;
        assert_eq!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{method} {uri}: {}",
            reply.body
        );
        reply.expect(StatusCode::FORBIDDEN, "FORBIDDEN", None);
        assert!(
            reply.body["message"]
                .as_str()
                .unwrap()
                .contains("licenses:write")
        );
    }
    // Nothing changed, and no key was revealed.
    let license = api.get(&format!("{V1}/licenses/{id}")).await;
    let license = license.ok(StatusCode::OK);
    assert_eq!(license["status"], "active");
    assert_eq!(license["device_limit"], 1);
    let reveals = api
        .get(&format!("{V1}/audit?action=license.reveal_key"))
        .await;
    assert_eq!(reveals.ok(StatusCode::OK)["total"], 0);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn bad_input_is_a_4xx_naming_the_field(pool: PgPool) {
    let api = Api::new(pool).await;
    let (id, _) = api.license(json!({})).await;
    let product_id = api.get(&format!("{V1}/licenses/{id}")).await.body["product_id"].clone();
    let licenses = format!("{V1}/licenses");
    let unknown = Uuid::new_v4();
    let bad = StatusCode::BAD_REQUEST;

    // Licenses.
    let cases = [
        (
            json!({ "product_id": product_id, "colour": "red" }),
            "colour",
        ),
        (json!({ "product_id": "one" }), "product_id"),
        (
            json!({ "product_id": product_id, "kind": "forever" }),
            "kind",
        ),
        (json!({ "product_id": product_id, "count": 0 }), "count"),
        (
            json!({ "product_id": product_id, "count": 10_001 }),
            "count",
        ),
        (json!({ "product_id": product_id, "count": -1 }), "count"),
        (json!({ "product_id": product_id, "count": "3" }), "count"),
        (json!({ "product_id": product_id, "count": 2.5 }), "count"),
        (json!({ "product_id": 999_999 }), "product_id"),
        (
            json!({ "product_id": product_id, "customer_id": unknown }),
            "customer_id",
        ),
        (
            json!({ "product_id": product_id, "device_limit": -1 }),
            "device_limit",
        ),
        (
            json!({ "product_id": product_id, "valid_until": "soon" }),
            "valid_until",
        ),
        (
            json!({ "product_id": product_id, "features": ["Bad Name"] }),
            "features[0]",
        ),
        (json!({ "count": 2 }), "product_id"),
    ];
    for (body, field) in cases {
        api.post(&licenses, body.clone())
            .await
            .expect(bad, "INVALID_REQUEST", Some(field));
    }
    let not_an_object = api.post(&licenses, json!([1, 2])).await;
    assert_eq!(not_an_object.status, bad, "{}", not_an_object.body);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM licenses")
        .fetch_one(&api.pool)
        .await
        .unwrap();
    assert_eq!(count, 1, "no bad request created anything");

    let one = format!("{licenses}/{id}");
    let patch = |body: Value| api.call(Method::PATCH, &one, Some(body));
    patch(json!({ "key_prefix": "ABCD" }))
        .await
        .expect(bad, "INVALID_REQUEST", Some("key_prefix"));
    patch(json!({ "session_limit": "many" })).await.expect(
        bad,
        "INVALID_REQUEST",
        Some("session_limit"),
    );
    patch(json!({ "kind": "gold" }))
        .await
        .expect(bad, "INVALID_REQUEST", Some("kind"));
    let unchanged = patch(json!({})).await;
    assert_eq!(
        unchanged.ok(StatusCode::OK),
        &api.get(&one).await.body,
        "an empty merge patch changes nothing"
    );
    assert!(api.audit(unchanged.request_id()).await.is_empty());
    api.call(
        Method::PATCH,
        &format!("{licenses}/{unknown}"),
        Some(json!({ "device_limit": 2 })),
    )
    .await
    .expect(StatusCode::NOT_FOUND, "LICENSE_NOT_FOUND", None);
    api.post(
        &format!("{licenses}/{id}/extend"),
        json!({ "valid_until": "2040-01-01T00:00:00Z", "why": "x" }),
    )
    .await
    .expect(bad, "INVALID_REQUEST", Some("why"));
    api.post(&format!("{licenses}/{id}/extend"), json!({}))
        .await
        .expect(bad, "INVALID_REQUEST", Some("valid_until"));
    for action in ["suspend", "resume", "revoke", "reveal-key"] {
        api.call(
            Method::POST,
            &format!("{licenses}/{unknown}/{action}"),
            None,
        )
        .await
        .expect(StatusCode::NOT_FOUND, "LICENSE_NOT_FOUND", None);
    }
    api.get(&format!("{licenses}/12345"))
        .await
        .expect(bad, "INVALID_REQUEST", Some("id"));
    api.get(&format!("{licenses}?status=expired")).await.expect(
        bad,
        "INVALID_REQUEST",
        Some("status"),
    );
    api.get(&format!("{licenses}?product_id=abc")).await.expect(
        bad,
        "INVALID_REQUEST",
        Some("product_id"),
    );
    api.get(&format!("{licenses}?batch=1"))
        .await
        .expect(bad, "INVALID_REQUEST", Some("batch"));
    api.get(&format!("{licenses}?per_page=0")).await.expect(
        bad,
        "INVALID_REQUEST",
        Some("per_page"),
    );
    let plain = Request::post(&licenses)
        .header(header::AUTHORIZATION, format!("Bearer {}", api.admin))
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from("{}"))
        .unwrap();
    assert_eq!(api.bytes(plain).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Resources.
    let resources = format!("{V1}/resources");
    api.post(&resources, json!({ "kind": "fax", "values": ["1"] }))
        .await
        .expect(bad, "INVALID_REQUEST", Some("kind"));
    api.post(&resources, json!({ "kind": "ip", "values": "192.0.2.1" }))
        .await
        .expect(bad, "INVALID_REQUEST", Some("values"));
    api.post(
        &resources,
        json!({ "kind": "ip", "values": ["192.0.2.1", "nope"] }),
    )
    .await
    .expect(bad, "INVALID_REQUEST", Some("values[1]"));
    api.post(
        &resources,
        json!({ "kind": "ip", "values": [], "extra": 1 }),
    )
    .await
    .expect(bad, "INVALID_REQUEST", Some("extra"));
    api.post(&resources, json!({ "kind": "ip", "values": [] }))
        .await
        .expect(bad, "INVALID_REQUEST", Some("values"));
    let allocate = format!("{licenses}/{id}/resources");
    for (count, field) in [
        (json!(0), "count"),
        (json!(10_001), "count"),
        (json!(-1), "count"),
    ] {
        api.post(&allocate, json!({ "kind": "ip", "count": count }))
            .await
            .expect(bad, "INVALID_REQUEST", Some(field));
    }
    api.get(&format!("{resources}?status=lost")).await.expect(
        bad,
        "INVALID_REQUEST",
        Some("status"),
    );
    api.get(&format!("{resources}/abc"))
        .await
        .expect(bad, "INVALID_REQUEST", Some("id"));
    api.post(
        &format!("{resources}/1/quarantine"),
        json!({ "until": "2000-01-01T00:00:00Z" }),
    )
    .await
    .expect(bad, "INVALID_REQUEST", Some("until"));
    api.post(
        &format!("{resources}/1/release"),
        json!({ "quarantine_until": 5 }),
    )
    .await
    .expect(bad, "INVALID_REQUEST", Some("quarantine_until"));

    // Products.
    let products = format!("{V1}/products");
    api.post(
        &products,
        json!({ "slug": "x", "name": "X", "owner": "me" }),
    )
    .await
    .expect(bad, "INVALID_REQUEST", Some("owner"));
    api.post(&products, json!({ "slug": "Bad Slug", "name": "X" }))
        .await
        .expect(bad, "INVALID_REQUEST", Some("slug"));
    api.post(&products, json!({ "slug": "x", "name": 7 }))
        .await
        .expect(bad, "INVALID_REQUEST", Some("name"));
    api.call(
        Method::PATCH,
        &format!("{products}/{product_id}"),
        Some(json!({ "slug": "y" })),
    )
    .await
    .expect(bad, "INVALID_REQUEST", Some("slug"));
    api.post(
        &format!("{products}/{product_id}/releases"),
        json!({ "version": "1.0", "channel": "Beta" }),
    )
    .await
    .expect(bad, "INVALID_REQUEST", Some("channel"));
    api.post(
        &format!("{products}/{product_id}/releases"),
        json!({ "version": "1.0", "download_url": "ftp://x" }),
    )
    .await
    .expect(bad, "INVALID_REQUEST", Some("download_url"));
    api.post(
        &format!("{products}/999/releases"),
        json!({ "version": "1.0" }),
    )
    .await
    .expect(StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND", None);
    api.get(&format!("{products}/abc"))
        .await
        .expect(bad, "INVALID_REQUEST", Some("id"));

    // Flags.
    let flags = format!("{V1}/flags");
    api.post(&flags, json!({ "key": "x", "rollout_percent": 101 }))
        .await
        .expect(bad, "INVALID_REQUEST", Some("rollout_percent"));
    api.post(&flags, json!({ "key": "x", "enabled": "yes" }))
        .await
        .expect(bad, "INVALID_REQUEST", Some("enabled"));
    api.post(&flags, json!({ "key": "x", "colour": 1 }))
        .await
        .expect(bad, "INVALID_REQUEST", Some("colour"));
    api.call(
        Method::PATCH,
        &format!("{flags}/{unknown}"),
        Some(json!({ "enabled": true })),
    )
    .await
    .expect(StatusCode::NOT_FOUND, "NOT_FOUND", None);

    // Sessions and devices.
    api.post(&format!("{V1}/sessions/{unknown}/terminate"), json!({}))
        .await
        .expect(StatusCode::NOT_FOUND, "SESSION_NOT_FOUND", None);
    api.get(&format!("{V1}/sessions?page=0"))
        .await
        .expect(bad, "INVALID_REQUEST", Some("page"));
}

/// What the document allows is accepted and what it forbids refused, also
/// where the database alone would have refused it with a 500.
#[sqlx::test(migrator = "MIGRATOR")]
async fn requests_are_held_to_the_document(pool: PgPool) {
    let api = Api::new(pool).await;
    let (id, _) = api.license(json!({})).await;
    let one = format!("{V1}/licenses/{id}");
    let product_id = api.get(&one).await.body["product_id"].clone();
    let bad = StatusCode::BAD_REQUEST;

    // JSON has one kind of number: 2.0 is the integer 2.
    let made = api
        .post(
            &format!("{V1}/licenses"),
            json!({ "product_id": product_id, "device_limit": 2.0, "count": 2.0 }),
        )
        .await;
    let items = made.ok(StatusCode::CREATED)["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["device_limit"], 2);
    api.post(
        &format!("{V1}/licenses"),
        json!({ "product_id": product_id, "device_limit": 2.5 }),
    )
    .await
    .expect(bad, "INVALID_REQUEST", Some("device_limit"));

    // A body is an object, and no text holds U+0000.
    api.call(Method::PATCH, &one, Some(json!([null, null])))
        .await
        .expect(bad, "INVALID_REQUEST", None);
    api.call(
        Method::PATCH,
        &one,
        Some(json!({ "metadata": { "note": "a\u{0}b" } })),
    )
    .await
    .expect(bad, "INVALID_REQUEST", Some("metadata.note"));
    api.get(&format!("{V1}/audit?action=a%00b")).await.expect(
        bad,
        "INVALID_REQUEST",
        Some("action"),
    );

    // A window that ends before it starts (the table's CHECK, once a 500).
    api.post(
        &format!("{V1}/licenses"),
        json!({ "product_id": product_id, "valid_until": "2001-01-01T00:00:00Z" }),
    )
    .await
    .expect(bad, "INVALID_REQUEST", Some("valid_until"));
    api.call(
        Method::PATCH,
        &one,
        Some(json!({ "valid_until": "2001-01-01T00:00:00Z" })),
    )
    .await
    .expect(bad, "INVALID_REQUEST", Some("valid_until"));

    // A version whose normalised form would be too long (once a 500).
    let long = format!("1+{}", "0".repeat(123));
    api.get(&format!(
        "{V1}/products/studio/version-check?version={long}"
    ))
    .await
    .expect(bad, "INVALID_REQUEST", Some("version"));
    api.post(
        &format!("{V1}/products/{product_id}/releases"),
        json!({ "version": long }),
    )
    .await
    .expect(bad, "INVALID_REQUEST", Some("version"));

    // Lists: pages within `int32`, no parameter they do not name.
    api.get(&format!("{V1}/customers?page=2147483648"))
        .await
        .expect(bad, "INVALID_REQUEST", Some("page"));
    assert_eq!(
        api.get(&format!("{V1}/customers?page=2147483647"))
            .await
            .ok(StatusCode::OK)["items"],
        json!([])
    );
    api.get(&format!("{V1}/customers?sort=name")).await.expect(
        bad,
        "INVALID_REQUEST",
        Some("sort"),
    );
    api.get(&format!("{V1}/api-keys?page=1&page=2"))
        .await
        .expect(bad, "INVALID_REQUEST", Some("page"));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_document_lists_every_new_route(pool: PgPool) {
    let api = Api::new(pool).await;
    let request = Request::get(format!("{V1}/openapi.json"))
        .body(Body::empty())
        .unwrap();
    let (status, _, bytes) = api.bytes(request).await;
    assert_eq!(status, StatusCode::OK);
    let document: Value = serde_json::from_slice(&bytes).unwrap();
    let paths = document["paths"].as_object().unwrap();
    for (path, method, scope) in [
        ("/admin/api/v1/licenses", "post", "licenses:write"),
        ("/admin/api/v1/licenses", "get", "licenses:read"),
        ("/admin/api/v1/licenses/{id}", "patch", "licenses:write"),
        (
            "/admin/api/v1/licenses/{id}/reveal-key",
            "post",
            "licenses:write",
        ),
        ("/admin/api/v1/licenses/{id}/devices", "get", "devices:read"),
        (
            "/admin/api/v1/devices/{id}/deactivate",
            "post",
            "devices:write",
        ),
        ("/admin/api/v1/sessions", "get", "sessions:read"),
        (
            "/admin/api/v1/sessions/{id}/terminate",
            "post",
            "sessions:write",
        ),
        ("/admin/api/v1/resources", "post", "resources:write"),
        (
            "/admin/api/v1/licenses/{id}/resources",
            "post",
            "resources:write",
        ),
        (
            "/admin/api/v1/products/{id}/releases",
            "post",
            "products:write",
        ),
        (
            "/admin/api/v1/releases/{id}/min-allowed",
            "delete",
            "products:write",
        ),
        (
            "/admin/api/v1/products/{slug}/version-check",
            "get",
            "products:read",
        ),
        ("/admin/api/v1/flags/{id}", "delete", "flags:write"),
        ("/admin/api/v1/audit", "get", "audit:read"),
        ("/admin/api/v1/audit/export", "get", "audit:read"),
    ] {
        let operation = &paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is documented"))[method];
        assert_eq!(
            operation["security"][0]["bearer"][0], scope,
            "{method} {path}"
        );
    }
    let schemas = document["components"]["schemas"].as_object().unwrap();
    for schema in [
        "License",
        "CreatedLicenses",
        "Device",
        "Session",
        "Resource",
        "AuditEntry",
    ] {
        assert!(schemas.contains_key(schema), "{schema} is in the document");
    }
}
