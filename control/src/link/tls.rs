//! Control's side of the link's mutual TLS: its own certificate (made once,
//! kept in the link directory; edges pin it) and a client-certificate check
//! that asks only for proof of the key. Which edge a certificate belongs to
//! is decided after the handshake, against the `edges` table.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use latchkey_shared::link::{self, ALPN, SERVER_NAME};
use quinn::crypto::rustls::QuicServerConfig;
use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};

pub const CERT_FILE: &str = "link-cert.pem";
const KEY_FILE: &str = "link-key.pem";

/// Control's link certificate and key, created in `dir` on first use.
pub fn load_or_create(
    dir: &Path,
) -> anyhow::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    let (cert_path, key_path) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    if !cert_path.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let made = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_owned()])?;
        crate::keys::write_private(&key_path, made.signing_key.serialize_pem().as_bytes())?;
        std::fs::write(&cert_path, made.cert.pem())
            .with_context(|| format!("writing {}", cert_path.display()))?;
    }
    let cert = CertificateDer::from_pem_file(&cert_path)
        .with_context(|| format!("reading {}", cert_path.display()))?;
    let key = PrivateKeyDer::from_pem_file(&key_path)
        .with_context(|| format!("reading {}", key_path.display()))?;
    Ok((cert, key))
}

pub fn server_config(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> anyhow::Result<quinn::ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(EdgeCertificate {
        algorithms: provider.signature_verification_algorithms,
    });
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert], key)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(tls)?));
    let transport = Arc::get_mut(&mut config.transport).expect("not shared yet");
    transport.keep_alive_interval(Some(link::KEEP_ALIVE));
    transport.max_idle_timeout(Some(link::IDLE_TIMEOUT.try_into()?));
    Ok(config)
}

/// The BLAKE3 hash of the peer's certificate: the edge's identity.
pub fn peer_identity(connection: &quinn::Connection) -> Option<[u8; 32]> {
    let certs = connection
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?;
    certs.first().map(|cert| *blake3::hash(cert).as_bytes())
}

/// Requires a client certificate and proof of its key; any issuer.
#[derive(Debug)]
struct EdgeCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for EdgeCertificate {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_link_key_is_readable_by_its_owner_only() {
        let dir = std::env::temp_dir().join(format!("latchkey-tls-{}", uuid::Uuid::new_v4()));
        load_or_create(&dir).unwrap();
        let mode = std::fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Made once: a second start reads the same files.
        load_or_create(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
