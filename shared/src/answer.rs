//! Signed answers: how a client tells a real edge from a server that only
//! says "valid".
//!
//! Each edge makes a signing key of its own when it starts (it never leaves
//! the process) and control certifies its public half with the license
//! signing key: an [`EdgeCertificate`] token valid for
//! [`CERTIFICATE_TTL_SECS`]. A client sends a random nonce with each call
//! ([`NONCE_HEADER`]); the edge answers with its certificate and an Ed25519
//! signature over the [`Exchange`]: the nonce, the path and a digest of the
//! request body it answered, the status and the answer's body. The client
//! believes the answer only if the certificate verifies with the vendor's
//! public key and the signature with the certified key. A fake server has
//! neither key; a recorded answer carries another nonce, and a real edge's
//! answer to another request (an attacker's own license) another digest.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::{OsRng, RngCore};
use uuid::Uuid;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};

use crate::signing::{KeyError, SigningKeyPair, TrustedKeys};
use crate::token::{self, EdgeCertificate, TokenError};

/// The client's nonce, a request header.
pub const NONCE_HEADER: &str = "x-latchkey-nonce";
/// The edge's certificate, a response header.
pub const CERTIFICATE_HEADER: &str = "x-latchkey-edge-certificate";
/// The edge's signature over the exchange, a response header.
pub const SIGNATURE_HEADER: &str = "x-latchkey-signature";
/// How long control's certificate of an edge's key is valid. Short: a key
/// taken from a running edge is of no use a day later.
pub const CERTIFICATE_TTL_SECS: i64 = 24 * 3600;
/// Accepted nonce lengths, in base64url characters (a new one has 32).
const NONCE_LEN: std::ops::RangeInclusive<usize> = 16..=128;
const MESSAGE_PREFIX: &[u8] = b"latchkey-answer/1\n";

/// One request and its answer, as signed.
#[derive(Debug, Clone, Copy)]
pub struct Exchange<'a> {
    pub nonce: &'a str,
    /// The request's path, as the edge received it.
    pub path: &'a str,
    pub request_body: &'a [u8],
    pub status: u16,
    pub response_body: &'a [u8],
}

/// Why an answer is not believed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the answer is not signed")]
    Unsigned,
    #[error("the edge's certificate: {0}")]
    Certificate(#[from] TokenError),
    #[error("the edge's certificate holds no valid public key")]
    BadPublicKey,
    #[error("the answer's signature does not verify")]
    BadSignature,
}

/// An edge's own key for signing answers: made in its process, never
/// written anywhere, and not the license signing key (which no edge holds).
#[derive(Clone)]
pub struct AnswerKey(SigningKey);

/// An edge's answer key and control's certificate of it.
#[derive(Debug, Clone)]
pub struct AnswerSigner {
    key: AnswerKey,
    certificate: String,
    expires_at: i64,
}

