//! What `SECRET_KEY` protects: license keys and TOTP secrets at rest
//! (XChaCha20-Poly1305), and API key hashes (BLAKE3 keyed).
//!
//! Each use derives its own key from `SECRET_KEY`, so one leaking says
//! nothing of the others. Rotating `SECRET_KEY` needs re-sealing: not built.

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

const NONCE_LEN: usize = 24;

/// Keys derived from the operator's `SECRET_KEY`.
#[derive(Clone)]
pub struct Secrets {
    sealing: XChaCha20Poly1305,
    api_key_hashing: [u8; 32],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "SECRET_KEY must be at least 32 characters (generate one with `openssl rand -base64 48`)"
    )]
    TooShort,
    #[error("sealed value is damaged or was sealed with another SECRET_KEY")]
    CannotOpen,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets(..)")
    }
}

impl Secrets {
    pub fn new(secret_key: &str) -> Result<Self, SecretsError> {
        if secret_key.len() < 32 {
            return Err(SecretsError::TooShort);
        }
        let sealing_key = blake3::derive_key("latchkey 2026-11 sealing", secret_key.as_bytes());
        Ok(Self {
            sealing: XChaCha20Poly1305::new(&sealing_key.into()),
            api_key_hashing: blake3::derive_key(
                "latchkey 2026-11 api key hashing",
                secret_key.as_bytes(),
            ),
        })
    }

    /// Nonce followed by ciphertext and tag.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut out = nonce.to_vec();
        out.extend(
            self.sealing
                .encrypt(&nonce, plaintext)
                .expect("sealing cannot fail for in-memory data"),
        );
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, SecretsError> {
        if sealed.len() < NONCE_LEN {
            return Err(SecretsError::CannotOpen);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.sealing
            .decrypt(XNonce::from_slice(nonce), ciphertext)
            .map_err(|_| SecretsError::CannotOpen)
    }

    pub fn hash_api_key(&self, secret: &str) -> [u8; 32] {
        *blake3::keyed_hash(&self.api_key_hashing, secret.as_bytes()).as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key() {
        let secrets = Secrets::new(&"k".repeat(40)).unwrap();
        let sealed = secrets.seal(b"7KQ2M-X0RDT");
        assert_eq!(secrets.open(&sealed).unwrap(), b"7KQ2M-X0RDT");
        let other = Secrets::new(&"x".repeat(40)).unwrap();
        assert_eq!(other.open(&sealed), Err(SecretsError::CannotOpen));
        assert_eq!(Secrets::new("short").unwrap_err(), SecretsError::TooShort);
    }
}
