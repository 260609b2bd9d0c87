//! Control's edge link and enrolled edges, all in this process on loopback
//! QUIC, on a scratch database: what `propagation` and `ingest` run on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use latchkey_control::db::{edges, publish};
use latchkey_control::link::{self, LinkSettings, RunningLink};
use latchkey_edge::config::LinkConfig;
use latchkey_edge::{EdgeConfig, RunningEdge};
use latchkey_shared::SigningKeyPair;
use sqlx::PgPool;

/// How long the edges get to hold the first published snapshot.
const SERVED_WITHIN: Duration = Duration::from_secs(60);

/// The edges' usage pipeline settings (`LinkConfig`'s `usage_*`).
#[derive(Debug, Clone, Copy)]
pub struct EdgeUsage {
    pub batch_records: usize,
    pub flush_ms: u64,
    pub queue_records: usize,
    pub spool_mb: u64,
}

impl Default for EdgeUsage {
    fn default() -> Self {
        Self {
            batch_records: 1_000,
            flush_ms: 1_000,
            queue_records: 100_000,
            spool_mb: 0,
        }
    }
}

/// A running link and its edges; `stop` them, or dropping it stops the link.
#[derive(Debug)]
pub struct Stack {
    dir: PathBuf,
    link: Option<RunningLink>,
    link_addr: SocketAddr,
    pub edges: Vec<RunningEdge>,
}

impl Stack {
    /// Starts the link (a fresh signing key, trusted by the edges), enrols
    /// and starts `edges` edges, and waits until each holds the latest
    /// published snapshot: what is in the database now is what they serve.
    pub async fn start(pool: &PgPool, edges: usize, usage: EdgeUsage) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("latchkey-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let signer = SigningKeyPair::generate();
        let trusted = dir.join("trusted.pem");
        std::fs::write(&trusted, signer.public_key_pem()).context("writing the trusted key")?;
        let running = link::start(
            pool.clone(),
            &dir.join("control"),
            LinkSettings {
                listen: "127.0.0.1:0".parse()?,
                signer,
                session_token_ttl_secs: 86_400,
                publisher: link::publisher::PublisherSettings::default(),
            },
        )
        .context("starting the link")?;
        let mut stack = Self {
            link_addr: running.addr,
            dir,
            link: Some(running),
            edges: Vec::with_capacity(edges),
        };
        for n in 0..edges {
            let name = format!("bench-edge-{n}");
            let token = edges::create(
                pool,
                &latchkey_control::context::RequestContext::system("bench"),
                &name,
            )
            .await
            .with_context(|| format!("enrolling {name}"))?
            .enrol_token;
            let edge = latchkey_edge::start(EdgeConfig {
                snapshot: None,
                trusted_keys: vec![trusted.clone()],
                listen: "127.0.0.1:0".parse()?,
                rate_limit_per_min: None,
                trusted_proxies: vec![],
                max_body_bytes: 16 * 1024,
                header_timeout_secs: 10,
                request_timeout_secs: 15,
                answer_key: None,
                answer_certificate: None,
                reload_check_ms: 1000,
                link: LinkConfig {
                    control: Some(stack.link_addr),
                    control_cert: Some(stack.dir.join("control").join(link::tls::CERT_FILE)),
                    data_dir: Some(stack.dir.join(&name)),
                    name,
                    enrol_token_file: None,
                    enrol_token: Some(token),
                    call_timeout_ms: 10_000,
                    usage_batch_records: usage.batch_records,
                    usage_flush_ms: usage.flush_ms,
                    usage_queue_records: usage.queue_records,
                    usage_spool_mb: usage.spool_mb,
                },
            })
            .await
            .context("starting an edge")?;
            stack.edges.push(edge);
        }
        stack.wait_served(pool).await?;
        Ok(stack)
    }

    /// Stops the edges (each hands over its queued usage first), then the link.
    pub async fn stop(mut self) {
        for edge in self.edges.drain(..) {
            edge.stop().await;
        }
        if let Some(link) = self.link.take() {
            link.stop();
        }
    }

    async fn wait_served(&self, pool: &PgPool) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if let Some(latest) = publish::latest_sequence(pool).await? {
                let held = self.edges.iter().all(|e| {
                    e.state
                        .snapshots
                        .current()
                        .is_some_and(|s| s.sequence() >= latest)
                });
                if held {
                    return Ok(());
                }
            }
            anyhow::ensure!(
                started.elapsed() < SERVED_WITHIN,
                "the edges did not get the published snapshot within {SERVED_WITHIN:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            link.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
