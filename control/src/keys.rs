//! The snapshot and lease signing key pair on disk, and the answer keys of
//! edges without a link, certified with it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use latchkey_shared::SigningKeyPair;
use latchkey_shared::answer::{self, AnswerKey};

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

/// Where [`certify_edge`] wrote an answer key and its certificate.
#[derive(Debug)]
pub struct CertifiedEdge {
    pub edge_id: uuid::Uuid,
    pub key: PathBuf,
    pub certificate: PathBuf,
    pub expires_at: i64,
}

/// A new answer key for an edge serving a snapshot file, in `dir` as
/// `answer-key.pem` (mode 0600) with its certificate `answer-certificate`,
/// valid for `valid_hours` from now. The edge gets a new id of its own: it
/// is not one control knows over the link.
pub fn certify_edge(
    signer: &SigningKeyPair,
    dir: &Path,
    valid_hours: u32,
) -> anyhow::Result<CertifiedEdge> {
    anyhow::ensure!(valid_hours > 0, "--valid-hours is at least 1");
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key = AnswerKey::generate();
    let edge_id = uuid::Uuid::new_v4();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (certificate, claims) = answer::certify(
        edge_id,
        &key.public_key(),
        signer,
        now,
        i64::from(valid_hours) * 3600,
    );
    let key_path = dir.join("answer-key.pem");
    let certificate_path = dir.join("answer-certificate");
    write_private(&key_path, key.to_pkcs8_pem().as_bytes())?;
    fs::write(&certificate_path, certificate)
        .with_context(|| format!("writing {}", certificate_path.display()))?;
    Ok(CertifiedEdge {
        edge_id,
        key: key_path,
        certificate: certificate_path,
        expires_at: claims.expires_at,
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
