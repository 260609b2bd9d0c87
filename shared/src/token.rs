//! Signed tokens: the offline lease and the session token a client holds,
//! and the certificate of an edge's answer key (`crate::answer`).
//!
//! Text form: `lk1.<kind>.<key id>.<payload>.<signature>` where `kind` is
//! `lease`, `sess` or `edge`, the key id is 16 lower-case hex digits, the payload is
//! base64url (no padding) JSON with short field names, and the signature is
//! base64url Ed25519 over everything before the last dot. Any application can
//! check a lease offline with the public key: split, verify, read the JSON.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::Signature;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::fingerprint::FingerprintHash;
use crate::key::KeyHash;
use crate::signing::{KeyId, SigningKeyPair, TrustedKeys};

pub const TOKEN_VERSION: &str = "lk1";
/// Longest token text accepted; bounds the work an attacker can ask for.
pub const MAX_TOKEN_LEN: usize = 4096;
/// The offline grace period a lease grants unless the license says otherwise.
pub const DEFAULT_GRACE_SECS: i64 = 7 * 24 * 3600;

/// Lets an activated application run offline until `valid_until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    #[serde(rename = "lic")]
    pub license_id: Uuid,
    #[serde(rename = "kh")]
    pub key_hash: KeyHash,
    #[serde(rename = "fp")]
    pub fingerprint: FingerprintHash,
    #[serde(rename = "prd")]
    pub product_id: u32,
    #[serde(rename = "ft", default)]
    pub features: Vec<String>,
    #[serde(rename = "iat")]
    pub issued_at: i64,
    #[serde(rename = "exp")]
    pub valid_until: i64,
}

/// Proves a session control started; edges check it on every heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionClaims {
    #[serde(rename = "sid")]
    pub session_id: Uuid,
    #[serde(rename = "lic")]
    pub license_id: Uuid,
    #[serde(rename = "kh")]
    pub key_hash: KeyHash,
    #[serde(rename = "fp")]
    pub fingerprint: FingerprintHash,
    #[serde(rename = "iat")]
    pub issued_at: i64,
    #[serde(rename = "exp")]
    pub expires_at: i64,
}

/// Control's word that `public_key` is the edge `edge_id`'s own key for
/// signing answers, until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeCertificate {
    #[serde(rename = "eid")]
    pub edge_id: Uuid,
    /// base64url of the Ed25519 public key's 32 bytes.
    #[serde(rename = "pk")]
    pub public_key: String,
    #[serde(rename = "iat")]
    pub issued_at: i64,
    #[serde(rename = "exp")]
    pub expires_at: i64,
}

/// The claims of one token kind.
pub trait Claims: Serialize + DeserializeOwned {
    const KIND: &'static str;
    fn expires_at(&self) -> i64;
}

impl Claims for Lease {
    const KIND: &'static str = "lease";
    fn expires_at(&self) -> i64 {
        self.valid_until
    }
}

impl Claims for EdgeCertificate {
    const KIND: &'static str = "edge";
    fn expires_at(&self) -> i64 {
        self.expires_at
    }
}

impl Claims for SessionClaims {
    const KIND: &'static str = "sess";
    fn expires_at(&self) -> i64 {
        self.expires_at
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is longer than {MAX_TOKEN_LEN} bytes")]
    TooLong,
    #[error("not a Latchkey token")]
    Malformed,
    #[error("token version {0:?} is not supported")]
    UnsupportedVersion(String),
    #[error("expected a {expected} token, got {got:?}")]
    WrongKind { expected: &'static str, got: String },
    #[error("token signed by key {0}, which is not trusted")]
    UnknownKey(KeyId),
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token payload is not valid: {0}")]
    BadPayload(String),
    #[error("token expired at {expires_at}")]
    Expired { expires_at: i64 },
}

impl Lease {
    /// A lease issued at `issued_at` for `grace_secs` of offline use.
    pub fn issue(
        license_id: Uuid,
        key_hash: KeyHash,
        fingerprint: FingerprintHash,
        product_id: u32,
        features: Vec<String>,
        issued_at: i64,
        grace_secs: i64,
    ) -> Self {
        Self {
            license_id,
            key_hash,
            fingerprint,
            product_id,
            features,
            issued_at,
            valid_until: issued_at + grace_secs,
        }
    }
}

/// Signs `claims` into the token text.
pub fn sign<C: Claims>(claims: &C, signer: &SigningKeyPair) -> String {
    let payload = serde_json::to_vec(claims).expect("claims always serialize");
    let mut text = format!("{TOKEN_VERSION}.{}.{}.", C::KIND, signer.id());
    URL_SAFE_NO_PAD.encode_string(payload, &mut text);
    let signature = signer.sign(text.as_bytes());
    text.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.to_bytes(), &mut text);
    text
}

/// Checks a token's form, signature and expiry, and returns its claims.
pub fn verify<C: Claims>(token: &str, trusted: &TrustedKeys, now: i64) -> Result<C, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong);
    }
    let (signed, signature) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let mut parts = signed.split('.');
    let (Some(version), Some(kind), Some(key_id), Some(payload), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(TokenError::Malformed);
    };
    if version != TOKEN_VERSION {
        return Err(TokenError::UnsupportedVersion(
            version.chars().take(8).collect(),
        ));
    }
    if kind != C::KIND {
        return Err(TokenError::WrongKind {
            expected: C::KIND,
            got: kind.chars().take(8).collect(),
        });
    }
    let key_id: KeyId = key_id.parse().map_err(|_| TokenError::Malformed)?;
    let key = trusted.get(&key_id).ok_or(TokenError::UnknownKey(key_id))?;
    let mut signature_bytes = [0u8; 64];
    match URL_SAFE_NO_PAD.decode_slice(signature, &mut signature_bytes) {
        Ok(64) => {}
        _ => return Err(TokenError::BadSignature),
    }
    key.verify_strict(signed.as_bytes(), &Signature::from_bytes(&signature_bytes))
        .map_err(|_| TokenError::BadSignature)?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed)?;
    let claims: C =
        serde_json::from_slice(&payload).map_err(|e| TokenError::BadPayload(e.to_string()))?;
    if now > claims.expires_at() {
        return Err(TokenError::Expired {
            expires_at: claims.expires_at(),
        });
    }
    Ok(claims)
}
