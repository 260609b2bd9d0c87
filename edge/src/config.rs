//! The edge's settings, from the command line (each flag also reads a
//! `LATCHKEY_EDGE_*` variable).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

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
    /// For an edge with no link: the key it signs answers with (PKCS#8
    /// PEM) and control's certificate of it, both from `latchkey-control
    /// keys certify-edge`. Linked edges get theirs over the link.
    #[arg(long, env = "LATCHKEY_EDGE_ANSWER_KEY", value_name = "PATH")]
    pub answer_key: Option<PathBuf>,
    #[arg(long, env = "LATCHKEY_EDGE_ANSWER_CERTIFICATE", value_name = "PATH")]
    pub answer_certificate: Option<PathBuf>,
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
    /// A file holding the one-time token from `latchkey-control edges
    /// create` (first start only). Or the token itself in
    /// `LATCHKEY_EDGE_ENROL_TOKEN`; never an argument, which `ps` shows.
    #[arg(long, env = "LATCHKEY_EDGE_ENROL_TOKEN_FILE", value_name = "PATH")]
    pub enrol_token_file: Option<PathBuf>,
    /// The token itself: from the environment only (or set by a program
    /// embedding the edge); a file named above wins.
    #[arg(skip = std::env::var("LATCHKEY_EDGE_ENROL_TOKEN").ok().filter(|t| !t.trim().is_empty()))]
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
    /// The enrolment token to present: the file's content, else the one
    /// given. Read at start, so a missing file stops the edge before it binds.
    pub fn resolve_enrol_token(&self) -> anyhow::Result<Option<String>> {
        let Some(path) = &self.enrol_token_file else {
            return Ok(self.enrol_token.clone());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the enrolment token file {}", path.display()))?;
        let token = text.trim();
        anyhow::ensure!(
            !token.is_empty(),
            "the enrolment token file {} is empty",
            path.display()
        );
        Ok(Some(token.to_owned()))
    }

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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        edge: EdgeConfig,
    }

    const LINKED: [&str; 9] = [
        "serve",
        "--trusted-key",
        "k.pem",
        "--control",
        "127.0.0.1:7443",
        "--control-cert",
        "c.pem",
        "--data-dir",
        "d",
    ];

    #[test]
    fn the_enrolment_token_is_no_argument_but_a_file() {
        let with = |extra: &[&str]| Cli::try_parse_from(LINKED.iter().chain(extra));
        assert!(with(&["--enrol-token", "lke_secret"]).is_err());

        let dir = std::env::temp_dir().join(format!("latchkey-edge-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("edge.token");
        std::fs::write(&file, "lke_secret\n").unwrap();
        let cli = with(&["--enrol-token-file", file.to_str().unwrap()]).unwrap();
        assert_eq!(
            cli.edge.link.resolve_enrol_token().unwrap().as_deref(),
            Some("lke_secret")
        );

        std::fs::write(&file, " \n").unwrap();
        let error = cli.edge.link.resolve_enrol_token().unwrap_err();
        assert!(error.to_string().contains("is empty"), "{error:#}");
        std::fs::remove_file(&file).unwrap();
        let error = cli.edge.link.resolve_enrol_token().unwrap_err();
        assert!(error.to_string().contains("edge.token"), "{error:#}");
    }
}
