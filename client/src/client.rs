//! [`Client`]: the calls an application makes, each with its failover,
//! idempotency key and lease bookkeeping.

use std::sync::Arc;
use std::time::Duration;

use latchkey_shared::api::{
    ActivateRequest, ActivateResponse, DeactivateRequest, DeactivateResponse, ErrorCode,
    LeaseRequest, LeaseResponse, TransferRequest, VerifyRequest, VerifyResponse,
};
use latchkey_shared::fingerprint::Fingerprint;
use latchkey_shared::token::Lease;
use latchkey_shared::{FingerprintHash, LicenseKey, TrustedKeys};
use reqwest::Url;
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::{ClientBuilder, RetryPolicy};
use crate::edges::{Answered, Edges, Signatures};
use crate::error::{ClientError, LeaseError};
use crate::fingerprint;
use crate::lease::{LeaseCheck, LeaseFile};

/// A license client. Cheap to clone (one `Arc`); share one per application.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub edges: Edges,
    /// What is sent: the protected components.
    pub fingerprint: Fingerprint,
    pub fingerprint_hash: FingerprintHash,
    pub trusted: TrustedKeys,
    pub product: Option<String>,
    pub app_version: Option<String>,
    pub device_name: Option<String>,
    pub lease: Option<LeaseFile>,
    pub retry: RetryPolicy,
    pub clock: Arc<dyn Clock>,
    pub tolerance_secs: i64,
}

/// What verify found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// An edge answered (valid or not: see `valid` and `code`).
    Online(VerifyResponse),
    /// No edge could be reached; the cached lease vouches for this machine
    /// until `lease.valid_until`.
    Offline { lease: Lease, unreachable: String },
}

impl Verification {
    /// May the application run?
    pub fn is_valid(&self) -> bool {
        match self {
            Self::Online(answer) => answer.valid,
            Self::Offline { .. } => true,
        }
    }

    /// Why not, when an edge said no.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Online(answer) => answer.code,
            Self::Offline { .. } => None,
        }
    }

    /// The license's features.
    pub fn features(&self) -> &[String] {
        match self {
            Self::Online(answer) => &answer.features,
            Self::Offline { lease, .. } => &lease.features,
        }
    }
}

/// Answers that mean the license is gone: the cached lease is forgotten,
/// so going offline does not bring it back.
const LICENSE_GONE: [ErrorCode; 4] = [
    ErrorCode::LicenseNotFound,
    ErrorCode::LicenseExpired,
    ErrorCode::LicenseSuspended,
    ErrorCode::LicenseRevoked,
];
/// Answers that mean this machine holds no seat. An edge learns of a new
/// seat within a second of its activation, so these forget only a lease
/// older than this: a verify racing its own activation keeps it.
const SEAT_GONE: [ErrorCode; 2] = [ErrorCode::FingerprintMismatch, ErrorCode::DeviceNotFound];
const SEAT_PROPAGATION_SECS: i64 = 60;

