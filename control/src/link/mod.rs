//! The control end of the edge link (QUIC, mutual TLS): edges enrol and
//! connect here, receive the published snapshot chain, and forward the
//! client calls control decides. See `latchkey_shared::link` for the
//! messages.

mod calls;
mod chain;
pub mod publisher;
mod server;
pub mod tls;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use latchkey_shared::{SigningKeyPair, TrustedKeys};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use calls::Deciders;

use crate::db::devices::LeaseIssuer;
use crate::db::sessions::SessionSettings;

/// What the link needs to run.
#[derive(Debug, Clone)]
pub struct LinkSettings {
    pub listen: SocketAddr,
    pub signer: SigningKeyPair,
    pub session_token_ttl_secs: i64,
    pub publisher: publisher::PublisherSettings,
}

/// A running link: its address, what it reports, and its tasks.
#[derive(Debug)]
pub struct RunningLink {
    pub addr: SocketAddr,
    pub status: LinkStatus,
    endpoint: quinn::Endpoint,
    tasks: Vec<JoinHandle<()>>,
}

/// What the link tells `/readyz` and `/metrics`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LinkStatus {
    chain: watch::Receiver<Arc<chain::Chain>>,
    publishing: Arc<AtomicBool>,
}

impl LinkStatus {
    /// The newest snapshot this replica relays to edges; `None` until it
    /// has read one.
    pub fn chain_head(&self) -> Option<u64> {
        self.chain.borrow().latest()
    }

    /// Whether this replica holds the publisher lock.
    pub fn is_publishing(&self) -> bool {
        self.publishing.load(Ordering::Relaxed)
    }
}

impl RunningLink {
    pub fn stop(self) {
        self.endpoint.close(0u32.into(), b"control stopping");
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// Starts the publisher (it waits for the lock), the chain follower and the
/// QUIC server. `dir` holds control's link certificate.
pub fn start(pool: PgPool, dir: &Path, settings: LinkSettings) -> anyhow::Result<RunningLink> {
    let (cert, key) = tls::load_or_create(dir)?;
    let endpoint = quinn::Endpoint::server(tls::server_config(cert, key)?, settings.listen)
        .with_context(|| format!("binding the link on {}", settings.listen))?;
    let addr = endpoint.local_addr()?;
    let mut trusted = TrustedKeys::new();
    trusted
        .insert_pem(&settings.signer.public_key_pem())
        .context("trusting our own signing key")?;
    let (chain_tx, chain_rx) = watch::channel(Arc::new(chain::Chain::default()));
    let status = LinkStatus {
        chain: chain_rx.clone(),
        publishing: Arc::new(AtomicBool::new(false)),
    };
    let shared = Arc::new(server::Shared {
        pool: pool.clone(),
        chain: chain_rx,
        deciders: Deciders {
            pool: pool.clone(),
            issuer: LeaseIssuer {
                signer: settings.signer.clone(),
            },
            sessions: SessionSettings {
                signer: settings.signer.clone(),
                token_ttl_secs: settings.session_token_ttl_secs,
            },
            trusted,
            partitions: crate::db::ingest::KnownPartitions::new(),
        },
    });
    let tasks = vec![
        tokio::spawn(publisher::run(
            pool.clone(),
            settings.signer,
            settings.publisher,
            status.publishing.clone(),
        )),
        tokio::spawn(chain::follow(pool, chain_tx)),
        tokio::spawn(server::accept_loop(endpoint.clone(), shared)),
    ];
    tracing::info!(%addr, "edge link listening");
    Ok(RunningLink {
        addr,
        status,
        endpoint,
        tasks,
    })
}
