//! `/metrics` of a fresh `latchkey-edge serve` process: what the alert rules
//! (`deploy/prometheus/rules/`) watch is exported from the start, before
//! anything happened. A counter first seen at its first increase is one
//! Prometheus cannot tell increased, and in one process of its own nothing
//! else installs the recorder before the edge records.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use latchkey_shared::SigningKeyPair;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Edge(Child);

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_fresh_edge_exports_what_its_alerts_watch() {
    let dir = std::env::temp_dir().join(format!("latchkey-edge-metrics-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("trusted.pem"),
        SigningKeyPair::generate().public_key_pem(),
    )
    .unwrap();
    let control = rcgen::generate_simple_self_signed(vec!["latchkey-control".to_owned()]).unwrap();
    std::fs::write(dir.join("control.pem"), control.cert.pem()).unwrap();
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // Linked to a control that is not there: the edge serves, not ready.
    let _edge = Edge(
        Command::new(env!("CARGO_BIN_EXE_latchkey-edge"))
            .arg("serve")
            .args(["--control", "127.0.0.1:9", "--listen", &listen.to_string()])
            .arg("--control-cert")
            .arg(dir.join("control.pem"))
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--trusted-key")
            .arg(dir.join("trusted.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    let metrics = loop {
        if let Some(text) = get(listen, "/metrics").await {
            break text;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the edge never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for line in [
        "latchkey_edge_ready 0",
        "latchkey_edge_usage_queued_records 0",
        "latchkey_edge_usage_committed_records_total 0",
        r#"latchkey_edge_usage_dropped_records_total{reason="no_spool"} 0"#,
        r#"latchkey_edge_usage_dropped_records_total{reason="spool_full"} 0"#,
        r#"latchkey_edge_usage_dropped_records_total{reason="refused"} 0"#,
        "latchkey_edge_usage_spool_bytes 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no `{line}` in:\n{metrics}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The body of a 200 answer to `GET path`, `None` otherwise.
async fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: edge\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.ok()?;
    let answer = String::from_utf8(answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.to_owned())
}
