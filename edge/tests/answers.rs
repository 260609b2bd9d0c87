//! An edge serving a snapshot file signs answers with the key and
//! certificate it is given (`latchkey-control keys certify-edge`), on the
//! verify path the server answers itself and through the router alike; and
//! it does not start with a certificate that is not for its key or not
//! from a trusted key.

mod support;

use std::path::Path;

use latchkey_shared::answer::{
    self, AnswerKey, CERTIFICATE_HEADER, CERTIFICATE_TTL_SECS, Exchange, NONCE_HEADER,
    SIGNATURE_HEADER,
};
use latchkey_shared::{SigningKeyPair, TrustedKeys};
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const NOW_SLACK: i64 = 60;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Writes `key` and a certificate of `certified` by `certifier` into `dir`.
fn provision(dir: &Path, key: &AnswerKey, certified: &AnswerKey, certifier: &SigningKeyPair) {
    let (certificate, _) = answer::certify(
        uuid::Uuid::new_v4(),
        &certified.public_key(),
        certifier,
        now(),
        CERTIFICATE_TTL_SECS,
    );
    std::fs::write(dir.join("answer-key.pem"), key.to_pkcs8_pem()).unwrap();
    std::fs::write(dir.join("answer-certificate"), certificate).unwrap();
}

fn with_answer_files(fixture: &Fixture) -> latchkey_edge::EdgeConfig {
    latchkey_edge::EdgeConfig {
        answer_key: Some(fixture.dir.join("answer-key.pem")),
        answer_certificate: Some(fixture.dir.join("answer-certificate")),
        ..config(fixture)
    }
}

struct Answered {
    status: u16,
    certificate: Option<String>,
    signature: Option<String>,
    body: Vec<u8>,
}

async fn post(addr: std::net::SocketAddr, path: &str, body: &str, nonce: &str) -> Answered {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nhost: edge\r\ncontent-type: application/json\r\n{NONCE_HEADER}: {nonce}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(answer[..end].to_vec()).unwrap();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    };
    Answered {
        status: head.split(' ').nth(1).unwrap().parse().unwrap(),
        certificate: header(CERTIFICATE_HEADER),
        signature: header(SIGNATURE_HEADER),
        body: answer[end + 4..].to_vec(),
    }
}

#[tokio::test]
async fn an_edge_serving_a_file_signs_with_the_key_it_was_given() {
    let fixture = fixture("answers-signed");
    let key = AnswerKey::generate();
    provision(&fixture.dir, &key, &key, &signer());
    let edge = latchkey_edge::start(with_answer_files(&fixture))
        .await
        .unwrap();
    let trusted = TrustedKeys::new().with(signer().verifying_key());
    let valid =
        json!({ "license_key": fixture.keys["valid"], "fingerprint": machine() }).to_string();
    let cases = [
        ("/api/license/verify", valid.as_str(), 200),
        // Through the router, refused: signed all the same.
        ("/api/version/check", "{}", 400),
    ];
    for (path, body, status) in cases {
        let nonce = answer::new_nonce();
        let answered = post(edge.addr, path, body, &nonce).await;
        assert_eq!(answered.status, status, "{path}");
        let exchange = Exchange {
            nonce: &nonce,
            path,
            request_body: body.as_bytes(),
            status,
            response_body: &answered.body,
        };
        let verified = answer::verify(
            &trusted,
            now() + NOW_SLACK,
            &exchange,
            answered.certificate.as_deref(),
            answered.signature.as_deref(),
        );
        assert!(verified.is_ok(), "{path}: {verified:?}");
    }
    edge.stop().await;
}

#[tokio::test]
async fn an_edge_refuses_to_start_with_a_certificate_it_cannot_sign_under() {
    let fixture = fixture("answers-refused");
    let key = AnswerKey::generate();
    let cases = [
        (AnswerKey::generate(), signer(), "for another key"),
        (key.clone(), SigningKeyPair::generate(), "not trusted"),
    ];
    for (certified, certifier, why) in cases {
        provision(&fixture.dir, &key, &certified, &certifier);
        let error = latchkey_edge::start(with_answer_files(&fixture))
            .await
            .unwrap_err();
        assert!(format!("{error:#}").contains(why), "{error:#}");
    }
    let half = latchkey_edge::EdgeConfig {
        answer_certificate: None,
        ..with_answer_files(&fixture)
    };
    let error = latchkey_edge::start(half).await.unwrap_err();
    assert!(format!("{error:#}").contains("or neither"), "{error:#}");
}
