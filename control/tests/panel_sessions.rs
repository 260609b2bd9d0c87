//! The panel's live session monitor over HTTP: the list and its filters,
//! the overdue mark (the reaper's rule), terminating a selection (each
//! session audited, each end in the outbox for the edges), a viewer refused,
//! and the event stream sending a new session's row.

#[allow(dead_code)]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use latchkey_control::app::{self, AppState};
use latchkey_control::context::RequestContext;
use latchkey_control::db::MIGRATOR;
use latchkey_control::db::admins::Role;
use latchkey_control::db::devices::{self, LeaseIssuer, SeatRequest};
use latchkey_control::db::sessions::{self, SessionSettings, StartRequest};
use latchkey_control::panel;
use latchkey_shared::SigningKeyPair;
use latchkey_shared::fingerprint::{CanonicalFingerprint, Fingerprint};
use serde_json::json;
use sqlx::PgPool;
use support::api::{Api, V1};
use support::config;
use support::panel::{Client, admin};
use time::OffsetDateTime;
use tower::ServiceExt;
use uuid::Uuid;

/// The default configuration's, which the reaper uses too.
const HEARTBEAT_INTERVAL_SECS: u32 = 900;

fn app(pool: &PgPool) -> axum::Router {
    app::router(AppState::new(pool.clone(), &config(&[])).unwrap())
}

/// Machine `n` as the edge tests report it, canonical.
fn machine(n: u32) -> CanonicalFingerprint {
    serde_json::from_value::<Fingerprint>(support::stack::machine(n))
        .unwrap()
        .canonicalize()
        .unwrap()
}

fn signer() -> SigningKeyPair {
    SigningKeyPair::from_seed([5; 32])
}

