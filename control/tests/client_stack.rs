//! `latchkey-client` against the real stack: control's link and publisher
//! on PostgreSQL, two real edges linked to it over QUIC, the client over
//! HTTP on loopback. Failover with an edge stopped mid-session, a session
//! through a control outage, the offline lease with no edge at all (ended
//! by a clock moved back), a tampered lease file, and the edges' signed
//! answers.

#[allow(dead_code)]
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use latchkey_client::shared::Fingerprint;
use latchkey_client::shared::api::{ActivationOutcome, ErrorCode};
use latchkey_client::{
    Client, ClientError, Clock, LeaseError, LostReason, RetryPolicy, Session, SessionEvent,
    SessionOptions, SystemClock, Verification,
};
use latchkey_control::context::RequestContext;
use latchkey_control::db::{MIGRATOR, licenses};
use latchkey_edge::RunningEdge;
use latchkey_shared::LicenseKey;
use latchkey_shared::answer;
use latchkey_shared::snapshot::LicenseStatus;
use sqlx::PgPool;
use support::stack::*;

/// Heartbeats this often in the tests; the deadline stays the edge's
/// (twice the default 15-minute interval).
const CADENCE: Duration = Duration::from_millis(200);

/// A clock the test sets.
#[derive(Debug)]
struct ManualClock(AtomicI64);

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn url(edge: &RunningEdge) -> String {
    format!("http://{}", edge.addr)
}

/// Whether the client's `answered` URL is `edge`'s.
fn is(answered: &latchkey_client::Url, edge: &RunningEdge) -> bool {
    answered.host_str() == Some("127.0.0.1") && answered.port() == Some(edge.addr.port())
}

fn raw_machine(n: u32) -> Fingerprint {
    serde_json::from_value(machine(n)).unwrap()
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        budget: Duration::from_secs(15),
        offline_after: Duration::from_millis(500),
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(500),
        ..RetryPolicy::default()
    }
}

fn client(stack: &Stack, edges: &[String], n: u32, lease: &Path) -> Client {
    Client::builder()
        .edges(edges)
        .public_key_pem(&stack.signer.public_key_pem())
        .product("studio")
        .fingerprint(raw_machine(n))
        .lease_file(lease)
        .retry(policy())
        .build()
        .unwrap()
}

/// Two edges serving the license.
async fn two_edges(stack: &Stack, key: &str) -> [RunningEdge; 2] {
    let edges = [
        stack.edge("edge-a", true).await,
        stack.edge("edge-b", true).await,
    ];
    wait_for(Duration::from_secs(10), || {
        edges.iter().all(|e| status_on(e, key).is_some())
    })
    .await
    .expect("both edges serve the license");
    edges
}

