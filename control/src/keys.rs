//! The snapshot and lease signing key pair on disk.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use latchkey_shared::SigningKeyPair;

/// Where [`generate`] wrote a key pair.
#[derive(Debug)]
pub struct WrittenKeys {
    pub key_id: String,
    pub private_pem: PathBuf,
    pub public_pem: PathBuf,
}

/// Writes a new key pair into `dir` as `signing-<id>.pem` (private, mode
/// 0600) and `signing-<id>.pub.pem` (public: what edges and clients trust).
pub fn generate(dir: &Path) -> anyhow::Result<WrittenKeys> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let pair = SigningKeyPair::generate();
    let key_id = pair.id().to_string();
    let private_pem = dir.join(format!("signing-{key_id}.pem"));
    let public_pem = dir.join(format!("signing-{key_id}.pub.pem"));
    write_private(&private_pem, pair.to_pkcs8_pem().as_bytes())?;
    fs::write(&public_pem, pair.public_key_pem())
        .with_context(|| format!("writing {}", public_pem.display()))?;
    Ok(WrittenKeys {
        key_id,
        private_pem,
        public_pem,
    })
}

pub fn load(path: &Path) -> anyhow::Result<SigningKeyPair> {
    let pem = fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    SigningKeyPair::from_pkcs8_pem(&pem)
        .with_context(|| format!("loading signing key {}", path.display()))
}

/// Writes a new file only its owner can read (mode 0600 from the start, not
/// after: no moment where another user could open it). Refuses to replace
/// an existing file.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}
