//! The edge's side of the link's mutual TLS: its own identity (a key and
//! self-signed certificate made on first start and kept in the data
//! directory; control knows the edge by the certificate's hash once it has
//! enrolled) and control's certificate, pinned.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use latchkey_shared::link::{self, ALPN};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const CERT_FILE: &str = "edge-cert.pem";
const KEY_FILE: &str = "edge-key.pem";

pub fn client_config(data_dir: &Path, control_cert: &Path) -> anyhow::Result<quinn::ClientConfig> {
    let (cert, key) = identity(data_dir)?;
    let control = CertificateDer::from_pem_file(control_cert)
        .with_context(|| format!("reading control's certificate {}", control_cert.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(control)
        .context("pinning control's certificate")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert], key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(link::KEEP_ALIVE));
    transport.max_idle_timeout(Some(link::IDLE_TIMEOUT.try_into()?));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// The edge's link key and certificate, made on first use.
fn identity(dir: &Path) -> anyhow::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    if !cert_path.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let made = rcgen::generate_simple_self_signed(vec!["latchkey-edge".to_owned()])?;
        write_private(&key_path, made.signing_key.serialize_pem().as_bytes())?;
        std::fs::write(&cert_path, made.cert.pem())
            .with_context(|| format!("writing {}", cert_path.display()))?;
    }
    let cert = CertificateDer::from_pem_file(&cert_path)
        .with_context(|| format!("reading {}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("reading {}", key_path.display()))?;
    Ok((cert, key))
}

/// A new file only its owner can read, 0600 from its creation.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}
