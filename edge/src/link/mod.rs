//! The edge end of the link to control (QUIC, mutual TLS): connects and
//! reconnects with backoff, says which snapshot sequence it holds, applies
//! the snapshots control pushes (and says so), carries forwarded calls, and
//! keeps the edge's answer key certified (`answers`).

mod tls;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwapOption;
use latchkey_shared::link::{
    Applied, Call, Hello, MAX_MESSAGE_BYTES, MAX_SNAPSHOT_BYTES, Reply, SERVER_NAME, Welcome,
};

use crate::answers::Answers;
use crate::config::LinkConfig;
use crate::snapshots::{self, SnapshotStore};

/// Backoff between connection attempts: from the first to the last.
/// Reconnect backoff, first and longest: a restarted control is found
/// within a second of listening again, and a second is nothing to it.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(1));

/// Why a forwarded call got no answer from control.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no connection to control")]
    NotConnected,
    #[error("control did not answer in time")]
    TimedOut,
    #[error("the link failed: {0}")]
    Link(String),
}

/// The link as request handlers see it: the live connection, if any.
#[derive(Debug)]
pub struct Link {
    connection: ArcSwapOption<quinn::Connection>,
    call_timeout: Duration,
}

impl Link {
    pub fn new(call_timeout: Duration) -> Self {
        Self {
            connection: ArcSwapOption::empty(),
            call_timeout,
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connection.load().is_some()
    }

    /// Sends one call to control and waits for its reply.
    pub async fn call(&self, call: &Call) -> Result<Reply, CallError> {
        let connection = self.connection.load_full().ok_or(CallError::NotConnected)?;
        let request = serde_json::to_vec(call).map_err(|e| CallError::Link(e.to_string()))?;
        let exchange = async {
            let (mut send, mut recv) = connection.open_bi().await.map_err(link)?;
            send.write_all(&request).await.map_err(link)?;
            send.finish().map_err(link)?;
            let answer = recv.read_to_end(MAX_MESSAGE_BYTES).await.map_err(link)?;
            serde_json::from_slice(&answer).map_err(link)
        };
        tokio::time::timeout(self.call_timeout, exchange)
            .await
            .map_err(|_| CallError::TimedOut)?
    }
}

fn link(error: impl std::fmt::Display) -> CallError {
    CallError::Link(error.to_string())
}

/// Keeps the link up for as long as the edge runs.
/// `enrol_token` is presented in every hello: control ignores it once this
/// edge's identity is enrolled.
pub async fn run(
    link: Arc<Link>,
    config: LinkConfig,
    enrol_token: Option<String>,
    store: Arc<SnapshotStore>,
    answers: Arc<Answers>,
) {
    let endpoint = match endpoint(&config) {
        Ok(endpoint) => endpoint,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "the link cannot start");
            return;
        }
    };
    let Some(control) = config.control else {
        return;
    };
    let mut backoff = BACKOFF.0;
    loop {
        metrics::gauge!("latchkey_edge_link_connected").set(0.0);
        let hello = Hello {
            name: config.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            held_sequence: store.current().map(|s| s.sequence()),
            enrol_token: enrol_token.clone(),
        };
        match session(&endpoint, control, hello, &link, &store, &answers).await {
            Ok(()) => backoff = BACKOFF.0,
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), %control, "link to control down; retrying");
            }
        }
        link.connection.store(None);
        metrics::counter!("latchkey_edge_link_reconnects_total").increment(1);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF.1);
    }
}

fn endpoint(config: &LinkConfig) -> anyhow::Result<quinn::Endpoint> {
    let (Some(data_dir), Some(control_cert)) = (&config.data_dir, &config.control_cert) else {
        anyhow::bail!("--control needs --data-dir and --control-cert");
    };
    let mut endpoint = quinn::Endpoint::client(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
        .context("opening a UDP socket for the link")?;
    endpoint.set_default_client_config(tls::client_config(data_dir, control_cert)?);
    Ok(endpoint)
}

/// One connection, from hello to its loss. `Ok` when it had been admitted
/// (the next attempt starts from the shortest backoff).
async fn session(
    endpoint: &quinn::Endpoint,
    control: SocketAddr,
    hello: Hello,
    link: &Link,
    store: &Arc<SnapshotStore>,
    answers: &Answers,
) -> anyhow::Result<()> {
    let connection = endpoint.connect(control, SERVER_NAME)?.await?;
    let (mut send, mut recv) = connection.open_bi().await?;
    send.write_all(&serde_json::to_vec(&hello)?).await?;
    send.finish()?;
    match serde_json::from_slice(&recv.read_to_end(64 * 1024).await?)? {
        Welcome::Accepted { edge_id } => {
            tracing::info!(%edge_id, %control, "link to control up");
        }
        Welcome::Refused { reason } => {
            metrics::counter!("latchkey_edge_link_refused_total").increment(1);
            anyhow::bail!("control refused this edge: {reason}");
        }
    }
    link.connection.store(Some(Arc::new(connection.clone())));
    metrics::gauge!("latchkey_edge_link_connected").set(1.0);
    let error = tokio::select! {
        error = receive_snapshots(&connection, store) => error,
        () = answers.keep_certified(link) => anyhow::anyhow!("certifying stopped"),
    };
    tracing::warn!(%error, "link to control lost");
    Ok(())
}

/// Applies each snapshot control sends, in order, and reports it applied.
async fn receive_snapshots(
    connection: &quinn::Connection,
    store: &Arc<SnapshotStore>,
) -> anyhow::Error {
    loop {
        let bytes = match connection.accept_uni().await {
            Ok(mut stream) => match stream.read_to_end(MAX_SNAPSHOT_BYTES).await {
                Ok(bytes) => bytes,
                Err(error) => return error.into(),
            },
            Err(error) => return error.into(),
        };
        // Verifying a full snapshot takes tens of milliseconds at a million
        // licenses: off the runtime's workers, which answer clients.
        let receiving = store.clone();
        let received = match tokio::task::spawn_blocking(move || receiving.receive(&bytes)).await {
            Ok(received) => received,
            Err(error) => return error.into(),
        };
        match received {
            Ok(state) => {
                snapshots::record_loaded(&state);
                tracing::debug!(sequence = state.sequence(), "snapshot applied");
                let applied = Applied {
                    sequence: state.sequence(),
                };
                let report = async {
                    let mut stream = connection.open_uni().await?;
                    stream
                        .write_all(&serde_json::to_vec(&applied).expect("serializes"))
                        .await?;
                    stream.finish()?;
                    anyhow::Ok(())
                };
                if let Err(error) = report.await {
                    return error;
                }
            }
            Err(error) => {
                metrics::counter!("latchkey_edge_snapshot_rejected_total", "reason" => error.reason())
                    .increment(1);
                tracing::warn!(%error, "snapshot from control refused");
                if error.reason() == "wrong_base" {
                    // Control and this edge disagree on what it holds:
                    // reconnecting says it again, and control resends from there.
                    return error.into();
                }
            }
        }
    }
}
