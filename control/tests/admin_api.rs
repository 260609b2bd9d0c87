//! The admin JSON API end to end, without a socket: requests go straight to
//! `app::router(state)` with `oneshot`, each test on a fresh migrated database.

#[allow(dead_code)]
mod support;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::api_keys::{Access, Area, Scope};
use serde_json::{Value, json};
use sqlx::PgPool;
use support::api::{Api, Reply};
use uuid::Uuid;

const CUSTOMERS: &str = "/admin/api/v1/customers";
const API_KEYS: &str = "/admin/api/v1/api-keys";
const TOKEN: &str = "/admin/api/v1/auth/token";

#[sqlx::test(migrator = "MIGRATOR")]
async fn missing_or_invalid_credentials_are_401(pool: PgPool) {
    let api = Api::new(pool).await;
    let good = api.key(&[Scope::All]).await;

    let none = api.anonymous(Method::GET, CUSTOMERS, None).await;
    none.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
    assert!(none.headers.contains_key(header::WWW_AUTHENTICATE));

    let (prefix, _) = good.rsplit_once('_').unwrap();
    let wrong_secret = format!("{prefix}_{}", "A".repeat(43));
    let unknown_prefix = format!("lk_zzzzzzzz_{}", "A".repeat(43));
    for credential in [
        "garbage",
        "lk_short",
        wrong_secret.as_str(),
        unknown_prefix.as_str(),
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
    ] {
        api.call_as(credential, Method::GET, CUSTOMERS, None)
            .await
            .expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
    }
    let basic = api
        .send(
            Request::get(CUSTOMERS)
                .header(header::AUTHORIZATION, "Basic dXNlcjpwYXNz")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    basic.expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);

    // Expired and revoked keys are refused.
    let expired = api.key(&[Scope::All]).await;
    let expired_prefix = &expired[3..11];
    sqlx::query("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE prefix = $1")
        .bind(expired_prefix)
        .execute(&api.pool)
        .await
        .unwrap();
    api.call_as(&expired, Method::GET, CUSTOMERS, None)
        .await
        .expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);

    sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE prefix = $1")
        .bind(&good[3..11])
        .execute(&api.pool)
        .await
        .unwrap();
    api.call_as(&good, Method::GET, CUSTOMERS, None)
        .await
        .expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_missing_scope_is_403_naming_it(pool: PgPool) {
    let api = Api::new(pool).await;
    let reader = api.key(&[Scope::read(Area::Customers)]).await;

    let listed = api.call_as(&reader, Method::GET, CUSTOMERS, None).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);

    let create = api
        .call_as(
            &reader,
            Method::POST,
            CUSTOMERS,
            Some(json!({"name": "Acme"})),
        )
        .await;
    create.expect(StatusCode::FORBIDDEN, "FORBIDDEN", None);
    assert!(
        create.body["message"]
            .as_str()
            .unwrap()
            .contains("customers:write")
    );

    let keys = api.call_as(&reader, Method::GET, API_KEYS, None).await;
    keys.expect(StatusCode::FORBIDDEN, "FORBIDDEN", None);
    assert!(
        keys.body["message"]
            .as_str()
            .unwrap()
            .contains("api_keys:read")
    );

    // Write implies read.
    let writer = api.key(&[Scope::write(Area::Customers)]).await;
    let listed = api.call_as(&writer, Method::GET, CUSTOMERS, None).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
}

