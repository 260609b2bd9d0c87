//! The link's QUIC server: admits edges, pushes them the published chain
//! from where they stand, records what they applied, and answers their
//! forwarded calls.

use std::sync::Arc;
use std::time::Duration;

use latchkey_shared::link::{Applied, Call, Hello, MAX_MESSAGE_BYTES, Welcome};
use sqlx::PgPool;
use tokio::sync::watch;
use uuid::Uuid;

use super::calls::{self, Deciders};
use super::chain::Chain;
use super::tls;
use crate::db::edges;

/// Application close codes the edge can read.
const CLOSE_REFUSED: u32 = 1;
const CLOSE_PROTOCOL: u32 = 2;
/// How often a connected edge's `last_seen_at` is refreshed.
const SEEN_EVERY: Duration = Duration::from_secs(10);
/// The edge must say hello within this.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Shared {
    pub pool: PgPool,
    pub chain: watch::Receiver<Arc<Chain>>,
    pub deciders: Deciders,
}

pub async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        let shared = shared.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(connection) => {
                    if let Err(error) = serve(connection, shared).await {
                        tracing::info!(%remote, %error, "edge link closed");
                    }
                }
                Err(error) => tracing::info!(%remote, %error, "edge handshake failed"),
            }
        });
    }
}

#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("read: {0}")]
    Read(#[from] quinn::ReadToEndError),
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("stream closed: {0}")]
    Closed(#[from] quinn::ClosedStream),
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("{0}")]
    Refused(String),
    #[error("database: {0}")]
    Database(#[from] crate::error::DomainError),
}

async fn serve(connection: quinn::Connection, shared: Arc<Shared>) -> Result<(), LinkError> {
    let Some(identity) = tls::peer_identity(&connection) else {
        connection.close(CLOSE_REFUSED.into(), b"no client certificate");
        return Err(LinkError::Refused("no client certificate".into()));
    };
    // The whole hello, not only its stream's opening, is due in time: a
    // peer that opens the stream and sends nothing is not kept.
    let hello = async {
        let (send, mut recv) = connection.accept_bi().await?;
        let hello: Hello = serde_json::from_slice(&recv.read_to_end(64 * 1024).await?)?;
        Ok::<_, LinkError>((send, hello))
    };
    let (mut send, hello) = match tokio::time::timeout(HELLO_TIMEOUT, hello).await {
        Ok(hello) => hello?,
        Err(_) => {
            connection.close(CLOSE_PROTOCOL.into(), b"no hello in time");
            return Err(LinkError::Refused("no hello in time".into()));
        }
    };
    let admitted = edges::admit(
        &shared.pool,
        &identity,
        hello.enrol_token.as_deref(),
        &hello.version,
    )
    .await?;
    let edge = match admitted {
        Ok(edge) => edge,
        Err(refusal) => {
            let reason = refusal.to_string();
            send.write_all(&serde_json::to_vec(&Welcome::Refused {
                reason: reason.clone(),
            })?)
            .await?;
            send.finish()?;
            // Give the answer time to arrive before closing.
            let _ = tokio::time::timeout(Duration::from_secs(2), connection.closed()).await;
            connection.close(CLOSE_REFUSED.into(), reason.as_bytes());
            return Err(LinkError::Refused(reason));
        }
    };
    send.write_all(&serde_json::to_vec(&Welcome::Accepted {
        edge_id: edge.id,
    })?)
    .await?;
    send.finish()?;
    tracing::info!(edge = %edge.name, held = ?hello.held_sequence, "edge connected");
    let result = tokio::select! {
        result = push(&connection, shared.chain.clone(), hello.held_sequence) => result,
        result = applied(&connection, &shared.pool, edge.id) => result,
        result = answer_calls(&connection, shared.clone(), edge.id) => result,
        result = keep_seen(&connection, &shared.pool, edge.id) => result,
    };
    tracing::info!(edge = %edge.name, "edge disconnected");
    result
}

/// Sends the edge every snapshot it lacks, in order, one stream each.
async fn push(
    connection: &quinn::Connection,
    mut chain: watch::Receiver<Arc<Chain>>,
    mut held: Option<u64>,
) -> Result<(), LinkError> {
    loop {
        let current = chain.borrow_and_update().clone();
        for stored in current.to_send(held) {
            let mut stream = connection.open_uni().await?;
            stream.write_all(&stored.bytes).await?;
            stream.finish()?;
            held = Some(stored.sequence);
        }
        if chain.changed().await.is_err() {
            return Ok(());
        }
    }
}

/// Records each sequence the edge reports it serves.
async fn applied(
    connection: &quinn::Connection,
    pool: &PgPool,
    edge_id: Uuid,
) -> Result<(), LinkError> {
    loop {
        let mut stream = connection.accept_uni().await?;
        let applied: Applied = serde_json::from_slice(&stream.read_to_end(1024).await?)?;
        edges::applied(pool, edge_id, applied.sequence).await?;
        tracing::debug!(%edge_id, sequence = applied.sequence, "edge applied snapshot");
    }
}

/// Keeps `last_seen_at` fresh while the edge is connected (the panel tells
/// a connected edge from one that went away), and ends the connection of an
/// edge revoked meanwhile.
async fn keep_seen(
    connection: &quinn::Connection,
    pool: &PgPool,
    edge_id: Uuid,
) -> Result<(), LinkError> {
    let mut ticks = tokio::time::interval(SEEN_EVERY);
    loop {
        ticks.tick().await;
        if !edges::seen(pool, edge_id).await? {
            connection.close(CLOSE_REFUSED.into(), b"this edge has been revoked");
            return Err(LinkError::Refused("revoked while connected".into()));
        }
    }
}

/// One forwarded call per bidirectional stream, each decided concurrently.
async fn answer_calls(
    connection: &quinn::Connection,
    shared: Arc<Shared>,
    edge_id: Uuid,
) -> Result<(), LinkError> {
    loop {
        let (mut send, mut recv) = connection.accept_bi().await?;
        let shared = shared.clone();
        let connection = connection.clone();
        tokio::spawn(async move {
            let call: Call = match recv
                .read_to_end(MAX_MESSAGE_BYTES)
                .await
                .map(|bytes| serde_json::from_slice(&bytes))
            {
                Ok(Ok(call)) => call,
                _ => {
                    connection.close(CLOSE_PROTOCOL.into(), b"malformed call");
                    return;
                }
            };
            let reply = calls::decide(&shared.deciders, edge_id, call).await;
            let bytes = serde_json::to_vec(&reply).expect("replies serialize");
            if send.write_all(&bytes).await.is_ok() {
                let _ = send.finish();
            }
        });
    }
}
