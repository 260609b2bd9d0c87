//! Failover against edges that answer what a test makes them answer: small
//! HTTP/1.1 servers on loopback, each recording what it was asked and
//! signing its answers as a real edge does (or, for the forgery tests, as
//! an impostor would).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey_client::shared::answer::{
    self, AnswerKey, AnswerSigner, CERTIFICATE_HEADER, Exchange, NONCE_HEADER, SIGNATURE_HEADER,
};
use latchkey_client::shared::api::{ErrorBody, ErrorCode};
use latchkey_client::shared::{Fingerprint, LicenseKey, SigningKeyPair};
use latchkey_client::{Client, ClientError, RetryPolicy, Verification};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The vendor's license signing key: control's, which certifies edges.
fn vendor() -> SigningKeyPair {
    SigningKeyPair::from_seed([7; 32])
}

/// How a fake edge signs its answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Signing {
    /// As a real edge: a key certified with the vendor's key.
    Certified,
    /// Not at all.
    Unsigned,
    /// A key certified by a key that is not the vendor's.
    Impostor,
    /// A real edge's signature over another nonce (a recorded answer).
    Replayed,
}

/// What a fake edge does with a request.
#[derive(Clone)]
enum Behaviour {
    Answer(u16, Value),
    /// The first call is read and its connection closed (a lost answer),
    /// later ones answered.
    LoseFirst(u16, Value),
}

struct FakeEdge {
    url: String,
    seen: Arc<Mutex<Vec<(String, Value)>>>,
    nonces: Arc<Mutex<Vec<String>>>,
}

impl FakeEdge {
    async fn start(behaviour: Behaviour) -> Self {
        Self::start_signing(behaviour, Duration::ZERO, Signing::Certified).await
    }

    /// Answers `/healthz` after `delay`: a farther edge.
    async fn start_slow(behaviour: Behaviour, delay: Duration) -> Self {
        Self::start_signing(behaviour, delay, Signing::Certified).await
    }

    async fn start_signing(behaviour: Behaviour, delay: Duration, signing: Signing) -> Self {
        let key = AnswerKey::generate();
        let certifier = match signing {
            Signing::Impostor => SigningKeyPair::generate(),
            _ => vendor(),
        };
        let now = i64::try_from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs(),
        )
        .unwrap();
        let (certificate, claims) = answer::certify(
            uuid::Uuid::from_u128(1),
            &key.public_key(),
            &certifier,
            now,
            answer::CERTIFICATE_TTL_SECS,
        );
        let signer = Arc::new(AnswerSigner::new(key, certificate, claims.expires_at));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let nonces = Arc::new(Mutex::new(Vec::new()));
        let (log, nonce_log) = (seen.clone(), nonces.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (log, behaviour, signer) = (log.clone(), behaviour.clone(), signer.clone());
                let nonce_log = nonce_log.clone();
                tokio::spawn(async move {
                    let Some(request) = read_request(&mut stream).await else {
                        return;
                    };
                    let Request {
                        path,
                        body,
                        raw,
                        nonce,
                    } = request;
                    if path == "/healthz" {
                        tokio::time::sleep(delay).await;
                        let ok = json!({"ok": true}).to_string();
                        let _ = stream.write_all(&response(200, &ok, "")).await;
                        return;
                    }
                    let first = {
                        let mut log = log.lock().unwrap();
                        log.push((path.clone(), body));
                        nonce_log.lock().unwrap().push(nonce.clone());
                        log.len() == 1
                    };
                    let answer = match behaviour {
                        Behaviour::Answer(status, body) => Some((status, body)),
                        Behaviour::LoseFirst(_, _) if first => None,
                        Behaviour::LoseFirst(status, body) => Some((status, body)),
                    };
                    if let Some((status, answer)) = answer {
                        let answer = answer.to_string();
                        let nonce = match signing {
                            Signing::Replayed => answer::new_nonce(),
                            _ => nonce,
                        };
                        let signature = signer.sign(&Exchange {
                            nonce: &nonce,
                            path: &path,
                            request_body: &raw,
                            status,
                            response_body: answer.as_bytes(),
                        });
                        let headers = if signing == Signing::Unsigned {
                            String::new()
                        } else {
                            format!(
                                "{CERTIFICATE_HEADER}: {}\r\n{SIGNATURE_HEADER}: {signature}\r\n",
                                signer.certificate()
                            )
                        };
                        let _ = stream.write_all(&response(status, &answer, &headers)).await;
                    }
                });
            }
        });
        Self { url, seen, nonces }
    }

    fn calls(&self) -> Vec<(String, Value)> {
        self.seen.lock().unwrap().clone()
    }

    /// The nonce header of each call (empty when there was none).
    fn nonces(&self) -> Vec<String> {
        self.nonces.lock().unwrap().clone()
    }
}

