//! Signed answers (the shared `answer` module): this edge's own answer key,
//! made when it starts, and control's certificate of it, asked over the
//! link after each connect and renewed well before it expires. An edge
//! serving a snapshot file has no link: it is given a key and certificate
//! as files (`latchkey-control keys certify-edge`), or signs nothing. While
//! there is no valid certificate answers go out unsigned, and clients that
//! require signatures try another edge.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use arc_swap::ArcSwapOption;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use latchkey_shared::TrustedKeys;
use latchkey_shared::answer::{
    self, AnswerKey, AnswerSigner, CERTIFICATE_HEADER, CERTIFICATE_TTL_SECS, Exchange,
    NONCE_HEADER, SIGNATURE_HEADER,
};
use latchkey_shared::api::ErrorCode;
use latchkey_shared::link::{Call, Reply};
use latchkey_shared::token::{self, EdgeCertificate};

use crate::error::EdgeError;
use crate::link::Link;
use crate::snapshots::unix_now;

/// Renewed at half its life: a control away for hours still leaves hours.
const RENEW_AFTER: Duration = Duration::from_secs(CERTIFICATE_TTL_SECS as u64 / 2);
/// After a refused or lost certify call.
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// Largest answer body signed; a client endpoint's answers are far smaller.
const MAX_SIGNED_BODY: usize = 1024 * 1024;

/// The key and, once control certified it, the signer.
#[derive(Debug)]
pub struct Answers {
    key: AnswerKey,
    signer: ArcSwapOption<AnswerSigner>,
}

impl Default for Answers {
    fn default() -> Self {
        Self {
            key: AnswerKey::generate(),
            signer: ArcSwapOption::empty(),
        }
    }
}

impl Answers {
    /// As the edge is configured: a linked edge makes its key and has it
    /// certified over the link; one serving a file is given both as files,
    /// or signs nothing.
    pub fn configured(
        key: Option<&Path>,
        certificate: Option<&Path>,
        linked: bool,
        trusted: &TrustedKeys,
    ) -> anyhow::Result<Self> {
        let read = |path: &Path| {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
        };
        match (key, certificate) {
            (None, None) => Ok(Self::default()),
            _ if linked => anyhow::bail!(
                "an edge with a link has its answer key certified by control: leave out --answer-key and --answer-certificate"
            ),
            (Some(key), Some(certificate)) => {
                Self::provisioned(&read(key)?, &read(certificate)?, trusted)
            }
            _ => anyhow::bail!("give both --answer-key and --answer-certificate, or neither"),
        }
    }

    /// A key and certificate given as files, checked now: the certificate
    /// must verify with a trusted key and certify this very key.
    fn provisioned(
        key_pem: &str,
        certificate: &str,
        trusted: &TrustedKeys,
    ) -> anyhow::Result<Self> {
        let key = AnswerKey::from_pkcs8_pem(key_pem).context("the answer key")?;
        let certificate = certificate.trim();
        let claims: EdgeCertificate =
            token::verify(certificate, trusted, unix_now()).context("the answer certificate")?;
        anyhow::ensure!(
            answer::parse_public_key(&claims.public_key) == Some(key.public_key()),
            "the answer certificate is for another key"
        );
        let signer = AnswerSigner::new(key.clone(), certificate.to_owned(), claims.expires_at);
        record_expiry(claims.expires_at);
        Ok(Self {
            key,
            signer: ArcSwapOption::from_pointee(signer),
        })
    }

    /// The signer to sign with now, if the certificate holds.
    pub fn signer(&self) -> Option<Arc<AnswerSigner>> {
        self.signer
            .load_full()
            .filter(|signer| signer.is_valid_at(unix_now()))
    }

    /// Keeps a certificate while the link's connection lasts: asks at once,
    /// then at half of each certificate's life. Never returns; the link
    /// drops it with the connection.
    pub async fn keep_certified(&self, link: &Link) {
        let call = Call::Certify {
            public_key: answer::encode_public_key(&self.key.public_key()),
        };
        loop {
            let wait = match link.call(&call).await {
                Ok(Reply::Certified {
                    certificate,
                    expires_at,
                }) => {
                    tracing::info!(expires_at, "answer key certified by control");
                    self.signer.store(Some(Arc::new(AnswerSigner::new(
                        self.key.clone(),
                        certificate,
                        expires_at,
                    ))));
                    record_expiry(expires_at);
                    RENEW_AFTER
                }
                Ok(other) => {
                    tracing::warn!(reply = ?other, "control did not certify the answer key");
                    RETRY_AFTER
                }
                Err(error) => {
                    tracing::warn!(%error, "certifying the answer key failed; retrying");
                    RETRY_AFTER
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// For the alert an hour before clients stop believing this edge.
fn record_expiry(expires_at: i64) {
    metrics::gauge!("latchkey_edge_answer_certificate_expires_timestamp_seconds")
        .set(expires_at as f64);
}

/// The client's nonce, if the request carries one; a malformed one is the
/// client's error, refused rather than answered unsigned.
pub fn nonce(headers: &HeaderMap) -> Result<Option<String>, EdgeError> {
    let Some(value) = headers.get(NONCE_HEADER) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(nonce) if answer::valid_nonce(nonce) => Ok(Some(nonce.to_owned())),
        _ => Err(EdgeError::invalid(
            NONCE_HEADER,
            "the nonce is 16 to 128 base64url characters",
        )),
    }
}

/// `response` with the certificate and the signature over the exchange.
pub async fn sign(
    signer: &AnswerSigner,
    nonce: &str,
    path: &str,
    request_body: &[u8],
    response: Response,
) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_SIGNED_BODY).await else {
        return EdgeError::new(ErrorCode::Internal, "the answer could not be signed")
            .into_response();
    };
    let signature = signer.sign(&Exchange {
        nonce,
        path,
        request_body,
        status: parts.status.as_u16(),
        response_body: &body,
    });
    // Both are base64url and dots: always valid header values.
    if let (Ok(certificate), Ok(signature)) = (
        HeaderValue::from_str(signer.certificate()),
        HeaderValue::from_str(&signature),
    ) {
        parts.headers.insert(CERTIFICATE_HEADER, certificate);
        parts.headers.insert(SIGNATURE_HEADER, signature);
    }
    Response::from_parts(parts, Body::from(body))
}
