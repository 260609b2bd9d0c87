//! How a [`Client`](crate::Client) is set up: the edges, the vendor's public
//! key, the product, the lease file, and the retry budgets.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use latchkey_shared::TrustedKeys;
use latchkey_shared::fingerprint::Fingerprint;
use reqwest::Url;

use crate::clock::{Clock, SystemClock};
use crate::error::ClientError;

/// Retries and timeouts.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// How long a state-changing call (activate, transfer, …) keeps trying
    /// edges before it answers [`ClientError::Unavailable`].
    pub budget: Duration,
    /// How long verify keeps trying before it answers from the offline lease.
    pub offline_after: Duration,
    /// First wait between rounds over the edges; doubles up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub connect_timeout: Duration,
    /// One request at one edge (a forwarded call waits up to 5 s for control).
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            budget: Duration::from_secs(30),
            offline_after: Duration::from_secs(5),
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Builds a [`Client`](crate::Client); see the crate example.
#[derive(Debug)]
pub struct ClientBuilder {
    pub(crate) edges: Vec<Url>,
    pub(crate) trusted: TrustedKeys,
    pub(crate) product: Option<String>,
    pub(crate) app_version: Option<String>,
    pub(crate) device_name: Option<String>,
    pub(crate) lease_file: Option<PathBuf>,
    pub(crate) fingerprint: Option<Fingerprint>,
    pub(crate) retry: RetryPolicy,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) clock_tolerance: Duration,
    pub(crate) unsigned_answers: bool,
    errors: Vec<String>,
}

impl Default for ClientBuilder {
    fn default() -> Self {
        Self {
            edges: Vec::new(),
            trusted: TrustedKeys::new(),
            product: None,
            app_version: None,
            device_name: None,
            lease_file: None,
            fingerprint: None,
            retry: RetryPolicy::default(),
            clock: Arc::new(SystemClock),
            clock_tolerance: Duration::from_secs(10 * 60),
            unsigned_answers: false,
            errors: Vec::new(),
        }
    }
}

impl ClientBuilder {
    /// The edges' base URLs (`https://licensing.example.com`); tried
    /// nearest-first. A URL that does not parse is reported by `build`.
    pub fn edges<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for url in urls {
            match url.as_ref().parse::<Url>() {
                Ok(url) if matches!(url.scheme(), "http" | "https") => self.edges.push(url),
                _ => self
                    .errors
                    .push(format!("{:?} is not an http(s) URL", url.as_ref())),
            }
        }
        self
    }

    /// The license signing public key (SPKI PEM, as `latchkey-control keys
    /// generate` writes it), embedded in the application at build time.
    /// Call once per key while keys are rotated.
    pub fn public_key_pem(mut self, pem: &str) -> Self {
        if let Err(error) = self.trusted.insert_pem(pem) {
            self.errors.push(format!("the public key: {error}"));
        }
        self
    }

    /// Trusted keys already parsed.
    pub fn trusted_keys(mut self, keys: TrustedKeys) -> Self {
        self.trusted = keys;
        self
    }

    /// The product slug: sent with activations and verifies, and the scope
    /// the fingerprint's components are hashed under.
    pub fn product(mut self, slug: impl Into<String>) -> Self {
        self.product = Some(slug.into());
        self
    }

    pub fn app_version(mut self, version: impl Into<String>) -> Self {
        self.app_version = Some(version.into());
        self
    }

    /// The name an activation records for this machine (the host name, say).
    pub fn device_name(mut self, name: impl Into<String>) -> Self {
        self.device_name = Some(name.into());
        self
    }

    /// Where the offline lease is cached. Without it, nothing is written and
    /// verify has no offline answer.
    pub fn lease_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.lease_file = Some(path.into());
        self
    }

    /// Components to report instead of collecting this machine's (a
    /// vendor's own identity, a test machine). They are protected like
    /// collected ones.
    pub fn fingerprint(mut self, raw: Fingerprint) -> Self {
        self.fingerprint = Some(raw);
        self
    }

    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The clock offline checks read (default: the system's).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// How far the clock may read behind a time already seen before the
    /// offline grace ends (default 10 minutes: NTP corrections, time zones
    /// are not a change of the Unix time).
    pub fn clock_tolerance(mut self, tolerance: Duration) -> Self {
        self.clock_tolerance = tolerance;
        self
    }

    /// Believe answers an edge did not sign. By default an answer counts
    /// only when signed by an edge whose key control certified with the
    /// vendor's key; an edge serving a snapshot file, with no link to
    /// control, has no certificate. With this, the client sends no nonce
    /// (edges sign nothing: signing is most of an edge's CPU per verify),
    /// and any server at an edge's address can answer "valid".
    pub fn accept_unsigned_answers(mut self) -> Self {
        self.unsigned_answers = true;
        self
    }

    pub(crate) fn check(&self) -> Result<(), ClientError> {
        if let Some(error) = self.errors.first() {
            return Err(ClientError::Config(error.clone()));
        }
        if self.trusted.is_empty() {
            return Err(ClientError::Config(
                "no public key: leases and sessions cannot be checked (public_key_pem)".into(),
            ));
        }
        Ok(())
    }
}
