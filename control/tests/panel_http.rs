//! The admin panel over HTTP, without a browser: sessions, CSRF, the login
//! guard with both counter backends, roles, 2FA and the audit viewer. Each
//! test has a fresh database; requests go to `app::router` with `oneshot`.

#[allow(dead_code)]
mod support;

use axum::http::{Method, StatusCode, header};
use latchkey_control::app::{self, AppState};
use latchkey_control::context::{Actor, ActorKind, RequestContext};
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::admins::Role;
use latchkey_control::db::audit::{self, Change};
use latchkey_control::panel::guard::{Counters, LoginGuard};
use latchkey_control::panel::{self, PanelState};
use serde_json::{Value, json};
use sqlx::PgPool;
use support::config;
use support::panel::{Client, PASSWORD, admin, concrete, enrol_totp};
use totp_rs::{Builder, Secret};

/// The Redis the login-guard tests share counters through.
fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn app(pool: &PgPool, extra: &[(&str, &str)]) -> axum::Router {
    app::router(AppState::new(pool.clone(), &config(extra)).unwrap())
}

/// The app with its login counters in Redis under a namespace of its own.
fn app_with_redis(pool: &PgPool) -> axum::Router {
    let config = config(&[]);
    let mut state = AppState::new(pool.clone(), &config).unwrap();
    let namespace = format!("latchkey-test-{}", uuid::Uuid::new_v4());
    let counters = Counters::redis(&redis_url(), &namespace).unwrap();
    state.panel = PanelState::with_guard(
        pool.clone(),
        &config,
        LoginGuard::with_counters(&config.panel, counters),
    )
    .unwrap();
    app::router(state)
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_panel_route_without_a_session_goes_to_login_and_the_api_answers_401(pool: PgPool) {
    let mut client = Client::new(app(&pool, &[]), "192.0.2.10");
    let routes = panel::protected_routes();
    assert!(routes.len() >= 20, "{routes:?}");
    for route in routes {
        let uri = concrete(route.path, "1");
        let reply = client.send(route.method.clone(), &uri, Some(&[])).await;
        assert_eq!(
            reply.status,
            StatusCode::SEE_OTHER,
            "{} {uri}",
            route.method
        );
        assert_eq!(reply.location(), "/login", "{} {uri}", route.method);
    }
    let api = client.get("/admin/api/v1/customers").await;
    assert_eq!(api.status, StatusCode::UNAUTHORIZED);
    assert!(
        api.body.contains("UNAUTHORIZED") || api.body.contains("unauthorized"),
        "{}",
        api.body
    );
    // The login page and the assets need no session; pages are never framed.
    let login = client.get("/login").await;
    assert_eq!(login.status, StatusCode::OK);
    assert_eq!(login.headers["x-frame-options"], "DENY");
    assert!(
        login.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let css = client
        .get(&format!("/assets/{}/app.css", panel::assets::version()))
        .await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert_eq!(
        client.get("/assets/stale/app.css").await.status,
        StatusCode::NOT_FOUND
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_state_changing_request_needs_the_sessions_csrf_token(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let mut client = Client::new(app(&pool, &[]), "192.0.2.11");

    // The login form: a post without the double-submit token is refused.
    let mut stranger = Client::new(app(&pool, &[]), "192.0.2.12");
    let reply = stranger
        .post("/login", &[("username", "alice"), ("password", PASSWORD)])
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.error_code(), "CSRF_INVALID");

    let csrf = client.logged_in("alice").await;
    let form = [("network", "198.51.100.0/24"), ("reason", "test")];
    let missing = client.post("/blocked-ips", &form).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    assert_eq!(missing.error_code(), "CSRF_INVALID");
    let wrong = client
        .post("/blocked-ips", &[("_csrf", "forged"), form[0], form[1]])
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    assert_eq!(wrong.error_code(), "CSRF_INVALID");
    // htmx sends it as a header.
    let header = client
        .send_with(
            Method::POST,
            "/blocked-ips",
            Some(&form),
            &[("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(header.status, StatusCode::SEE_OTHER, "{}", header.body);
    let page = client.get("/blocked-ips").await;
    assert!(page.body.contains("198.51.100.0/24"), "{}", page.body);

    // A token is the session's own: another session's token does not pass.
    let mut other = Client::new(app(&pool, &[]), "192.0.2.13");
    other.logged_in("alice").await;
    let crossed = other.post("/logout", &[("_csrf", &csrf)]).await;
    assert_eq!(crossed.error_code(), "CSRF_INVALID");
}

async fn sixth_failed_login_is_blocked(pool: PgPool, app: axum::Router) {
    admin(&pool, "alice", Role::Admin).await;
    let mut attacker = Client::new(app.clone(), "203.0.113.7");
    for attempt in 1..=5 {
        let reply = attacker.login("alice", "wrong password!").await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}: {}",
            reply.body
        );
    }
    let sixth = attacker.login("alice", PASSWORD).await;
    assert_eq!(sixth.status, StatusCode::FORBIDDEN, "{}", sixth.body);
    assert_eq!(sixth.error_code(), "IP_BLOCKED");

    // The owner, from elsewhere, sees the block and lifts it.
    let mut owner = Client::new(app, "192.0.2.20");
    let csrf = owner.logged_in("alice").await;
    let page = owner.get("/blocked-ips").await;
    assert!(page.body.contains("203.0.113.7/32"), "{}", page.body);
    assert!(page.body.contains("5 failed logins"), "{}", page.body);
    let id: i64 = sqlx::query_scalar("SELECT id FROM blocked_ips WHERE network = '203.0.113.7/32'")
        .fetch_one(&pool)
        .await
        .unwrap();
    let lifted = owner
        .post(&format!("/blocked-ips/{id}/lift"), &[("_csrf", &csrf)])
        .await;
    assert_eq!(lifted.status, StatusCode::SEE_OTHER, "{}", lifted.body);
    assert!(
        !owner
            .get("/blocked-ips")
            .await
            .body
            .contains("203.0.113.7/32")
    );
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log WHERE entity_kind = 'blocked_ip' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(actions, ["ip.block", "ip.lift"]);
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM login_attempts WHERE NOT success")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(failed, 5);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn sixth_failed_login_from_one_ip_is_blocked_in_process(pool: PgPool) {
    let app = app(&pool, &[]);
    sixth_failed_login_is_blocked(pool, app).await;
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn sixth_failed_login_from_one_ip_is_blocked_with_redis(pool: PgPool) {
    let app = app_with_redis(&pool);
    sixth_failed_login_is_blocked(pool, app).await;
}

#[tokio::test]
async fn redis_counters_are_shared_between_instances() {
    let namespace = format!("latchkey-test-{}", uuid::Uuid::new_v4());
    let one = Counters::redis(&redis_url(), &namespace).unwrap();
    let two = Counters::redis(&redis_url(), &namespace).unwrap();
    let window = std::time::Duration::from_secs(60);
    assert_eq!(one.hit("k", window).await.unwrap(), 1);
    assert_eq!(
        two.hit("k", window).await.unwrap(),
        2,
        "a second replica sees the first's count"
    );
    assert_eq!(one.get("k").await.unwrap(), 2);
    two.reset("k").await.unwrap();
    assert_eq!(one.get("k").await.unwrap(), 0);
    let short = std::time::Duration::from_millis(300);
    assert_eq!(one.hit("w", short).await.unwrap(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(two.hit("w", short).await.unwrap(), 1, "the window expired");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn login_attempts_per_minute_are_limited(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let app = app(&pool, &[("LATCHKEY_PANEL_LOGIN_ATTEMPTS_PER_MINUTE", "3")]);
    let mut client = Client::new(app, "192.0.2.30");
    for _ in 0..3 {
        let reply = client.login("nobody", "whatever-password").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let fourth = client.login("alice", PASSWORD).await;
    assert_eq!(fourth.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(fourth.error_code(), "RATE_LIMITED");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_viewer_reads_but_cannot_change(pool: PgPool) {
    let alice = admin(&pool, "alice", Role::Admin).await;
    admin(&pool, "victor", Role::Viewer).await;
    let mut viewer = Client::new(app(&pool, &[]), "192.0.2.40");
    let csrf = viewer.logged_in("victor").await;
    for page in ["/", "/audit", "/blocked-ips", "/settings", "/licenses"] {
        let reply = viewer.get(page).await;
        assert_eq!(reply.status, StatusCode::OK, "{page}");
    }
    let blocks = viewer.get("/blocked-ips").await;
    assert!(
        !blocks.body.contains("id=\"block-form\""),
        "no form for a viewer"
    );
    let refused = viewer
        .post(
            "/blocked-ips",
            &[("_csrf", &csrf), ("network", "10.0.0.1"), ("reason", "x")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.error_code(), "FORBIDDEN");
    let reset = viewer
        .post(
            &format!("/settings/admins/{alice}/reset-2fa"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(reset.error_code(), "FORBIDDEN");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM blocked_ips")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn totp_enrolment_login_recovery_codes_and_reset(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let bob = admin(&pool, "bob", Role::Admin).await;
    let app = app(&pool, &[]);
    let mut client = Client::new(app.clone(), "192.0.2.50");
    client.logged_in("bob").await;
    let enrol = client.get("/settings/2fa").await;
    assert!(
        enrol.body.contains("data:image/svg+xml;base64,"),
        "QR code shown"
    );
    let secret = between(&enrol.body, "id=\"totp-secret\">", "<");
    let totp = Builder::new()
        .with_secret(Secret::try_from_base32(&secret).unwrap())
        .build()
        .unwrap();
    let wrong = client
        .post(
            "/settings/2fa",
            &[("_csrf", &enrol.csrf()), ("code", "000000")],
        )
        .await;
    assert!(
        wrong.body.contains("does not match") || totp.generate_current().to_string() == "000000"
    );
    let code = totp.generate_current().to_string();
    let codes = client
        .post(
            "/settings/2fa",
            &[("_csrf", &enrol.csrf()), ("code", &code)],
        )
        .await;
    assert_eq!(codes.status, StatusCode::OK, "{}", codes.body);
    let recovery: Vec<String> = codes
        .body
        .split("<li><code>")
        .skip(1)
        .map(|rest| rest.split('<').next().unwrap().to_owned())
        .collect();
    assert_eq!(recovery.len(), 10);

    // Password alone now leads to the second step; a TOTP code is accepted once.
    let mut again = Client::new(app.clone(), "192.0.2.51");
    let reply = again.login("bob", PASSWORD).await;
    assert_eq!(reply.location(), "/login/2fa");
    assert_eq!(again.get("/").await.location(), "/login/2fa");
    let step = again.get("/login/2fa").await;
    let code = totp.generate_current().to_string();
    let password_only = again.cookies["lk_session"].clone();
    let passed = again
        .post("/login/2fa", &[("_csrf", &step.csrf()), ("code", &code)])
        .await;
    assert_eq!(passed.location(), "/", "{}", passed.body);
    assert_eq!(again.get("/").await.status, StatusCode::OK);
    assert_ne!(
        again.cookies["lk_session"], password_only,
        "a new session id after 2FA"
    );
    let mut stale = Client::new(app.clone(), "192.0.2.56");
    stale.cookies.insert("lk_session".into(), password_only);
    assert_eq!(stale.get("/login/2fa").await.location(), "/login");

    let mut replay = Client::new(app.clone(), "192.0.2.52");
    replay.login("bob", PASSWORD).await;
    let step = replay.get("/login/2fa").await;
    let replayed = replay
        .post("/login/2fa", &[("_csrf", &step.csrf()), ("code", &code)])
        .await;
    assert_eq!(
        replayed.status,
        StatusCode::UNAUTHORIZED,
        "a code works once"
    );
    // A recovery code works once, whatever its case and dash.
    let used = recovery[3].to_uppercase();
    let ok = replay
        .post("/login/2fa", &[("_csrf", &step.csrf()), ("code", &used)])
        .await;
    assert_eq!(ok.location(), "/");
    let mut third = Client::new(app.clone(), "192.0.2.53");
    third.login("bob", PASSWORD).await;
    let step = third.get("/login/2fa").await;
    let reused = third
        .post(
            "/login/2fa",
            &[("_csrf", &step.csrf()), ("code", &recovery[3])],
        )
        .await;
    assert_eq!(reused.status, StatusCode::UNAUTHORIZED);

    // Another admin resets bob's 2FA: bob's sessions end, password alone works again.
    let mut alice = Client::new(app.clone(), "192.0.2.54");
    let csrf = alice.logged_in("alice").await;
    let reset = alice
        .post(
            &format!("/settings/admins/{bob}/reset-2fa"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(reset.status, StatusCode::SEE_OTHER, "{}", reset.body);
    assert_eq!(again.get("/").await.location(), "/login");
    let mut fresh = Client::new(app, "192.0.2.55");
    fresh.logged_in("bob").await;
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log WHERE action LIKE 'admin.totp%' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(actions, ["admin.totp_enable", "admin.totp_reset"]);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn sessions_end_on_idle_timeout_logout_and_revoke(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let idle = app(&pool, &[("LATCHKEY_PANEL_IDLE_TIMEOUT_SECS", "1")]);
    let mut client = Client::new(idle, "192.0.2.60");
    client.logged_in("alice").await;
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert_eq!(
        client.get("/").await.location(),
        "/login",
        "idle session ended"
    );

    // The absolute limit holds however busy the session is.
    let mut busy = Client::new(app(&pool, &[]), "192.0.2.63");
    busy.logged_in("alice").await;
    sqlx::query("UPDATE admin_sessions SET expires_at = now() - interval '1 second' WHERE revoked_at IS NULL")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(busy.get("/").await.location(), "/login", "absolute timeout");

    let app = app(&pool, &[]);
    let mut laptop = Client::new(app.clone(), "192.0.2.61");
    let mut phone = Client::new(app, "192.0.2.62");
    laptop.logged_in("alice").await;
    let csrf = phone.logged_in("alice").await;
    let settings = phone.get("/settings").await;
    let id = between(&settings.body, "/settings/sessions/", "/revoke");
    let revoked = phone
        .post(
            &format!("/settings/sessions/{id}/revoke"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(revoked.location(), "/settings");
    assert_eq!(
        laptop.get("/").await.location(),
        "/login",
        "revoked elsewhere"
    );
    let out = phone.post("/logout", &[("_csrf", &csrf)]).await;
    assert_eq!(out.location(), "/login");
    assert_eq!(phone.get("/").await.location(), "/login");
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log WHERE action IN ('admin.logout', 'admin_session.revoke', 'admin.login')
          ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        actions,
        [
            "admin.login",
            "admin.login",
            "admin.login",
            "admin.login",
            "admin_session.revoke",
            "admin.logout"
        ]
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn audit_filters_pages_and_exports(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let actor = |name: &str| Actor {
        kind: ActorKind::ApiKey,
        id: Some(format!("key-{name}")),
        name: Some(name.to_owned()),
    };
    let mut conn = pool.acquire().await.unwrap();
    for i in 0..120 {
        let ctx = RequestContext {
            request_id: format!("req-{i}"),
            actor: actor(if i % 2 == 0 { "even" } else { "odd" }),
            ip: Some("198.51.100.9".parse().unwrap()),
            user_agent: None,
        };
        let suspend = i % 3 == 0;
        let action = if suspend {
            "license.suspend"
        } else {
            "license.create"
        };
        let mut change = Change::new(action, "license", format!("lic-{i}"))
            .after(json!({ "status": if suspend { "suspended" } else { "active" } }));
        if suspend {
            change = change.before(json!({ "status": "active" }));
        }
        audit::record_change(&mut conn, &ctx, change).await.unwrap();
    }
    drop(conn);
    let mut client = Client::new(app(&pool, &[]), "192.0.2.70");
    client.logged_in("alice").await;

    let rows = |body: &str| body.matches("class=\"audit-row\"").count();
    let by_request = client.get("/audit?request_id=req-42").await;
    assert_eq!(rows(&by_request.body), 1);
    assert!(by_request.body.contains("lic-42"));
    let diff =
        "<dt>status</dt><dd><del>&#34;active&#34;</del> → <ins>&#34;suspended&#34;</ins></dd>";
    assert!(
        by_request.body.contains(diff),
        "the before/after diff: {}",
        by_request.body
    );

    // Keyset pages: walk every page of one filter (more rows than one page).
    let mut seen = std::collections::HashSet::new();
    let mut uri = "/audit?actor_id=key-odd".to_owned();
    let mut pages = 0;
    loop {
        let page = client.get(&uri).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        pages += 1;
        for chunk in page.body.split("<code>lic-").skip(1) {
            assert!(
                seen.insert(chunk.split('<').next().unwrap().to_owned()),
                "no row twice"
            );
        }
        match next_link(&page.body) {
            Some(next) => uri = next,
            None => break,
        }
    }
    assert_eq!(seen.len(), 60);
    assert_eq!(pages, 2);

    let none = client.get("/audit?from=2999-01-01T00:00").await;
    assert_eq!(rows(&none.body), 0);
    let bad = client.get("/audit?from=yesterday").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let (json_export, _) = client
        .export("/audit/export?format=json&action=license.suspend")
        .await;
    let exported: Value = serde_json::from_str(&json_export.body).unwrap();
    assert_eq!(exported.as_array().unwrap().len(), 40);
    let (csv_export, _) = client
        .export("/audit/export?format=csv&actor_id=key-even")
        .await;
    assert_eq!(csv_export.body.lines().count(), 1 + 60);
    assert!(
        csv_export.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("audit.csv")
    );

    // The login itself is in the log, with the panel's request id.
    let login = client.get("/audit?action=admin.login").await;
    assert_eq!(rows(&login.body), 1);
}

/// The "Older" link's target, unescaped.
fn next_link(body: &str) -> Option<String> {
    let marker = body.find("\" id=\"next-page\"")?;
    let start = body[..marker].rfind("href=\"")? + "href=\"".len();
    Some(
        body[start..marker]
            .replace("&amp;", "&")
            .replace("&#38;", "&"),
    )
}

fn between(text: &str, start: &str, end: &str) -> String {
    let from = text
        .find(start)
        .unwrap_or_else(|| panic!("{start:?} not in page"))
        + start.len();
    let to = text[from..].find(end).unwrap() + from;
    text[from..to].to_owned()
}

/// Failures spread over many networks slow the account down instead of
/// locking it: attempts between its slots wait, uncounted, while the owner's
/// correct password still reaches the second factor and gets in.
#[sqlx::test(migrator = "MIGRATOR")]
async fn failures_spread_over_many_ips_slow_the_account_but_let_its_owner_in(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    admin(&pool, "bob", Role::Admin).await;
    let app = app(&pool, &[("LATCHKEY_PANEL_LOGIN_MAX_FAILURES", "2")]);
    let mut setup = Client::new(app.clone(), "198.18.9.9");
    setup.logged_in("alice").await;
    let totp = enrol_totp(&mut setup).await;
    // Four times the per-IP limit, one failure from each address: no IP is blocked.
    for account in ["alice", "bob"] {
        for n in 0..8 {
            let mut client = Client::new(app.clone(), &format!("198.18.{}.{n}", account.len()));
            let reply = client.login(account, "wrong password!").await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.body);
        }
        // The account's slot: one attempt is decided, the next one waits.
        let mut attacker = Client::new(app.clone(), &format!("198.18.2.{}", account.len()));
        assert_eq!(
            attacker.login(account, "wrong password!").await.status,
            StatusCode::UNAUTHORIZED
        );
        let waiting = attacker.login(account, "wrong password!").await;
        assert_eq!(
            waiting.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}",
            waiting.body
        );
        assert!(waiting.body.contains("try again in"), "{}", waiting.body);
    }
    // Alice has a second factor: her password passes the slowed account.
    let mut owner = Client::new(app.clone(), "198.18.1.1");
    let reply = owner.login("alice", PASSWORD).await;
    assert_eq!(reply.location(), "/login/2fa", "{}", reply.body);
    let step = owner.get("/login/2fa").await;
    let code = totp.generate_current().to_string();
    let passed = owner
        .post("/login/2fa", &[("_csrf", &step.csrf()), ("code", &code)])
        .await;
    assert_eq!(passed.location(), "/", "{}", passed.body);
    // Bob has none: even his password waits for the slot.
    let mut bob = Client::new(app.clone(), "198.18.1.2");
    assert_eq!(
        bob.login("bob", PASSWORD).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Other accounts are untouched.
    admin(&pool, "carol", Role::Admin).await;
    Client::new(app, "198.18.1.3").logged_in("carol").await;
}

/// Behind a TLS proxy every admin shares the proxy's address: the guard
/// counts the client the trusted proxy names, so the attacker's network is
/// blocked and an admin behind the same proxy is not.
#[sqlx::test(migrator = "MIGRATOR")]
async fn behind_a_trusted_proxy_the_client_is_blocked_not_the_proxy(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let app = app(
        &pool,
        &[("LATCHKEY_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")],
    );
    let mut attacker = Client::behind_proxy(app.clone(), "127.0.0.1", "203.0.113.7");
    for _ in 0..5 {
        assert_eq!(
            attacker.login("alice", "wrong password!").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        attacker.login("alice", PASSWORD).await.error_code(),
        "IP_BLOCKED"
    );
    let mut colleague = Client::behind_proxy(app.clone(), "127.0.0.1", "192.0.2.20");
    colleague.logged_in("alice").await;
    // A header from a peer that is no trusted proxy is not believed.
    let mut forger = Client::behind_proxy(app.clone(), "198.51.100.9", "192.0.2.20");
    for _ in 0..5 {
        forger.login("alice", "wrong password!").await;
    }
    let networks: Vec<String> =
        sqlx::query_scalar("SELECT network::text FROM blocked_ips ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(networks, ["203.0.113.7/32", "198.51.100.9/32"]);
    let audited: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT host(ip) FROM audit_log WHERE action = 'admin.login' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(audited, [Some("192.0.2.20".to_owned())]);
}

/// A host holds a whole IPv6 /64: its addresses count as one client.
#[sqlx::test(migrator = "MIGRATOR")]
async fn ipv6_clients_are_counted_and_blocked_by_their_64(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let app = app(&pool, &[]);
    for n in 1..=5 {
        let mut client = Client::new(app.clone(), &format!("2001:db8:1:2::{n}"));
        client.login("alice", "wrong password!").await;
    }
    let mut same_host = Client::new(app.clone(), "2001:db8:1:2:ffff::99");
    assert_eq!(
        same_host.login("alice", PASSWORD).await.error_code(),
        "IP_BLOCKED"
    );
    let mut neighbour = Client::new(app.clone(), "2001:db8:1:3::1");
    neighbour.logged_in("alice").await;
    let network: String = sqlx::query_scalar("SELECT network::text FROM blocked_ips")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(network, "2001:db8:1:2::/64");
}

/// Whoever has the password cannot try codes without end: the account's
/// code failures are capped and end the half-logged-in session, and the
/// password alone clears no counter.
#[sqlx::test(migrator = "MIGRATOR")]
async fn second_factor_guesses_are_capped_per_account(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let app = app(&pool, &[("LATCHKEY_PANEL_LOGIN_MAX_FAILURES", "50")]);
    let mut setup = Client::new(app.clone(), "198.18.9.9");
    setup.logged_in("alice").await;
    let totp = enrol_totp(&mut setup).await;
    let wrong = |totp: &totp_rs::Totp| {
        let right = totp.generate_current();
        format!(
            "{:06}",
            (right.to_string().parse::<u32>().unwrap() + 1) % 1_000_000
        )
    };

    let mut first = Client::new(app.clone(), "203.0.113.50");
    assert_eq!(
        first.login("alice", PASSWORD).await.location(),
        "/login/2fa"
    );
    let first_step = first.get("/login/2fa").await;
    for n in 1..=4 {
        let guess = if n % 2 == 0 {
            wrong(&totp)
        } else {
            format!("not-a-code-{n}")
        };
        let reply = first
            .post(
                "/login/2fa",
                &[("_csrf", &first_step.csrf()), ("code", &guess)],
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "guess {n}: {}",
            reply.body
        );
    }
    // A fresh password login does not reset the count.
    let mut thief = Client::new(app.clone(), "203.0.113.51");
    assert_eq!(
        thief.login("alice", PASSWORD).await.location(),
        "/login/2fa"
    );
    let step = thief.get("/login/2fa").await;
    let fifth = thief
        .post(
            "/login/2fa",
            &[("_csrf", &step.csrf()), ("code", &wrong(&totp))],
        )
        .await;
    assert_eq!(
        fifth.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        fifth.body
    );
    assert!(
        !thief.cookies.contains_key("lk_session"),
        "the session ended"
    );
    // Even the right code is no longer checked for this account now.
    let mut again = Client::new(app.clone(), "203.0.113.52");
    assert_eq!(
        again.login("alice", PASSWORD).await.location(),
        "/login/2fa"
    );
    let step = again.get("/login/2fa").await;
    let code = totp.generate_current().to_string();
    let refused = again
        .post("/login/2fa", &[("_csrf", &step.csrf()), ("code", &code)])
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    // The cap is the account's: the first half-logged-in session ends too.
    let code = totp.generate_current().to_string();
    let refused = first
        .post(
            "/login/2fa",
            &[("_csrf", &first_step.csrf()), ("code", &code)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM admin_sessions WHERE revoked_at IS NULL AND NOT mfa_passed",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(live, 0, "every half-logged-in session used since ended");
}

/// Behind TLS (an https public URL), cookies are Secure and `__Host-`.
#[sqlx::test(migrator = "MIGRATOR")]
async fn an_https_public_url_makes_cookies_secure_and_host_only(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let secure = app(
        &pool,
        &[("LATCHKEY_PUBLIC_URL", "https://licenses.example.com")],
    );
    let mut client = Client::new(secure, "192.0.2.60");
    let page = client.get("/login").await;
    let cookie = page.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("__Host-lk_login_csrf="), "{cookie}");
    assert!(cookie.contains("; Secure"), "{cookie}");
    let login = client
        .post(
            "/login",
            &[
                ("_csrf", &page.csrf()),
                ("username", "alice"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(login.location(), "/", "{}", login.body);
    assert!(client.cookies.contains_key("__Host-lk_session"));
    assert_eq!(client.get("/").await.status, StatusCode::OK);
    let plain = app(&pool, &[]);
    let page = Client::new(plain, "192.0.2.61").get("/login").await;
    let cookie = page.headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cookie.starts_with("lk_login_csrf=") && !cookie.contains("Secure"),
        "{cookie}"
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_malformed_form_gets_the_panels_400(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let mut client = Client::new(app(&pool, &[]), "192.0.2.80");
    let csrf = client.logged_in("alice").await;
    let reply = client.post("/blocked-ips", &[("_csrf", &csrf)]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_code(), "INVALID_REQUEST");
    assert!(reply.body.contains("network"), "{}", reply.body);
    let bad_network = client
        .post(
            "/blocked-ips",
            &[("_csrf", &csrf), ("network", "not-an-ip"), ("reason", "x")],
        )
        .await;
    assert_eq!(
        bad_network.status,
        StatusCode::BAD_REQUEST,
        "{}",
        bad_network.body
    );
    assert!(bad_network.body.contains("CIDR"), "{}", bad_network.body);
}

/// Mutating routes a viewer may use: their own sessions, 2FA and logout.
const VIEWER_MAY_POST: [&str; 3] = ["/settings/sessions/{id}/revoke", "/settings/2fa", "/logout"];

#[sqlx::test(migrator = "MIGRATOR")]
async fn every_state_changing_route_refuses_a_post_without_the_csrf_token(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let mut client = Client::new(app(&pool, &[]), "192.0.2.92");
    client.logged_in("alice").await;
    let posts: Vec<_> = panel::protected_routes()
        .into_iter()
        .filter(|route| route.method == Method::POST)
        .collect();
    assert!(posts.len() >= 15, "{posts:?}");
    for route in posts {
        let uri = concrete(route.path, "1");
        let missing = client.post(&uri, &[("name", "x")]).await;
        assert_eq!(missing.status, StatusCode::FORBIDDEN, "POST {uri}");
        assert_eq!(missing.error_code(), "CSRF_INVALID", "POST {uri}");
        let forged = client
            .send_with(
                Method::POST,
                &uri,
                Some(&[("name", "x")]),
                &[("x-csrf-token", "forged")],
            )
            .await;
        assert_eq!(forged.error_code(), "CSRF_INVALID", "POST {uri} forged");
    }
    // Still logged in: a refused token does not end the session.
    assert_eq!(client.get("/").await.status, StatusCode::OK);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_viewer_is_refused_every_mutating_route_with_403(pool: PgPool) {
    admin(&pool, "victor", Role::Viewer).await;
    let mut viewer = Client::new(app(&pool, &[]), "192.0.2.90");
    let csrf = viewer.logged_in("victor").await;
    let mutating: Vec<_> = panel::protected_routes()
        .into_iter()
        .filter(|route| route.method == Method::POST && !VIEWER_MAY_POST.contains(&route.path))
        .collect();
    for path in [
        "/edges",
        "/edges/config",
        "/edges/{id}/revoke",
        "/api-keys",
        "/api-keys/{id}/revoke",
    ] {
        assert!(mutating.iter().any(|route| route.path == path), "{path}");
    }
    for route in mutating {
        let uri = concrete(route.path, "1");
        let reply = viewer
            .post(&uri, &[("_csrf", &csrf), ("name", "x"), ("scopes", "*")])
            .await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "POST {uri}");
        assert_eq!(reply.error_code(), "FORBIDDEN", "POST {uri}");
    }
    // A viewer reads the edges and their configuration, but gets no controls.
    let edges = viewer.get("/edges").await;
    assert_eq!(edges.status, StatusCode::OK);
    assert!(
        edges.body.contains("rate_limit_per_key_per_min"),
        "{}",
        edges.body
    );
    assert!(edges.body.contains("readonly"));
    assert!(!edges.body.contains("id=\"save-config\""));
    assert!(!edges.body.contains("id=\"edge-form\""));
    let keys = viewer.get("/api-keys").await;
    assert_eq!(keys.status, StatusCode::OK);
    assert!(!keys.body.contains("id=\"key-form\""));
    let settings_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM settings")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(settings_rows, 0);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn edges_are_enrolled_and_revoked_and_their_config_is_validated_audited_and_published(
    pool: PgPool,
) {
    use latchkey_control::db::{edges, publish, settings};

    admin(&pool, "alice", Role::Admin).await;
    let mut client = Client::new(app(&pool, &[]), "192.0.2.91");
    let csrf = client.logged_in("alice").await;

    let created = client
        .post("/edges", &[("_csrf", &csrf), ("name", "eu-west")])
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);
    let token = between(&created.body, "id=\"enrol-token-value\">", "<");
    assert!(token.starts_with("lke_"), "{token}");
    // Shown once: the list page never carries it again.
    let listed = client.get("/edges").await;
    assert!(listed.body.contains("eu-west"));
    assert!(listed.body.contains("not enrolled"));
    assert!(!listed.body.contains(&token));
    let nameless = client
        .post("/edges", &[("_csrf", &csrf), ("name", " ")])
        .await;
    assert_eq!(nameless.status, StatusCode::BAD_REQUEST);
    assert!(
        nameless.body.contains("id=\"name-error\">name:"),
        "{}",
        nameless.body
    );

    // Enrolled and one snapshot behind the newest: connected, lag 1.
    let edge = edges::admit(&pool, &[7; 32], Some(&token), "1.4.2")
        .await
        .unwrap()
        .unwrap();
    let signer = latchkey_shared::SigningKeyPair::generate();
    let now = time::OffsetDateTime::now_utc();
    let first = publish::publish_full(&pool, &signer, now, 3600)
        .await
        .unwrap();
    publish::publish_full(&pool, &signer, now, 3600)
        .await
        .unwrap();
    edges::applied(&pool, edge.id, first.sequence)
        .await
        .unwrap();
    let listed = client.get("/edges").await;
    let row = between(&listed.body, "class=\"edge-row\"", "</tr>");
    assert!(row.contains("1.4.2"), "{row}");
    assert!(row.contains("<td class=\"connected\">yes</td>"), "{row}");
    assert!(row.contains("<td class=\"lag\">1</td>"), "{row}");
    assert!(row.contains("never certified"), "{row}");
    let until = now.unix_timestamp() + 3600;
    edges::certified(&pool, edge.id, until).await.unwrap();
    let listed = client.get("/edges").await;
    let row = between(&listed.body, "class=\"edge-row\"", "</tr>");
    assert!(row.contains("<td class=\"answers\">until "), "{row}");
    edges::certified(&pool, edge.id, now.unix_timestamp() - 60)
        .await
        .unwrap();
    let listed = client.get("/edges").await;
    let row = between(&listed.body, "class=\"edge-row\"", "</tr>");
    assert!(row.contains("<td class=\"answers\">expired "), "{row}");

    let id = edges::list(&pool).await.unwrap()[0].id;
    let revoked = client
        .post(&format!("/edges/{id}/revoke"), &[("_csrf", &csrf)])
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    assert!(edges::list(&pool).await.unwrap()[0].revoked_at.is_some());

    // Bad values are named next to their inputs, and nothing is stored.
    let config = |per_key: &'static str, heartbeat: &'static str| {
        vec![
            ("rate_limit_per_key_per_min", per_key),
            ("rate_limit_per_ip_per_min", "100"),
            ("heartbeat_interval_secs", heartbeat),
            ("grace_period_secs", "604800"),
            ("max_snapshot_age_secs", "86400"),
        ]
    };
    let mut bad = vec![("_csrf", csrf.as_str())];
    bad.extend(config("lots", "5"));
    let refused = client.post("/edges/config", &bad).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.error_code(), "INVALID_REQUEST");
    assert!(
        refused.body.contains(
            "id=\"rate_limit_per_key_per_min-error\">rate_limit_per_key_per_min: a whole number from 1 to 1000000"
        ),
        "{}",
        refused.body
    );
    assert!(refused.body.contains(
        "id=\"heartbeat_interval_secs-error\">heartbeat_interval_secs: a whole number from 10 to 86400"
    ));
    assert!(
        refused.body.contains("value=\"lots\""),
        "what was typed stays"
    );
    assert!(!refused.body.contains("rate_limit_per_ip_per_min-error"));
    assert_eq!(
        settings::edge_config(&pool).await.unwrap(),
        Default::default()
    );

    // Like every form: without the session's CSRF token, refused.
    let forged = client.post("/edges/config", &config("5", "60")).await;
    assert_eq!(forged.error_code(), "CSRF_INVALID");
    let forged = client
        .post("/api-keys", &[("name", "x"), ("scopes", "*")])
        .await;
    assert_eq!(forged.error_code(), "CSRF_INVALID");

    let mut good = vec![("_csrf", csrf.as_str())];
    good.extend(config("5", "60"));
    let saved = client.post("/edges/config", &good).await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let stored = settings::edge_config(&pool).await.unwrap();
    assert_eq!(
        (
            stored.rate_limit_per_key_per_min,
            stored.heartbeat_interval_secs
        ),
        (5, 60)
    );
    assert!(client.get("/edges").await.body.contains("value=\"5\""));
    let (actions, pending): (Vec<String>, i64) = (
        sqlx::query_scalar("SELECT action FROM audit_log WHERE entity_kind IN ('edge', 'config') ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap(),
        sqlx::query_scalar(
            "SELECT count(*) FROM snapshot_outbox WHERE entity_kind = 'config' AND published_in IS NULL",
        )
        .fetch_one(&pool)
        .await
        .unwrap(),
    );
    assert_eq!(
        actions,
        ["edge.create", "edge.revoke", "edge_config.update"]
    );
    assert_eq!(pending, 1, "the next delta carries the config");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn api_keys_are_made_with_scopes_shown_once_used_and_revoked(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let mut client = Client::new(app(&pool, &[]), "192.0.2.92");
    let csrf = client.logged_in("alice").await;

    let no_scope = client
        .post("/api-keys", &[("_csrf", &csrf), ("name", "sync")])
        .await;
    assert_eq!(no_scope.status, StatusCode::BAD_REQUEST);
    assert!(
        no_scope.body.contains("id=\"key-error\">scopes:"),
        "{}",
        no_scope.body
    );
    let unknown = client
        .post(
            "/api-keys",
            &[("_csrf", &csrf), ("name", "sync"), ("scopes", "users:read")],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert!(
        unknown.body.contains("scopes: unknown scope"),
        "{}",
        unknown.body
    );
    let nameless = client
        .post(
            "/api-keys",
            &[("_csrf", &csrf), ("name", ""), ("scopes", "*")],
        )
        .await;
    assert!(
        nameless.body.contains("id=\"key-error\">name:"),
        "{}",
        nameless.body
    );

    let made = client
        .post(
            "/api-keys",
            &[
                ("_csrf", &csrf),
                ("name", "billing sync"),
                ("scopes", "customers:read"),
                ("scopes", "licenses:write"),
                ("expires_days", "30"),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    let secret = between(&made.body, "id=\"new-key-secret\">", "<");
    assert!(secret.starts_with("lk_"), "{secret}");
    let listed = client.get("/api-keys").await;
    assert!(
        listed.body.contains("customers:read licenses:write"),
        "{}",
        listed.body
    );
    assert!(!listed.body.contains(&secret), "shown once");
    assert!(between(&listed.body, "class=\"last-used\">", "<").contains("never"));

    let bearer = format!("Bearer {secret}");
    let used = client
        .send_with(
            Method::GET,
            "/admin/api/v1/customers",
            None,
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(used.status, StatusCode::OK, "{}", used.body);
    let outside = client
        .send_with(
            Method::GET,
            "/admin/api/v1/audit",
            None,
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(outside.status, StatusCode::FORBIDDEN, "{}", outside.body);
    let listed = client.get("/api-keys").await;
    assert!(between(&listed.body, "class=\"last-used\">", "<").contains("UTC"));

    let id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM api_keys")
        .fetch_one(&pool)
        .await
        .unwrap();
    let revoked = client
        .post(&format!("/api-keys/{id}/revoke"), &[("_csrf", &csrf)])
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    let after = client
        .send_with(
            Method::GET,
            "/admin/api/v1/customers",
            None,
            &[("authorization", &bearer)],
        )
        .await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED);
    let actions: Vec<String> = sqlx::query_scalar(
        "SELECT action FROM audit_log WHERE entity_kind = 'api_key' ORDER BY id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(actions, ["api_key.create", "api_key.revoke"]);
}
