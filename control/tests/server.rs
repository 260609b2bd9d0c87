//! The HTTP server's own limits, on a real socket: a client that sends its
//! headers too slowly (slowloris) is cut off, and an answer that takes too
//! long is a 408, so neither holds the server.

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use latchkey_control::server::{self, Timeouts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn start() -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let router = Router::new().route("/fast", get(|| async { "ok" })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let timeouts = Timeouts {
        header: Duration::from_secs(1),
        request: Duration::from_secs(1),
        drain: Duration::from_secs(1),
    };
    tokio::spawn(server::serve(listener, router, timeouts, stopped));
    (addr, stop)
}

async fn read_all(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut answer)).await;
    (answer, started.elapsed())
}

#[tokio::test]
async fn a_client_sending_headers_too_slowly_is_cut_off() {
    let (addr, _stop) = start().await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (_, waited) = read_all(&mut slow, Duration::from_secs(10)).await;
    assert!(
        waited < Duration::from_secs(5),
        "the connection stayed open {waited:?} without complete headers"
    );
    // Others are served meanwhile and after.
    let mut quick = TcpStream::connect(addr).await.unwrap();
    quick
        .write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_all(&mut quick, Duration::from_secs(5)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
}

#[tokio::test]
async fn an_answer_that_takes_too_long_is_a_408() {
    let (addr, _stop) = start().await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, waited) = read_all(&mut stream, Duration::from_secs(10)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("REQUEST_TIMEOUT"), "{text}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
}