impl Client {
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The fingerprint this client sends (protected components).
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.inner.fingerprint
    }

    /// The edges in the order calls try them, each with its measured
    /// latency (`None`: not reachable now).
    pub async fn probe_edges(&self) -> Vec<(Url, Option<Duration>)> {
        self.inner.edges.probe().await
    }

    /// Takes (or confirms) a seat for this machine and caches its lease.
    /// One idempotency key for every retry: a lost answer retried on
    /// another edge takes one seat, not two.
    pub async fn activate(&self, license_key: &str) -> Result<ActivateResponse, ClientError> {
        let key = parse(license_key)?;
        let request = ActivateRequest {
            license_key: key.to_string(),
            fingerprint: self.inner.fingerprint.clone(),
            device_name: self.inner.device_name.clone(),
            product: self.inner.product.clone(),
            app_version: self.inner.app_version.clone(),
            idempotency_key: Some(idempotency_key()),
        };
        let answer: ActivateResponse = self.post("api/license/activate", &request).await?;
        self.store_lease(&answer.lease)?;
        Ok(answer)
    }

    /// Is the license valid on this machine? An edge's answer when one can
    /// be reached within `offline_after`, else the cached lease's.
    pub async fn verify(&self, license_key: &str) -> Result<Verification, ClientError> {
        self.verify_request(license_key, None).await
    }

    /// As [`verify`](Self::verify), for a feature the application is about
    /// to use (offline: the lease must list it).
    pub async fn verify_feature(
        &self,
        license_key: &str,
        feature: &str,
    ) -> Result<Verification, ClientError> {
        self.verify_request(license_key, Some(feature)).await
    }

    /// Gives this machine's seat up, and forgets its lease.
    pub async fn deactivate(&self, license_key: &str) -> Result<DeactivateResponse, ClientError> {
        let key = parse(license_key)?;
        let request = DeactivateRequest {
            license_key: key.to_string(),
            fingerprint: self.inner.fingerprint.clone(),
        };
        let answer = self.post("api/license/deactivate", &request).await?;
        if let Some(file) = &self.inner.lease {
            file.remove()?;
        }
        Ok(answer)
    }

    /// Moves the seat of device `from_device_id` to this machine, with an
    /// idempotency key for its retries, and caches the new lease.
    pub async fn transfer(
        &self,
        license_key: &str,
        from_device_id: Uuid,
    ) -> Result<ActivateResponse, ClientError> {
        let key = parse(license_key)?;
        let request = TransferRequest {
            license_key: key.to_string(),
            from_device_id,
            fingerprint: self.inner.fingerprint.clone(),
            device_name: self.inner.device_name.clone(),
            idempotency_key: Some(idempotency_key()),
        };
        let answer: ActivateResponse = self.post("api/license/transfer", &request).await?;
        self.store_lease(&answer.lease)?;
        Ok(answer)
    }

    /// A fresh lease for this machine's seat (the grace starts again).
    pub async fn refresh_lease(&self, license_key: &str) -> Result<LeaseResponse, ClientError> {
        let key = parse(license_key)?;
        let request = LeaseRequest {
            license_key: key.to_string(),
            fingerprint: self.inner.fingerprint.clone(),
        };
        let answer: LeaseResponse = self.post("api/license/lease", &request).await?;
        self.store_lease(&answer.lease)?;
        Ok(answer)
    }

    /// The cached lease, checked offline now (no edge asked).
    pub fn offline_lease(&self, license_key: &str) -> Result<Lease, ClientError> {
        let key = parse(license_key)?;
        Ok(self.check_lease(&key, None)?)
    }

    async fn verify_request(
        &self,
        license_key: &str,
        feature: Option<&str>,
    ) -> Result<Verification, ClientError> {
        let key = parse(license_key)?;
        let request = VerifyRequest {
            license_key: key.to_string(),
            fingerprint: Some(self.inner.fingerprint.clone()),
            product: self.inner.product.clone(),
            app_version: self.inner.app_version.clone(),
            feature: feature.map(str::to_owned),
        };
        let budget = self.inner.retry.offline_after;
        let answered: Result<Answered<VerifyResponse>, _> = self
            .inner
            .edges
            .post("api/license/verify", &request, budget)
            .await;
        match answered {
            Ok(Answered { answer, .. }) => {
                self.after_online_verify(license_key, &answer).await?;
                Ok(Verification::Online(answer))
            }
            Err(ClientError::Unavailable { last, .. }) => match self.check_lease(&key, feature) {
                Ok(lease) => Ok(Verification::Offline {
                    lease,
                    unreachable: last,
                }),
                Err(lease) => Err(ClientError::Offline {
                    unreachable: last,
                    lease,
                }),
            },
            Err(other) => Err(other),
        }
    }

    /// Keeps the lease in step with an online answer: forgotten when the
    /// license is gone from this machine, fetched when missing, refreshed
    /// past half its life, and its clock record moved on.
    async fn after_online_verify(
        &self,
        license_key: &str,
        answer: &VerifyResponse,
    ) -> Result<(), ClientError> {
        let Some(file) = &self.inner.lease else {
            return Ok(());
        };
        let now = self.inner.clock.now();
        let key = parse(license_key)?;
        let cached = self.check_lease(&key, None);
        if let Some(code) = answer.code {
            let seat_gone = SEAT_GONE.contains(&code)
                && cached
                    .as_ref()
                    .ok()
                    .is_none_or(|lease| now - lease.issued_at > SEAT_PROPAGATION_SECS);
            if LICENSE_GONE.contains(&code) || seat_gone {
                file.remove()?;
            }
        }
        if !answer.valid {
            return Ok(());
        }
        let due = match cached {
            Ok(lease) => now - lease.issued_at > (lease.valid_until - lease.issued_at) / 2,
            Err(_) => true,
        };
        if due {
            // Best effort and one attempt (a zero budget): a verify that
            // succeeded stays a quick success while control is away.
            let request = LeaseRequest {
                license_key: key.to_string(),
                fingerprint: self.inner.fingerprint.clone(),
            };
            let fresh = self.inner.edges.post::<_, LeaseResponse>(
                "api/license/lease",
                &request,
                Duration::ZERO,
            );
            if let Ok(fresh) = fresh.await {
                self.store_lease(&fresh.answer.lease)?;
            }
        } else {
            file.touch(now)?;
        }
        Ok(())
    }

    fn check_lease(&self, key: &LicenseKey, feature: Option<&str>) -> Result<Lease, LeaseError> {
        let file = self.inner.lease.as_ref().ok_or(LeaseError::NotConfigured)?;
        let lease = file.check(LeaseCheck {
            trusted: &self.inner.trusted,
            key: &key.hash(),
            fingerprint: &self.inner.fingerprint_hash,
            now: self.inner.clock.now(),
            tolerance_secs: self.inner.tolerance_secs,
        })?;
        if let Some(feature) = feature
            && !lease.features.iter().any(|f| f == feature)
        {
            return Err(LeaseError::FeatureMissing(feature.to_owned()));
        }
        Ok(lease)
    }

    fn store_lease(&self, lease: &str) -> Result<(), ClientError> {
        if let Some(file) = &self.inner.lease {
            file.store(lease, self.inner.clock.now())?;
        }
        Ok(())
    }

    pub(crate) async fn post<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let budget = self.inner.retry.budget;
        Ok(self.inner.edges.post(path, body, budget).await?.answer)
    }
}