/// The scope an operation's document names is the one its handler's
/// extractor enforces: a key holding just that scope gets past the check, a
/// key holding every other area's write scope (and, for a write, the read
/// scope of its own area) is refused naming it.
#[sqlx::test(migrator = "MIGRATOR")]
async fn every_operation_needs_the_scope_its_document_names(pool: PgPool) {
    let api = Api::new(pool).await;
    let document = api
        .anonymous(Method::GET, "/admin/api/v1/openapi.json", None)
        .await
        .body;
    let mut checked = 0;
    for (path, operations) in document["paths"].as_object().unwrap() {
        // Any value will do: the scope is checked before path parameters are read.
        let uri = path
            .split('/')
            .map(|segment| {
                if segment.starts_with('{') {
                    "1"
                } else {
                    segment
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        for (method, operation) in operations.as_object().unwrap() {
            // An operation may need several scopes (all of them); the
            // first is the one a key lacking them all is refused naming.
            let Some(named) = operation["security"][0]["bearer"][0].as_str() else {
                continue;
            };
            let scopes: Vec<Scope> = operation["security"][0]["bearer"]
                .as_array()
                .unwrap()
                .iter()
                .map(|scope| scope.as_str().unwrap().parse().unwrap())
                .collect();
            let mut others: Vec<Scope> = Area::ALL.into_iter().map(Scope::write).collect();
            for scope in &scopes {
                let Scope::Area(area, access) = *scope else {
                    panic!("{method} {path} needs `*`");
                };
                others.retain(|other| *other != Scope::write(area));
                if access == Access::Write {
                    others.push(Scope::read(area));
                }
            }
            let method: Method = method.to_uppercase().parse().unwrap();
            let holder = api.key(&scopes).await;
            // Its answer may be CSV: only the status matters here.
            let (allowed, _, _) = api
                .bytes(
                    Request::builder()
                        .method(method.clone())
                        .uri(&uri)
                        .header(header::AUTHORIZATION, format!("Bearer {holder}"))
                        .body(Body::empty())
                        .unwrap(),
                )
                .await;
            assert_ne!(
                allowed,
                StatusCode::FORBIDDEN,
                "{method} {path} with {named}"
            );
            let lacking = api.key(&others).await;
            let refused = api.call_as(&lacking, method.clone(), &uri, None).await;
            refused.expect(StatusCode::FORBIDDEN, "FORBIDDEN", None);
            assert!(
                refused.body["message"].as_str().unwrap().contains(named),
                "{method} {path}: {}",
                refused.body
            );
            checked += 1;
        }
    }
    assert!(checked >= 45, "{checked} operations with a scope");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_api_key_buys_a_token_that_works_until_the_key_is_revoked(pool: PgPool) {
    let api = Api::new(pool).await;
    let key = api
        .key(&[Scope::write(Area::Customers), Scope::read(Area::ApiKeys)])
        .await;

    let token = api
        .anonymous(Method::POST, TOKEN, Some(json!({"api_key": key})))
        .await;
    assert_eq!(token.status, StatusCode::OK, "{}", token.body);
    assert_eq!(token.body["token_type"], "Bearer");
    assert!(token.body["expires_in"].as_u64().unwrap() <= 900);
    assert_eq!(
        token.body["scopes"],
        json!(["customers:write", "api_keys:read"]),
        "the key's scopes"
    );
    let jwt = token.body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt.split('.').count(), 3);

    let created = api
        .call_as(
            &jwt,
            Method::POST,
            CUSTOMERS,
            Some(json!({"name": "Via token"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let audit = api.audit(created.request_id()).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].actor_kind, "api_key");

    // The token carries the key's scopes, no more.
    api.call_as(
        &jwt,
        Method::POST,
        API_KEYS,
        Some(json!({"name": "x", "scopes": ["customers:read"]})),
    )
    .await
    .expect(StatusCode::FORBIDDEN, "FORBIDDEN", None);

    for refused in [
        json!({"api_key": "lk_nothing"}),
        json!({"api_key": format!("{key}x")}),
    ] {
        api.anonymous(Method::POST, TOKEN, Some(refused))
            .await
            .expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
    }
    api.anonymous(Method::POST, TOKEN, Some(json!({"key": key})))
        .await
        .expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some("key"));

    // Revoking the key ends its tokens at once.
    sqlx::query("UPDATE api_keys SET revoked_at = now() WHERE prefix = $1")
        .bind(&key[3..11])
        .execute(&api.pool)
        .await
        .unwrap();
    api.call_as(&jwt, Method::GET, CUSTOMERS, None)
        .await
        .expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
    api.anonymous(Method::POST, TOKEN, Some(json!({"api_key": key})))
        .await
        .expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn customers_crud_with_one_audit_row_per_change(pool: PgPool) {
    let api = Api::new(pool).await.with_client_address();
    let key = api.key(&[Scope::write(Area::Customers)]).await;

    let created = api
        .send(
            Request::post(CUSTOMERS)
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::USER_AGENT, "admin-api-test/1")
                .header("x-request-id", "client-chosen-id-1")
                .body(Body::from(
                    json!({
                        "name": "  Acme Corp ",
                        "email": "ops@acme.example",
                        "company": "Acme",
                        "metadata": {"tier": "gold"}
                    })
                    .to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(
        created.request_id(),
        "client-chosen-id-1",
        "a sane id is kept"
    );
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["name"], "Acme Corp");
    assert_eq!(created.body["metadata"], json!({"tier": "gold"}));
    assert_eq!(
        created.headers[header::LOCATION].to_str().unwrap(),
        format!("{CUSTOMERS}/{id}")
    );
    let audit = api.audit("client-chosen-id-1").await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0].action, "customer.create");
    assert_eq!(audit[0].entity_kind, "customer");
    assert_eq!(audit[0].entity_id.as_deref(), Some(id.as_str()));
    assert_eq!(audit[0].actor_kind, "api_key");
    assert!(audit[0].actor_id.is_some());
    assert_eq!(audit[0].before, None);
    assert_eq!(audit[0].after.as_ref().unwrap()["name"], "Acme Corp");
    assert_eq!(audit[0].host.as_deref(), Some("203.0.113.7"));
    assert_eq!(audit[0].user_agent.as_deref(), Some("admin-api-test/1"));

    let other = api
        .call_as(
            &key,
            Method::POST,
            CUSTOMERS,
            Some(json!({"name": "Globex", "email": "hi@globex.example"})),
        )
        .await;
    assert_eq!(other.status, StatusCode::CREATED);

    let fetched = api
        .call_as(&key, Method::GET, &format!("{CUSTOMERS}/{id}"), None)
        .await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body, created.body);

    let everyone = api
        .call_as(&key, Method::GET, &format!("{CUSTOMERS}?per_page=1"), None)
        .await;
    assert_eq!(everyone.status, StatusCode::OK, "{}", everyone.body);
    assert_eq!(
        (
            everyone.body["total"].as_i64(),
            everyone.body["page"].as_u64(),
            everyone.body["per_page"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
    assert_eq!(everyone.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(everyone.body["items"][0]["name"], "Globex", "newest first");
    let second = api
        .call_as(
            &key,
            Method::GET,
            &format!("{CUSTOMERS}?per_page=1&page=2"),
            None,
        )
        .await;
    assert_eq!(second.body["items"][0]["name"], "Acme Corp");

    for (query, expected) in [
        ("acme", 1),
        ("ACME", 1),
        ("globex.example", 1),
        ("nobody", 0),
        ("%25", 0),
        ("", 2),
    ] {
        let found = api
            .call_as(&key, Method::GET, &format!("{CUSTOMERS}?q={query}"), None)
            .await;
        assert_eq!(
            found.body["total"].as_i64(),
            Some(expected),
            "q={query}: {}",
            found.body
        );
    }

    let updated = api
        .call_as(
            &key,
            Method::PATCH,
            &format!("{CUSTOMERS}/{id}"),
            Some(json!({"email": null, "notes": "renewal in May"})),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["email"], Value::Null);
    assert_eq!(updated.body["notes"], "renewal in May");
    assert_eq!(updated.body["company"], "Acme", "left out, left alone");
    let audit = api.audit(updated.request_id()).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, "customer.update");
    assert_eq!(
        audit[0].before.as_ref().unwrap()["email"],
        "ops@acme.example"
    );
    assert_eq!(audit[0].after.as_ref().unwrap()["email"], Value::Null);

    let deleted = api
        .call_as(&key, Method::DELETE, &format!("{CUSTOMERS}/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let audit = api.audit(deleted.request_id()).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, "customer.delete");
    assert_eq!(audit[0].after, None);
    assert_eq!(audit[0].before.as_ref().unwrap()["name"], "Acme Corp");

    api.call_as(&key, Method::GET, &format!("{CUSTOMERS}/{id}"), None)
        .await
        .expect(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    api.call_as(&key, Method::DELETE, &format!("{CUSTOMERS}/{id}"), None)
        .await
        .expect(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    api.call_as(
        &key,
        Method::PATCH,
        &format!("{CUSTOMERS}/{id}"),
        Some(json!({"name": "x"})),
    )
    .await
    .expect(StatusCode::NOT_FOUND, "NOT_FOUND", None);

    let mutations: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE entity_kind = 'customer'")
            .fetch_one(&api.pool)
            .await
            .unwrap();
    assert_eq!(
        mutations, 4,
        "two creates, one update, one delete; refusals write nothing"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn bad_requests_get_the_right_4xx_with_code_and_field(pool: PgPool) {
    let api = Api::new(pool).await;
    let key = api.key(&[Scope::write(Area::Customers)]).await;
    let json = Some("application/json");

    let cases: Vec<(Reply, StatusCode, &str, Option<&str>)> = vec![
        (
            api.raw(
                Method::POST,
                CUSTOMERS,
                &key,
                json,
                r#"{"name": "A", "nickname": "a"}"#,
            )
            .await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            Some("nickname"),
        ),
        (
            api.raw(Method::POST, CUSTOMERS, &key, json, r#"{"name": 42}"#)
                .await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            Some("name"),
        ),
        (
            api.raw(
                Method::POST,
                CUSTOMERS,
                &key,
                json,
                r#"{"email": "a@b.co"}"#,
            )
            .await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            Some("name"),
        ),
        (
            api.raw(
                Method::POST,
                CUSTOMERS,
                &key,
                json,
                r#"{"name": "A", "metadata": [1]}"#,
            )
            .await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            Some("metadata"),
        ),
        (
            api.raw(Method::POST, CUSTOMERS, &key, json, r#"{"name": "A""#)
                .await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            None,
        ),
        (
            api.raw(Method::POST, CUSTOMERS, &key, json, "").await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            None,
        ),
        (
            api.raw(Method::POST, CUSTOMERS, &key, json, r#"{"name": "   "}"#)
                .await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            Some("name"),
        ),
        (
            api.raw(
                Method::POST,
                CUSTOMERS,
                &key,
                json,
                format!(r#"{{"name": "{}"}}"#, "n".repeat(257)),
            )
            .await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            Some("name"),
        ),
        (
            api.raw(
                Method::POST,
                CUSTOMERS,
                &key,
                json,
                r#"{"name": "A", "email": "not-an-address"}"#,
            )
            .await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            Some("email"),
        ),
        (
            api.raw(
                Method::POST,
                CUSTOMERS,
                &key,
                Some("text/plain"),
                r#"{"name": "A"}"#,
            )
            .await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            None,
        ),
        (
            api.raw(Method::POST, CUSTOMERS, &key, None, r#"{"name": "A"}"#)
                .await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            None,
        ),
        (
            api.raw(
                Method::POST,
                CUSTOMERS,
                &key,
                json,
                format!(r#"{{"name": "A", "notes": "{}"}}"#, "x".repeat(1_100_000)),
            )
            .await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            None,
        ),
        (
            api.raw(
                Method::PATCH,
                &format!("{CUSTOMERS}/{}", Uuid::new_v4()),
                &key,
                json,
                r#"{"name": "B"}"#,
            )
            .await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            None,
        ),
        (
            api.raw(
                Method::GET,
                &format!("{CUSTOMERS}/not-a-uuid"),
                &key,
                None,
                "",
            )
            .await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            Some("id"),
        ),
        (
            api.raw(
                Method::GET,
                &format!("{CUSTOMERS}/{}", Uuid::new_v4()),
                &key,
                None,
                "",
            )
            .await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            None,
        ),
        (
            api.raw(
                Method::GET,
                &format!("{CUSTOMERS}?per_page=500"),
                &key,
                None,
                "",
            )
            .await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            Some("per_page"),
        ),
        (
            api.raw(Method::GET, &format!("{CUSTOMERS}?page=0"), &key, None, "")
                .await,
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            Some("page"),
        ),
        (
            api.raw(Method::GET, "/admin/api/v1/no-such-thing", &key, None, "")
                .await,
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            None,
        ),
        (
            api.raw(Method::PUT, CUSTOMERS, &key, json, "{}").await,
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            None,
        ),
    ];
    for (index, (reply, status, code, field)) in cases.iter().enumerate() {
        assert_eq!(
            (reply.status, reply.code(), reply.field()),
            (*status, *code, *field),
            "case {index}: {}",
            reply.body
        );
        assert!(reply.body["message"].is_string(), "case {index}");
    }

    // Announced too large: refused on the Content-Length alone.
    let body = format!(r#"{{"name": "{}"}}"#, "x".repeat(2_000_000));
    let reply = api
        .send(
            Request::post(CUSTOMERS)
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, body.len())
                .body(Body::from(body))
                .unwrap(),
        )
        .await;
    reply.expect(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", None);
    // Announced too large but not sent: refused without waiting for the body.
    let reply = api
        .send(
            Request::post(CUSTOMERS)
                .header(header::AUTHORIZATION, format!("Bearer {key}"))
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CONTENT_LENGTH, "99999999")
                .body(Body::from(r#"{"name": "A"}"#))
                .unwrap(),
        )
        .await;
    reply.expect(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", None);

    let customers: i64 = sqlx::query_scalar("SELECT count(*) FROM customers")
        .fetch_one(&api.pool)
        .await
        .unwrap();
    assert_eq!(customers, 0, "nothing refused was written");
    let audit: i64 =
        sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE entity_kind = 'customer'")
            .fetch_one(&api.pool)
            .await
            .unwrap();
    assert_eq!(audit, 0);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_customer_with_licenses_cannot_be_deleted(pool: PgPool) {
    let api = Api::new(pool).await;
    let key = api.key(&[Scope::write(Area::Customers)]).await;
    let created = api
        .call_as(
            &key,
            Method::POST,
            CUSTOMERS,
            Some(json!({"name": "Initech"})),
        )
        .await;
    let id: Uuid = created.body["id"].as_str().unwrap().parse().unwrap();
    let product: i32 =
        sqlx::query_scalar("INSERT INTO products (slug, name) VALUES ('tps', 'TPS') RETURNING id")
            .fetch_one(&api.pool)
            .await
            .unwrap();
    sqlx::query(
        "INSERT INTO licenses (key_hash, key_prefix, key_sealed, customer_id, product_id, kind, device_limit)
         VALUES ($1, 'ABCDE', '\\x00', $2, $3, 'full', 1)",
    )
    .bind(vec![7u8; 32])
    .bind(id)
    .bind(product)
    .execute(&api.pool)
    .await
    .unwrap();

    let refused = api
        .call_as(&key, Method::DELETE, &format!("{CUSTOMERS}/{id}"), None)
        .await;
    refused.expect(StatusCode::CONFLICT, "CONFLICT", None);
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap()
            .contains("license")
    );
    assert!(api.audit(refused.request_id()).await.is_empty());
    let still_there = api
        .call_as(&key, Method::GET, &format!("{CUSTOMERS}/{id}"), None)
        .await;
    assert_eq!(still_there.status, StatusCode::OK);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn api_keys_are_made_listed_and_revoked(pool: PgPool) {
    let api = Api::new(pool).await;
    let admin = api
        .key(&[Scope::write(Area::ApiKeys), Scope::write(Area::Customers)])
        .await;

    let created = api
        .call_as(
            &admin,
            Method::POST,
            API_KEYS,
            Some(json!({"name": "CI deploy", "scopes": ["customers:read"]})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let secret = created.body["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("lk_"), "{secret}");
    let id = created.body["api_key"]["id"].as_str().unwrap().to_owned();
    let prefix = created.body["api_key"]["prefix"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(&secret[3..11], prefix);
    assert_eq!(created.body["api_key"]["scopes"], json!(["customers:read"]));
    let audit = api.audit(created.request_id()).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, "api_key.create");
    let logged = audit[0].after.as_ref().unwrap().to_string();
    assert!(
        !logged.contains(&secret[12..]),
        "the secret never reaches the audit log"
    );

    // The new key works, within its scopes.
    let listed = api.call_as(&secret, Method::GET, CUSTOMERS, None).await;
    assert_eq!(listed.status, StatusCode::OK);
    let used: Option<time::OffsetDateTime> =
        sqlx::query_scalar("SELECT last_used_at FROM api_keys WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&api.pool)
            .await
            .unwrap();
    assert!(used.is_some(), "last_used_at is recorded");

    let keys = api
        .call_as(
            &admin,
            Method::GET,
            &format!("{API_KEYS}?per_page=10"),
            None,
        )
        .await;
    assert_eq!(keys.status, StatusCode::OK);
    assert_eq!(
        keys.body["total"], 3,
        "the harness's key, this test's and the new one"
    );
    let text = keys.body.to_string();
    assert!(text.contains(&prefix));
    assert!(!text.contains(&secret[12..]), "lists never show a secret");
    assert!(!text.contains("secret"), "nor a hash: {text}");
    let one = api
        .call_as(&admin, Method::GET, &format!("{API_KEYS}/{id}"), None)
        .await;
    assert_eq!(one.body["name"], "CI deploy");
    assert!(one.body.get("secret").is_none());

    // Nobody grants what they do not hold.
    let beyond = api
        .call_as(
            &admin,
            Method::POST,
            API_KEYS,
            Some(json!({"name": "root", "scopes": ["*"]})),
        )
        .await;
    beyond.expect(StatusCode::FORBIDDEN, "FORBIDDEN", None);
    assert!(beyond.body["message"].as_str().unwrap().contains('*'));

    // Nor revoke a key holding what they do not: the `*` key stays.
    let root_id: String = sqlx::query_scalar(
        "SELECT id::text FROM api_keys WHERE '*' = ANY(scopes) ORDER BY created_at LIMIT 1",
    )
    .fetch_one(&api.pool)
    .await
    .unwrap();
    let refused = api
        .call_as(
            &admin,
            Method::POST,
            &format!("{API_KEYS}/{root_id}/revoke"),
            None,
        )
        .await;
    refused.expect(StatusCode::FORBIDDEN, "FORBIDDEN", None);
    let root = api.get(&format!("{API_KEYS}/{root_id}")).await;
    assert!(root.body["revoked_at"].is_null(), "{}", root.body);
    api.call_as(
        &admin,
        Method::POST,
        API_KEYS,
        Some(json!({"name": "x", "scopes": ["customers:read", "users:read"]})),
    )
    .await
    .expect(
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
        Some("scopes[1]"),
    );
    api.call_as(
        &admin,
        Method::POST,
        API_KEYS,
        Some(json!({"name": "x", "scopes": []})),
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some("scopes"));
    api.call_as(
        &admin,
        Method::POST,
        API_KEYS,
        Some(json!({"name": "", "scopes": ["customers:read"]})),
    )
    .await
    .expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some("name"));
    api.call_as(&admin, Method::POST, API_KEYS, Some(json!({"name": "x", "scopes": ["customers:read"], "expires_at": "2001-01-01T00:00:00Z"})))
        .await
        .expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some("expires_at"));
    api.call_as(
        &admin,
        Method::POST,
        API_KEYS,
        Some(json!({"name": "x", "scopes": ["customers:read"], "expires_at": "tomorrow"})),
    )
    .await
    .expect(
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
        Some("expires_at"),
    );

    let revoked = api
        .call_as(
            &admin,
            Method::POST,
            &format!("{API_KEYS}/{id}/revoke"),
            None,
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
    assert!(revoked.body["revoked_at"].is_string());
    let audit = api.audit(revoked.request_id()).await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].action, "api_key.revoke");
    assert_eq!(audit[0].before.as_ref().unwrap()["revoked_at"], Value::Null);

    api.call_as(&secret, Method::GET, CUSTOMERS, None)
        .await
        .expect(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", None);
    api.call_as(
        &admin,
        Method::POST,
        &format!("{API_KEYS}/{id}/revoke"),
        None,
    )
    .await
    .expect(StatusCode::CONFLICT, "CONFLICT", None);
    api.call_as(
        &admin,
        Method::POST,
        &format!("{API_KEYS}/{}/revoke", Uuid::new_v4()),
        None,
    )
    .await
    .expect(StatusCode::NOT_FOUND, "NOT_FOUND", None);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn request_ids_are_kept_when_sane_and_made_otherwise(pool: PgPool) {
    let api = Api::new(pool).await;
    for (given, kept) in [("abc-123", true), ("has space", false), ("", false)] {
        let reply = api
            .send(
                Request::get("/admin/api/v1/nowhere")
                    .header("x-request-id", given)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        reply.expect(StatusCode::NOT_FOUND, "NOT_FOUND", None);
        if kept {
            assert_eq!(reply.request_id(), given);
        } else {
            assert!(
                reply.request_id().parse::<Uuid>().is_ok(),
                "{}",
                reply.request_id()
            );
        }
    }
    let first = api.anonymous(Method::GET, CUSTOMERS, None).await;
    let second = api.anonymous(Method::GET, CUSTOMERS, None).await;
    assert_ne!(first.request_id(), second.request_id());
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_openapi_document_parses_and_lists_the_routes(pool: PgPool) {
    let api = Api::new(pool).await;
    let reply = api
        .anonymous(Method::GET, "/admin/api/v1/openapi.json", None)
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let document = reply.body;
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let paths = document["paths"].as_object().unwrap();
    for (path, methods) in [
        ("/admin/api/v1/customers", &["get", "post"][..]),
        ("/admin/api/v1/customers/{id}", &["get", "patch", "delete"]),
        ("/admin/api/v1/api-keys", &["get", "post"]),
        ("/admin/api/v1/api-keys/{id}", &["get"]),
        ("/admin/api/v1/api-keys/{id}/revoke", &["post"]),
        ("/admin/api/v1/auth/token", &["post"]),
    ] {
        for method in methods {
            assert!(
                paths[path][method].is_object(),
                "{method} {path} in {:?}",
                paths.keys()
            );
        }
    }
    assert_eq!(
        paths["/admin/api/v1/customers"]["post"]["security"],
        json!([{"bearer": ["customers:write"]}])
    );
    let schemas = document["components"]["schemas"].as_object().unwrap();
    for schema in [
        "Customer",
        "CreateCustomer",
        "UpdateCustomer",
        "ErrorBody",
        "ErrorCode",
        "ApiKey",
        "TokenRequest",
    ] {
        assert!(
            schemas.contains_key(schema),
            "{schema} in {:?}",
            schemas.keys()
        );
    }
    assert!(document["components"]["securitySchemes"]["bearer"].is_object());
}

/// The audit export streams every matching row (more than the channel the
/// database cursor feeds holds), as CSV and as JSON, with the count first.
#[sqlx::test(migrator = "MIGRATOR")]
async fn the_audit_export_streams_every_row(pool: PgPool) {
    sqlx::query(
        "INSERT INTO audit_log (request_id, actor_kind, action, entity_kind, entity_id, after)
         SELECT 'bulk-' || n, 'system', 'license.create', 'license', 'lic-' || n, jsonb_build_object('n', n)
           FROM generate_series(1, 3000) AS n",
    )
    .execute(&pool)
    .await
    .unwrap();
    let api = Api::new(pool).await;
    let export = |format: &str| {
        Request::get(format!(
            "/admin/api/v1/audit/export?format={format}&action=license.create"
        ))
        .header(header::AUTHORIZATION, format!("Bearer {}", api.admin))
        .body(Body::empty())
        .unwrap()
    };
    let (status, headers, csv) = api.bytes(export("csv")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-total-count"], "3000");
    let text = String::from_utf8(csv.to_vec()).unwrap();
    assert_eq!(text.lines().count(), 3001, "a header and every row");
    assert!(text.starts_with("id,at,request_id,"));
    let (status, _, json) = api.bytes(export("json")).await;
    assert_eq!(status, StatusCode::OK);
    let rows: Vec<Value> = serde_json::from_slice(&json).unwrap();
    assert_eq!(rows.len(), 3000);
    assert_eq!(rows[0]["entity_id"], "lic-3000", "newest first");
}

/// The edge configuration and a product's client configuration through the
/// API: each field bounded and named when refused, unknown fields refused,
/// every change audited and published for the next delta.
#[sqlx::test(migrator = "MIGRATOR")]
async fn edge_and_client_configuration_are_read_and_replaced(pool: PgPool) {
    let api = Api::new(pool.clone()).await;
    let config = api.get("/admin/api/v1/edge-config").await;
    assert_eq!(
        config.ok(StatusCode::OK)["heartbeat_interval_secs"],
        json!(900)
    );
    let mut changed = config.body.clone();
    changed["rate_limit_per_key_per_min"] = json!(5);
    let put = api
        .call(
            Method::PUT,
            "/admin/api/v1/edge-config",
            Some(changed.clone()),
        )
        .await;
    assert_eq!(put.ok(StatusCode::OK), &changed);
    assert_eq!(
        api.get("/admin/api/v1/edge-config").await.body,
        changed,
        "stored"
    );
    let audit = api.audit(put.request_id()).await;
    assert_eq!(audit[0].action, "edge_config.update");
    let published: i64 =
        sqlx::query_scalar("SELECT count(*) FROM snapshot_outbox WHERE entity_kind = 'config'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(published, 1);

    let mut too_fast = changed.clone();
    too_fast["heartbeat_interval_secs"] = json!(5);
    api.call(Method::PUT, "/admin/api/v1/edge-config", Some(too_fast))
        .await
        .expect(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            Some("heartbeat_interval_secs"),
        );
    let mut extra = changed.clone();
    extra["colour"] = json!("red");
    let refused = api
        .call(Method::PUT, "/admin/api/v1/edge-config", Some(extra))
        .await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "{:?}",
        refused.body
    );
    let reader = api.key(&[Scope::read(Area::Edges)]).await;
    assert_eq!(
        api.call_as(
            &reader,
            Method::PUT,
            "/admin/api/v1/edge-config",
            Some(changed)
        )
        .await
        .status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.call_as(&reader, Method::GET, "/admin/api/v1/edges", None)
            .await
            .ok(StatusCode::OK),
        &json!([])
    );

    let product = api.product("studio").await;
    let uri = format!("/admin/api/v1/products/{product}/client-config");
    assert_eq!(
        api.get(&uri).await.ok(StatusCode::OK),
        &json!({ "heartbeat_interval_secs": null, "grace_period_secs": null, "features": [], "settings": {} })
    );
    let client = json!({ "heartbeat_interval_secs": 300, "grace_period_secs": 86_400,
                         "features": ["export"], "settings": { "theme": "dark" } });
    let put = api.call(Method::PUT, &uri, Some(client.clone())).await;
    assert_eq!(put.ok(StatusCode::OK), &client);
    assert_eq!(
        api.audit(put.request_id()).await[0].action,
        "product.client_config"
    );
    api.call(Method::PUT, &uri, Some(json!({ "settings": [1, 2] })))
        .await
        .expect(StatusCode::BAD_REQUEST, "INVALID_REQUEST", Some("settings"));
    api.call(
        Method::PUT,
        &uri,
        Some(json!({ "features": ["Not A Name"] })),
    )
    .await
    .expect(
        StatusCode::BAD_REQUEST,
        "INVALID_REQUEST",
        Some("features[0]"),
    );
    api.call(
        Method::PUT,
        "/admin/api/v1/products/999999/client-config",
        Some(client),
    )
    .await
    .expect(StatusCode::NOT_FOUND, "PRODUCT_NOT_FOUND", None);
}