/// Verifies until an edge's snapshot has caught up with `expected`.
async fn verify_until(client: &Client, key: &str, expected: impl Fn(&Verification) -> bool) {
    let started = Instant::now();
    loop {
        let answer = client.verify(key).await.unwrap();
        if expected(&answer) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{answer:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn lease_path(stack: &Stack, name: &str) -> PathBuf {
    stack.dir.join(format!("{name}.lease"))
}

/// The next event within `limit`.
async fn next_event(session: &mut Session, limit: Duration) -> Option<SessionEvent> {
    tokio::time::timeout(limit, session.events().recv())
        .await
        .ok()
        .flatten()
}

async fn open_sessions(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sessions WHERE ended_at IS NULL")
        .fetch_one(pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_machine_activates_verifies_transfers_and_deactivates_through_the_edges(pool: PgPool) {
    let stack = Stack::start(pool.clone()).await;
    let (license_id, key) = one_license(&pool, 1).await;
    let edges = two_edges(&stack, &key).await;
    let urls = [url(&edges[0]), url(&edges[1])];
    let (first_lease, second_lease) = (lease_path(&stack, "one"), lease_path(&stack, "two"));
    let first = client(&stack, &urls, 1, &first_lease);
    let second = client(&stack, &urls, 2, &second_lease);

    let activated = first.activate(&key).await.unwrap();
    assert_eq!(activated.outcome, ActivationOutcome::Activated);
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&first_lease)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the lease file is private");
    }
    assert_eq!(first.offline_lease(&key).unwrap().license_id, license_id);
    // Again: the same seat, confirmed.
    let again = first.activate(&key).await.unwrap();
    assert_eq!(
        (again.outcome, again.device_id),
        (ActivationOutcome::AlreadyActive, activated.device_id)
    );
    verify_until(
        &first,
        &key,
        |v| matches!(v, Verification::Online(a) if a.valid),
    )
    .await;

    // The only seat is taken: a definite refusal, not a retry.
    let refused = second.activate(&key).await.unwrap_err();
    assert_eq!(
        refused.code(),
        Some(ErrorCode::DeviceLimitReached),
        "{refused}"
    );
    let moved = second.transfer(&key, activated.device_id).await.unwrap();
    assert_eq!(moved.outcome, ActivationOutcome::Transferred);
    assert!(second.offline_lease(&key).is_ok());
    // The first machine learns it online.
    verify_until(&first, &key, |v| {
        v.code() == Some(ErrorCode::FingerprintMismatch)
    })
    .await;
    // A suspension answered online forgets the lease: going offline then
    // does not bring the license back.
    let suspend = |status| {
        let pool = pool.clone();
        async move {
            let ctx = RequestContext::system("test");
            licenses::set_status(&pool, &ctx, license_id, status).await
        }
    };
    suspend(LicenseStatus::Suspended).await.unwrap();
    verify_until(&second, &key, |v| {
        v.code() == Some(ErrorCode::LicenseSuspended)
    })
    .await;
    assert!(
        !second_lease.exists(),
        "the lease of a suspended license is gone"
    );
    suspend(LicenseStatus::Active).await.unwrap();

    second.deactivate(&key).await.unwrap();
    assert!(!second_lease.exists());
    let seats: i64 = sqlx::query_scalar("SELECT count(*) FROM devices WHERE status = 'active'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(seats, 0);
    for edge in edges {
        edge.stop().await;
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn the_session_fails_over_when_its_edge_stops(pool: PgPool) {
    let stack = Stack::start(pool.clone()).await;
    let (_, key) = one_license(&pool, 1).await;
    let [a, b] = two_edges(&stack, &key).await;
    let client = client(&stack, &[url(&a), url(&b)], 1, &lease_path(&stack, "one"));
    client.activate(&key).await.unwrap();
    let options = SessionOptions {
        max_heartbeat_interval: Some(CADENCE),
        ..SessionOptions::default()
    };
    let mut session = client.start_session(&key, options).await.unwrap();
    let Some(SessionEvent::Heartbeat { edge: first, .. }) =
        next_event(&mut session, Duration::from_secs(5)).await
    else {
        panic!("no first heartbeat");
    };
    // Stop the edge that answered; the other one must carry the session.
    let (stopped, other) = if is(&first, &a) { (a, b) } else { (b, a) };
    stopped.stop().await;
    let mut on_other = 0;
    let started = Instant::now();
    while on_other < 5 {
        match next_event(&mut session, Duration::from_secs(5)).await {
            Some(SessionEvent::Heartbeat { edge, .. }) => {
                if is(&edge, &other) {
                    on_other += 1;
                }
            }
            Some(SessionEvent::Interrupted { .. } | SessionEvent::Resumed { .. }) => {}
            event => panic!("{event:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(10));
    }
    assert_eq!(session.lost(), None);
    assert!(client.verify(&key).await.unwrap().is_valid());
    assert_eq!(open_sessions(&pool).await, 1);
    session.end().await;
    assert_eq!(open_sessions(&pool).await, 0, "ended at control");
    other.stop().await;
}

/// The outage lasts 2 s (not 30): long enough for several heartbeats and
/// a forwarded call's retries, short enough for the suite.
#[sqlx::test(migrator = "MIGRATOR")]
async fn the_session_survives_a_control_outage(pool: PgPool) {
    let mut stack = Stack::start(pool.clone()).await;
    let (_, key) = one_license(&pool, 1).await;
    let edges = two_edges(&stack, &key).await;
    let lease = lease_path(&stack, "one");
    let client = client(&stack, &[url(&edges[0]), url(&edges[1])], 1, &lease);
    let first_lease = client.activate(&key).await.unwrap().lease;
    let options = SessionOptions {
        max_heartbeat_interval: Some(CADENCE),
        ..SessionOptions::default()
    };
    let mut session = client.start_session(&key, options).await.unwrap();

    stack.link.take().unwrap().stop();
    // A forwarded call during the outage: answered 503, retried.
    let refreshing = tokio::spawn({
        let (client, key) = (client.clone(), key.clone());
        async move { client.refresh_lease(&key).await }
    });
    let outage = Instant::now();
    let mut beats = 0;
    while outage.elapsed() < Duration::from_secs(2) {
        match next_event(&mut session, Duration::from_secs(2)).await {
            Some(SessionEvent::Heartbeat { .. }) => beats += 1,
            event => panic!("during the outage: {event:?}"),
        }
    }
    assert!(beats >= 5, "heartbeats at the edges went on: {beats}");
    assert!(!refreshing.is_finished(), "still retrying");
    stack.restart_link();
    let refreshed = refreshing.await.unwrap().unwrap();
    assert_ne!(refreshed.lease, first_lease);
    assert_eq!(
        client.offline_lease(&key).unwrap().valid_until,
        refreshed.valid_until
    );
    assert!(matches!(
        next_event(&mut session, Duration::from_secs(2)).await,
        Some(SessionEvent::Heartbeat { .. })
    ));
    assert_eq!(session.lost(), None);
    session.end().await;
    for edge in edges {
        edge.stop().await;
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_taken_over_session_is_reported_lost(pool: PgPool) {
    let stack = Stack::start(pool.clone()).await;
    let (license_id, key) = one_license(&pool, 2).await;
    sqlx::query(
        "UPDATE licenses SET session_limit = 1, allow_session_takeover = true WHERE id = $1",
    )
    .bind(license_id)
    .execute(&pool)
    .await
    .unwrap();
    let edges = two_edges(&stack, &key).await;
    let urls = [url(&edges[0]), url(&edges[1])];
    let first = client(&stack, &urls, 1, &lease_path(&stack, "one"));
    let second = client(&stack, &urls, 2, &lease_path(&stack, "two"));
    first.activate(&key).await.unwrap();
    second.activate(&key).await.unwrap();
    let options = SessionOptions {
        max_heartbeat_interval: Some(CADENCE),
        ..SessionOptions::default()
    };
    let mut running = first.start_session(&key, options.clone()).await.unwrap();
    let refused = second
        .start_session(&key, options.clone())
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(ErrorCode::SessionActiveElsewhere),
        "{refused}"
    );
    let taking = SessionOptions {
        take_over: true,
        ..options
    };
    let taken = second.start_session(&key, taking).await.unwrap();
    let lost = tokio::time::timeout(Duration::from_secs(5), running.wait_lost())
        .await
        .expect("the first session learns it lost the license's only session");
    assert_eq!(lost, LostReason::Ended);
    assert_eq!(taken.lost(), None);
    taken.end().await;
    for edge in edges {
        edge.stop().await;
    }
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn offline_grace_without_any_edge_ends_when_the_clock_moves_back(pool: PgPool) {
    let stack = Stack::start(pool.clone()).await;
    let (_, key) = one_license(&pool, 1).await;
    let edges = two_edges(&stack, &key).await;
    let lease = lease_path(&stack, "one");
    let online = client(&stack, &[url(&edges[0]), url(&edges[1])], 1, &lease);
    online.activate(&key).await.unwrap();
    for edge in edges {
        edge.stop().await;
    }

    let now = SystemClock.now();
    let clock = Arc::new(ManualClock(AtomicI64::new(now)));
    let offline = Client::builder()
        .public_key_pem(&stack.signer.public_key_pem())
        .product("studio")
        .fingerprint(raw_machine(1))
        .lease_file(&lease)
        .clock(clock.clone())
        .retry(policy())
        .build()
        .unwrap();
    let day = 86_400;
    for at in [now, now + 3 * day, now + 6 * day] {
        clock.0.store(at, Ordering::SeqCst);
        let answer = offline.verify_feature(&key, "sync").await.unwrap();
        assert!(
            matches!(&answer, Verification::Offline { .. }) && answer.is_valid(),
            "{answer:?}"
        );
    }
    // A feature the lease does not list is not granted offline.
    let missing = offline.verify_feature(&key, "render").await.unwrap_err();
    assert!(
        matches!(
            missing,
            ClientError::Offline {
                lease: LeaseError::FeatureMissing(_),
                ..
            }
        ),
        "{missing}"
    );
    // Back two days: the grace ends, and stays ended when set right again.
    clock.0.store(now + 4 * day, Ordering::SeqCst);
    let back = offline.verify(&key).await.unwrap_err();
    assert!(
        matches!(
            back,
            ClientError::Offline {
                lease: LeaseError::ClockMovedBack { .. },
                ..
            }
        ),
        "{back}"
    );
    clock.0.store(now + 6 * day, Ordering::SeqCst);
    let after = offline.verify(&key).await.unwrap_err();
    assert!(
        matches!(
            after,
            ClientError::Offline {
                lease: LeaseError::GraceEnded { .. },
                ..
            }
        ),
        "{after}"
    );
    // A machine that never activated has no lease to run on.
    let fresh = client(&stack, &[], 1, &stack.dir.join("unused.lease"));
    assert!(matches!(
        fresh.verify(&key).await.unwrap_err(),
        ClientError::Offline {
            lease: LeaseError::Missing,
            ..
        }
    ));
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_tampered_lease_file_is_refused(pool: PgPool) {
    let stack = Stack::start(pool.clone()).await;
    let (_, key) = one_license(&pool, 1).await;
    let edges = two_edges(&stack, &key).await;
    let lease = lease_path(&stack, "one");
    let client = client(&stack, &[url(&edges[0]), url(&edges[1])], 1, &lease);
    client.activate(&key).await.unwrap();
    for edge in edges {
        edge.stop().await;
    }
    assert!(
        client.verify(&key).await.unwrap().is_valid(),
        "offline on the real lease"
    );

    // The features in the payload rewritten, the signature kept.
    let text = std::fs::read_to_string(&lease).unwrap();
    let mut cached: serde_json::Value = serde_json::from_str(&text).unwrap();
    let token = cached["lease"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = token.split('.').collect();
    let payload = decode(parts[3]).replace("\"sync\"", "\"everything\"");
    assert_ne!(payload, decode(parts[3]));
    let forged = [parts[0], parts[1], parts[2], &encode(&payload), parts[4]].join(".");
    cached["lease"] = forged.into();
    std::fs::write(&lease, cached.to_string()).unwrap();
    let refused = client.verify(&key).await.unwrap_err();
    assert!(
        matches!(
            refused,
            ClientError::Offline {
                lease: LeaseError::Token(_),
                ..
            }
        ),
        "{refused}"
    );
    // Another license's key does not get this lease either.
    let other = LicenseKey::generate().to_string();
    std::fs::write(&lease, text).unwrap();
    assert!(matches!(
        client.verify(&other).await.unwrap_err(),
        ClientError::Offline {
            lease: LeaseError::OtherLicense,
            ..
        }
    ));
}

fn decode(part: &str) -> String {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    String::from_utf8(bytes).unwrap()
}

fn encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// One HTTP/1.1 request to `edge`: the status, the headers (lower-case
/// names) and the body.
async fn raw_post(
    edge: &RunningEdge,
    path: &str,
    body: &str,
    nonce: Option<&str>,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(edge.addr).await.unwrap();
    let nonce = nonce.map_or(String::new(), |n| {
        format!("{}: {n}\r\n", answer::NONCE_HEADER)
    });
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: edge\r\ncontent-type: application/json\r\n{nonce}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(answer[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, answer[end + 4..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn an_edge_signs_each_answer_with_the_key_control_certified_for_it(pool: PgPool) {
    let stack = Stack::start(pool.clone()).await;
    let (_, key) = one_license(&pool, 1).await;
    let edge = stack.edge("edge-a", true).await;
    wait_for(Duration::from_secs(10), || status_on(&edge, &key).is_some())
        .await
        .expect("the edge serves the license");
    let edge_id = latchkey_control::db::edges::list(&pool).await.unwrap()[0].id;
    let trusted = latchkey_shared::TrustedKeys::new().with(stack.signer.verifying_key());
    let verify = serde_json::json!({ "license_key": key, "fingerprint": machine(1) }).to_string();

    // The certificate is asked right after the link comes up.
    let nonce = answer::new_nonce();
    let started = Instant::now();
    let (status, headers, body) = loop {
        let answered = raw_post(&edge, "/api/license/verify", &verify, Some(&nonce)).await;
        if header(&answered.1, answer::SIGNATURE_HEADER).is_some() {
            break answered;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "never signed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status, 200);
    let exchange = answer::Exchange {
        nonce: &nonce,
        path: "/api/license/verify",
        request_body: verify.as_bytes(),
        status,
        response_body: &body,
    };
    let check = |exchange: &answer::Exchange<'_>| {
        answer::verify(
            &trusted,
            SystemClock.now(),
            exchange,
            header(&headers, answer::CERTIFICATE_HEADER),
            header(&headers, answer::SIGNATURE_HEADER),
        )
    };
    let certificate = check(&exchange).expect("signed by a certified key");
    assert_eq!(
        certificate.edge_id, edge_id,
        "certified as the edge that asked"
    );
    let recorded = latchkey_control::db::edges::list(&pool).await.unwrap()[0]
        .answers_certified_until
        .expect("the certificate is recorded for the panel")
        .unix_timestamp();
    assert_eq!(recorded, certificate.expires_at);
    let other_nonce = answer::new_nonce();
    assert_eq!(
        check(&answer::Exchange {
            nonce: &other_nonce,
            ..exchange
        }),
        Err(answer::AnswerError::BadSignature)
    );

    // Refusals through the router are signed as well; no nonce, no signature.
    let (status, headers, body) = raw_post(&edge, "/api/license/lease", "{}", Some(&nonce)).await;
    assert_eq!(status, 400);
    answer::verify(
        &trusted,
        SystemClock.now(),
        &answer::Exchange {
            nonce: &nonce,
            path: "/api/license/lease",
            request_body: b"{}",
            status,
            response_body: &body,
        },
        header(&headers, answer::CERTIFICATE_HEADER),
        header(&headers, answer::SIGNATURE_HEADER),
    )
    .expect("a signed refusal");
    let (_, headers, _) = raw_post(&edge, "/api/license/verify", &verify, None).await;
    assert_eq!(header(&headers, answer::SIGNATURE_HEADER), None);
    let (status, _, body) =
        raw_post(&edge, "/api/license/verify", &verify, Some("bad nonce")).await;
    assert_eq!(status, 400, "a malformed nonce is refused");
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["field"], answer::NONCE_HEADER);
}