impl ClientBuilder {
    /// Collects (or takes) and protects the fingerprint, builds the HTTP
    /// client. Installs ring as rustls's provider unless the application
    /// installed one already.
    pub fn build(self) -> Result<Client, ClientError> {
        self.check()?;
        let raw = self
            .fingerprint
            .clone()
            .unwrap_or_else(fingerprint::collect);
        let scope = self.product.clone().unwrap_or_default();
        let protected = fingerprint::protect(&raw, &scope)?;
        let fingerprint_hash = protected.canonicalize()?.hash();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .connect_timeout(self.retry.connect_timeout)
            .timeout(self.retry.request_timeout)
            .user_agent(concat!("latchkey-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ClientError::Config(format!("the HTTP client: {e}")))?;
        let tolerance_secs = i64::try_from(self.clock_tolerance.as_secs()).unwrap_or(i64::MAX);
        let signatures = if self.unsigned_answers {
            Signatures::NotRequired
        } else {
            Signatures::Required {
                trusted: self.trusted.clone(),
                clock: self.clock.clone(),
            }
        };
        Ok(Client {
            inner: Arc::new(Inner {
                edges: Edges::new(http, self.edges, self.retry.clone(), signatures),
                fingerprint: protected,
                fingerprint_hash,
                trusted: self.trusted,
                product: self.product,
                app_version: self.app_version,
                device_name: self.device_name,
                lease: self.lease_file.map(LeaseFile::new),
                retry: self.retry,
                clock: self.clock,
                tolerance_secs,
            }),
        })
    }
}

pub(crate) fn parse(license_key: &str) -> Result<LicenseKey, ClientError> {
    Ok(license_key.parse::<LicenseKey>()?)
}

/// 128 random bits: unique per call, the same for each of its retries.
fn idempotency_key() -> String {
    Uuid::new_v4().to_string()
}
