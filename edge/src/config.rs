//! The edge's settings, from the command line (each flag also reads a
//! `LATCHKEY_EDGE_*` variable).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, clap::Args)]
pub struct EdgeConfig {
    /// A signed full snapshot file to serve, reloaded when it changes; for an
    /// edge without a link to control (with `--control`, snapshots come over
    /// the link and are cached in `--data-dir`).
    #[arg(
        long,
        env = "LATCHKEY_EDGE_SNAPSHOT",
        required_unless_present = "control"
    )]
    pub snapshot: Option<PathBuf>,
    /// Trusted public key (SPKI PEM) for snapshots and session tokens; repeat for rotation.
    #[arg(
        long = "trusted-key",
        env = "LATCHKEY_EDGE_TRUSTED_KEYS",
        value_delimiter = ',',
        required = true
    )]
    pub trusted_keys: Vec<PathBuf>,
    #[arg(long, env = "LATCHKEY_EDGE_LISTEN", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// Overrides the snapshot's per-key and per-IP limit (requests per minute).
    #[arg(long, env = "LATCHKEY_EDGE_RATE_LIMIT_PER_MIN")]
    pub rate_limit_per_min: Option<u32>,
    /// Peers whose X-Forwarded-For is believed (load balancers in front of the edge).
    #[arg(
        long = "trusted-proxy",
        env = "LATCHKEY_EDGE_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<IpAddr>,
    #[arg(long, env = "LATCHKEY_EDGE_MAX_BODY_BYTES", default_value_t = 16 * 1024)]
    pub max_body_bytes: usize,
    /// A client must send a request's headers within this many seconds; an
    /// idle keep-alive connection is closed after it too.
    #[arg(long, env = "LATCHKEY_EDGE_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,
    /// The whole request, body included, must be answered within this.
    #[arg(long, env = "LATCHKEY_EDGE_REQUEST_TIMEOUT_SECS", default_value_t = 15)]
    pub request_timeout_secs: u64,
    /// How often the snapshot file is checked for a new version.
    #[arg(long, env = "LATCHKEY_EDGE_RELOAD_CHECK_MS", default_value_t = 1000)]
    pub reload_check_ms: u64,
    #[command(flatten)]
    pub link: LinkConfig,
}

/// The link to control.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LinkConfig {
    /// Control's link address (QUIC).
    #[arg(
        long,
        env = "LATCHKEY_EDGE_CONTROL",
        requires_all = ["control_cert", "data_dir"],
        conflicts_with = "snapshot"
    )]
    pub control: Option<SocketAddr>,
    /// Control's link certificate (PEM), pinned.
    #[arg(long, env = "LATCHKEY_EDGE_CONTROL_CERT")]
    pub control_cert: Option<PathBuf>,
    /// Where the edge keeps its link identity and its snapshot cache.
    #[arg(long, env = "LATCHKEY_EDGE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// This edge's name, as enrolled in control.
    #[arg(long, env = "LATCHKEY_EDGE_NAME", default_value = "edge")]
    pub name: String,
    /// The one-time token from `latchkey-control edges create` (first start only).
    #[arg(long, env = "LATCHKEY_EDGE_ENROL_TOKEN")]
    pub enrol_token: Option<String>,
    /// A forwarded call not answered by control within this gets `503 CONTROL_UNAVAILABLE`.
    #[arg(long, env = "LATCHKEY_EDGE_CALL_TIMEOUT_MS", default_value_t = 5000)]
    pub call_timeout_ms: u64,
    /// Usage records per batch sent to control.
    #[arg(
        long,
        env = "LATCHKEY_EDGE_USAGE_BATCH_RECORDS",
        default_value_t = 5000
    )]
    pub usage_batch_records: usize,
    /// A usage batch is cut at least this often.
    #[arg(long, env = "LATCHKEY_EDGE_USAGE_FLUSH_MS", default_value_t = 1000)]
    pub usage_flush_ms: u64,
    /// Usage records held in memory while control is away; then the spool.
    #[arg(
        long,
        env = "LATCHKEY_EDGE_USAGE_QUEUE_RECORDS",
        default_value_t = 1_000_000
    )]
    pub usage_queue_records: usize,
    /// Disk spool (in the data directory) for usage beyond the queue; 0: none.
    #[arg(long, env = "LATCHKEY_EDGE_USAGE_SPOOL_MB", default_value_t = 256)]
    pub usage_spool_mb: u64,
}

impl LinkConfig {
    pub fn usage(&self) -> crate::usage::UsageSettings {
        crate::usage::UsageSettings {
            batch_records: self.usage_batch_records.max(1),
            flush_every: Duration::from_millis(self.usage_flush_ms.max(10)),
            queue_records: self.usage_queue_records,
            spool_dir: self
                .data_dir
                .as_ref()
                .filter(|_| self.usage_spool_mb > 0)
                .map(|dir| dir.join("spool")),
            spool_max_bytes: self.usage_spool_mb * 1024 * 1024,
        }
    }
}

impl EdgeConfig {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}