/// What a fake edge read of a request.
struct Request {
    path: String,
    body: Value,
    raw: Vec<u8>,
    nonce: String,
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Request> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).to_string();
        let header = |wanted: &str| {
            head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case(wanted)
                    .then(|| value.trim().to_owned())
            })
        };
        let length = header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
            .unwrap_or(0);
        let nonce = header(NONCE_HEADER).unwrap_or_default();
        while buffer.len() < end + 4 + length {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
        let path = head.split_whitespace().nth(1)?.to_owned();
        let raw = buffer[end + 4..end + 4 + length].to_vec();
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        return Some(Request {
            path,
            body,
            raw,
            nonce,
        });
    }
}

fn response(status: u16, body: &str, headers: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{headers}connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn refusal(code: ErrorCode) -> (u16, Value) {
    (
        code.http_status(),
        serde_json::to_value(ErrorBody::new(code, "said the fake edge")).unwrap(),
    )
}

fn verified() -> Value {
    json!({ "valid": true, "features": ["sync"], "heartbeat_interval_secs": 900, "snapshot_sequence": 7 })
}

fn client(edges: &[&FakeEdge]) -> Client {
    Client::builder()
        .edges(edges.iter().map(|e| e.url.as_str()))
        .public_key_pem(&vendor().public_key_pem())
        .fingerprint(Fingerprint {
            machine_id: Some("0123456789abcdef0123456789abcdef".into()),
            ..Fingerprint::default()
        })
        .retry(RetryPolicy {
            budget: Duration::from_secs(3),
            offline_after: Duration::from_secs(2),
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
            ..RetryPolicy::default()
        })
        .build()
        .unwrap()
}

fn key() -> String {
    LicenseKey::generate().to_string()
}

#[tokio::test]
async fn a_definite_refusal_is_never_asked_again_elsewhere() {
    let (status, body) = refusal(ErrorCode::LicenseSuspended);
    let a = FakeEdge::start(Behaviour::Answer(status, body.clone())).await;
    let b = FakeEdge::start(Behaviour::Answer(status, body)).await;
    let error = client(&[&a, &b]).activate(&key()).await.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::LicenseSuspended), "{error}");
    assert_eq!(a.calls().len() + b.calls().len(), 1, "asked once in all");
}

#[tokio::test]
async fn a_retryable_answer_or_a_closed_port_fails_over() {
    let (status, body) = refusal(ErrorCode::ControlUnavailable);
    // The busy edge is the nearest, so it is asked first.
    let busy = FakeEdge::start(Behaviour::Answer(status, body)).await;
    let good = FakeEdge::start_slow(
        Behaviour::Answer(200, verified()),
        Duration::from_millis(150),
    )
    .await;
    let closed = FakeEdge {
        url: format!(
            "http://{}",
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
        ),
        seen: Default::default(),
        nonces: Default::default(),
    };
    let client = client(&[&closed, &busy, &good]);
    for _ in 0..3 {
        let answer = client.verify(&key()).await.unwrap();
        assert!(answer.is_valid());
    }
    assert_eq!(good.calls().len(), 3);
    // Once failed, the busy edge went to the back: asked once; the closed
    // one (unreachable when measured) never.
    assert_eq!(busy.calls().len(), 1, "{:?}", busy.calls());
}