/// A license of `product` for `customer` (none: no customer); its key.
async fn license(api: &Api, product: i64, customer: Option<&str>) -> String {
    let created = api
        .post(
            &format!("{V1}/licenses"),
            json!({ "product_id": product, "customer_id": customer, "device_limit": 5 }),
        )
        .await;
    created.ok(StatusCode::CREATED)["items"][0]["license_key"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn customer(api: &Api, name: &str) -> String {
    let created = api
        .post(&format!("{V1}/customers"), json!({ "name": name }))
        .await;
    created.ok(StatusCode::CREATED)["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn product(api: &Api, slug: &str, name: &str) -> i64 {
    let created = api
        .post(
            &format!("{V1}/products"),
            json!({ "slug": slug, "name": name }),
        )
        .await;
    created.ok(StatusCode::CREATED)["id"].as_i64().unwrap()
}

/// Activates machine `n` on the license and starts a session there.
async fn session(pool: &PgPool, key: &str, n: u32) -> Uuid {
    let ctx = RequestContext::system("test");
    let issuer = LeaseIssuer { signer: signer() };
    let seat = SeatRequest {
        key: key.parse().unwrap(),
        fingerprint: machine(n),
        device_name: Some(format!("machine {n}")),
        app_version: Some("1.0.0".into()),
        ip: None,
        idempotency_key: None,
    };
    devices::activate(pool, &ctx, &issuer, &seat).await.unwrap();
    let settings = SessionSettings {
        signer: signer(),
        token_ttl_secs: 3600,
    };
    let start = StartRequest {
        key: key.parse().unwrap(),
        fingerprint: machine(n),
        app_version: Some(format!("2.{n}.0")),
        take_over: false,
        ip: None,
        edge_id: None,
    };
    sessions::start(pool, &ctx, &settings, &start)
        .await
        .unwrap()
        .session_id
}

/// The session's last heartbeat `secs` ago.
async fn last_heartbeat(pool: &PgPool, id: Uuid, secs: i64) {
    sqlx::query(
        "UPDATE sessions SET last_heartbeat_at = now() - make_interval(secs => $2) WHERE id = $1",
    )
    .bind(id)
    .bind(secs as f64)
    .execute(pool)
    .await
    .unwrap();
}

/// The rendered row of session `id`, if the page has it.
fn row_of(body: &str, id: Uuid) -> Option<&str> {
    let at = body.find(&format!("id=\"session-{id}\""))?;
    let start = body[..at].rfind("<tr")?;
    let end = body[start..].find("</tr>")? + start;
    Some(&body[start..end])
}

fn rows(body: &str) -> usize {
    body.matches("class=\"session-row").count()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_list_filters_by_product_and_customer_and_marks_overdue_sessions(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let api = Api::new(pool.clone()).await;
    let studio = product(&api, "studio", "Studio").await;
    let darkroom = product(&api, "darkroom", "Darkroom").await;
    let ada = customer(&api, "Ada Lovelace").await;
    let bob = customer(&api, "Bob Babbage").await;
    let mut client = Client::new(app(&pool), "192.0.2.10");
    client.logged_in("alice").await;

    let empty = client.get("/sessions").await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
    assert!(empty.body.contains("No active sessions."), "{}", empty.body);
    assert_eq!(rows(&empty.body), 0);

    let ada_studio = session(&pool, &license(&api, studio, Some(&ada)).await, 1).await;
    let bob_darkroom = session(&pool, &license(&api, darkroom, Some(&bob)).await, 2).await;
    let nobody_studio = session(&pool, &license(&api, studio, None).await, 3).await;

    let all = client.get("/sessions").await;
    assert_eq!(rows(&all.body), 3, "{}", all.body);
    assert!(all.body.contains("3 active session(s)"), "{}", all.body);
    let row = row_of(&all.body, ada_studio).unwrap();
    for shown in ["Ada Lovelace", "Studio", "machine 1", "2.1.0", "/licenses/"] {
        assert!(row.contains(shown), "{shown} in {row}");
    }
    assert!(!all.body.contains("overdue"), "none is overdue yet");

    let by_product = client.get(&format!("/sessions?product={studio}")).await;
    assert_eq!(rows(&by_product.body), 2, "{}", by_product.body);
    assert!(row_of(&by_product.body, bob_darkroom).is_none());
    assert!(
        by_product.body.contains(&format!(
            "<option value=\"{studio}\" selected>Studio</option>"
        )),
        "the filter shows what it selected"
    );
    let by_customer = client.get(&format!("/sessions?customer={bob}")).await;
    assert_eq!(rows(&by_customer.body), 1);
    assert!(row_of(&by_customer.body, bob_darkroom).is_some());
    let both = client
        .get(&format!("/sessions?product={studio}&customer={bob}"))
        .await;
    assert_eq!(rows(&both.body), 0);
    assert!(
        both.body
            .contains("No active sessions for this product or customer."),
        "{}",
        both.body
    );
    let bad = client.get("/sessions?product=studio").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.error_code(), "INVALID_REQUEST");

    // Past the reaper's deadline (twice the interval) by a minute, and a
    // minute short of it.
    let deadline = 2 * i64::from(HEARTBEAT_INTERVAL_SECS);
    last_heartbeat(&pool, bob_darkroom, deadline + 60).await;
    last_heartbeat(&pool, nobody_studio, deadline - 60).await;
    let marked = client.get("/sessions").await;
    let late = row_of(&marked.body, bob_darkroom).unwrap();
    assert!(late.contains("class=\"session-row overdue\""), "{late}");
    assert!(late.contains("overdue 1 min"), "{late}");
    assert!(
        !row_of(&marked.body, nobody_studio)
            .unwrap()
            .contains("overdue")
    );
    assert!(marked.body.contains("1 overdue"), "{}", marked.body);
    // The reaper ends exactly the session marked.
    let reaped = sessions::reap(&pool, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(reaped, 1);
    let after = client.get("/sessions").await;
    assert!(row_of(&after.body, bob_darkroom).is_none());
    assert_eq!(rows(&after.body), 2);

    // Bounded: the newest 200 are listed, the rest counted.
    sqlx::query(
        "INSERT INTO sessions (license_id, token_expires_at)
         SELECT license_id, now() + interval '1 hour' FROM sessions, generate_series(1, 199)
          WHERE id = $1",
    )
    .bind(ada_studio)
    .execute(&pool)
    .await
    .unwrap();
    let many = client.get("/sessions").await;
    assert_eq!(rows(&many.body), panel::sessions::SHOWN as usize);
    assert!(many.body.contains("201 active session(s)"), "{}", many.body);
    assert!(
        many.body
            .contains("<span id=\"sessions-more\">1 more</span>"),
        "{}",
        many.body
    );
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_selection_is_terminated_each_session_audited_and_a_viewer_is_refused(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    admin(&pool, "victor", Role::Viewer).await;
    let api = Api::new(pool.clone()).await;
    let studio = product(&api, "studio", "Studio").await;
    let key = license(&api, studio, None).await;
    let ids = [
        session(&pool, &key, 1).await,
        session(&pool, &key, 2).await,
        session(&pool, &key, 3).await,
    ];
    let selection = format!("session={}&session={}", ids[0], ids[1]);

    let mut viewer = Client::new(app(&pool), "192.0.2.20");
    let csrf = viewer.logged_in("victor").await;
    let seen = viewer.get("/sessions").await;
    assert_eq!(rows(&seen.body), 3);
    assert!(!seen.body.contains("name=\"session\""), "no selection");
    assert!(!seen.body.contains("id=\"terminate-selected\""));
    assert!(!seen.body.contains("Terminate…"));
    let asked = viewer
        .get(&format!("/sessions/terminate?{selection}"))
        .await;
    assert_eq!(
        (asked.status, asked.error_code()),
        (StatusCode::FORBIDDEN, "FORBIDDEN")
    );
    let refused = viewer
        .post(
            "/sessions/terminate",
            &[("_csrf", &csrf), ("session", &ids[0].to_string())],
        )
        .await;
    assert_eq!(
        (refused.status, refused.error_code()),
        (StatusCode::FORBIDDEN, "FORBIDDEN")
    );

    let mut alice = Client::new(app(&pool), "192.0.2.21");
    alice.logged_in("alice").await;
    let page = alice.get(&format!("/sessions/terminate?{selection}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("Terminate 2 session(s)"),
        "{}",
        page.body
    );
    let open: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions WHERE ended_at IS NULL")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(open, 3, "asking ends nothing, and the viewer ended nothing");

    let csrf = page.csrf();
    let form = [
        ("_csrf", csrf.as_str()),
        ("session", &ids[0].to_string()),
        ("session", &ids[1].to_string()),
    ];
    let done = alice.post("/sessions/terminate", &form).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), "/sessions?terminated=2");
    let list = alice.get(done.location()).await;
    assert!(
        list.body.contains("Terminated 2 session(s)"),
        "{}",
        list.body
    );
    assert_eq!(rows(&list.body), 1);
    assert!(row_of(&list.body, ids[2]).is_some());

    let audited: Vec<(String, String)> = sqlx::query_as(
        "SELECT entity_id, actor_name FROM audit_log
          WHERE action = 'session.terminate' ORDER BY entity_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let mut expected: Vec<String> = ids[..2].iter().map(Uuid::to_string).collect();
    expected.sort();
    assert_eq!(
        audited.iter().map(|a| a.0.clone()).collect::<Vec<_>>(),
        expected,
        "one audit row per session"
    );
    assert!(audited.iter().all(|a| a.1 == "alice"));
    // Each end is in the outbox, so the next delta carries it to every edge.
    let published: Vec<String> = sqlx::query_scalar(
        "SELECT entity_id FROM snapshot_outbox WHERE entity_kind = 'session' ORDER BY entity_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(published, expected);
    let revoked = sessions::revoked_for_snapshot(&pool, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(revoked.len(), 2);

    // Again: nothing left to end, and the list says so.
    let again = alice.post("/sessions/terminate", &form).await;
    assert_eq!(again.location(), "/sessions?terminated=0&already_ended=2");
    let none = alice
        .post("/sessions/terminate", &[("_csrf", csrf.as_str())])
        .await;
    assert_eq!(
        (none.status, none.error_code()),
        (StatusCode::BAD_REQUEST, "INVALID_REQUEST")
    );
    assert!(none.body.contains("select at least one session"));
}

/// Opens the event stream as the client's session; answers the response.
async fn stream(app: &axum::Router, client: &Client, uri: &str) -> axum::response::Response {
    let cookie = client
        .cookies
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    let request = Request::get(uri)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    app.clone()
        .layer(MockConnectInfo(SocketAddr::from(([192, 0, 2, 30], 40000))))
        .oneshot(request)
        .await
        .unwrap()
}

/// The data of the next `sessions` event, waiting at most `secs`.
async fn next_event(body: &mut Body, secs: u64) -> String {
    let read = async {
        loop {
            let frame = body.frame().await.expect("the stream goes on").unwrap();
            if let Some(bytes) = frame.data_ref() {
                let text = String::from_utf8_lossy(bytes).into_owned();
                if text.contains("event: sessions") {
                    return text;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(secs), read)
        .await
        .expect("a sessions event in time")
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_event_stream_sends_a_new_sessions_row_within_its_filter(pool: PgPool) {
    admin(&pool, "alice", Role::Admin).await;
    let api = Api::new(pool.clone()).await;
    let studio = product(&api, "studio", "Studio").await;
    let darkroom = product(&api, "darkroom", "Darkroom").await;
    let key = license(&api, studio, None).await;
    let app = app(&pool);
    let mut client = Client::new(app.clone(), "192.0.2.30");
    client.logged_in("alice").await;

    let response = stream(&app, &client, "/events/sessions").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "text/event-stream"
    );
    let mut body = response.into_body();
    let first = next_event(&mut body, 5).await;
    assert!(first.contains("No active sessions"), "{first}");

    let id = session(&pool, &key, 1).await;
    let next = next_event(&mut body, 5).await;
    assert!(next.contains(&format!("id=\"session-{id}\"")), "{next}");
    assert!(next.contains("1 active session(s)"), "{next}");

    // Another product's stream leaves it out.
    let other = stream(
        &app,
        &client,
        &format!("/events/sessions?product={darkroom}"),
    )
    .await;
    let mut other = other.into_body();
    let filtered = next_event(&mut other, 5).await;
    assert!(!filtered.contains(&id.to_string()), "{filtered}");
    assert!(
        filtered.contains("No active sessions for this"),
        "{filtered}"
    );

    // Without a session: to the login page, no stream.
    let mut stranger = Client::new(app.clone(), "192.0.2.31");
    let refused = stranger.get("/events/sessions").await;
    assert_eq!(refused.status, StatusCode::SEE_OTHER);
}