/// A fresh random nonce: 24 bytes, base64url.
pub fn new_nonce() -> String {
    let mut bytes = [0u8; 24];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `text` may be a client's nonce: bounded, base64url characters.
/// Anything else is not signed over (the request is answered unsigned).
pub fn valid_nonce(text: &str) -> bool {
    NONCE_LEN.contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Control's certificate of the edge `edge_id`'s answer key, valid from
/// `now` for `valid_secs` ([`CERTIFICATE_TTL_SECS`] over the link).
pub fn certify(
    edge_id: Uuid,
    public_key: &VerifyingKey,
    signer: &SigningKeyPair,
    now: i64,
    valid_secs: i64,
) -> (String, EdgeCertificate) {
    let claims = EdgeCertificate {
        edge_id,
        public_key: URL_SAFE_NO_PAD.encode(public_key.as_bytes()),
        issued_at: now,
        expires_at: now + valid_secs,
    };
    (token::sign(&claims, signer), claims)
}

/// The public key an edge asks control to certify, as it travels
/// (base64url of its 32 bytes); `None` if it is not an Ed25519 key.
pub fn parse_public_key(text: &str) -> Option<VerifyingKey> {
    let mut bytes = [0u8; 32];
    match URL_SAFE_NO_PAD.decode_slice(text, &mut bytes) {
        Ok(32) => VerifyingKey::from_bytes(&bytes).ok(),
        _ => None,
    }
}

/// The text form of `key` for [`parse_public_key`].
pub fn encode_public_key(key: &VerifyingKey) -> String {
    URL_SAFE_NO_PAD.encode(key.as_bytes())
}

impl AnswerKey {
    pub fn generate() -> Self {
        Self(SigningKey::generate(&mut OsRng))
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.0.verifying_key()
    }

    /// For an edge with no link, given its key as a file (PKCS#8 PEM).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(Self)
            .map_err(|e| KeyError::Pem(e.to_string()))
    }

    pub fn to_pkcs8_pem(&self) -> String {
        self.0
            .to_pkcs8_pem(LineEnding::LF)
            .expect("an Ed25519 key always encodes")
            .to_string()
    }
}

/// Private keys are never printed.
impl std::fmt::Debug for AnswerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AnswerKey({})", encode_public_key(&self.public_key()))
    }
}

impl AnswerSigner {
    /// `key` with its `certificate` (the token text) valid until `expires_at`.
    pub fn new(key: AnswerKey, certificate: String, expires_at: i64) -> Self {
        Self {
            key,
            certificate,
            expires_at,
        }
    }

    pub fn certificate(&self) -> &str {
        &self.certificate
    }

    /// Whether the certificate still holds at `now`: past it the edge
    /// answers unsigned rather than with a certificate clients refuse.
    pub fn is_valid_at(&self, now: i64) -> bool {
        now <= self.expires_at
    }

    /// The signature header's value for `exchange`.
    pub fn sign(&self, exchange: &Exchange<'_>) -> String {
        URL_SAFE_NO_PAD.encode(self.key.0.sign(&message(exchange)).to_bytes())
    }
}

/// Checks an answer: the certificate against the vendor's `trusted` keys at
/// `now`, then the signature over `exchange` with the certified key.
pub fn verify(
    trusted: &TrustedKeys,
    now: i64,
    exchange: &Exchange<'_>,
    certificate: Option<&str>,
    signature: Option<&str>,
) -> Result<EdgeCertificate, AnswerError> {
    let (Some(certificate), Some(signature)) = (certificate, signature) else {
        return Err(AnswerError::Unsigned);
    };
    let claims: EdgeCertificate = token::verify(certificate, trusted, now)?;
    let key = parse_public_key(&claims.public_key).ok_or(AnswerError::BadPublicKey)?;
    let mut bytes = [0u8; 64];
    match URL_SAFE_NO_PAD.decode_slice(signature, &mut bytes) {
        Ok(64) => {}
        _ => return Err(AnswerError::BadSignature),
    }
    key.verify_strict(&message(exchange), &Signature::from_bytes(&bytes))
        .map_err(|_| AnswerError::BadSignature)?;
    Ok(claims)
}