#[tokio::test]
async fn every_edge_retryable_is_unavailable_after_the_budget() {
    let (status, body) = refusal(ErrorCode::SnapshotExpired);
    let a = FakeEdge::start(Behaviour::Answer(status, body.clone())).await;
    let b = FakeEdge::start(Behaviour::Answer(status, body)).await;
    let error = client(&[&a, &b]).activate(&key()).await.unwrap_err();
    let ClientError::Unavailable { attempts, last } = error else {
        panic!("{error}");
    };
    assert!(attempts >= 4, "several rounds: {attempts}");
    assert!(last.contains("SNAPSHOT_EXPIRED"), "{last}");
}

#[tokio::test]
async fn a_lost_activation_is_retried_with_the_same_idempotency_key() {
    let edge = FakeEdge::start(Behaviour::LoseFirst(
        200,
        json!({
            "outcome": "activated",
            "device_id": uuid::Uuid::new_v4(),
            "devices_used": 1,
            "device_limit": 1,
            "lease": "lk1.lease.x.y.z",
            "lease_valid_until": 0,
        }),
    ))
    .await;
    let client = client(&[&edge]);
    let license = key();
    client.activate(&license).await.unwrap();
    let keys: Vec<Value> = edge
        .calls()
        .into_iter()
        .map(|(_, body)| body["idempotency_key"].clone())
        .collect();
    assert_eq!(keys.len(), 2, "lost, then retried: {keys:?}");
    assert!(keys[0].is_string() && keys[0] == keys[1], "{keys:?}");
    // A second activation is another call: another key.
    client.activate(&license).await.unwrap();
    let last = edge.calls().last().unwrap().1["idempotency_key"].clone();
    assert_ne!(last, keys[0]);
}

#[tokio::test]
async fn a_valid_answer_without_a_vendor_certified_signature_is_not_believed() {
    for signing in [Signing::Unsigned, Signing::Impostor, Signing::Replayed] {
        let fake =
            FakeEdge::start_signing(Behaviour::Answer(200, verified()), Duration::ZERO, signing)
                .await;
        let error = client(&[&fake]).verify(&key()).await.unwrap_err();
        let ClientError::Offline {
            unreachable: last, ..
        } = &error
        else {
            panic!("a forged answer was believed: {error:?}");
        };
        assert!(last.contains("not believed"), "{last}");
        assert!(!fake.calls().is_empty());
    }
}

#[tokio::test]
async fn an_impostor_is_passed_over_for_a_real_edge() {
    // The impostor answers the health probe first, so it is asked first.
    let impostor = FakeEdge::start_signing(
        Behaviour::Answer(200, json!({ "valid": true, "features": ["everything"], "heartbeat_interval_secs": 900, "snapshot_sequence": 1 })),
        Duration::ZERO,
        Signing::Impostor,
    )
    .await;
    let real = FakeEdge::start_slow(
        Behaviour::Answer(200, verified()),
        Duration::from_millis(150),
    )
    .await;
    let Verification::Online(answer) = client(&[&impostor, &real]).verify(&key()).await.unwrap()
    else {
        panic!("answered offline");
    };
    assert_eq!(answer.features, ["sync"], "the real edge's answer");
    assert_eq!(impostor.calls().len(), 1);
}

#[tokio::test]
async fn a_client_that_accepts_unsigned_answers_believes_them() {
    let fake = FakeEdge::start_signing(
        Behaviour::Answer(200, verified()),
        Duration::ZERO,
        Signing::Unsigned,
    )
    .await;
    let client = Client::builder()
        .edges([fake.url.as_str()])
        .public_key_pem(&vendor().public_key_pem())
        .accept_unsigned_answers()
        .build()
        .unwrap();
    assert!(client.verify(&key()).await.unwrap().is_valid());
    // Not asked to sign: an edge signs only for a nonce.
    assert_eq!(fake.nonces(), [""], "no nonce sent");
}
