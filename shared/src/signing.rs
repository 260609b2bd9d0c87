//! The Ed25519 keys that sign snapshots and tokens.
//!
//! Control holds a [`SigningKeyPair`]; edges and client applications hold
//! only [`TrustedKeys`], the public halves by [`KeyId`]. Several trusted keys
//! let a key be rotated without a flag day.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};

/// The first 8 bytes of BLAKE3 of the public key; written as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("not a PEM-encoded Ed25519 key: {0}")]
    Pem(String),
    #[error("a key id is 16 hex digits")]
    BadKeyId,
}

/// A private signing key and its id. Never leaves control.
#[derive(Clone)]
pub struct SigningKeyPair {
    id: KeyId,
    key: SigningKey,
}

/// The public keys a verifier accepts, by id.
#[derive(Debug, Clone, Default)]
pub struct TrustedKeys {
    keys: HashMap<KeyId, VerifyingKey>,
}

impl KeyId {
    pub fn of(key: &VerifyingKey) -> Self {
        let digest = blake3::hash(key.as_bytes());
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest.as_bytes()[..8]);
        Self(id)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut id = [0u8; 8];
        hex::decode_to_slice(text, &mut id).map_err(|_| KeyError::BadKeyId)?;
        Ok(Self(id))
    }
}

impl Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl SigningKeyPair {
    pub fn generate() -> Self {
        Self::from_signing_key(SigningKey::generate(&mut OsRng))
    }

    /// A deterministic key pair, for tests and benchmarks only.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self::from_signing_key(SigningKey::from_bytes(&seed))
    }

    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| KeyError::Pem(e.to_string()))?;
        Ok(Self::from_signing_key(key))
    }

    pub fn to_pkcs8_pem(&self) -> String {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("an Ed25519 key always encodes")
            .to_string()
    }

    pub fn public_key_pem(&self) -> String {
        public_key_pem(&self.key.verifying_key())
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn sign(&self, message: &[u8]) -> Signature {
        self.key.sign(message)
    }

    fn from_signing_key(key: SigningKey) -> Self {
        Self {
            id: KeyId::of(&key.verifying_key()),
            key,
        }
    }
}

/// Private keys are never printed.
impl fmt::Debug for SigningKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKeyPair({})", self.id)
    }
}

impl TrustedKeys {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, key: VerifyingKey) -> Self {
        self.insert(key);
        self
    }

    pub fn insert(&mut self, key: VerifyingKey) -> KeyId {
        let id = KeyId::of(&key);
        self.keys.insert(id, key);
        id
    }

    /// Adds an SPKI PEM public key, as `keys generate` writes it.
    pub fn insert_pem(&mut self, pem: &str) -> Result<KeyId, KeyError> {
        let key =
            VerifyingKey::from_public_key_pem(pem).map_err(|e| KeyError::Pem(e.to_string()))?;
        Ok(self.insert(key))
    }

    pub fn get(&self, id: &KeyId) -> Option<&VerifyingKey> {
        self.keys.get(id)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

pub fn public_key_pem(key: &VerifyingKey) -> String {
    key.to_public_key_pem(LineEnding::LF)
        .expect("an Ed25519 key always encodes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trips_keep_the_id() {
        let pair = SigningKeyPair::generate();
        let again = SigningKeyPair::from_pkcs8_pem(&pair.to_pkcs8_pem()).unwrap();
        assert_eq!(again.id(), pair.id());
        let mut trusted = TrustedKeys::new();
        assert_eq!(
            trusted.insert_pem(&pair.public_key_pem()).unwrap(),
            pair.id()
        );
        assert_eq!(pair.id().to_string().parse::<KeyId>().unwrap(), pair.id());
        assert!(format!("{pair:?}").len() < 40);
    }
}