/// The signed bytes. The nonce and the path hold no newline (a nonce is
/// base64url, a path as HTTP carries it), so the fields cannot be shifted
/// into each other; the request body enters as its digest.
fn message(exchange: &Exchange<'_>) -> Vec<u8> {
    let digest = blake3::hash(exchange.request_body);
    let mut message = Vec::with_capacity(
        MESSAGE_PREFIX.len()
            + exchange.nonce.len()
            + exchange.path.len()
            + 80
            + exchange.response_body.len(),
    );
    message.extend_from_slice(MESSAGE_PREFIX);
    message.extend_from_slice(exchange.nonce.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(exchange.path.as_bytes());
    message.push(b'\n');
    message.extend_from_slice(digest.to_hex().as_bytes());
    message.push(b'\n');
    message.extend_from_slice(exchange.status.to_string().as_bytes());
    message.push(b'\n');
    message.extend_from_slice(exchange.response_body);
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn signed_edge(vendor: &SigningKeyPair) -> AnswerSigner {
        let key = AnswerKey::generate();
        let (certificate, claims) = certify(
            Uuid::from_u128(9),
            &key.public_key(),
            vendor,
            NOW,
            CERTIFICATE_TTL_SECS,
        );
        AnswerSigner::new(key, certificate, claims.expires_at)
    }

    fn exchange<'a>(nonce: &'a str, body: &'a [u8]) -> Exchange<'a> {
        Exchange {
            nonce,
            path: "/api/license/verify",
            request_body: b"{\"license_key\":\"A\"}",
            status: 200,
            response_body: body,
        }
    }

    #[test]
    fn an_answer_verifies_only_as_it_was_signed() {
        let vendor = SigningKeyPair::generate();
        let trusted = TrustedKeys::new().with(vendor.verifying_key());
        let edge = signed_edge(&vendor);
        let nonce = new_nonce();
        assert!(valid_nonce(&nonce));
        let signed = exchange(&nonce, b"{\"valid\":true}");
        let signature = edge.sign(&signed);
        let check = |exchange: &Exchange<'_>, now: i64| {
            verify(
                &trusted,
                now,
                exchange,
                Some(edge.certificate()),
                Some(&signature),
            )
        };
        assert_eq!(check(&signed, NOW).unwrap().edge_id, Uuid::from_u128(9));

        let other_nonce = new_nonce();
        let changed = [
            exchange(&other_nonce, b"{\"valid\":true}"),
            exchange(&nonce, b"{\"valid\":false}"),
            Exchange {
                request_body: b"{\"license_key\":\"B\"}",
                ..signed
            },
            Exchange {
                path: "/api/license/activate",
                ..signed
            },
            Exchange {
                status: 201,
                ..signed
            },
        ];
        for exchange in &changed {
            assert_eq!(check(exchange, NOW), Err(AnswerError::BadSignature));
        }
        assert!(matches!(
            check(&signed, NOW + CERTIFICATE_TTL_SECS + 1),
            Err(AnswerError::Certificate(TokenError::Expired { .. }))
        ));
        assert_eq!(
            verify(&trusted, NOW, &signed, None, Some(&signature)),
            Err(AnswerError::Unsigned)
        );
    }

    #[test]
    fn a_certificate_from_another_vendor_key_is_refused() {
        let vendor = SigningKeyPair::generate();
        let trusted = TrustedKeys::new().with(vendor.verifying_key());
        let impostor = signed_edge(&SigningKeyPair::generate());
        let nonce = new_nonce();
        let signed = exchange(&nonce, b"{\"valid\":true}");
        assert!(matches!(
            verify(
                &trusted,
                NOW,
                &signed,
                Some(impostor.certificate()),
                Some(&impostor.sign(&signed))
            ),
            Err(AnswerError::Certificate(TokenError::UnknownKey(_)))
        ));
    }

    #[test]
    fn nonces_are_bounded_base64url() {
        assert!(!valid_nonce("short"));
        assert!(!valid_nonce(&"a".repeat(129)));
        assert!(!valid_nonce("abcdefghijklmnop\n"));
        assert!(!valid_nonce("abcdefghijklmno/"));
        assert!(valid_nonce("abcdefghijklmn-_"));
    }

    #[test]
    fn an_answer_key_round_trips_through_pem() {
        let key = AnswerKey::generate();
        let again = AnswerKey::from_pkcs8_pem(&key.to_pkcs8_pem()).unwrap();
        assert_eq!(again.public_key(), key.public_key());
        assert!(AnswerKey::from_pkcs8_pem("junk").is_err());
    }

    #[test]
    fn public_keys_round_trip_and_junk_is_refused() {
        let key = SigningKeyPair::generate().verifying_key();
        assert_eq!(parse_public_key(&encode_public_key(&key)), Some(key));
        assert_eq!(parse_public_key("AAAA"), None);
        assert_eq!(parse_public_key(&"A".repeat(300)), None);
    }
}
