//! Failover against edges that answer what a test makes them answer: small
//! HTTP/1.1 servers on loopback, each recording what it was asked.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use latchkey_client::shared::api::{ErrorBody, ErrorCode};
use latchkey_client::shared::{Fingerprint, LicenseKey, SigningKeyPair};
use latchkey_client::{Client, ClientError, RetryPolicy};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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
}

impl FakeEdge {
    async fn start(behaviour: Behaviour) -> Self {
        Self::start_slow(behaviour, Duration::ZERO).await
    }

    /// Answers `/healthz` after `delay`: a farther edge.
    async fn start_slow(behaviour: Behaviour, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (log, behaviour) = (log.clone(), behaviour.clone());
                tokio::spawn(async move {
                    let Some((path, body)) = read_request(&mut stream).await else {
                        return;
                    };
                    if path == "/healthz" {
                        tokio::time::sleep(delay).await;
                        let _ = stream.write_all(&response(200, &json!({"ok": true}))).await;
                        return;
                    }
                    let first = {
                        let mut log = log.lock().unwrap();
                        log.push((path, body));
                        log.len() == 1
                    };
                    let answer = match behaviour {
                        Behaviour::Answer(status, body) => Some((status, body)),
                        Behaviour::LoseFirst(_, _) if first => None,
                        Behaviour::LoseFirst(status, body) => Some((status, body)),
                    };
                    if let Some((status, body)) = answer {
                        let _ = stream.write_all(&response(status, &body)).await;
                    }
                });
            }
        });
        Self { url, seen }
    }

    fn calls(&self) -> Vec<(String, Value)> {
        self.seen.lock().unwrap().clone()
    }
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<(String, Value)> {
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
        let length = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse::<usize>().ok())?
            })
            .unwrap_or(0);
        while buffer.len() < end + 4 + length {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buffer.extend_from_slice(&chunk[..n]);
        }
        let path = head.split_whitespace().nth(1)?.to_owned();
        let body =
            serde_json::from_slice(&buffer[end + 4..end + 4 + length]).unwrap_or(Value::Null);
        return Some((path, body));
    }
}

fn response(status: u16, body: &Value) -> Vec<u8> {
    let body = body.to_string();
    format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
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
    let signer = SigningKeyPair::generate();
    Client::builder()
        .edges(edges.iter().map(|e| e.url.as_str()))
        .public_key_pem(&signer.public_key_pem())
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
